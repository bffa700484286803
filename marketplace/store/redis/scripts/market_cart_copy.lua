-- Customers: replace one cart with a copy of another (SaveCart, and the
-- restore at login).  KEYS[1] source, KEYS[2] target.  ARGV: ttl in ms for
-- the target, or 0 to keep it without expiry
redis.call('DEL', KEYS[2])
local fields = redis.call('HGETALL', KEYS[1])
if #fields > 0 then
  redis.call('HSET', KEYS[2], unpack(fields))
  if tonumber(ARGV[1]) > 0 then
    redis.call('PEXPIRE', KEYS[2], ARGV[1])
  end
end
return #fields / 2
