-- Admission: one call before any upstream request (usage/ledger.py `Ledger.admit`).
-- Returns {0, the key's period start or '', its team's} (admitted), {401} (unknown or revoked key), {402} (the
-- key's budget) or {402, 'team'} (its team's), {403} (the key may not use this model), {409, team} (the caller
-- named another team than the key's: it asks again with that team's record) or {429, retry_after_s} (exact:
-- when the limit lets a call through).
-- Idempotent per admission id: run twice (a retried call whose reply was lost), it admits once.
-- Each reservation is held until its settlement (record.lua) or its deadline, whichever comes first: one
-- whose settlement never comes (a crash, a lost reply) is released by the next admission of the key.
local totals, day, apikey, rpm_log, tpm_tat = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local held, amounts, periods = KEYS[6], KEYS[7], KEYS[8]  -- admission id -> deadline (zset), -> nano-USD, -> period
local day_ttl, has_key, estimate, model = ARGV[1], ARGV[2] == '1', tonumber(ARGV[3]), ARGV[4]
local id, now_ms, hold_ms = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local starts = {day = ARGV[8], week = ARGV[9], month = ARGV[10]}  -- the caller's clock: tests move it
local team_record, team_hint = KEYS[9], ARGV[11]           -- the team the caller believes the key is in

