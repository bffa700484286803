-- KEYS[1] session hash; ARGV[1] user set key prefix, ARGV[2] session id
local user = redis.call('HGET', KEYS[1], 'user')
if not user then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('SREM', ARGV[1] .. user, ARGV[2])
return 1
