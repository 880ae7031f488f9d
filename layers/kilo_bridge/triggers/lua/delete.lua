-- Delete a trigger, its deliveries and its id in the owner's set. KEYS: hash, owner's set, deliveries.
-- ARGV: id. → 1 deleted, 0 no such trigger.
local removed = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[3])
redis.call('SREM', KEYS[2], ARGV[1])
return removed
