-- Customers: add to or remove from a session's active cart, sliding its expiry.
-- The cart hash holds item id -> units and 'rev', its revision, drawn from
-- the revision counter at every change; a cart left without lines goes.
-- KEYS[1] cart hash, KEYS[2] revision counter.
-- ARGV: item id, signed change, limit (for additions), ttl in ms
local held = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local change = tonumber(ARGV[2])
if change > 0 and held + change > tonumber(ARGV[3]) then
  return {'low', math.max(tonumber(ARGV[3]) - held, 0)}
end
if held + change < 0 then
  return {'short', held}
end
local left = held + change
if left == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], left)
end
if redis.call('HLEN', KEYS[1]) - redis.call('HEXISTS', KEYS[1], 'rev') == 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'rev', redis.call('INCR', KEYS[2]))
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return {'ok', left}
