-- The rollup tail compares each row with the watermark read once, not with a
-- function called per row.
--
-- cm_rollup_tail() read the raw rows with xid >= cm_rollup_lo(). Through the
-- BRIN index on xid every row of a block range that matches is checked again
-- (the index is lossy), and the ranges written since autovacuum last
-- summarized the index all match: under load that is tens of thousands of
-- rows, each calling cm_rollup_lo(), a SQL function. 35,000 such rows made
-- one tail read take 200 ms, and an agent's spend reads the tail three times
-- (make bench: 16 clients polling spend got 9 answers a second). A scalar
-- subquery is evaluated once per statement and its value is what both the
-- index scan and the recheck compare with: 10 ms for the same rows. Same
-- rows in, same snapshot, so replies are as exact as before.
CREATE OR REPLACE FUNCTION cm_rollup_tail() RETURNS SETOF heartbeats
    LANGUAGE sql STABLE ROWS 100 SET enable_seqscan = off SET jit = off
    AS 'SELECT * FROM heartbeats WHERE xid >= (SELECT lo FROM rollup_watermark)';

-- The tail's block ranges summarized as the worker moves past them. A BRIN
-- range is summarized by autovacuum once it is full, at autovacuum's next
-- round (autovacuum_naptime, a minute), and every unsummarized range matches
-- any scan: under load every tail read, and so every spend poll, read the
-- whole last minute of heartbeats. The worker's batch now summarizes the new
-- full ranges of today's and yesterday's partitions (the only ones still
-- written), so a read scans at most the range being filled and the rows
-- since the last batch. Summarizing takes a lock a running VACUUM of the
-- partition holds: it waits 20 ms at most and leaves the range to the next
-- batch (or to autovacuum). Returns the ranges summarized.
CREATE OR REPLACE FUNCTION cm_tail_summarize() RETURNS bigint
    LANGUAGE plpgsql VOLATILE SET lock_timeout = '20ms'
    AS $$
DECLARE
    ix regclass;
    n bigint := 0;
BEGIN
    FOR ix IN SELECT i.indexrelid::regclass FROM pg_index i
              JOIN pg_partition_tree('heartbeats_xid') t ON t.relid = i.indexrelid
              WHERE i.indrelid IN (to_regclass(format('heartbeats_%s', to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD'))),
                                   to_regclass(format('heartbeats_%s',
                                                      to_char(now() AT TIME ZONE 'UTC' - interval '1 day', 'YYYYMMDD'))))
    LOOP
        BEGIN
            n := n + brin_summarize_new_values(ix);
        EXCEPTION WHEN lock_not_available THEN
            NULL;
        END;
    END LOOP;
    RETURN n;
END
$$;

-- 018's cm_rollup_units, which every move of the watermark runs (this
-- release's batch, or an older worker's through 016's trigger), summarizes
-- first.
CREATE OR REPLACE FUNCTION cm_rollup_units(lo bigint, hi bigint) RETURNS bigint LANGUAGE sql VOLATILE
    AS $$
    SELECT cm_tail_summarize();
    SELECT cm_rollup_tree(lo, hi);
    SELECT cm_rollup_units_016(lo, hi)
    $$;

-- Nothing calls it any more (only the tail did).
DROP FUNCTION IF EXISTS cm_rollup_lo();
