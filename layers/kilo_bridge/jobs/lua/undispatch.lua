-- Give a dispatch lease back (RunTask failed; the message is retried): only the holder's own mark, never a
-- newer dispatcher's. → 1 released | 0 not ours
local job, mark = KEYS[1], ARGV[1]

if redis.call('HGET', job, 'dispatchMs') ~= mark then return 0 end
redis.call('HDEL', job, 'dispatchMs')
return 1
