-- CHECK, after heartbeats: each agent's (or scope's) state, its cost
-- figures for the forecast, and the alert thresholds, cost limits and
-- predicted exhaustions newly crossed this window.
-- KEYS: 1 epoch, then per agent its policy hash, its hour/day/month window
-- hashes and the previous hour's window hash.
-- ARGV: 1 the markers' ttl, 2 now (Unix seconds), 3 the forecast horizon
-- (seconds), 4 the end of the month window, then per agent its tag and the
-- three windows' start times.
-- Answers per agent 8 values: state (0 active, 1 blocked, 2 killed), this
-- hour's cost, the previous hour's, the day's, the month's (each 0 when no
-- limit of the agent needs it), and the three cost limits ('' when unset);
-- then for each newly crossed mark five values: agent index, limit index,
-- the threshold's fraction in 1e-9 units (0 for the limit itself, -1 for an
-- exhaustion predicted within the horizon), current cost, limit.

-- Decimal strings compare by length first (see merge.lua).
local function ge(a, b)
  if #a ~= #b then return #a > #b end
  return a >= b
end
local marker_ttl = ARGV[1]
local now, horizon = tonumber(ARGV[2]), tonumber(ARGV[3])
local n = (#KEYS - 1) / 5
local out, marks = {}, {}
for a = 0, n - 1 do
  local kb, ab = 2 + 5 * a, 5 + 4 * a
  local addr = ARGV[ab]
  local p = redis.call('HMGET', KEYS[kb], 'killed', 'block', 'l0', 'l1', 'l2', 'l3', 'l4', 't2', 't3', 't4', 'tf')
  local fr = {}
  for f in string.gmatch(p[11] or '', '[^,]+') do fr[#fr + 1] = f end
  -- Only the windows a limit compares or a forecast reads (the cost
  -- limits' forecasts take the hour and the previous hour): a call costs
  -- Redis more than the field it reads, and most agents have no limit.
  -- A window not read answers 0, which nothing reads.
  local costed = p[5] or p[6] or p[7]
  local hour, day = {}, {}
  if p[3] or costed then hour = redis.call('HMGET', KEYS[kb + 1], 'intents', 'cost') end
  if p[4] or p[6] then day = redis.call('HMGET', KEYS[kb + 2], 'intents', 'cost') end
  local cur = {hour[1] or '0', day[1] or '0', hour[2] or '0', day[2] or '0',
    p[7] and redis.call('HGET', KEYS[kb + 3], 'cost') or '0'}
  local prev = costed and redis.call('HGET', KEYS[kb + 4], 'cost') or '0'
  local win = {ARGV[ab + 1], ARGV[ab + 2], ARGV[ab + 1], ARGV[ab + 2], ARGV[ab + 3]}
  local ends = {tonumber(ARGV[ab + 1]) + 3600, tonumber(ARGV[ab + 2]) + 86400, tonumber(ARGV[4])}
  -- A forecast, not money: doubles are close enough to say when.
  local burn = tonumber(cur[3]) + tonumber(prev) * (3600 - (now - tonumber(ARGV[ab + 1]))) / 3600
  local state = 0
  for i = 1, 5 do
    local lim = p[2 + i]
    if lim and ge(cur[i], lim) and p[2] ~= '0' then state = 1 end
  end
  if p[1] == '1' then state = 2 end
  out[#out + 1] = state
  out[#out + 1] = cur[3]; out[#out + 1] = prev; out[#out + 1] = cur[4]; out[#out + 1] = cur[5]
  for i = 3, 5 do out[#out + 1] = p[2 + i] or '' end
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
      if ge(cur[i], lim) then
        if redis.call('SET', 'cm:x:' .. addr .. ':b' .. (i - 1) .. ':' .. win[i], '1', 'NX', 'EX', marker_ttl) then
          marks[#marks + 1] = a; marks[#marks + 1] = i - 1; marks[#marks + 1] = 0
          marks[#marks + 1] = cur[i]; marks[#marks + 1] = lim
        end
      elseif burn > 0 then
        local at = now + (tonumber(lim) - tonumber(cur[i])) * 3600 / burn
        if at < ends[i - 2] and at - now <= horizon and
            redis.call('SET', 'cm:x:' .. addr .. ':f' .. (i - 1) .. ':' .. win[i], '1', 'NX', 'EX', marker_ttl) then
          marks[#marks + 1] = a; marks[#marks + 1] = i - 1; marks[#marks + 1] = -1
          marks[#marks + 1] = cur[i]; marks[#marks + 1] = lim
        end
      end
    end
  end
end
for i = 1, #marks do out[#out + 1] = marks[i] end
return out
