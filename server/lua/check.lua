-- CHECK, after heartbeats: each agent's state and the alert thresholds and
-- cost limits newly crossed this window.
-- KEYS: 1 epoch, then per agent its policy hash and hour/day/month window
-- hashes.
-- ARGV: 1 the markers' ttl, then per agent its address and the three
-- windows' start times.
-- Answers one state per agent (0 active, 1 blocked, 2 killed), then for
-- each newly crossed mark five values: agent index, limit index, the
-- threshold's fraction in 1e-9 units (0 for the limit itself), current
-- cost, limit.

-- Decimal strings compare by length first (see merge.lua).
local function ge(a, b)
  if #a ~= #b then return #a > #b end
  return a >= b
end
local marker_ttl = ARGV[1]
local n = (#KEYS - 1) / 4
local out, marks = {}, {}
for a = 0, n - 1 do
  -- The agent's keys and arguments both start at index 2 + 4a.
  local base = 2 + 4 * a
  local addr = ARGV[base]
  local p = redis.call('HMGET', KEYS[base], 'killed', 'block', 'l0', 'l1', 'l2', 'l3', 'l4', 't2', 't3', 't4', 'tf')
  local fr = {}
  for f in string.gmatch(p[11] or '', '[^,]+') do fr[#fr + 1] = f end
  local cur = {
    redis.call('HGET', KEYS[base + 1], 'intents') or '0', redis.call('HGET', KEYS[base + 2], 'intents') or '0',
    redis.call('HGET', KEYS[base + 1], 'cost') or '0', redis.call('HGET', KEYS[base + 2], 'cost') or '0',
    redis.call('HGET', KEYS[base + 3], 'cost') or '0'}
  local win = {ARGV[base + 1], ARGV[base + 2], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]}
  local state = 0
  for i = 1, 5 do
    local lim = p[2 + i]
    if lim and ge(cur[i], lim) and p[2] ~= '0' then state = 1 end
  end
  if p[1] == '1' then state = 2 end
  out[a + 1] = state
  for i = 3, 5 do
    local lim = p[2 + i]
    if lim then
      local idx = 0
      for amt in string.gmatch(p[5 + i] or '', '[^,]+') do
        idx = idx + 1
        if ge(cur[i], amt) and redis.call('SET', 'cm:x:' .. addr .. ':t' .. (i - 1) .. ':' .. win[i] .. ':' .. idx, '1', 'NX', 'EX', marker_ttl) then
          marks[#marks + 1] = a; marks[#marks + 1] = i - 1; marks[#marks + 1] = fr[idx] or '0'
          marks[#marks + 1] = cur[i]; marks[#marks + 1] = lim
        end
      end
      if ge(cur[i], lim) and redis.call('SET', 'cm:x:' .. addr .. ':b' .. (i - 1) .. ':' .. win[i], '1', 'NX', 'EX', marker_ttl) then
        marks[#marks + 1] = a; marks[#marks + 1] = i - 1; marks[#marks + 1] = 0
        marks[#marks + 1] = cur[i]; marks[#marks + 1] = lim
      end
    end
  end
end
for i = 1, #marks do out[#out + 1] = marks[i] end
return out
