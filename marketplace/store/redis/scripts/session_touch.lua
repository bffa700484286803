-- KEYS[1] session hash.  Slides the expiry with the session's own ttl.
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then
  return false
end
redis.call('PEXPIRE', KEYS[1], redis.call('HGET', KEYS[1], 'ttl_ms'))
return fields
