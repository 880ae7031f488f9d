-- One audit record appended (audit/store.py `AuditLog.append`). → its stream id.
-- The id is the caller's time (ms), never earlier than the last record's: the log stays in order even when
-- processes' clocks differ a little. Records older than the retention are trimmed (MINID, approximately).
local log = KEYS[1]
local now_ms, oldest_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local id = string.format('%d-0', now_ms)
local last = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)[1]  -- (trimming never takes the newest)
if last then
  local ms, seq = string.match(last[1], '(%d+)-(%d+)')
  if tonumber(ms) >= now_ms then id = ms .. '-' .. string.format('%d', tonumber(seq) + 1) end
end
local args = {'XADD', log, 'MINID', '~', string.format('%d', oldest_ms), id}
for i = 3, #ARGV do args[#args + 1] = ARGV[i] end
return redis.call(unpack(args))
