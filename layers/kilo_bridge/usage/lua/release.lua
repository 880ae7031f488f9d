-- Release: an admission's reservation handed back without a settlement (usage/ledger.py `Ledger.beat`): one its
-- caller gave up on (the admission timed out at the client but ran when Redis resumed), or one of a web process
-- that died. Returns 1 (released), 0 (no reservation: never admitted, deadline passed) or 2 (already settled).
-- As record.lua releases: the key's reservation, its period's share, and the team's it was taken from (`periods`
-- holds id -> period and id:t -> 'team|its period'). No settlement mark is set: a settlement that turns up later (a
-- spooled one, replayed) still charges the key.
local apikey, held, amounts, settled, periods, team_record = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, team = ARGV[1], ARGV[2]
if redis.call('EXISTS', settled) == 1 then return 2 end
local still = redis.call('HGET', amounts, id)
if not still then return 0 end
local amount = tonumber(still)
redis.call('HDEL', amounts, id)
redis.call('ZREM', held, id)
redis.call('HINCRBY', apikey, 'reserved_nusd', 0 - amount)  -- (not -x: Lua's -0 is no integer to Redis)
local period = redis.call('HGET', periods, id)
if period and period ~= '' and redis.call('HGET', apikey, 'period_start') == period then
  redis.call('HINCRBY', apikey, 'period_reserved_nusd', 0 - amount)
end
local tag = redis.call('HGET', periods, id .. ':t')
if tag and team ~= '' and amount > 0 then
  local was, was_ps = string.match(tag, '^(.-)|(.*)$')
  if was == team then
    redis.call('HINCRBY', team_record, 'reserved_nusd', 0 - amount)
    if was_ps ~= '' and redis.call('HGET', team_record, 'period_start') == was_ps then
      redis.call('HINCRBY', team_record, 'period_reserved_nusd', 0 - amount)
    end
  end
end
redis.call('HDEL', periods, id, id .. ':t')
return 1
