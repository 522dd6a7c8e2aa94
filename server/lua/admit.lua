-- ADMIT: an intent's check-and-increment against every budget in its scope
-- (its agent, then run, workflow, customer, environment and org: each a
-- "level" with a policy and hour/day/month windows), the agent's kill flag
-- and the Idempotency-Key, atomically: Redis runs one script at a time, so
-- no other admission reads any of these counters between the check and
-- the increment.
-- An intent with an estimate reserves it at every level, with the
-- admission: each cost limit then compares spent + reserved (+ this
-- estimate) with the limit, so intents admitted at once cannot together
-- overshoot it. The reservation is a hash (release.lua and draw.lua read
-- it): a = what is left reserved at the agent level, s = at the scope
-- levels (heartbeats draw the agent's down at their commit, the scopes'
-- when the rollup worker counts them), ka = the agent's reserved counter,
-- ks = the scopes' (newline-separated), agent, org, id.
-- KEYS: 1 epoch, 2 idempotency key, 3 the agent's own rebuilt marker, 4 the
-- intent's reservation hash, 5 the reservations by deadline (zset), then
-- per level L (0 = the agent): 6+6L its policy hash, 7+6L..9+6L its hour,
-- day and month window hashes, 10+6L its reserved counter, 11+6L the
-- previous hour's window hash (for the forecast).
-- ARGV: 1 "1" when an Idempotency-Key is used, 2..4 the windows' ttls,
-- 5..7 the windows' start times (for the once-per-window breach markers),
-- 8 the markers' ttl, 9 the ttl of the key's in-flight mark, 10 the
-- estimate (nano-dollars, "0" for none), 11 the reservation's deadline
-- (Unix seconds), 12 the org, 13 the intent id, then per level 14+L its tag
-- (cm:x:<tag>:... markers; the agent's tag is its address).
-- With a delegation tree's cap (the agent's policy caps trees and the
-- intent has a parent), one more key and three more arguments: KEYS[6+6n]
-- the tree's hash (field cost: the largest cost an admission read;
-- breached: its cap was seen reached), ARGV[14+n] the tree's cost as
-- PostgreSQL had it, 15+n the cap, 16+n the hash's ttl. The tree is one
-- more level that refuses when the agent's policy blocks; reservations do
-- not count in it (its cost is read from PostgreSQL, which holds none).
-- Answers {code, n levels, then per level: breached mask, newly breached
-- mask, blocks (1/0), current of each limit (5; a cost limit's counts what
-- is reserved; 0s at a level without limits), limit values (5), this
-- hour's and the previous hour's cost (spent only; the previous 0 unless a
-- limit of the level is reached), then the tree's cost, reached (1/0),
-- reached for the first time for this root (1/0)} where
-- code is 1 admitted, 0 refused, 2 killed; or {-1} when Redis lost its data
-- (and this agent is not rebuilt yet), {-2, stored answer} for a repeated
-- key, {-3} while the first is in flight.

-- Decimal strings compare by length first (see merge.lua), and add digit
-- by digit: Lua numbers are doubles. Two of at most 15 digits add exactly
-- as doubles (their sum is below 2^53), which is the usual case and much
-- cheaper than the loop.
local function ge(a, b)
  if #a ~= #b then return #a > #b end
  return a >= b
end
local function add(a, b)
  if #a <= 15 and #b <= 15 then return string.format('%.0f', tonumber(a) + tonumber(b)) end
  local r, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local d = carry + (i > 0 and a:byte(i) - 48 or 0) + (j > 0 and b:byte(j) - 48 or 0)
    r[#r + 1] = string.char(48 + d % 10)
    carry = math.floor(d / 10)
    i, j = i - 1, j - 1
  end
  return #r > 0 and string.reverse(table.concat(r)) or '0'
end
local est = ARGV[10]
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[3]) == 0 then return {-1} end
if ARGV[1] == '1' then
  local prev = redis.call('GET', KEYS[2])
  if prev == 'pending' then return {-3} end
  if prev then return {-2, prev} end
