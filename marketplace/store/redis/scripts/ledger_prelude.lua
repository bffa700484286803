-- Shared by every ledger script.  Key layout for money operations:
--   KEYS[1] totals hash   KEYS[2] txn id counter   KEYS[3] idempotency key
--   KEYS[4] account hash  KEYS[5] account history  (KEYS[6], KEYS[7]: target's)
-- ARGV[1] '1' when an idempotency key is used, ARGV[2] its ttl in seconds.
-- The last three ARGV of a script that records (open and the money ones) are
-- the prefix of the earlier history keys (below), and the history retention:
-- entries an account keeps (0: all) and seconds it keeps them (0: forever).
--
-- An account's history is a list of entries, oldest first, appended with
-- RPUSH: entries come in transaction id order, since every script that
-- records is atomic and ids only grow.  (A sorted set by id, as earlier
-- releases kept, cost about three times the memory an entry and the
-- costliest command of a money script.)
-- Numbers cross into and out of Lua as decimal strings: Lua's own number
-- formatting switches to exponents above 1e14.

local function int(n)
  return string.format('%d', n)
end

-- Redis's clock, read once per script: a transfer's two entries share it.
local time_now = nil
local function now()
  if not time_now then
    local t = redis.call('TIME')
    time_now = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
  end
  return time_now
end

-- An account's balance (a number), or nil when the account was never opened:
-- one HGET, since every opened account has the field.
local function balance_of(account_key)
  local balance = redis.call('HGET', account_key, 'balance')
  return balance and tonumber(balance)
end

-- Add a non-negative amount (a decimal string) to the running total `name`.
-- A total is kept in two fields of the totals hash, `name` below 2^53 and
-- `name:carry` counting units of 2^53, because one HINCRBY field is a signed
-- 64-bit integer that amounts of up to 2^53 - 1 would overflow within about
-- a thousand operations; the carry field would need 2^63 of them.  The
-- comparison is exact enough: the field is below 2^54 and doubles only round
-- odd integers above 2^53.  RedisLedger.audit adds the two fields back up.
local TOTAL_UNIT = 9007199254740992
local function add_total(name, amount)
  if redis.call('HINCRBY', KEYS[1], name, amount) >= TOTAL_UNIT then
    redis.call('HINCRBY', KEYS[1], name, '-9007199254740992')
    redis.call('HINCRBY', KEYS[1], name .. ':carry', 1)
  end
end

-- The totals an entry of each kind counts in (ledger_rules.KINDS_BY_TOTAL).
local TOTAL_OF_KIND = {open = 'opening', deposit = 'deposit', withdraw = 'withdrawal'}
-- HistoryRetention.candidates in ledger_rules.py, which explains these.
local TRIM_BATCH, AGE_CHECKS = 64, 2

-- Drop the entries retention lets go into the account's checkpoint: the
-- account's `base` (its balance before the oldest kept entry) and the
-- `trimmed:` totals, so that the audit stays exact.  `count` is the
-- history's length.
local function trim(account_key, history_key, time, count)
  local keep, seconds = tonumber(ARGV[#ARGV - 1]), tonumber(ARGV[#ARGV])
  if keep == 0 and seconds == 0 then
    return
  end
  local over = 0
  if keep > 0 and count > keep + math.floor(keep / 16) then
    over = count - keep
  end
  local looked_at = over
  if seconds > 0 then
    looked_at = math.max(over, AGE_CHECKS)
  end
  looked_at = math.min(looked_at, TRIM_BATCH, count - 1)
  if looked_at <= 0 then
    return
  end
  local cutoff = tonumber(time) - seconds
  local dropped, base = 0, nil
  for i, entry in ipairs(redis.call('LRANGE', history_key, 0, looked_at - 1)) do
    local kind, delta, balance, stamp = string.match(entry, '^%d+|([^|]*)|[^|]*|(-?%d+)|(%d+)|([%d.]+)$')
    if i > over and not (seconds > 0 and tonumber(stamp) < cutoff) then
      break
    end
    local total = TOTAL_OF_KIND[kind]
    if total then
      add_total('trimmed:' .. total, (string.gsub(delta, '^-', '')))
    end
    dropped, base = i, balance
  end
  if dropped > 0 then
    redis.call('LTRIM', history_key, dropped, -1)
    redis.call('HSET', account_key, 'base', base)
  end
end

-- Transaction ids: reserve_txns(n) takes n consecutive ids in one INCRBY
-- (a transfer records two entries); record() uses them, then takes one at a time.
local txn_next, txn_last = 1, 0
local function reserve_txns(count)
  txn_last = redis.call('INCRBY', KEYS[2], count)
  txn_next = txn_last - count + 1
end

-- An account's history as an earlier release kept it: a sorted set by
-- transaction id under `legacy_key`, moved in front of the list (which
-- holds only entries recorded since) the first time an account records, or
-- its history or an audit reads it, with no list yet.  LPUSH puts each
-- value at the head in turn, so the old entries go newest first, in batches
-- that stay within Lua's limit on unpacked values.  Returns how many moved.
local ADOPT_BATCH = 1000
local function adopt_legacy(history_key, legacy_key)
  local old = redis.call('ZRANGE', legacy_key, 0, -1)
  local batch = {}
  for i = #old, 1, -1 do
    batch[#batch + 1] = old[i]
    if #batch == ADOPT_BATCH or i == 1 then
      redis.call('LPUSH', history_key, unpack(batch))
      batch = {}
    end
  end
  if #old > 0 then
    redis.call('DEL', legacy_key)
  end
  return #old
end

-- Apply a signed change (a decimal string) to an account and log it.
local function record(account_key, history_key, account, kind, counterparty, delta)
  local balance = redis.call('HINCRBY', account_key, 'balance', delta)
  if txn_next > txn_last then
    reserve_txns(1)
  end
  local txn = txn_next
  txn_next = txn_next + 1
  local time = now()
  local entry = int(txn) .. '|' .. kind .. '|' .. counterparty .. '|' .. delta .. '|' .. int(balance) .. '|' .. time
  local count = redis.call('RPUSH', history_key, entry)
  if count == 1 then
    count = count + adopt_legacy(history_key, ARGV[#ARGV - 2] .. account)
  end
  trim(account_key, history_key, time, count)
  return balance
end

local function finish(status, value)
  if ARGV[1] == '1' then
    redis.call('SET', KEYS[3], status .. ':' .. value, 'EX', ARGV[2])
  end
  return {status, value}
end

local function replay()
  if ARGV[1] ~= '1' then
    return nil
  end
  local seen = redis.call('GET', KEYS[3])
  if not seen then
    return nil
  end
  local sep = string.find(seen, ':', 1, true)
  return {string.sub(seen, 1, sep - 1), string.sub(seen, sep + 1)}
end
