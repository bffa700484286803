-- ARGV[3] amount, ARGV[4] account id, ARGV[5] maximum balance
local seen = replay()
if seen then return seen end
local balance = balance_of(KEYS[4])
if not balance then
  return finish('unknown', ARGV[4])
end
if balance + tonumber(ARGV[3]) > tonumber(ARGV[5]) then
  return finish('overflow', ARGV[4])
end
add_total('deposit', ARGV[3])
return finish('ok', int(record(KEYS[4], KEYS[5], ARGV[4], 'deposit', '', ARGV[3])))
