-- KEYS[1] session hash; ARGV[1] user set key prefix.  Slides the expiry with
-- the session's own ttl, and the user's session set's with it.
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then
  return false
end
local ttl = redis.call('HGET', KEYS[1], 'ttl_ms')
redis.call('PEXPIRE', KEYS[1], ttl)
local users = ARGV[1] .. redis.call('HGET', KEYS[1], 'user')
if redis.call('PTTL', users) < tonumber(ttl) then
  redis.call('PEXPIRE', users, ttl)
end
return fields
