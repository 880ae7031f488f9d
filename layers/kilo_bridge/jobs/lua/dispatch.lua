-- One dispatcher starts a queued job's task. → 1 (this caller dispatches) | 0 (not queued, or already dispatched)
local job = KEYS[1]
local now = ARGV[1]

local j = redis.call('HMGET', job, 'status', 'dispatchMs')
if j[1] ~= 'queued' or j[2] then return 0 end
redis.call('HSET', job, 'dispatchMs', now)
return 1
