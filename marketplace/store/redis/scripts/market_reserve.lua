-- Catalogue: take every line of a purchase out of stock at once, or none.
-- Idempotent per purchase id: a reserved or committed purchase is returned
-- as it is; a released one is reserved again.
-- KEYS[1] reservation hash, KEYS[2..] item hashes.
-- ARGV: prefix, then item ids and quantities in the order of KEYS[2..] (id1, q1, id2, q2, ...)
local state = redis.call('HGET', KEYS[1], 'state')
if state and state ~= 'released' then
  return {'ok', state, redis.call('HGET', KEYS[1], 'lines')}
end
if #KEYS == 1 then
  return {'closed', state or ''}
end
for i = 2, #KEYS do
  local id, need = ARGV[2 * i - 2], tonumber(ARGV[2 * i - 1])
  local qty = redis.call('HGET', KEYS[i], 'qty')
  if not qty then
    return {'unknown', id}
  end
  if tonumber(qty) < need then
    return {'low', id, qty}
  end
end
local lines = {}
for i = 2, #KEYS do
  local id, need = ARGV[2 * i - 2], ARGV[2 * i - 1]
  local left = redis.call('HINCRBY', KEYS[i], 'qty', -tonumber(need))
  if left == 0 then
    index_stock(ARGV[1], id, false)
  end
  local seller, price = unpack(redis.call('HMGET', KEYS[i], 'seller', 'price'))
  lines[#lines + 1] = id .. ',' .. seller .. ',' .. need .. ',' .. price
end
local encoded = table.concat(lines, ';')
redis.call('HSET', KEYS[1], 'state', 'reserved', 'lines', encoded)
return {'ok', 'reserved', encoded}
