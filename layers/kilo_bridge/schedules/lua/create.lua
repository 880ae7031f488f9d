-- Create a schedule unless its owner keeps `max` already. KEYS: its hash, the owner's set of ids.
-- ARGV: id, max, then field/value pairs. → 'ok' | 'full'
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[2]) then return 'full' end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('SADD', KEYS[2], ARGV[1])
return 'ok'
