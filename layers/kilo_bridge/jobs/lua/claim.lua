-- A runner takes a queued job, or a running one whose heartbeat stopped (or whose runner's worker released it,
-- release.lua) while attempts remain (after finish.lua).
-- → {'ok', attempt, deadline} | {'busy'} | {'done', status} | {'missing'} | {'failed'} (attempts used up)
local id, now, worker, takeover_ms, max_attempts, retention =
  ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])

local j = redis.call('HMGET', job, 'status', 'heartbeatMs', 'attempt', 'timeoutMs', 'cancelRequested', 'released')
if not j[1] then return {'missing'} end
local attempt
if j[1] == 'queued' then
  attempt = 1
  redis.call('HINCRBY', agent_stats, 'queued', -1)
  redis.call('HINCRBY', agent_stats, 'running', 1)
  redis.call('HSET', job, 'startedMs', now)
elseif j[1] == 'running' then
  if now - tonumber(j[2] or '0') < takeover_ms and j[6] ~= j[3] then return {'busy'} end
  attempt = tonumber(j[3] or '0') + 1
  if attempt > max_attempts or j[5] == '1' then
    local reason = j[5] == '1' and 'cancelled_by_user' or 'worker_lost'
    local status = j[5] == '1' and 'cancelled' or 'failed'
    finish(status, 'running', now, {reason = reason,
      error = 'the worker running this job stopped (attempt ' .. (attempt - 1) .. ')'}, retention, id)
    return {'failed'}
  end
else
  return {'done', j[1]}
end
local deadline = now + tonumber(j[4])
redis.call('HDEL', job, 'released')
redis.call('HSET', job, 'status', 'running', 'phase', 'cloning', 'progress', 0, 'attempt', attempt,
  'worker', worker, 'heartbeatMs', now, 'deadlineMs', deadline)
-- this attempt's phases start here (heartbeat.lua adds each next one)
redis.call('HSET', job, 'phases', cjson.encode({{'cloning', now}}))
return {'ok', attempt, deadline}
