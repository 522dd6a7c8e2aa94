-- QFLOOR: the queue numbers its next entries past an id (the last entry
-- PostgreSQL holds), unless it already does. XADD numbers an entry past the
-- stream's last id and past the clock; a Redis that lost the stream (a flush,
-- a failover to a replica that never had it) on a host whose clock is behind
-- would number new entries at or below the persister's mark, which would
-- take them for entries already stored.
-- KEYS: 1 the queue. ARGV: 1 the id "ms-seq".
if redis.call('EXISTS', KEYS[1]) == 0 then
  -- An empty stream whose last id is the mark: one entry, trimmed at once.
  redis.call('XADD', KEYS[1], 'MAXLEN', '0', ARGV[1], 'p', '')
  return 1
end
-- Refused (an error) when the stream already holds or numbered past it.
redis.pcall('XSETID', KEYS[1], ARGV[1])
return 1
