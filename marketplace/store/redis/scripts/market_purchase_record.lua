-- Customers: record a committed purchase once per purchase id.
-- KEYS[1] once-marker, KEYS[2] buyer history list, KEYS[3] buyer's bought
-- items set, KEYS[4] the session's active cart, KEYS[5] buyer hash.
-- ARGV: seller hash prefix, purchase id, purchased_at, then per line:
-- item id, seller id, quantity, price
if redis.call('SET', KEYS[1], '1', 'NX') == false then
  return 0
end
for i = 4, #ARGV, 4 do
  local item, seller, qty, price = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  redis.call('LPUSH', KEYS[2], table.concat({item, qty, price, ARGV[3], ARGV[2]}, '|'))
  redis.call('SADD', KEYS[3], item)
  if redis.call('EXISTS', ARGV[1] .. seller) == 1 then
    redis.call('HINCRBY', ARGV[1] .. seller, 'items_sold', qty)
  end
  redis.call('HINCRBY', KEYS[5], 'items_bought', qty)
  local held = tonumber(redis.call('HGET', KEYS[4], item) or '0')
  if held > tonumber(qty) then
    redis.call('HSET', KEYS[4], item, held - tonumber(qty))
  else
    redis.call('HDEL', KEYS[4], item)
  end
end
return 1
