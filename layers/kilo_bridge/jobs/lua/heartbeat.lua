-- The runner's heartbeat, with its phase and progress. → 'ok' | 'cancel' | 'lost'
local job = KEYS[1]
local now, attempt, phase, progress = ARGV[1], ARGV[2], ARGV[3], ARGV[4]  -- '' = keep phase / progress

local j = redis.call('HMGET', job, 'status', 'attempt', 'cancelRequested')
if j[1] ~= 'running' or j[2] ~= attempt then return 'lost' end
redis.call('HSET', job, 'heartbeatMs', now)
if phase ~= '' then redis.call('HSET', job, 'phase', phase) end
if progress ~= '' then redis.call('HSET', job, 'progress', progress) end
if j[3] == '1' then return 'cancel' end
return 'ok'
