-- Benchmark only (bench/run.sh, phase d): what a heartbeat's acknowledged
-- step would cost if Redis, not a PostgreSQL commit, were the durable point
-- (issue 13's candidate: appendfsync always, a persister draining a stream
-- into PostgreSQL). Not used by costmeshd. One call: the short-lived dedupe
-- mark, the agent's three windows, the row queued for the persister.
-- ARGV: 1 the heartbeat id, 2 the agent number.
local id = ARGV[1]
if not redis.call('SET', 'cm:bd:id:' .. id, '1', 'NX', 'EX', '600') then return 0 end
local a = 'agent://default/bench/a' .. ARGV[2]
for _, g in ipairs({'h', 'd', 'm'}) do
  redis.call('HINCRBY', 'cm:bd:w:' .. a .. ':' .. g, 'cost', 3000000)
end
redis.call('XADD', 'cm:bd:q', '*', 'agent', a, 'id', id, 'ts', '1764500000', 'cost', '3000000',
           'tokens_in', '2100', 'tokens_out', '850', 'llm_calls', '4')
return 1
