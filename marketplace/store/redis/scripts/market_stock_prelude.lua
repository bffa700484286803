-- Shared by the catalogue scripts that change whether an item is in stock.
-- The search indexes are sorted sets scored by item id -- every item, every
-- item in stock, and both per category -- so a search without keywords reads
-- one range of one of them: its work is its page, never the catalogue.
local function index_stock(p, id, in_stock)
  local cat = redis.call('HGET', p .. 'item:' .. id, 'cat')
  if in_stock then
    redis.call('ZADD', p .. 'ids:instock', id, id)
    redis.call('ZADD', p .. 'ids:cat-instock:' .. cat, id, id)
  else
    redis.call('ZREM', p .. 'ids:instock', id)
    redis.call('ZREM', p .. 'ids:cat-instock:' .. cat, id)
  end
end
