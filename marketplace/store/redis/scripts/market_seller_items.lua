-- Catalogue: a seller's items in id order.  KEYS[1] the seller's item set.  ARGV: prefix
local ids = redis.call('SMEMBERS', KEYS[1])
table.sort(ids, function(a, b) return tonumber(a) < tonumber(b) end)
local items = {}
for _, id in ipairs(ids) do
  items[#items + 1] = {id, redis.call('HGETALL', ARGV[1] .. 'item:' .. id)}
end
return items
