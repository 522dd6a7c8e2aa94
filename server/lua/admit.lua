-- ADMIT: an intent's check-and-increment against every budget in its scope
-- (its agent, then run, workflow, customer, environment and org: each a
-- "level" with a policy and hour/day/month windows), the agent's kill flag
-- and the Idempotency-Key, atomically: Redis runs one script at a time, so
-- no other admission reads any of these counters between the check and
-- the increment.
-- KEYS: 1 epoch, 2 idempotency key, 3 the agent's own rebuilt marker, then
-- per level L (0 = the agent): 4+4L its policy hash, 5+4L..7+4L its hour,
-- day and month window hashes.
-- ARGV: 1 "1" when an Idempotency-Key is used, 2..4 the windows' ttls,
-- 5..7 the windows' start times (for the once-per-window breach markers),
-- 8 the markers' ttl, 9 the ttl of the key's in-flight mark, then per level
-- 10+L its tag (cm:x:<tag>:... markers; the agent's tag is its address).
-- Answers {code, n levels, then per level: breached mask, newly breached
-- mask, blocks (1/0), current of each limit (5), limit values (5)} where
-- code is 1 admitted, 0 refused, 2 killed; or {-1} when Redis lost its data
-- (and this agent is not rebuilt yet), {-2, stored answer} for a repeated
-- key, {-3} while the first is in flight.

-- Decimal strings compare by length first (see merge.lua).
local function ge(a, b)
  if #a ~= #b then return #a > #b end
  return a >= b
end
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[3]) == 0 then return {-1} end
if ARGV[1] == '1' then
  local prev = redis.call('GET', KEYS[2])
  if prev == 'pending' then return {-3} end
  if prev then return {-2, prev} end
end
local n = (#KEYS - 3) / 4
local win = {ARGV[5], ARGV[6], ARGV[5], ARGV[6], ARGV[7]}
local out = {1, n}
local refused, killed = false, false
for l = 0, n - 1 do
  local k = 4 + 4 * l
  local p = redis.call('HMGET', KEYS[k], 'killed', 'block', 'l0', 'l1', 'l2', 'l3', 'l4')
  if l == 0 and p[1] == '1' then killed = true end
  local cur = {
    redis.call('HGET', KEYS[k + 1], 'intents') or '0', redis.call('HGET', KEYS[k + 2], 'intents') or '0',
    redis.call('HGET', KEYS[k + 1], 'cost') or '0', redis.call('HGET', KEYS[k + 2], 'cost') or '0',
    redis.call('HGET', KEYS[k + 3], 'cost') or '0'}
  local mask, fresh = 0, 0
  if not killed then
    for i = 1, 5 do
      local lim = p[2 + i]
      if lim and ge(cur[i], lim) then
        mask = mask + 2 ^ (i - 1)
        if redis.call('SET', 'cm:x:' .. ARGV[10 + l] .. ':b' .. (i - 1) .. ':' .. win[i], '1', 'NX', 'EX', ARGV[8]) then
          fresh = fresh + 2 ^ (i - 1)
        end
      end
    end
  end
  local blocks = p[2] ~= '0' and 1 or 0
  if mask > 0 and blocks == 1 then refused = true end
  out[#out + 1] = mask; out[#out + 1] = fresh; out[#out + 1] = blocks
  for i = 1, 5 do out[#out + 1] = cur[i] end
  for i = 1, 5 do out[#out + 1] = p[2 + i] or '' end
end
if killed then out[1] = 2 elseif refused then out[1] = 0 else
  for l = 0, n - 1 do
    for w = 1, 3 do
      local k = 4 + 4 * l + w
      redis.call('HINCRBY', KEYS[k], 'intents', 1)
      redis.call('EXPIRE', KEYS[k], ARGV[1 + w])
    end
  end
end
if ARGV[1] == '1' then redis.call('SET', KEYS[2], 'pending', 'EX', ARGV[9]) end
return out
