-- Catalogue: lapse up to a limit of reservations whose lease ran out.
-- KEYS[1] leases, KEYS[2] voids.
-- ARGV: prefix, limit.  Returns how many lapsed.
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local lapsed = 0
for _, purchase in ipairs(due) do
  if lapse_if_due(ARGV[1] .. 'purchase:' .. purchase, purchase, ARGV[1], KEYS[1], KEYS[2],
      now) then
    lapsed = lapsed + 1
  else
    redis.call('ZREM', KEYS[1], purchase)
  end
end
return lapsed
