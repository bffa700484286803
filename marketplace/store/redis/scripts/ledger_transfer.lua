-- ARGV[3] amount, ARGV[4] source id, ARGV[5] target id, ARGV[6] maximum balance
local seen = replay()
if seen then return seen end
if redis.call('EXISTS', KEYS[4]) == 0 then
  return finish('unknown', ARGV[4])
end
if redis.call('EXISTS', KEYS[6]) == 0 then
  return finish('unknown', ARGV[5])
end
local amount = tonumber(ARGV[3])
local balance = tonumber(redis.call('HGET', KEYS[4], 'balance'))
if amount > balance then
  return finish('insufficient', int(balance))
end
if tonumber(redis.call('HGET', KEYS[6], 'balance')) + amount > tonumber(ARGV[6]) then
  return finish('overflow', ARGV[5])
end
local new_balance = record(KEYS[4], KEYS[5], 'transfer_out', ARGV[5], '-' .. ARGV[3])
record(KEYS[6], KEYS[7], 'transfer_in', ARGV[4], ARGV[3])
return finish('ok', int(new_balance))
