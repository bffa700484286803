-- Customers: replace a password hash if it still is the one the caller read.
-- KEYS[1] the user's hash.  ARGV: the hash read, the new hash
local current = redis.call('HGET', KEYS[1], 'hash')
if not current then
  return -1
end
if current ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'hash', ARGV[2])
return 1
