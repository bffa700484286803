-- Catalogue: settle a reservation, idempotently.  'committed' counts the
-- units as sold; 'released' puts them back in stock.  A reservation already
-- in the other final state is refused.
-- KEYS[1] reservation hash.  ARGV: prefix, target state
local p, target = ARGV[1], ARGV[2]
local state = redis.call('HGET', KEYS[1], 'state')
local lines = redis.call('HGET', KEYS[1], 'lines')
if state ~= 'reserved' then
  if state == target then
    return {'ok', state, lines}
  end
  return {'closed', state or ''}
end
for id, _, need in string.gmatch(lines, '(%d+),(%d+),(%d+),%d+') do
  local key = p .. 'item:' .. id
  if target == 'committed' then
    redis.call('HINCRBY', key, 'sold', need)
  elseif redis.call('HINCRBY', key, 'qty', need) > 0 then
    index_stock(p, id, true)
  end
end
redis.call('HSET', KEYS[1], 'state', target)
return {'ok', target, lines}
