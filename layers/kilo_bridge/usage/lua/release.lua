-- Release: an admission's reservation handed back without a settlement (usage/ledger.py `Ledger.sweep`): one its
-- caller gave up on (the admission timed out at the client but ran when Redis resumed), or one of a web process
-- that died. Returns 1 (released), 0 (no reservation: never admitted, deadline passed) or 2 (already settled).
-- No settlement mark is set: a settlement that turns up later (a spooled one, replayed) still charges the key.
local apikey, held, amounts, settled = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id = ARGV[1]
if redis.call('EXISTS', settled) == 1 then return 2 end
local still = redis.call('HGET', amounts, id)
if not still then return 0 end
redis.call('HDEL', amounts, id)
redis.call('ZREM', held, id)
redis.call('HINCRBY', apikey, 'reserved_nusd', -tonumber(still))
return 1
