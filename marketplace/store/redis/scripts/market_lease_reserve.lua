-- Catalogue: take every line of a purchase out of stock at once, or none,
-- for a lease.  Idempotent per purchase id: a reserved or committed purchase
-- is returned as it is; a released or lapsed one is reserved again as the
-- next attempt.
-- KEYS[1] reservation hash, KEYS[2] leases, KEYS[3] voids, KEYS[4..] item
-- hashes.
-- ARGV: prefix, purchase id, lease in ms, then item ids and quantities in the
-- order of KEYS[4..] (id1, q1, id2, q2, ...)
local key, purchase = KEYS[1], ARGV[2]
local now = now_ms()
lapse_if_due(key, purchase, ARGV[1], KEYS[2], KEYS[3], now)
local state = redis.call('HGET', key, 'state')
if state == 'reserved' or state == 'committed' then
  return {'ok', state, redis.call('HGET', key, 'lines'), attempt_of(key)}
end
if #KEYS == 3 then
  return {'closed', state or ''}
end
for i = 4, #KEYS do
  local id, need = ARGV[2 * (i - 3) + 2], tonumber(ARGV[2 * (i - 3) + 3])
  local qty = redis.call('HGET', KEYS[i], 'qty')
  if not qty then
    return {'unknown', id}
  end
  if tonumber(qty) < need then
    return {'low', id, qty}
  end
end
local lines = {}
for i = 4, #KEYS do
  local id, need = ARGV[2 * (i - 3) + 2], ARGV[2 * (i - 3) + 3]
  local left = redis.call('HINCRBY', KEYS[i], 'qty', -tonumber(need))
  if left == 0 then
    index_stock(ARGV[1], id, false)
  end
  local seller, price = unpack(redis.call('HMGET', KEYS[i], 'seller', 'price'))
  lines[#lines + 1] = id .. ',' .. seller .. ',' .. need .. ',' .. price
end
local encoded = table.concat(lines, ';')
local attempt = state and tonumber(attempt_of(key)) + 1 or 1
local deadline = now + tonumber(ARGV[3])
redis.call('HSET', key, 'state', 'reserved', 'lines', encoded, 'attempt', attempt,
  'deadline', deadline)
redis.call('ZADD', KEYS[2], deadline, purchase)
return {'ok', 'reserved', encoded, tostring(attempt)}
