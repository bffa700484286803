-- Catalogue search over the store-side indexes; the ranking rule of
-- marketplace/market/search.py: matching keywords (most first), then item id.
-- ARGV: prefix, category ('' for any), include out of stock (0/1), index of
-- the page's first and last item, keywords...
-- Without keywords the order is the item id's: the page is one range of an
-- index sorted by id, so its work is the page's.  With keywords it grows
-- with the items that have a query keyword (at most 5 keywords).
local p = ARGV[1]
local category, include_all = ARGV[2], ARGV[3] == '1'
local index
if category == '' then
  index = p .. (include_all and 'ids:all' or 'ids:instock')
else
  index = p .. (include_all and 'ids:cat:' or 'ids:cat-instock:') .. category
end
local function page_of(total, ids)
  local page = {total}
  for _, id in ipairs(ids) do
    page[#page + 1] = {id, redis.call('HGETALL', p .. 'item:' .. id)}
  end
  return page
end
if #ARGV == 5 then
  return page_of(redis.call('ZCARD', index), redis.call('ZRANGE', index, ARGV[4], ARGV[5]))
end
-- Ids as numbers from here: the sort below compares them thousands of times.
local scores, candidates = {}, {}
for i = 6, #ARGV do
  for _, member in ipairs(redis.call('SMEMBERS', p .. 'kw:' .. ARGV[i])) do
    local id = tonumber(member)
    local score = scores[id]
    if score == nil then
      score = 0
      candidates[#candidates + 1] = id
    end
    scores[id] = score + 1
  end
end
-- The filter asks the index about the candidates a chunk at a time (ZMSCORE),
-- not one call per candidate: a common keyword matches thousands of items.
local kept = candidates
if category ~= '' or not include_all then
  kept = {}
  local chunk = 1000
  for start = 1, #candidates, chunk do
    local last = math.min(start + chunk - 1, #candidates)
    local found = redis.call('ZMSCORE', index, unpack(candidates, start, last))
    for j = start, last do
      if found[j - start + 1] then
        kept[#kept + 1] = candidates[j]
      end
    end
  end
end
table.sort(kept, function(a, b)
  local sa, sb = scores[a], scores[b]
  if sa ~= sb then
    return sa > sb
  end
  return a < b
end)
local first = tonumber(ARGV[4]) + 1
local ids = {}
for i = first, math.min(tonumber(ARGV[5]) + 1, #kept) do
  ids[#ids + 1] = kept[i]
end
return page_of(#kept, ids)
