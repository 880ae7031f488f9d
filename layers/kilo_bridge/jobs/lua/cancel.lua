-- A user cancels (after finish.lua).
-- → 'cancelled' (was queued) | 'cancelling' (running: its runner stops it) | the final status | 'missing'
local id, now, retention = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])

local st = redis.call('HGET', job, 'status')
if not st then return 'missing' end
if st == 'queued' then
  finish('cancelled', 'queued', now, {reason = 'cancelled_by_user'}, retention, id)
  return 'cancelled'
end
if st == 'running' then
  redis.call('HSET', job, 'cancelRequested', 1)
  return 'cancelling'
end
return st
