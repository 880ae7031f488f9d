-- Create a trigger unless its owner keeps `max` already. KEYS: the trigger's hash, the owner's set of ids.
-- ARGV: id, max, then field/value pairs. → 'ok' | 'full'
local trigger, ids = KEYS[1], KEYS[2]
if redis.call('SCARD', ids) >= tonumber(ARGV[2]) then return 'full' end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', trigger, unpack(fields))
redis.call('SADD', ids, ARGV[1])
return 'ok'
