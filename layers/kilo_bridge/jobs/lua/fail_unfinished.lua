-- End a job its runner can no longer end (after finish.lua).
-- → the status it had when it was ended here, '' when it had already ended, 'missing'
local id, now, reason, err, retention = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], tonumber(ARGV[5])

local st = redis.call('HGET', job, 'status')
if not st then return 'missing' end
if st ~= 'queued' and st ~= 'running' then return '' end
finish('failed', st, now, {reason = reason, error = err}, retention, id)
return st
