-- The runner ends its job (after finish.lua). → 1 finished | 0 refused (not running, or another attempt owns it)
local id, now, status, fields, attempt, retention =
  ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])

local j = redis.call('HMGET', job, 'status', 'attempt')
if j[1] ~= 'running' or j[2] ~= attempt then return 0 end
finish(status, 'running', now, cjson.decode(fields), retention, id)
return 1
