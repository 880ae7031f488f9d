-- Admit a verified call: refused if its signature was seen (a replay) or the trigger's window is full.
-- KEYS: the seen-signature key, the window's counter. ARGV: limit, window ttl (s), seen ttl (s).
-- → {'ok'} | {'replayed'} | {'limited', seconds until the window ends}
local seen, window = KEYS[1], KEYS[2]
if redis.call('EXISTS', seen) == 1 then return {'replayed'} end
local count = redis.call('INCR', window)
if count == 1 then redis.call('EXPIRE', window, ARGV[2]) end
if count > tonumber(ARGV[1]) then
  local ttl = redis.call('TTL', window)
  return {'limited', ttl > 0 and ttl or 1}
end
redis.call('SET', seen, '1', 'EX', ARGV[3])
return {'ok'}
