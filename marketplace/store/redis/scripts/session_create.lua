-- KEYS[1] session hash, KEYS[2] the user's session set
-- ARGV[1] user, ARGV[2] ttl ms, ARGV[3] created, ARGV[4] data (JSON), ARGV[5] session id
redis.call('HSET', KEYS[1], 'user', ARGV[1], 'ttl_ms', ARGV[2], 'created', ARGV[3], 'data', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[5])
return 1
