-- Catalogue: the records owed to customer-db of purchases committed at
-- least a given age ago, oldest first.
-- KEYS[1] owed records (sorted set by commit time).
-- ARGV: prefix, limit, age in ms.
-- Returns purchase id, buyer id, lines triples, flat.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms() - tonumber(ARGV[3]),
                       'LIMIT', 0, tonumber(ARGV[2]))
local listed = {}
for _, purchase in ipairs(due) do
  local buyer, lines = unpack(redis.call('HMGET', ARGV[1] .. 'purchase:' .. purchase,
                                         'buyer', 'lines'))
  if buyer and lines then
    listed[#listed + 1] = purchase
    listed[#listed + 1] = buyer
    listed[#listed + 1] = lines
  else
    -- Its reservation is gone (deleted by hand): there is nothing to record.
    redis.call('ZREM', KEYS[1], purchase)
  end
end
return listed
