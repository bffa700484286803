-- ARGV[3] amount, ARGV[4] source id, ARGV[5] target id, ARGV[6] maximum balance
local seen = replay()
if seen then return seen end
local balance = balance_of(KEYS[4])
if not balance then
  return finish('unknown', ARGV[4])
end
local target_balance = balance_of(KEYS[6])
if not target_balance then
  return finish('unknown', ARGV[5])
end
local amount = tonumber(ARGV[3])
if amount > balance then
  return finish('insufficient', int(balance))
end
if target_balance + amount > tonumber(ARGV[6]) then
  return finish('overflow', ARGV[5])
end
reserve_txns(2)
local new_balance = record(KEYS[4], KEYS[5], ARGV[4], 'transfer_out', ARGV[5], '-' .. ARGV[3])
record(KEYS[6], KEYS[7], ARGV[5], 'transfer_in', ARGV[4], ARGV[3])
return finish('ok', int(new_balance))
