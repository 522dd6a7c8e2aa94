-- RESTORE: brings back an open reservation (admit.lua's hash) that Redis
-- lost, from PostgreSQL's intents: what is left of its estimate is held
-- again at every level. A reservation Redis still has is left alone, so a
-- rebuild after a reconnect that lost nothing changes nothing.
-- KEYS: 1 the reservation hash, 2 the reservations by deadline (zset), then
-- each level's reserved counter (the agent's first).
-- ARGV: 1 what is left (nano-dollars), 2 the deadline, 3 the agent, 4 the
-- org, 5 the intent id.
-- Answers 1 when restored, 0 when Redis had it.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local ks = {}
for i = 3, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[1])
  if i > 3 then ks[#ks + 1] = KEYS[i] end
end
redis.call('HSET', KEYS[1], 'a', ARGV[1], 's', #ks > 0 and ARGV[1] or '0', 'ka', KEYS[3],
  'ks', table.concat(ks, '\n'), 'agent', ARGV[3], 'org', ARGV[4], 'id', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[2], KEYS[1])
return 1
