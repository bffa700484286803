-- Catalogue: create an item and index it.  Keys are derived from the fresh
-- id, so they are built here (the store runs on a single Redis, not a cluster).
-- ARGV: prefix, seller, name, category, keywords (comma-joined), new (0/1), price, quantity
local p = ARGV[1]
local id = redis.call('INCR', p .. 'next_id')
local key = p .. 'item:' .. id
redis.call('HSET', key, 'seller', ARGV[2], 'name', ARGV[3], 'cat', ARGV[4], 'kw', ARGV[5],
  'new', ARGV[6], 'price', ARGV[7], 'qty', ARGV[8], 'pos', 0, 'neg', 0, 'sold', 0)
redis.call('ZADD', p .. 'ids:all', id, id)
redis.call('SADD', p .. 'seller:' .. ARGV[2], id)
redis.call('ZADD', p .. 'ids:cat:' .. ARGV[4], id, id)
for word in string.gmatch(ARGV[5], '[^,]+') do
  redis.call('SADD', p .. 'kw:' .. word, id)
end
if tonumber(ARGV[8]) > 0 then
  index_stock(p, id, true)
end
return {id, redis.call('HGETALL', key)}
