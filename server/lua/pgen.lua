-- PGEN: the next generation of policy and kill-flag writes (hreplace.lua),
-- taken by a rebuild pass before it reads them from PostgreSQL.
-- KEYS: 1 the generation counter (cm:pg). Answers the generation.
return redis.call('INCR', KEYS[1])
