-- One atomic snapshot of the whole ledger: the totals, then for every account
-- its id, balance, history oldest first and the balance before that history
-- (its checkpoint, when retention dropped older entries).  O(history): meant
-- for audits.
-- KEYS[1] totals, KEYS[2] account set; ARGV[1] account key prefix, ARGV[2]
-- history key prefix, ARGV[3] the history key prefix of earlier releases
local totals = redis.call('HGETALL', KEYS[1])
local accounts = {}
for _, account in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local history_key = ARGV[2] .. account
  local entries = redis.call('LRANGE', history_key, 0, -1)
  if #entries == 0 and adopt_legacy(history_key, ARGV[3] .. account) > 0 then
    entries = redis.call('LRANGE', history_key, 0, -1)
  end
  table.insert(accounts, {account,
    redis.call('HGET', ARGV[1] .. account, 'balance'),
    entries,
    redis.call('HGET', ARGV[1] .. account, 'base') or '0'})
end
return {totals, accounts}
