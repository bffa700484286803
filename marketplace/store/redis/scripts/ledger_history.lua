-- KEYS[1] account, KEYS[2] history; ARGV[1] exclusive upper txn id ('+inf' for none), ARGV[2] limit
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
return redis.call('ZREVRANGEBYSCORE', KEYS[2], ARGV[1], '-inf', 'LIMIT', '0', ARGV[2])
