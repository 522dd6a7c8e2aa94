-- DRAIN: the queue's oldest entries, for the replica holding the persister's
-- lease (one at a time drains; PostgreSQL's persist_mark keeps a batch from
-- being stored twice even if two did).
-- KEYS: 1 the queue, 2 the lease.
-- ARGV: 1 this replica's name, 2 the lease's length in ms, 3 most entries.
-- Answers {the queue's length, id, text, id, text, ...} oldest first; no
-- entries when another replica holds the lease.
local out = {redis.call('XLEN', KEYS[1])}
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return out end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[3])) do
  out[#out + 1] = e[1]
  out[#out + 1] = e[2][2]
end
return out
