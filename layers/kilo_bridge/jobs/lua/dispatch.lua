-- Take the dispatch lease of a queued job: the mark holds for LEASE_MS unless a task ARN is recorded, so a
-- dispatcher killed between the mark and RunTask never strands the job (its redelivered message takes over).
-- → the mark (this caller starts the task) | 0 (not queued, or its task is already started) | -1 (a live lease)
local job = KEYS[1]
local now, lease_ms = tonumber(ARGV[1]), tonumber(ARGV[2])

local j = redis.call('HMGET', job, 'status', 'dispatchMs', 'taskArn')
if j[1] ~= 'queued' or j[3] then return 0 end
if j[2] and now - tonumber(j[2]) < lease_ms then return -1 end
redis.call('HSET', job, 'dispatchMs', now)
return now
