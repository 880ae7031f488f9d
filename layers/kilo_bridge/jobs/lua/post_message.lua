-- A message for a job's agent, queued while the job has not ended (its runner hands it to the agent's next
-- model request). KEYS: the job, its inbox (a list), its messages' states (a hash).
-- ARGV: message id, the message as JSON, retention (s). → '' queued, else the job's (final) status
local job, inbox, states = KEYS[1], KEYS[2], KEYS[3]
local status = redis.call('HGET', job, 'status')
if not status then return 'missing' end
if status ~= 'queued' and status ~= 'running' then return status end
redis.call('RPUSH', inbox, ARGV[2])
redis.call('HSET', states, ARGV[1], 'pending')
redis.call('EXPIRE', inbox, tonumber(ARGV[3]))
redis.call('EXPIRE', states, tonumber(ARGV[3]))
return ''
