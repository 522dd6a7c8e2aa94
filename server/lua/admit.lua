-- ADMIT: an intent's check-and-increment against the agent's policy, the
-- kill flag and the Idempotency-Key, atomically.
-- KEYS: 1 epoch, 2 policy hash, 3..5 hour/day/month window hashes,
-- 6 idempotency key, 7 the agent's own rebuilt marker, 8 the delegation
-- tree's hash (field cost: the largest cost an admission read; breached:
-- its cap was seen reached).
-- ARGV: 1 "1" when an Idempotency-Key is used, 2..4 the windows' ttls,
-- 5 the address, 6..8 the windows' start times (for the once-per-window
-- breach markers), 9 the markers' ttl, 10 the ttl of the key's in-flight mark,
-- 11 the tree's cost as PostgreSQL had it, 12 the policy's tree cap ("":
-- none, KEYS[8] unread), 13 the tree hash's ttl.
-- Answers {code, breached mask, newly breached mask, current of each limit
-- (5), limit values (5), tree cost, tree cap reached (0/1), reached for the
-- first time (0/1)} where code is 1 admitted, 0 refused, 2 killed, 3
-- refused by the tree cap; or
-- {-1} when Redis lost its data (and this agent is not rebuilt yet), {-2, stored answer} for a repeated key,
-- {-3} while the first is in flight.

-- Decimal strings compare by length first (see merge.lua).
local function ge(a, b)
  if #a ~= #b then return #a > #b end
  return a >= b
end
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[7]) == 0 then return {-1} end
if ARGV[1] == '1' then
  local prev = redis.call('GET', KEYS[6])
  if prev == 'pending' then return {-3} end
  if prev then return {-2, prev} end
end
local p = redis.call('HMGET', KEYS[2], 'killed', 'block', 'l0', 'l1', 'l2', 'l3', 'l4')
local cur = {
  redis.call('HGET', KEYS[3], 'intents') or '0', redis.call('HGET', KEYS[4], 'intents') or '0',
  redis.call('HGET', KEYS[3], 'cost') or '0', redis.call('HGET', KEYS[4], 'cost') or '0',
  redis.call('HGET', KEYS[5], 'cost') or '0'}
local win = {ARGV[6], ARGV[7], ARGV[6], ARGV[7], ARGV[8]}
local code, mask, fresh = 1, 0, 0
-- A tree's cost only grows: keeping the largest one read means a replica
-- whose read is a moment older cannot admit what another already refused.
local tcost, treached, tfresh = '0', 0, 0
if ARGV[12] ~= '' then
  tcost = redis.call('HGET', KEYS[8], 'cost') or '0'
  if ge(ARGV[11], tcost) then tcost = ARGV[11] end
  redis.call('HSET', KEYS[8], 'cost', tcost)
  if ge(tcost, ARGV[12]) then
    treached = 1
    tfresh = redis.call('HSETNX', KEYS[8], 'breached', '1')
  end
  redis.call('EXPIRE', KEYS[8], ARGV[13])
end
if p[1] == '1' then code = 2 else
  for i = 1, 5 do
    local lim = p[2 + i]
    if lim and ge(cur[i], lim) then
      mask = mask + 2 ^ (i - 1)
      if redis.call('SET', 'cm:x:' .. ARGV[5] .. ':b' .. (i - 1) .. ':' .. win[i], '1', 'NX', 'EX', ARGV[9]) then
        fresh = fresh + 2 ^ (i - 1)
      end
    end
  end
  if treached == 1 and p[2] ~= '0' then code = 3
  elseif mask > 0 and p[2] ~= '0' then code = 0 else
    for k = 3, 5 do
      redis.call('HINCRBY', KEYS[k], 'intents', 1)
      redis.call('EXPIRE', KEYS[k], ARGV[k - 1])
    end
  end
end
if ARGV[1] == '1' then redis.call('SET', KEYS[6], 'pending', 'EX', ARGV[10]) end
return {code, mask, fresh, cur[1], cur[2], cur[3], cur[4], cur[5],
  p[3] or '', p[4] or '', p[5] or '', p[6] or '', p[7] or '', tcost, treached, tfresh}
