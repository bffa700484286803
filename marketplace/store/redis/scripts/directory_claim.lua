-- The id of a name, claiming the first free id from its home slot on first use.
-- KEYS[1] name -> id hash, KEYS[2] id -> name hash, KEYS[3] leased names (zset
-- name -> expiry, seconds on Redis's clock); one trio per id space.
-- ARGV[1] name, ARGV[2] home slot, ARGV[3] id space, ARGV[4] the reserved id
-- when it is inside the space (else ''), ARGV[5] how many names the space holds,
-- ARGV[6] lease seconds ('' for a permanent claim), ARGV[7] how many leased
-- claims may be live ('' for no limit), ARGV[8] how many ended leases to clean.
-- Returns {'ok', id}, {'full', ''} or {'leases full', ''}.  Ids cross as
-- decimal strings.  An ended lease is no claim at all, cleaned up or not.
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000

local function release(holder)
  local id = redis.call('HGET', KEYS[1], holder)
  redis.call('HDEL', KEYS[1], holder)
  redis.call('ZREM', KEYS[3], holder)
  if id and redis.call('HGET', KEYS[2], id) == holder then
    redis.call('HDEL', KEYS[2], id)
  end
end

local function ended(holder)
  local expiry = redis.call('ZSCORE', KEYS[3], holder)
  return expiry and tonumber(expiry) <= now
end

for _, holder in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now,
                                   'LIMIT', 0, tonumber(ARGV[8]))) do
  release(holder)
end

local name = ARGV[1]
local lease = tonumber(ARGV[6])
local known = redis.call('HGET', KEYS[1], name)
if known and ended(name) then
  release(name)
  known = nil
end
if known then
  if redis.call('ZSCORE', KEYS[3], name) then
    if lease then
      redis.call('ZADD', KEYS[3], now + lease, name)
    else
      redis.call('ZREM', KEYS[3], name)
    end
  end
  return {'ok', known}
end

-- Ended leases not cleaned up yet still sit in the hashes: they do not count.
local stale = redis.call('ZCOUNT', KEYS[3], '-inf', now)
local limit = tonumber(ARGV[7])
if lease and limit and redis.call('ZCARD', KEYS[3]) - stale >= limit then
  return {'leases full', ''}
end
local claimed = redis.call('HLEN', KEYS[2])
if claimed - stale >= tonumber(ARGV[5]) then
  return {'full', ''}
end
local space = tonumber(ARGV[3])
local slot = tonumber(ARGV[2])
-- Of any claimed + 2 consecutive slots at most `claimed` are taken and one is
-- reserved, so the probe ends within that many steps however large the space.
for _ = 1, claimed + 2 do
  local id = string.format('%d', slot)
  if id ~= ARGV[4] then
    local holder = redis.call('HGET', KEYS[2], id)
    if holder and ended(holder) then
      release(holder)
      holder = nil
    end
    if not holder then
      redis.call('HSET', KEYS[2], id, name)
      redis.call('HSET', KEYS[1], name, id)
      if lease then
        redis.call('ZADD', KEYS[3], now + lease, name)
      end
      return {'ok', id}
    end
  end
  slot = (slot + 1) % space
end
return redis.error_reply('directory: no free id within ' .. (claimed + 2) .. ' slots of the home slot')