end
local n = math.floor((#KEYS - 5) / 6)
local win = {ARGV[5], ARGV[6], ARGV[5], ARGV[6], ARGV[7]}
local out = {1, n}
local refused, killed, agent_blocks = false, false, false
for l = 0, n - 1 do
  local k = 6 + 6 * l
  local p = redis.call('HMGET', KEYS[k], 'killed', 'block', 'l0', 'l1', 'l2', 'l3', 'l4')
  if l == 0 and p[1] == '1' then killed = true end
  -- A level without limits compares nothing: its windows are not read
  -- (it answers 0s). Otherwise one call a window: each redis.call costs
  -- more than the read it makes.
  local hour_cost, cur = '0', {'0', '0', '0', '0', '0'}
  if p[3] or p[4] or p[5] or p[6] or p[7] then
    local resv = redis.call('GET', KEYS[k + 4]) or '0'
    local hour = redis.call('HMGET', KEYS[k + 1], 'intents', 'cost')
    local day = redis.call('HMGET', KEYS[k + 2], 'intents', 'cost')
    hour_cost = hour[2] or '0'
    cur = {hour[1] or '0', day[1] or '0', add(hour_cost, resv), add(day[2] or '0', resv),
           add(redis.call('HGET', KEYS[k + 3], 'cost') or '0', resv)}
  end
  local mask, fresh = 0, 0
  if not killed then
    for i = 1, 5 do
      local lim = p[2 + i]
      -- With an estimate, a cost limit must hold it too: reached when
      -- spent + reserved + estimate would pass the limit.
      local over = lim and ge(cur[i], lim)
      if lim and i >= 3 and est ~= '0' then over = not ge(lim, add(cur[i], est)) end
      if over then
        mask = mask + 2 ^ (i - 1)
        if redis.call('SET', 'cm:x:' .. ARGV[14 + l] .. ':b' .. (i - 1) .. ':' .. win[i], '1', 'NX', 'EX', ARGV[8]) then
          fresh = fresh + 2 ^ (i - 1)
        end
      end
    end
  end
  local blocks = p[2] ~= '0' and 1 or 0
  if mask > 0 and blocks == 1 then refused = true end
  if l == 0 then agent_blocks = blocks == 1 end
  out[#out + 1] = mask; out[#out + 1] = fresh; out[#out + 1] = blocks
  for i = 1, 5 do out[#out + 1] = cur[i] end
  for i = 1, 5 do out[#out + 1] = p[2 + i] or '' end
  out[#out + 1] = hour_cost
  -- The previous hour feeds only the forecast of a 429, which names a
  -- level with a limit reached.
  out[#out + 1] = mask > 0 and redis.call('HGET', KEYS[k + 5], 'cost') or '0'
end
-- A tree's cost only grows: keeping the largest one read means a replica
-- whose read is a moment older cannot admit what another already refused.
local tcost, treached, tfresh = '0', 0, 0
if #KEYS > 5 + 6 * n and not killed then
  local tk = KEYS[6 + 6 * n]
  tcost = redis.call('HGET', tk, 'cost') or '0'
  if ge(ARGV[14 + n], tcost) then tcost = ARGV[14 + n] end
  redis.call('HSET', tk, 'cost', tcost)
  if ge(tcost, ARGV[15 + n]) then
    treached = 1
    tfresh = redis.call('HSETNX', tk, 'breached', '1')
    if agent_blocks then refused = true end
  end
  redis.call('EXPIRE', tk, ARGV[16 + n])
end
if killed then out[1] = 2 elseif refused then out[1] = 0 else
  for l = 0, n - 1 do
    for w = 1, 3 do
      local k = 6 + 6 * l + w
      -- As in ack.lua: a window's ttl is set when an increment finds it empty.
      if redis.call('HINCRBY', KEYS[k], 'intents', 1) == 1 then redis.call('EXPIRE', KEYS[k], ARGV[1 + w], 'NX') end
    end
  end
  -- A retried intent whose first attempt reserved keeps that reservation.
  if est ~= '0' and redis.call('EXISTS', KEYS[4]) == 0 then
    local ks = {}
    for l = 0, n - 1 do
      redis.call('INCRBY', KEYS[10 + 6 * l], est)
      if l > 0 then ks[#ks + 1] = KEYS[10 + 6 * l] end
    end
    redis.call('HSET', KEYS[4], 'a', est, 's', n > 1 and est or '0', 'ka', KEYS[10], 'ks', table.concat(ks, '\n'),
      'agent', ARGV[14], 'org', ARGV[12], 'id', ARGV[13])
    redis.call('ZADD', KEYS[5], ARGV[11], KEYS[4])
  end
end
if ARGV[1] == '1' then redis.call('SET', KEYS[2], 'pending', 'EX', ARGV[9]) end
out[#out + 1] = tcost; out[#out + 1] = treached; out[#out + 1] = tfresh
return out
