-- MERGE: window hashes become max(current, value) per field. The values are
-- absolute totals read back from PostgreSQL, so applying them twice, late or
-- out of order changes nothing.
-- KEYS: 1 the epoch key, then per window hash its gate and the hash. A gate
-- that is the epoch key merges the window whatever; any other is the policy
-- hash of the window's agent, and the window is merged only while that
-- policy has a limit (l0 to l4): only the checks of an agent's limits read
-- its windows (and a refusal's burn rate, from them), and the policy's
-- write brings them back from PostgreSQL when it sets one
-- (cm_hot_put_policy).
-- While the epoch key is missing every gate is open: the policies are not
-- back yet, and a rebuild's read may already be behind this merge.
-- ARGV, per window hash in KEYS order: its ttl in seconds, the number n of
-- fields, then n field/value pairs.
-- Answers 1 when the epoch key exists, 0 when Redis lost its data and needs
-- a rebuild.

-- Field values compare as decimal strings: Lua numbers are doubles and
-- would round nano-dollar totals above 2^53.
local function gt(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end

-- Merges the window hash k from the nf field/value pairs at ARGV[pos].
local function merge_window(k, ttl, pos, nf)
  local fields = {}
  for j = 1, nf do fields[j] = ARGV[pos + 2 * (j - 1)] end
  local cur = redis.call('HMGET', k, unpack(fields))
  local set, fresh = {}, true
  for j = 1, nf do
    if cur[j] then fresh = false end
    local v = ARGV[pos + 2 * (j - 1) + 1]
    if not cur[j] or gt(v, cur[j]) then
      set[#set + 1] = fields[j]
      set[#set + 1] = v
    end
  end
  if #set > 0 then redis.call('HSET', k, unpack(set)) end
  -- A window's ttl runs from its first write (as ack.lua and admit.lua set
  -- it): it outlives the window by days, and a window that expired is
  -- written again whole from PostgreSQL's totals.
  if fresh then redis.call('EXPIRE', k, ttl) end
end

local epoch = redis.call('EXISTS', KEYS[1])
-- Whether a gate is open, each policy hash read once per call.
local open = {[KEYS[1]] = true}
local function is_open(gate)
  if epoch == 0 then return true end
  if open[gate] == nil then
    local l = redis.call('HMGET', gate, 'l0', 'l1', 'l2', 'l3', 'l4')
    open[gate] = (l[1] or l[2] or l[3] or l[4] or l[5]) and true or false
  end
  return open[gate]
end

local pos = 1
for i = 2, #KEYS, 2 do
  local nf = tonumber(ARGV[pos + 1])
  if is_open(KEYS[i]) then merge_window(KEYS[i + 1], ARGV[pos], pos + 2, nf) end
  pos = pos + 2 + 2 * nf
end
return epoch
