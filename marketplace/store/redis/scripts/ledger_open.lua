-- KEYS[1] totals, KEYS[2] txn counter, KEYS[3] account set, KEYS[4] account, KEYS[5] history
-- ARGV[3] account id, ARGV[4] opening balance
if redis.call('EXISTS', KEYS[4]) == 1 then
  return 0
end
redis.call('HSET', KEYS[4], 'balance', '0')
redis.call('SADD', KEYS[3], ARGV[3])
add_total('opening', ARGV[4])
record(KEYS[4], KEYS[5], ARGV[3], 'open', '', ARGV[4])
return 1
