-- The runner takes every message waiting for its agent, each marked delivered in the same step (a message is
-- handed over once). KEYS: the inbox, the states hash. → the messages as JSON, oldest first
local inbox, states = KEYS[1], KEYS[2]
local taken = redis.call('LRANGE', inbox, 0, -1)
if #taken == 0 then return taken end
redis.call('DEL', inbox)
for _, raw in ipairs(taken) do
  redis.call('HSET', states, cjson.decode(raw)['id'], 'delivered')
end
return taken
