-- The worker saw its runner exit with the job still running under it (the runner was killed or crashed):
-- hand the job to the next attempt at once (claim.lua takes a released job without waiting for the takeover
-- time), or end it when attempts are used up or a cancel was asked (after finish.lua).
-- The log line that tells whoever watches is added in the same step (ARGV[7..9]: for retry, failed,
-- cancelled), so the job is never seen ended before its log says why.
-- → 'retry' | 'failed' | 'cancelled' | '' (the runner had ended it, or another attempt owns it)
local id, now, worker, max_attempts, err, retention =
  ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local said = {retry = ARGV[7], failed = ARGV[8], cancelled = ARGV[9]}
local cap = tonumber(ARGV[10])

local function tell(verdict)
  redis.call('XADD', log, 'MAXLEN', '~', cap, '*', 'l', said[verdict])
end

local j = redis.call('HMGET', job, 'status', 'worker', 'attempt', 'cancelRequested')
if j[1] ~= 'running' or j[2] ~= worker then return '' end
if j[4] == '1' then
  tell('cancelled')
  finish('cancelled', 'running', now, {reason = 'cancelled_by_user', error = err}, retention, id)
  return 'cancelled'
end
if tonumber(j[3] or '0') >= max_attempts then
  tell('failed')
  finish('failed', 'running', now, {reason = 'runner_died', error = err}, retention, id)
  return 'failed'
end
tell('retry')
redis.call('HSET', job, 'released', j[3], 'heartbeatMs', now)
return 'retry'
