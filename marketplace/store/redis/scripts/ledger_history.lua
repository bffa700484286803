-- KEYS[1] account, KEYS[2] history; ARGV[1] exclusive upper txn id ('' for
-- none), ARGV[2] limit, ARGV[3] the account's history key of earlier releases.
-- Up to `limit` entries with ids below the bound, oldest first (the caller
-- turns the page newest first).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
local count = redis.call('LLEN', KEYS[2])
if count == 0 then
  count = adopt_legacy(KEYS[2], ARGV[3])
end
-- How many entries, from the oldest, have ids below the bound: a binary
-- search, since ids grow along the list.
local upto = count
if ARGV[1] ~= '' then
  local before, low = tonumber(ARGV[1]), 0
  while low < upto do
    local middle = math.floor((low + upto) / 2)
    local txn = tonumber(string.match(redis.call('LINDEX', KEYS[2], middle), '^(%d+)|'))
    if txn < before then
      low = middle + 1
    else
      upto = middle
    end
  end
end
local limit = tonumber(ARGV[2])
if upto == 0 or limit <= 0 then
  return {}
end
return redis.call('LRANGE', KEYS[2], math.max(0, upto - limit), upto - 1)
