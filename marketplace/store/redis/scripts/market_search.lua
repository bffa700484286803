-- Catalogue search over the store-side indexes; the ranking rule of
-- marketplace/market/search.py: matching keywords (most first), then item id.
-- ARGV: prefix, category ('' for any), include out of stock (0/1), index of
-- the page's first and last item, keywords...
-- Without keywords the order is the item id's: the page is one range of an
-- index sorted by id, so its work is the page's.  With keywords it grows
-- with the items that have a query keyword (at most 5 distinct keywords).
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
-- Each keyword's items, cut down to the index's in Redis's own set code
-- (ZINTER, which walks the smaller side) unless the index holds every item,
-- then counted here: a common keyword matches thousands of items, and every
-- one handed to Lua costs more than Redis's own intersection does.
-- Ids as numbers from here: the buckets below are sorted by them.
local filtered = category ~= '' or not include_all
local scores, candidates = {}, {}
for i = 6, #ARGV do
  local key = p .. 'kw:' .. ARGV[i]
  local members
  if filtered then
    members = redis.call('ZINTER', 2, index, key)
  else
    members = redis.call('SMEMBERS', key)
  end
  for _, member in ipairs(members) do
    local id = tonumber(member)
    local score = scores[id]
    if score == nil then
      score = 0
      candidates[#candidates + 1] = id
    end
    scores[id] = score + 1
  end
end
-- Scores run from 1 to the number of keywords: the candidates go into one
-- bucket per score, and only the buckets the page reaches are sorted, by id
-- alone, which Lua's sort compares without calling back into Lua.
local buckets = {}
for score = 1, #ARGV - 5 do
  buckets[score] = {}
end
for _, id in ipairs(candidates) do
  local bucket = buckets[scores[id]]
  bucket[#bucket + 1] = id
end
local first, last = tonumber(ARGV[4]), tonumber(ARGV[5])
local above = 0  -- candidates with a higher score than the bucket's
local ids = {}
for score = #ARGV - 5, 1, -1 do
  if first > last then
    break
  end
  local bucket = buckets[score]
  if first < above + #bucket then
    table.sort(bucket)
    for i = first - above + 1, math.min(last - above + 1, #bucket) do
      ids[#ids + 1] = bucket[i]
    end
    first = above + #bucket
  end
  above = above + #bucket
end
return page_of(#candidates, ids)
