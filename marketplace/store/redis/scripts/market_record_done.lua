-- Catalogue: forget a purchase's owed record once customer-db has it.
-- KEYS[1] owed records (sorted set), KEYS[2] their buyer and lines (hash).
-- ARGV: purchase id.
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 0
