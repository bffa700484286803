-- Customers: one vote per item a buyer bought, counted for its seller.
-- KEYS[1] buyer's bought items set, KEYS[2] buyer's votes hash, KEYS[3] seller hash.
-- ARGV: item id, field ('pos'/'neg')
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then
  return {'unbought'}
end
local previous = redis.call('HGET', KEYS[2], ARGV[1])
if previous then
  return {'again', previous}
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
end
return {'ok'}
