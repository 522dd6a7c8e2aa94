-- RELEASE: gives back what is left of reservations (admit.lua writes them):
-- one intent's, when it ends or its admission is undone, or every one whose
-- deadline has passed. Each counter goes down by what is left at its level
-- and the reservation goes, in one step, so a reservation is released once
-- whoever asks.
-- KEYS: 1 the reservations by deadline (zset), 2 one reservation hash (or
-- any name, for the due ones).
-- ARGV: 1 "one" or "due"; for "one", 2 the agent that may end it ("" for
-- any); for "due", 2 now (Unix seconds), 3 at most how many.
-- Answers, per reservation released: org, intent id, agent, what was left
-- at the agent level (nano-dollars); for "one", {} when there is none and
-- {"other"} when another agent's.
local function release(key)
  local r = redis.call('HMGET', key, 'a', 's', 'ka', 'ks', 'org', 'id', 'agent')
  if r[3] and r[1] ~= '0' then redis.call('DECRBY', r[3], r[1]) end
  if r[4] and r[2] ~= '0' then
    for k in string.gmatch(r[4], '[^\n]+') do redis.call('DECRBY', k, r[2]) end
  end
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], key)
  return {r[5] or '', r[6] or '', r[7] or '', r[1] or '0'}
end
local out = {}
if ARGV[1] == 'one' then
  local agent = redis.call('HGET', KEYS[2], 'agent')
  if not agent then return out end
  if ARGV[2] ~= '' and agent ~= ARGV[2] then return {'other'} end
  return release(KEYS[2])
end
for _, key in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))) do
  for _, v in ipairs(release(key)) do out[#out + 1] = v end
end
return out
