-- Accounting: one call after the upstream answered or failed (usage/ledger.py `Ledger.record`).
-- Counters for totals, the day, the model and the key; the key's reservation settled; credit spend.
local totals, day, model, models, credits, apikey, tpm_window = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local outcome = ARGV[1]                                    -- 'ok' | 'failed'
local stream, pt, ct = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local cost, unpriced = tonumber(ARGV[5]), tonumber(ARGV[6])
local model_id, day_ttl, exhausted, now = ARGV[7], ARGV[8], ARGV[9] == '1', ARGV[10]
local has_key = ARGV[11] == '1'                            -- (ARGV[12], the reservation, is in `amounts`)
local key_charge = tonumber(ARGV[13])                      -- the cost, or the reservation when it is unknown
local held, amounts, settled = KEYS[8], KEYS[9], KEYS[10]  -- the admission's reservation; its settlement mark
local id, settled_ttl_ms = ARGV[14], tonumber(ARGV[15])
local error_code = ARGV[16]                                -- why a failed call failed ('' when it did not)
local now_ms, period = tonumber(ARGV[17]), ARGV[18]        -- the admission's budget period ('' for none)
local periods, key_day = KEYS[11], KEYS[12]                -- admission id -> period; the key's day by model
local team_record, team, team_period = KEYS[13], ARGV[19], ARGV[20]  -- the team it was admitted under ('' none)

-- Idempotent per admission id: a second settlement (a retried call whose reply was lost) counts nothing.
if not redis.call('SET', settled, '1', 'NX', 'PX', settled_ttl_ms) then return 0 end

local function count(k, spend)
  redis.call('HINCRBY', k, outcome, 1)
  if stream == 1 then redis.call('HINCRBY', k, 'streams', 1) end
  if pt > 0 then redis.call('HINCRBY', k, 'prompt_tokens', pt) end
  if ct > 0 then redis.call('HINCRBY', k, 'completion_tokens', ct) end
  if spend > 0 then redis.call('HINCRBY', k, 'spend_nusd', spend) end
  if unpriced == 1 then redis.call('HINCRBY', k, 'unpriced', 1) end
end

redis.call('HINCRBY', model, 'requests', 1)
count(totals, cost)
count(day, cost)
count(model, cost)
if has_key then
  count(apikey, key_charge)
  -- Released unless its deadline passed first (then the next admission already released it).
  local still = redis.call('HGET', amounts, id)
  if still then
    redis.call('HDEL', amounts, id)
    redis.call('ZREM', held, id)
    redis.call('HINCRBY', apikey, 'reserved_nusd', 0 - tonumber(still))  -- (not -x: Lua's -0 is no integer to Redis)
  end
  -- A call counts in the period it was admitted in: after a reset it no longer limits the new one.
  if period ~= '' and redis.call('HGET', apikey, 'period_start') == period then
    if still and redis.call('HGET', periods, id) == period then
      redis.call('HINCRBY', apikey, 'period_reserved_nusd', 0 - tonumber(still))
    end
    if key_charge > 0 then redis.call('HINCRBY', apikey, 'period_spend_nusd', key_charge) end
  end
  if team ~= '' then  -- the team's share: its spend, its reservation released, its period's figures
    if key_charge > 0 then redis.call('HINCRBY', team_record, 'spend_nusd', key_charge) end
    local current = team_period ~= '' and redis.call('HGET', team_record, 'period_start') == team_period
    if still and redis.call('HEXISTS', periods, id .. ':t') == 1 then
      redis.call('HINCRBY', team_record, 'reserved_nusd', 0 - tonumber(still))
      if current then redis.call('HINCRBY', team_record, 'period_reserved_nusd', 0 - tonumber(still)) end
    end
    if current and key_charge > 0 then redis.call('HINCRBY', team_record, 'period_spend_nusd', key_charge) end
  end
  redis.call('HDEL', periods, id, id .. ':t')
  redis.call('HINCRBY', key_day, model_id .. '|requests', 1)
  if pt + ct > 0 then redis.call('HINCRBY', key_day, model_id .. '|tokens', pt + ct) end
  if key_charge > 0 then redis.call('HINCRBY', key_day, model_id .. '|spend_nusd', key_charge) end
  redis.call('EXPIRE', key_day, day_ttl)
  if error_code ~= '' then redis.call('HSET', apikey, 'last_error', error_code) end
  -- Tokens per minute (GCRA): the bucket is full again at `tpm_window`; these tokens push that time later.
  local tpm = tonumber(redis.call('HGET', apikey, 'tpm') or '0')
  if tpm > 0 and pt + ct > 0 then
    local tat = math.max(tonumber(redis.call('GET', tpm_window) or '0'), now_ms) + math.ceil((pt + ct) * 60000 / tpm)
    redis.call('SET', tpm_window, tat, 'PX', tat - now_ms + 1000)
  end
end
redis.call('EXPIRE', day, day_ttl)
redis.call('SADD', models, model_id)
if exhausted then
  redis.call('HSET', credits, 'balance_nusd', 0, 'seen_at', now, 'spent_since_nusd', 0, 'source', 'gateway-402')
elseif cost > 0 then
  redis.call('HINCRBY', credits, 'spent_since_nusd', cost)
end
return 1
