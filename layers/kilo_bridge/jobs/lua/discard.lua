-- Undo a create whose enqueue failed: no ghost job (nor its reservation) is left behind. KEYS as create.lua.
local job, env, index, active, owner_jobs, agent_stats, idem, apikey, patch =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local id = ARGV[1]

if redis.call('HGET', job, 'status') ~= 'queued' then return 0 end
local reserved = tonumber(redis.call('HGET', job, 'reservedNusd') or '0')
if reserved > 0 then
  redis.call('HINCRBY', apikey, 'reserved_nusd', -reserved)
  local period = redis.call('HGET', job, 'reservedPeriod')
  if period and redis.call('HGET', apikey, 'period_start') == period then
    redis.call('HINCRBY', apikey, 'period_reserved_nusd', -reserved)
  end
end
redis.call('DEL', job, env, patch)
redis.call('ZREM', index, id)
redis.call('SREM', active, id)
redis.call('SREM', owner_jobs, id)
redis.call('HINCRBY', agent_stats, 'queued', -1)
if redis.call('HGET', idem, 'job') == id then redis.call('DEL', idem) end
return 1
