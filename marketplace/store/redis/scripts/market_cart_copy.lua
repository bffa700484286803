-- Customers: replace one cart with a copy of another's lines (SaveCart, and
-- the restore at login).  KEYS[1] source, KEYS[2] target, KEYS[3] revision
-- counter.  ARGV: ttl in ms for an active cart as target (it gets a fresh
-- revision), or 0 for the saved cart (kept without expiry or revision)
redis.call('DEL', KEYS[2])
local fields = redis.call('HGETALL', KEYS[1])
local lines = {}
for i = 1, #fields, 2 do
  if fields[i] ~= 'rev' then
    lines[#lines + 1] = fields[i]
    lines[#lines + 1] = fields[i + 1]
  end
end
if #lines > 0 then
  redis.call('HSET', KEYS[2], unpack(lines))
  if tonumber(ARGV[1]) > 0 then
    redis.call('HSET', KEYS[2], 'rev', redis.call('INCR', KEYS[3]))
    redis.call('PEXPIRE', KEYS[2], ARGV[1])
  end
end
return #lines / 2
