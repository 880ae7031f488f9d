-- A deploy's approval decision, taken once: 'approved' | 'rejected' by a person while the job awaits it and its
-- window is open; 'expired' by its runner when the window has ended.
-- → 'ok' | 'decided:<earlier decision>' | 'expired' (too late: recorded as expired) | 'not_awaiting' | 'missing'
local job = KEYS[1]
local decision, now = ARGV[1], tonumber(ARGV[2])

local j = redis.call('HMGET', job, 'status', 'phase', 'decision', 'approvalExpiresMs')
if not j[1] then return 'missing' end
if j[3] and j[3] ~= '' then return 'decided:' .. j[3] end
if j[1] ~= 'running' or j[2] ~= 'awaiting_approval' then return 'not_awaiting' end
if decision ~= 'expired' and now >= tonumber(j[4] or '0') then
  redis.call('HSET', job, 'decision', 'expired', 'decidedMs', now)
  return 'expired'
end
redis.call('HSET', job, 'decision', decision, 'decidedMs', now)
return 'ok'
