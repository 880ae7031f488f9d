-- Delete a schedule and its id in the owner's set. KEYS: its hash, the owner's set. ARGV: id. → 1 | 0
local removed = redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return removed
