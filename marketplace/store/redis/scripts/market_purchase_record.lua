-- Customers: record a committed purchase once per purchase id.  Recorded
-- without a session (its front end could not), the once-marker says 'owed'
-- and no active cart changes; a later record with the session takes the
-- units out of its active cart, and does no more.
-- KEYS[1] once-marker, KEYS[2] buyer history list, KEYS[3] buyer's bought
-- items set, KEYS[4] the session's active cart, KEYS[5] buyer hash,
-- KEYS[6] the buyer's saved cart, KEYS[7] the cart revision counter.
-- ARGV: seller hash prefix, purchase id, purchased_at, '1' with a session
-- (else '0'), then per line: item id, seller id, quantity, price
local marker, with_session = redis.call('GET', KEYS[1]), ARGV[4] == '1'
if marker == '1' then
  return 0
end
redis.call('SET', KEYS[1], with_session and '1' or 'owed')
-- The bought units leave a cart; a line at zero goes.
local function take_out(cart, item, qty)
  local held = tonumber(redis.call('HGET', cart, item) or '0')
  if held > qty then
    redis.call('HSET', cart, item, held - qty)
  else
    redis.call('HDEL', cart, item)
  end
end
for i = 5, #ARGV, 4 do
  local item, seller, qty, price = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if not marker then
    redis.call('LPUSH', KEYS[2], table.concat({item, qty, price, ARGV[3], ARGV[2]}, '|'))
    redis.call('SADD', KEYS[3], item)
    if redis.call('EXISTS', ARGV[1] .. seller) == 1 then
      redis.call('HINCRBY', ARGV[1] .. seller, 'items_sold', qty)
    end
    redis.call('HINCRBY', KEYS[5], 'items_bought', qty)
    take_out(KEYS[6], item, tonumber(qty))
  end
  if with_session then
    take_out(KEYS[4], item, tonumber(qty))
  end
end
-- An active cart left with lines has changed: a fresh revision.
if with_session then
  if redis.call('HLEN', KEYS[4]) - redis.call('HEXISTS', KEYS[4], 'rev') == 0 then
    redis.call('DEL', KEYS[4])
  else
    redis.call('HSET', KEYS[4], 'rev', redis.call('INCR', KEYS[7]))
  end
end
if marker then
  return 0
end
return 1
