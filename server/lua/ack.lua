-- ACK: a group of heartbeats made durable in Redis (COSTMESH_DURABLE=redis):
-- each new one counted in its agent's hour, day and month windows and
-- appended to the queue the persister drains into PostgreSQL. With
-- appendfsync always Redis writes this to its AOF before it answers, so the
-- answer is what a 202 waits for.
-- KEYS: 1 the epoch key, 2 the queue (a stream), 3 the queue's last id, then
-- 4 per row (its dedupe mark, or a name never written when it has no id;
-- its hour, day and month window hashes), then one per agent (the day
-- window of today, whose cost the reply carries).
-- ARGV: 1 a mark's ttl, 2 the queue's most entries, 3..5 the hour, day and
-- month windows' ttl, 6 the cap of a month total (decimal), 7 the number of
-- requests, 8 of agents, then each request's number of rows, then per row:
-- 1 when it has a dedupe mark, its entry text, and its nine deltas (cost,
-- tin, tout, calls, tc, tl, it, is, if: the month keeps them all, where the
-- caps of schema/007_caps.sql bind; the hour and day keep the cost, which
-- is all CHECK and ADMIT read).
-- Answers {epoch exists, queue full, a status per row (1 new, 0 duplicate,
-- -k refused: the request's rows would take the month's k-th delta past
-- the cap; nothing of the request is kept), then each agent's cost today}.
-- A full queue answers {epoch exists, 1} and changes nothing.

-- Totals compare as decimal strings: Lua numbers are doubles.
local function gt(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local epoch = redis.call('EXISTS', KEYS[1])
if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[2]) then return {epoch, 1} end
local fields = {'cost', 'tin', 'tout', 'calls', 'tc', 'tl', 'it', 'is', 'if'}
local ttl = {ARGV[3], ARGV[4], ARGV[5]}
local cap = ARGV[6]
local nreq, nag = tonumber(ARGV[7]), tonumber(ARGV[8])
local out = {epoch, 0}
local pos = 9 + nreq
local row = 0
local last = nil
-- An increment's answer is a double, exact below 2^53.
local exact = 2 ^ 53
-- A day window's cost as this script's last increment of it left it, when
-- exact: the agents' costs today, answered without reading them again.
local today = {}

-- Month windows whose every total this script compared with the cap.
local capped = {}
-- A total an increment answers below this is below the cap.
local near_cap = math.min(exact, tonumber(cap))

-- Adds row r's deltas (its arguments from a) to its windows, noting each
-- increment in `done` (key, field, delta: three slots, no table each) so a
-- refused request takes back exactly those; answers the index of a month
-- total past the cap, or 0. The hour and day windows keep only what scripts
-- read of them, the cost; the month keeps every capped total. A total
-- already near int64 (written before the caps) makes HINCRBY fail: that is
-- past the cap too, and nothing was added. A window's ttl is set when an
-- increment finds it empty.
local function apply(r, a, done)
  local k = 4 + 4 * r
  local cost = ARGV[a + 2]
  if cost ~= '0' then
    for g = 1, 2 do
      local key = KEYS[k + g]
      local v = redis.call('HINCRBY', key, 'cost', cost)
      if v == tonumber(cost) then redis.call('EXPIRE', key, ttl[g], 'NX') end
      local n = #done
      done[n + 1], done[n + 2], done[n + 3] = key, 'cost', cost
      if g == 2 then today[key] = v < exact and v or nil end
    end
  end
  local month = KEYS[k + 3]
  local grew, near = false, false
  for f = 1, 9 do
    local d = ARGV[a + 1 + f]
    if d ~= '0' then
      local v = redis.pcall('HINCRBY', month, fields[f], d)
      if type(v) ~= 'number' then return f end
      local n = #done
      done[n + 1], done[n + 2], done[n + 3] = month, fields[f], d
      if v == tonumber(d) then redis.call('EXPIRE', month, ttl[3], 'NX') end
      grew = true
      if v >= near_cap then near = true end
    end
  end
  -- As PostgreSQL checks every cap of a row it updates: a month past one
  -- cap (a total written before the caps) takes no more of anything. Every
  -- total is read once per month and script; after that only a total this
  -- script grew can pass a cap, and its increment's answer says whether it
  -- is anywhere near one (the exact comparison is of decimal strings).
  if grew and (near or not capped[month]) then
    local m = redis.call('HMGET', month, unpack(fields))
    for f = 1, 9 do
      if m[f] and #m[f] >= #cap and gt(m[f], cap) then return f end
    end
    capped[month] = true
  end
  return 0
end

for q = 1, nreq do
  local n = tonumber(ARGV[8 + q])
  local first_row, first_pos = row, pos
  local refused = 0
  local done = {}
  for i = 1, n do
    local new = refused == 0
    if new and ARGV[pos] == '1' then
      new = redis.call('SET', KEYS[4 + 4 * row], '1', 'NX', 'EX', ARGV[1])
    end
    if new then
      out[3 + row] = 1
      refused = apply(row, pos, done)
    else
      out[3 + row] = 0
    end
    row, pos = row + 1, pos + 11
  end
  if refused > 0 then
    -- Take back what this request's rows added, the row at fault included.
    -- A field back at 0 goes, as it was before (absent reads as 0).
    for i = 1, #done, 3 do
      local key, field = done[i], done[i + 1]
      if redis.call('HINCRBY', key, field, '-' .. done[i + 2]) == 0 then redis.call('HDEL', key, field) end
      today[key] = nil
    end
    for r = first_row, row - 1 do
      local a = first_pos + 11 * (r - first_row)
      if out[3 + r] == 1 and ARGV[a] == '1' then redis.call('DEL', KEYS[4 + 4 * r]) end
      out[3 + r] = -refused
    end
  else
    for r = first_row, row - 1 do
      if out[3 + r] == 1 then
        last = redis.call('XADD', KEYS[2], '*', 'p', ARGV[first_pos + 11 * (r - first_row) + 1])
      end
    end
  end
end
if last then redis.call('SET', KEYS[3], last) end
for j = 1, nag do
  local key = KEYS[3 + 4 * row + j]
  out[#out + 1] = today[key] or redis.call('HGET', key, 'cost') or '0'
end
return out
