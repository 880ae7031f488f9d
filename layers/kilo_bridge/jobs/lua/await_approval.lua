-- The runner stops a deploy job before its deploy step for a person's decision. → 'ok' | 'lost'
local job = KEYS[1]
local attempt, now, approval, expires = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local j = redis.call('HMGET', job, 'status', 'attempt')
if j[1] ~= 'running' or j[2] ~= attempt then return 'lost' end
redis.call('HSET', job, 'phase', 'awaiting_approval', 'approval', approval, 'approvalExpiresMs', expires,
  'heartbeatMs', now)
return 'ok'
