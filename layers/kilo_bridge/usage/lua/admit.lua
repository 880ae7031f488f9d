-- Admission: one call before any upstream request (usage/ledger.py `Ledger.admit`).
-- Returns {0} (admitted), {401} (unknown or revoked key), {402} (budget) or {429, retry_after_s}.
local totals, day, apikey, rpm_window, tpm_window = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local day_ttl, has_key, estimate, retry_after = ARGV[1], ARGV[2] == '1', tonumber(ARGV[3]), tonumber(ARGV[4])

if has_key then
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
  redis.call('HINCRBY', apikey, 'requests', 1)
  if redis.call('INCR', rpm_window) == 1 then redis.call('EXPIRE', rpm_window, 120) end
end
redis.call('HINCRBY', totals, 'requests', 1)
redis.call('HINCRBY', day, 'requests', 1)
redis.call('EXPIRE', day, day_ttl)
return {0}
