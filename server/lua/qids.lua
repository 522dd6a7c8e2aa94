-- QIDS: the queue's last appended id and the last one committed to
-- PostgreSQL ("" when none): a read waits until the second reaches the first
-- as it was when the read came.
-- KEYS: 1 the last id, 2 the done id.
return {redis.call('GET', KEYS[1]) or '', redis.call('GET', KEYS[2]) or ''}
