-- HREPLACE: sets some fields of a policy hash and deletes others,
-- atomically, unless a newer change wrote them first.
-- KEYS: 1 the hash, 2 the generation counter of such writes (cm:pg).
-- ARGV: 1 the field that marks the hash's last change of this kind (the
-- policy's fields and the kill flag are written apart, each with its own
-- mark), 2 "0" for a change (from the API: it takes the next generation
-- and marks the hash with it), or the generation a rebuild pass took
-- before it read PostgreSQL (pgen.lua): a hash marked later holds a change
-- newer than what the pass read, and is left as it is; 3 the number n of
-- field/value pairs to set, then the pairs, then the fields to delete.
-- Answers n, or -1 when left as it is.
local mark, since, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if since == 0 then
  redis.call('HSET', KEYS[1], mark, redis.call('INCR', KEYS[2]))
elseif tonumber(redis.call('HGET', KEYS[1], mark) or '0') > since then
  return -1
end
for i = 1, n do redis.call('HSET', KEYS[1], ARGV[2 + 2 * i], ARGV[3 + 2 * i]) end
for i = 4 + 2 * n, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
return n
