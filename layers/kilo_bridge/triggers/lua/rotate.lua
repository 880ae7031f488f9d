-- Replace a trigger's sealed signing secret, if the trigger still exists (a delete may have come between the
-- owner check and this). KEYS: the trigger's hash. ARGV: the new sealed secret. → 1 replaced, 0 no such trigger.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'sealed', ARGV[1])
return 1
