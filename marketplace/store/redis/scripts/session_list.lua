-- KEYS[1] the user's session set; ARGV[1] session key prefix.
-- Expired members (Redis dropped their hash) are removed on the way.
local live = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local fields = redis.call('HGETALL', ARGV[1] .. id)
  if #fields == 0 then
    redis.call('SREM', KEYS[1], id)
  else
    table.insert(live, {id, fields})
  end
end
return live
