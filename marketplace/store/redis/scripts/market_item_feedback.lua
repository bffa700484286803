-- Catalogue: count a buyer's vote on an item once.
-- KEYS[1] item hash, KEYS[2] set of buyers who voted.  ARGV: buyer, field ('pos'/'neg')
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
return 1
