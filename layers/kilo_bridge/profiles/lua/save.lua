-- Create a profile (ARGV[1] = 'create': refused if it exists or the owner has `max` already) or rotate one
-- (ARGV[1] = 'rotate': refused if it does not exist). ARGV[7]: the setup commands (JSON), '' to keep them. KEYS: the profile's hash, the owner's set of names.
local profile, names = KEYS[1], KEYS[2]
local mode, name, sealed, variables, now, max = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local exists = redis.call('EXISTS', profile) == 1
if mode == 'create' then
  if exists then return 'exists' end
  if redis.call('SCARD', names) >= max then return 'full' end
  redis.call('HSET', profile, 'created_ms', now)
  redis.call('SADD', names, name)
elseif not exists then
  return 'missing'
end
redis.call('HSET', profile, 'sealed', sealed, 'variables', variables, 'updated_ms', now)
if ARGV[7] ~= '' then redis.call('HSET', profile, 'setup', ARGV[7]) end  -- '': a rotation keeps the setup
return 'ok'
