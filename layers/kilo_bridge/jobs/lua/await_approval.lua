-- The runner stops a deploy job before its deploy step for a person's decision. → 'ok' | 'lost'
-- The phase is stamped as heartbeat.lua stamps one (the job's story shows how long it waited).
local job = KEYS[1]
local attempt, now, approval, expires = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local j = redis.call('HMGET', job, 'status', 'attempt', 'phase', 'phases')
if j[1] ~= 'running' or j[2] ~= attempt then return 'lost' end
if j[3] ~= 'awaiting_approval' then
  local phases = {}
  if j[4] and j[4] ~= '' then phases = cjson.decode(j[4]) end
  phases[#phases + 1] = {'awaiting_approval', tonumber(now)}
  redis.call('HSET', job, 'phases', cjson.encode(phases))
end
redis.call('HSET', job, 'phase', 'awaiting_approval', 'approval', approval, 'approvalExpiresMs', expires,
  'heartbeatMs', now)
return 'ok'
