-- Catalogue: the records owed to customer-db of purchases committed at
-- least a given age ago, oldest first.
-- KEYS[1] owed records (sorted set by commit time), KEYS[2] their buyer and
-- lines (hash).  ARGV: limit, age in ms.
-- Returns purchase id, 'buyer|lines' pairs, flat.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms() - tonumber(ARGV[2]),
                       'LIMIT', 0, tonumber(ARGV[1]))
local listed = {}
for _, purchase in ipairs(due) do
  listed[#listed + 1] = purchase
  listed[#listed + 1] = redis.call('HGET', KEYS[2], purchase) or ''
end
return listed
