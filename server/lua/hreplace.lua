-- HREPLACE: sets some fields of a hash and deletes others, atomically.
-- KEYS: 1 the hash.
-- ARGV: 1 the number n of field/value pairs to set, then the pairs, then
-- the fields to delete.
-- Answers n.
local n = tonumber(ARGV[1])
for i = 1, n do redis.call('HSET', KEYS[1], ARGV[2 * i], ARGV[2 * i + 1]) end
for i = 2 + 2 * n, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
return n
