-- Keep a delivery: newest first, the last `keep` only. KEYS: the deliveries list. ARGV: entry, keep.
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
return 1
