-- ARGV[3] amount, ARGV[4] account id
local seen = replay()
if seen then return seen end
local balance = balance_of(KEYS[4])
if not balance then
  return finish('unknown', ARGV[4])
end
if tonumber(ARGV[3]) > balance then
  return finish('insufficient', int(balance))
end
add_total('withdrawal', ARGV[3])
return finish('ok', int(record(KEYS[4], KEYS[5], ARGV[4], 'withdraw', '', '-' .. ARGV[3])))
