-- A new job, with its idempotency entry, its owner's job limit and budget reservation checked.
-- → {0, id} created | {1, id} same request seen before | {2, id} same key, other body | {3, n} too many jobs
--   | {4, id} the key's budget cannot cover the reservation | {5, id} the owner's key is revoked
local job, env, index, active, owner_jobs, agent_stats, idem, apikey, patch =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local id, now, fields, sealed_env, idem_hash, idem_ttl, max_jobs, reserve, diff, retention =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9], ARGV[10]
local starts = {day = ARGV[11], week = ARGV[12], month = ARGV[13]}  -- budget periods at the job's creation

if idem_hash ~= '' then
  local prev = redis.call('HMGET', idem, 'hash', 'job')
  if prev[2] then
    if prev[1] == idem_hash then return {1, prev[2]} end
    return {2, prev[2]}
  end
end
-- Work started for a key (its trigger, its schedule) after the key was revoked is refused here, atomically.
if redis.call('HGET', apikey, 'revoked') == '1' then return {5, id} end
if max_jobs > 0 then
  local n = redis.call('SCARD', owner_jobs)
  if n >= max_jobs then return {3, tostring(n)} end
end
if reserve > 0 then
  local k = redis.call('HMGET', apikey, 'budget_nusd', 'spend_nusd', 'reserved_nusd',
    'budget_period', 'period_start', 'period_spend_nusd', 'period_reserved_nusd')
  local budget = tonumber(k[1] or '0')
  local used = tonumber(k[2] or '0') + tonumber(k[3] or '0')
  -- A key's budget per period (as usage/lua/admit.lua): the job counts in the period it was created in.
  local ps = starts[k[4] or ''] or ''
  if ps ~= '' then
    if k[5] ~= ps then
      redis.call('HSET', apikey, 'period_start', ps, 'period_spend_nusd', 0, 'period_reserved_nusd', 0)
      used = 0
    else
      used = tonumber(k[6] or '0') + tonumber(k[7] or '0')
    end
  end
  if budget > 0 and used + reserve > budget then return {4, id} end
  redis.call('HINCRBY', apikey, 'reserved_nusd', reserve)
  redis.call('HSET', job, 'reservedNusd', reserve)
  if ps ~= '' then
    redis.call('HINCRBY', apikey, 'period_reserved_nusd', reserve)
    redis.call('HSET', job, 'reservedPeriod', ps)
  end
end
for k, v in pairs(cjson.decode(fields)) do redis.call('HSET', job, k, v) end
if sealed_env ~= '' then redis.call('SET', env, sealed_env) end
if diff ~= '' then redis.call('SET', patch, diff, 'EX', retention) end
redis.call('ZADD', index, now, id)
redis.call('SADD', active, id)
redis.call('SADD', owner_jobs, id)
redis.call('HINCRBY', agent_stats, 'queued', 1)
if idem_hash ~= '' then
  redis.call('HSET', idem, 'hash', idem_hash, 'job', id)
  redis.call('EXPIRE', idem, idem_ttl)
end
return {0, id}
