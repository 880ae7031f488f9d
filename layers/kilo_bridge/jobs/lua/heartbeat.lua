-- The runner's heartbeat, with its phase and progress. → 'ok' | 'cancel' | 'lost'
-- A new phase is stamped here, in the same call that sets it: `phases` is the attempt's JSON list of
-- [phase, startMs] (claim.lua starts it), so each phase's duration is known without the runner's clock.
local job = KEYS[1]
local now, attempt, phase, progress = ARGV[1], ARGV[2], ARGV[3], ARGV[4]  -- '' = keep phase / progress

local j = redis.call('HMGET', job, 'status', 'attempt', 'cancelRequested', 'phase', 'phases')
if j[1] ~= 'running' or j[2] ~= attempt then return 'lost' end
redis.call('HSET', job, 'heartbeatMs', now)
if phase ~= '' then
  if phase ~= j[4] then
    local phases = {}
    if j[5] and j[5] ~= '' then phases = cjson.decode(j[5]) end
    phases[#phases + 1] = {phase, tonumber(now)}
    redis.call('HSET', job, 'phases', cjson.encode(phases))
  end
  redis.call('HSET', job, 'phase', phase)
end
if progress ~= '' then redis.call('HSET', job, 'progress', progress) end
if j[3] == '1' then return 'cancel' end
return 'ok'
