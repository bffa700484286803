-- Catalogue: settle one attempt of a reservation, idempotently.  'committed'
-- counts the units as sold (refused once the lease ran out: the reservation
-- lapses then and there); 'released' puts them back in stock.  An attempt
-- already ended otherwise, or followed by another, is refused.
-- A commit naming its buyer keeps the buyer in the reservation and lists the
-- purchase as owing its record in customer-db, scored by the commit's time,
-- until that record is done.
-- KEYS[1] reservation hash, KEYS[2] leases, KEYS[3] voids, KEYS[4] owed
-- records (sorted set).
-- ARGV: prefix, purchase id, target state, attempt, buyer id or ''
local key, purchase, target = KEYS[1], ARGV[2], ARGV[3]
local now = now_ms()
if target == 'committed' then
  lapse_if_due(key, purchase, ARGV[1], KEYS[2], KEYS[3], now)
end
local state, lines = unpack(redis.call('HMGET', key, 'state', 'lines'))
if not state then
  return {'closed', ''}
end
local attempt = attempt_of(key)
if attempt ~= ARGV[4] then
  return {'closed', 'superseded'}
end
if state ~= 'reserved' then
  if state == target then
    return {'ok', state, lines, attempt}
  end
  return {'closed', state}
end
if target == 'committed' then
  for id, _, need in string.gmatch(lines, '(%d+),(%d+),(%d+),%d+') do
    redis.call('HINCRBY', ARGV[1] .. 'item:' .. id, 'sold', need)
  end
  if ARGV[5] ~= '' then
    redis.call('HSET', key, 'buyer', ARGV[5])
    redis.call('ZADD', KEYS[4], now, purchase)
  end
else
  restock(lines, ARGV[1])
end
end_lease(key, purchase, KEYS[2], target)
return {'ok', target, lines, attempt}
