-- The id of a name, claiming the first free one from its home slot on first use.
-- KEYS[1] name -> id hash, KEYS[2] id -> name hash (one pair per id space)
-- ARGV[1] name, ARGV[2] home slot, ARGV[3] id space, ARGV[4] the reserved id
-- when it is inside the space (else ''), ARGV[5] how many names the space holds
-- Returns {'ok', id} or {'full', ''}.  Ids cross as decimal strings.
local known = redis.call('HGET', KEYS[1], ARGV[1])
if known then
  return {'ok', known}
end
local claimed = redis.call('HLEN', KEYS[2])
if claimed >= tonumber(ARGV[5]) then
  return {'full', ''}
end
local space = tonumber(ARGV[3])
local slot = tonumber(ARGV[2])
-- Of any claimed + 2 consecutive slots at most `claimed` are taken and one is
-- reserved, so the probe ends within that many steps however large the space.
for _ = 1, claimed + 2 do
  local id = string.format('%d', slot)
  if id ~= ARGV[4] and redis.call('HSETNX', KEYS[2], id, ARGV[1]) == 1 then
    redis.call('HSET', KEYS[1], ARGV[1], id)
    return {'ok', id}
  end
  slot = (slot + 1) % space
end
return redis.error_reply('directory: no free id within ' .. (claimed + 2) .. ' slots of the home slot')
