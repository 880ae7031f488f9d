-- Shared by every script that ends a job (prepended to it). Those scripts take the same KEYS:
local job, env, active, owner_jobs, agent_stats, log, apikey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]

-- A job's budget reservation is settled here: to its reported cost (`costNusd`), to nothing if it never
-- ran, or to all of it when it ran and its cost is unknown (a lost worker, a stopped task).
local function finish(status, prev, now, fields, retention, id)
  local reserved = tonumber(redis.call('HGET', job, 'reservedNusd') or '0')
  if reserved > 0 then
    local charge = 0
    if fields.costNusd then charge = tonumber(fields.costNusd) elseif prev == 'running' then charge = reserved end
    redis.call('HINCRBY', apikey, 'reserved_nusd', -reserved)
    if charge > 0 then redis.call('HINCRBY', apikey, 'spend_nusd', charge) end
    -- It counts in the budget period it was created in (create.lua), if that one is still the key's current one.
    local period = redis.call('HGET', job, 'reservedPeriod')
    if period and redis.call('HGET', apikey, 'period_start') == period then
      redis.call('HINCRBY', apikey, 'period_reserved_nusd', -reserved)
      if charge > 0 then redis.call('HINCRBY', apikey, 'period_spend_nusd', charge) end
    end
    redis.call('HDEL', job, 'reservedNusd', 'reservedPeriod')
  end
  -- A full progress bar means done: a job that failed, timed out or was cancelled keeps how far it got.
  if status ~= 'succeeded' then fields.progress = nil end
  for k, v in pairs(fields) do redis.call('HSET', job, k, v) end
  redis.call('HSET', job, 'status', status, 'finishedMs', now, 'phase', '')
  redis.call('HDEL', job, 'dispatchMs')
  redis.call('DEL', env)
  redis.call('SREM', active, id)
  redis.call('SREM', owner_jobs, id)
  redis.call('HINCRBY', agent_stats, prev, -1)
  redis.call('HINCRBY', agent_stats, status, 1)
  redis.call('EXPIRE', job, retention)
  redis.call('EXPIRE', log, retention)
end
