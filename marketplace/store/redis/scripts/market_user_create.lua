-- Customers: create an account with a unique user name per role.
-- KEYS[1] the role's name -> id hash, KEYS[2] the role's id counter.
-- ARGV: prefix for user hashes (ends with 'role:'), user name, password hash
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then
  return -1
end
local id = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[2], id)
redis.call('HSET', ARGV[1] .. id, 'username', ARGV[2], 'hash', ARGV[3],
  'pos', 0, 'neg', 0, 'items_sold', 0, 'items_bought', 0)
return id
