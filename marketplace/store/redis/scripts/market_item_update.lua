-- Catalogue: a seller changes the price or the stock of their own item.
-- KEYS[1] item hash.
-- ARGV: item id, seller, field ('price' sets it, 'qty' adds a signed change), value,
-- the most units an item may have in stock (market_rules.MAX_STOCK), prefix
local key = KEYS[1]
local seller = redis.call('HGET', key, 'seller')
if not seller then
  return {'unknown'}
end
if seller ~= ARGV[2] then
  return {'owner'}
end
if ARGV[3] == 'price' then
  redis.call('HSET', key, 'price', ARGV[4])
else
  local qty = tonumber(redis.call('HGET', key, 'qty'))
  local new = qty + tonumber(ARGV[4])
  if new < 0 then
    return {'low', qty}
  end
  -- Exact as long as the stock is: a sum above the limit (<= 2**53 - 1)
  -- still compares above it after rounding to a double.
  if new > tonumber(ARGV[5]) then
    return {'high', qty}
  end
  redis.call('HSET', key, 'qty', new)
  index_stock(ARGV[6], ARGV[1], new > 0)
end
return {'ok', redis.call('HGETALL', key)}
