-- Catalogue search over the store-side indexes; the ranking rule of
-- marketplace/market/search.py: matching keywords (most first), then item id.
-- Cost grows with the items matching the filter, never with the catalogue.
-- ARGV: prefix, category ('' for any), include out of stock (0/1), offset, limit, keywords...
local p = ARGV[1]
local category, include_all = ARGV[2], ARGV[3] == '1'
local offset, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local scores, ids = {}, {}
if #ARGV > 5 then
  for i = 6, #ARGV do
    for _, id in ipairs(redis.call('SMEMBERS', p .. 'kw:' .. ARGV[i])) do
      if scores[id] == nil then
        scores[id] = 0
        ids[#ids + 1] = id
      end
      scores[id] = scores[id] + 1
    end
  end
elseif category ~= '' then
  ids = redis.call('SMEMBERS', p .. 'cat:' .. category)
else
  ids = redis.call('SMEMBERS', p .. (include_all and 'all' or 'instock'))
end
local kept = {}
for _, id in ipairs(ids) do
  local ok = true
  if category ~= '' and #ARGV > 5 then
    ok = redis.call('SISMEMBER', p .. 'cat:' .. category, id) == 1
  end
  if ok and not include_all then
    ok = redis.call('SISMEMBER', p .. 'instock', id) == 1
  end
  if ok then
    kept[#kept + 1] = id
  end
end
table.sort(kept, function(a, b)
  local sa, sb = scores[a] or 0, scores[b] or 0
  if sa ~= sb then
    return sa > sb
  end
  return tonumber(a) < tonumber(b)
end)
local page = {#kept}
for i = offset + 1, math.min(offset + limit, #kept) do
  page[#page + 1] = {kept[i], redis.call('HGETALL', p .. 'item:' .. kept[i])}
end
return page
