-- Delete a profile and its name from the owner's set. KEYS as save.lua. → 1 deleted, 0 no such profile.
local removed = redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return removed
