-- Customers: the id and password hash for a user name.
-- KEYS[1] the role's name -> id hash.  ARGV: prefix for user hashes, user name
local id = redis.call('HGET', KEYS[1], ARGV[2])
if not id then
  return false
end
return {id, redis.call('HGET', ARGV[1] .. id, 'hash')}
