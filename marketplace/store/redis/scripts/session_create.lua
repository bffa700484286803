-- KEYS[1] session hash, KEYS[2] the user's session set
-- ARGV[1] user, ARGV[2] ttl ms, ARGV[3] created, ARGV[4] data (JSON), ARGV[5] session id,
-- ARGV[6] session key prefix
redis.call('HSET', KEYS[1], 'user', ARGV[1], 'ttl_ms', ARGV[2], 'created', ARGV[3], 'data', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
-- A few members whose session expired leave the set on every create, so a
-- user who logs in again and again without logging out keeps a small set.
for _, id in ipairs(redis.call('SRANDMEMBER', KEYS[2], 4)) do
  if redis.call('EXISTS', ARGV[6] .. id) == 0 then
    redis.call('SREM', KEYS[2], id)
  end
end
redis.call('SADD', KEYS[2], ARGV[5])
-- The set lives as long as its longest-lived session (touch slides it too).
local left = redis.call('PTTL', KEYS[2])
if left < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
