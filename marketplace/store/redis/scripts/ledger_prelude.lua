-- Shared by every ledger script.  Key layout for money operations:
--   KEYS[1] totals hash   KEYS[2] txn id counter   KEYS[3] idempotency key
--   KEYS[4] account hash  KEYS[5] account history  (KEYS[6], KEYS[7]: target's)
-- ARGV[1] '1' when an idempotency key is used, ARGV[2] its ttl in seconds.
-- Numbers cross into and out of Lua as decimal strings: Lua's own number
-- formatting switches to exponents above 1e14.

local function int(n)
  return string.format('%d', n)
end

local function now()
  local t = redis.call('TIME')
  return t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
end

-- Apply a signed change (a decimal string) to an account and log it.
local function record(account_key, history_key, kind, counterparty, delta)
  local balance = redis.call('HINCRBY', account_key, 'balance', delta)
  local txn = redis.call('INCR', KEYS[2])
  local entry = int(txn) .. '|' .. kind .. '|' .. counterparty .. '|' .. delta .. '|' .. int(balance) .. '|' .. now()
  redis.call('ZADD', history_key, int(txn), entry)
  return balance
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
