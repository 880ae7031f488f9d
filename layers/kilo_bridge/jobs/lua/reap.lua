-- Fail what nobody is working on (after finish.lua). → the status the job was moved to, or '' when healthy
local id, now, stale_ms, max_wait_ms, retention =
  ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])

local j = redis.call('HMGET', job, 'status', 'heartbeatMs', 'deadlineMs', 'createdMs')
if not j[1] then redis.call('SREM', active, id); return 'missing' end
if j[1] == 'running' then
  local silent = now - tonumber(j[2] or '0')
  if silent > stale_ms then
    finish('failed', 'running', now, {reason = 'heartbeat_lost',
      error = 'no heartbeat from the job\'s worker for ' .. math.floor(silent / 1000) .. ' s'}, retention, id)
    return 'failed'
  end
  if now > tonumber(j[3] or '0') + stale_ms then
    finish('timed_out', 'running', now, {reason = 'deadline_passed',
      error = 'the job ran past its deadline'}, retention, id)
    return 'timed_out'
  end
elseif j[1] == 'queued' then
  if now - tonumber(j[4] or '0') > max_wait_ms then
    finish('failed', 'queued', now, {reason = 'never_started', error = 'no worker took the job in time'},
      retention, id)
    return 'failed'
  end
else
  redis.call('SREM', active, id)
end
return ''
