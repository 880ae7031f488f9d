-- The runner's live log lines, each exactly once and in order: lines are numbered per attempt from 1, and a
-- batch retried after a lost reply (Redis may have run it after all) skips the lines it already added.
-- KEYS: the stream, the hash of each attempt's last number. → how many lines were added
local stream, seqs = KEYS[1], KEYS[2]
local attempt, first, maxlen, retention = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])

local last = tonumber(redis.call('HGET', seqs, attempt) or '0')
local added = 0
for i = 5, #ARGV do
  if first + i - 5 > last then
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'l', ARGV[i])
    added = added + 1
  end
end
if added > 0 then redis.call('HSET', seqs, attempt, first + #ARGV - 5) end
redis.call('EXPIRE', stream, retention)
redis.call('EXPIRE', seqs, retention)
return added
