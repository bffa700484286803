-- Reservation leases: helpers of the scripts that reserve, settle and lapse
-- reservations (prefixed to each of them, after market_stock_prelude.lua).
-- A reservation hash holds 'state', 'lines' (id,seller,quantity,price;...),
-- 'attempt' and, while reserved, 'deadline' (ms on Redis's own clock).  The
-- leases sorted set scores each reserved purchase by its deadline; the voids
-- hash maps 'attempt:purchase' to the lines of each lapsed attempt whose
-- payment, if any, is still to be voided.

local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- The attempt of the reservation at ``key``: a reservation written before
-- leases existed has none (and no deadline, so it lapses when next seen).
local function attempt_of(key)
  return redis.call('HGET', key, 'attempt') or '1'
end

-- Put a reservation's units back in stock, and their items back in the
-- in-stock indexes.
local function restock(lines, prefix)
  for id, _, need in string.gmatch(lines, '(%d+),(%d+),(%d+),%d+') do
    if redis.call('HINCRBY', prefix .. 'item:' .. id, 'qty', need) > 0 then
      index_stock(prefix, id, true)
    end
  end
end

-- End a reserved attempt's lease in ``state``.
local function end_lease(key, purchase, leases, state)
  redis.call('HSET', key, 'state', state)
  redis.call('HDEL', key, 'deadline')
  redis.call('ZREM', leases, purchase)
end

-- Lapse the reservation at ``key`` if it is reserved and its lease ran out:
-- units back in stock, the attempt left for its void.
local function lapse_if_due(key, purchase, prefix, leases, voids, now)
  if redis.call('HGET', key, 'state') ~= 'reserved'
      or tonumber(redis.call('HGET', key, 'deadline') or '0') > now then
    return false
  end
  local lines = redis.call('HGET', key, 'lines')
  restock(lines, prefix)
  end_lease(key, purchase, leases, 'expired')
  redis.call('HSET', voids, attempt_of(key) .. ':' .. purchase, lines)
  return true
end
