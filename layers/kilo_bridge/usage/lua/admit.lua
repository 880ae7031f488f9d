-- Admission: one call before any upstream request (usage/ledger.py `Ledger.admit`).
-- Returns {0} (admitted), {401} (unknown or revoked key), {402} (budget) or {429, retry_after_s}.
-- Idempotent per admission id: run twice (a retried call whose reply was lost), it admits once.
-- Each reservation is held until its settlement (record.lua) or its deadline, whichever comes first: one
-- whose settlement never comes (a crash, a lost reply) is released by the next admission of the key.
local totals, day, apikey, rpm_window, tpm_window = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local held, amounts = KEYS[6], KEYS[7]                     -- admission id -> deadline (zset), -> nano-USD
local day_ttl, has_key, estimate, retry_after = ARGV[1], ARGV[2] == '1', tonumber(ARGV[3]), tonumber(ARGV[4])
local id, now_ms, hold_ms = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])

if has_key then
  if redis.call('HEXISTS', amounts, id) == 1 then return {0} end
  local expired = redis.call('ZRANGEBYSCORE', held, '-inf', now_ms)
  if #expired > 0 then
    local released = 0
    for _, old in ipairs(expired) do
      released = released + tonumber(redis.call('HGET', amounts, old) or '0')
      redis.call('HDEL', amounts, old)
    end
    redis.call('ZREMRANGEBYSCORE', held, '-inf', now_ms)
    redis.call('HINCRBY', apikey, 'reserved_nusd', -released)
  end
  local k = redis.call('HMGET', apikey, 'revoked', 'budget_nusd', 'spend_nusd', 'reserved_nusd', 'rpm', 'tpm')
  if k[1] ~= '0' then return {401} end
  local rpm, tpm = tonumber(k[5]), tonumber(k[6])
  if rpm > 0 and tonumber(redis.call('GET', rpm_window) or '0') >= rpm then return {429, retry_after} end
  if tpm > 0 and tonumber(redis.call('GET', tpm_window) or '0') >= tpm then return {429, retry_after} end
  local budget = tonumber(k[2])
  if budget > 0 and tonumber(k[3]) + tonumber(k[4]) + estimate > budget then
    redis.call('HINCRBY', apikey, 'budget_refusals', 1)  -- a job's runner reads it: the agent hit its cap
    return {402}
  end
  redis.call('HINCRBY', apikey, 'reserved_nusd', estimate)
  redis.call('ZADD', held, now_ms + hold_ms, id)
  redis.call('HSET', amounts, id, estimate)
  redis.call('PEXPIRE', held, hold_ms * 2)
  redis.call('PEXPIRE', amounts, hold_ms * 2)
  redis.call('HINCRBY', apikey, 'requests', 1)
  if redis.call('INCR', rpm_window) == 1 then redis.call('EXPIRE', rpm_window, 120) end
end
redis.call('HINCRBY', totals, 'requests', 1)
redis.call('HINCRBY', day, 'requests', 1)
redis.call('EXPIRE', day, day_ttl)
return {0}