-- `models`: comma-separated exact ids or `provider/*` patterns ('' = every model).
local function allowed(list, wanted)
  for pattern in string.gmatch(list, '[^,]+') do
    if pattern == wanted then return true end
    if string.sub(pattern, -2) == '/*' and string.sub(wanted, 1, #pattern - 1) == string.sub(pattern, 1, -2) then
      return true
    end
  end
  return false
end

if has_key then
  if redis.call('HEXISTS', amounts, id) == 1 then
    local tag = redis.call('HGET', periods, id .. ':t') or ''
    return {0, redis.call('HGET', periods, id) or '', string.match(tag, '|(.*)$') or ''}
  end
  local k = redis.call('HMGET', apikey, 'revoked', 'budget_nusd', 'spend_nusd', 'reserved_nusd', 'rpm', 'tpm',
    'budget_period', 'period_start', 'period_spend_nusd', 'period_reserved_nusd', 'models', 'team')
  if k[1] ~= '0' then return {401} end
  if k[11] and k[11] ~= '' and not allowed(k[11], model) then return {403} end
  local team = k[12] or ''
  if team ~= team_hint then return {409, team} end
  -- The team's budget caps the sum of its keys' spend, with a period of its own (reset as the key's).
  local tps, tbudget, tused = '', 0, 0
  if team ~= '' then
    local t = redis.call('HMGET', team_record, 'budget_nusd', 'spend_nusd', 'reserved_nusd', 'budget_period',
      'period_start', 'period_spend_nusd', 'period_reserved_nusd')
    tbudget, tps = tonumber(t[1] or '0'), starts[t[4] or ''] or ''
    tused = tonumber(t[2] or '0') + tonumber(t[3] or '0')
    if tps ~= '' then
      if t[5] ~= tps then
        redis.call('HSET', team_record, 'period_start', tps, 'period_spend_nusd', 0, 'period_reserved_nusd', 0)
        tused = 0
      else
        tused = tonumber(t[6] or '0') + tonumber(t[7] or '0')
      end
    end
  end
  -- A budget per period starts again at its first admission in a new period; what was reserved in the
  -- previous one stays there (it is settled to that period, which no longer limits anything).
  local ps = starts[k[7] or ''] or ''
  local pspend, preserved = tonumber(k[9] or '0'), tonumber(k[10] or '0')
  if ps ~= '' and k[8] ~= ps then
    redis.call('HSET', apikey, 'period_start', ps, 'period_spend_nusd', 0, 'period_reserved_nusd', 0)
    pspend, preserved = 0, 0
  end
  local reserved = tonumber(k[4])
  local expired = redis.call('ZRANGEBYSCORE', held, '-inf', now_ms)
  if #expired > 0 then
    local released, preleased = 0, 0
    for _, old in ipairs(expired) do
      local amount = tonumber(redis.call('HGET', amounts, old) or '0')
      released = released + amount
      if ps ~= '' and redis.call('HGET', periods, old) == ps then preleased = preleased + amount end
      local tag = redis.call('HGET', periods, old .. ':t')
      if tag and amount > 0 then  -- 'team|its period': released from the team it was taken from, if it still is
        local was, was_ps = string.match(tag, '^(.-)|(.*)$')
        if was == team then
          redis.call('HINCRBY', team_record, 'reserved_nusd', 0 - amount)
          if tps ~= '' and was_ps == tps then
            redis.call('HINCRBY', team_record, 'period_reserved_nusd', 0 - amount)
            tused = tused - amount
          elseif tps == '' then
            tused = tused - amount
          end
        end
      end
      redis.call('HDEL', amounts, old)
      redis.call('HDEL', periods, old, old .. ':t')
    end
    redis.call('ZREMRANGEBYSCORE', held, '-inf', now_ms)
    redis.call('HINCRBY', apikey, 'reserved_nusd', 0 - released)  -- (not -x: Lua's -0 is no integer to Redis)
    reserved = reserved - released
    if preleased > 0 then
      redis.call('HINCRBY', apikey, 'period_reserved_nusd', 0 - preleased)
      preserved = preserved - preleased
    end
  end
  -- Requests per minute: a sliding window of the last 60 s (the admissions' times), never a calendar minute.
  local rpm, tpm = tonumber(k[5]), tonumber(k[6])
  if rpm > 0 then
    local n = redis.call('ZCARD', rpm_log)
    if n >= rpm then  -- (only then are the older ones worth removing: the log never holds more than rpm + 1)
      redis.call('ZREMRANGEBYSCORE', rpm_log, '-inf', now_ms - 60000)
      n = redis.call('ZCARD', rpm_log)
    end
    if n >= rpm then
      local oldest = redis.call('ZRANGE', rpm_log, n - rpm, n - rpm, 'WITHSCORES')
      return {429, math.ceil((tonumber(oldest[2]) + 60000 - now_ms) / 1000)}
    end
  end
  -- Tokens per minute: GCRA on the tokens record.lua counts (`tpm_tat`: when the key's bucket is full again);
  -- a call needs at least one token's worth of room.
  if tpm > 0 then
    local wait = tonumber(redis.call('GET', tpm_tat) or '0') - now_ms - (60000 - 60000 / tpm)
    if wait > 0 then return {429, math.ceil(wait / 1000)} end
  end
  local budget = tonumber(k[2])
  if budget > 0 then
    local used = tonumber(k[3]) + reserved
    if ps ~= '' then used = pspend + preserved end
    if used + estimate > budget then
      redis.call('HINCRBY', apikey, 'budget_refusals', 1)  -- a job's runner reads it: the agent hit its cap
      return {402}
    end
  end
  if tbudget > 0 and tused + estimate > tbudget then
    redis.call('HINCRBY', apikey, 'budget_refusals', 1)
    return {402, 'team'}
  end
  redis.call('HINCRBY', apikey, 'reserved_nusd', estimate)
  redis.call('ZADD', held, now_ms + hold_ms, id)
  redis.call('HSET', amounts, id, estimate)
  redis.call('PEXPIRE', held, hold_ms * 2)
  redis.call('PEXPIRE', amounts, hold_ms * 2)
  if ps ~= '' then
    redis.call('HINCRBY', apikey, 'period_reserved_nusd', estimate)
    redis.call('HSET', periods, id, ps)
  end
  if team ~= '' then
    redis.call('HINCRBY', team_record, 'reserved_nusd', estimate)
    if tps ~= '' then redis.call('HINCRBY', team_record, 'period_reserved_nusd', estimate) end
    redis.call('HSET', periods, id .. ':t', team .. '|' .. tps)
  end
  if ps ~= '' or team ~= '' then redis.call('PEXPIRE', periods, hold_ms * 2) end
  redis.call('HINCRBY', apikey, 'requests', 1)
  if rpm > 0 then
    redis.call('ZADD', rpm_log, now_ms, id)
    redis.call('PEXPIRE', rpm_log, 61000)
  end
  redis.call('HINCRBY', totals, 'requests', 1)
  redis.call('HINCRBY', day, 'requests', 1)
  redis.call('EXPIRE', day, day_ttl)
  return {0, ps, tps}
end
redis.call('HINCRBY', totals, 'requests', 1)
redis.call('HINCRBY', day, 'requests', 1)
redis.call('EXPIRE', day, day_ttl)
return {0, '', ''}
