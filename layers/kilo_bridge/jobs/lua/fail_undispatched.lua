-- End a queued job whose message can no longer reach a dispatcher (it is in the dead-letter queue), unless a
-- task was started for it (that task's runner or the finalizer ends it). After finish.lua.
-- → 'failed' | '' (not queued any more, or its task started) | 'missing'
local id, now, reason, err, retention = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], tonumber(ARGV[5])

local j = redis.call('HMGET', job, 'status', 'taskArn')
if not j[1] then return 'missing' end
if j[1] ~= 'queued' or j[2] then return '' end
finish('failed', 'queued', now, {reason = reason, error = err}, retention, id)
return 'failed'
