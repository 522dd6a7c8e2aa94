-- Raw heartbeats by day, so that old ones can be dropped (COSTMESH_RETENTION_DAYS)
-- a partition at a time, and the 7-day dedupe in a table of its own that holds
-- only the ids of the last 8 days.
--
-- A unique index of a partitioned table must contain the partition key, so
-- (address, hb_id) could no longer be unique across days in the raw table:
-- heartbeat_ids is the dedupe now. The group commit inserts the ids first
-- (ON CONFLICT DO NOTHING) and only the rows whose id was new go into the
-- raw table. heartbeat_ids is pruned to 8 days by cm_heartbeat_maintain().
--
-- An id is kept as the first 16 bytes of the SHA-256 of its agent and id
-- (cm_hb_key; the agent's length first, so no two pairs share a text): a
-- row of ~90 bytes with its key instead of ~210 with both texts. 128 bits
-- make an accidental collision as likely as none at all (2^64 ids before one
-- is likely), and making one on purpose needs a second preimage of SHA-256
-- for an id the victim has not sent yet.
CREATE OR REPLACE FUNCTION cm_hb_key(address text, hb_id text) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$SELECT substring(sha256(convert_to(length(address) || ':' || address || hb_id, 'UTF8')) FROM 1 FOR 16)$$;
CREATE TABLE IF NOT EXISTS heartbeat_ids (
    key         bytea PRIMARY KEY,          -- cm_hb_key(address, hb_id)
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS heartbeat_ids_age ON heartbeat_ids USING brin (received_at);
INSERT INTO heartbeat_ids (key, received_at)
    SELECT cm_hb_key(address, hb_id), received_at FROM heartbeats
    WHERE hb_id IS NOT NULL AND received_at > now() - interval '8 days'
    ON CONFLICT DO NOTHING;

-- The unpartitioned table becomes the partition of everything received until
-- the end of today (UTC), or goes away when it is empty. Its seq, primary key
-- and dedupe index go: nothing reads seq (the rollup worker reads xid), and
-- the dedupe is heartbeat_ids. Dropping a column or an index rewrites nothing.
-- ATTACH checks every row against the range: a scan, once, at this upgrade.
-- cm_rollup_tail() returns the old table's row type: it goes first.
DROP FUNCTION IF EXISTS cm_rollup_tail();
ALTER TABLE heartbeats RENAME TO heartbeats_until_012;
ALTER TABLE heartbeats_until_012 DROP CONSTRAINT IF EXISTS heartbeats_pkey;
ALTER TABLE heartbeats_until_012 DROP COLUMN IF EXISTS seq;
DROP INDEX IF EXISTS heartbeats_dedupe;
ALTER INDEX IF EXISTS heartbeats_xid RENAME TO heartbeats_until_012_xid;
CREATE TABLE heartbeats (LIKE heartbeats_until_012 INCLUDING DEFAULTS) PARTITION BY RANGE (received_at);
CREATE INDEX heartbeats_xid ON heartbeats USING brin (xid) WITH (autosummarize = on);
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM heartbeats_until_012) THEN
        EXECUTE format('ALTER TABLE heartbeats ATTACH PARTITION heartbeats_until_012 FOR VALUES FROM (MINVALUE) TO (%L)',
                       date_trunc('day', now(), 'UTC') + interval '1 day');
    ELSE
        DROP TABLE heartbeats_until_012;
    END IF;
END $$;

-- cm_rollup_tail() (dropped above) now reads the partitioned table.
CREATE FUNCTION cm_rollup_tail() RETURNS SETOF heartbeats
    LANGUAGE sql STABLE SET enable_seqscan = off SET jit = off
    AS 'SELECT * FROM heartbeats WHERE xid >= cm_rollup_lo()';

-- Partitions ahead, old partitions dropped, old ids pruned: run by one
-- replica at a time (the advisory lock; 'busy' to the others). A partition
-- is dropped only when every row in it is in the rollups (none past the
-- watermark). lock_timeout: creating or dropping a partition takes a lock on
-- the parent that a heartbeat insert waits behind, so it gives up at once
-- rather than stall ingest behind a long reader, and is tried again at the
-- next run. Returns what it did, for the log.
CREATE OR REPLACE FUNCTION cm_heartbeat_maintain(retention_days int, ahead_days int) RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    d date;
    part record;
    created int := 0;
    dropped int := 0;
    kept int := 0;
    pruned bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(7366002) THEN
        RETURN 'busy';
    END IF;
    SET LOCAL lock_timeout = '200ms';
    FOR i IN 0..ahead_days LOOP
        d := today + i;
        CONTINUE WHEN to_regclass(format('heartbeats_%s', to_char(d, 'YYYYMMDD'))) IS NOT NULL;
        BEGIN
            EXECUTE format('CREATE TABLE %I PARTITION OF heartbeats FOR VALUES FROM (%L) TO (%L)',
                           format('heartbeats_%s', to_char(d, 'YYYYMMDD')),
                           d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        EXCEPTION WHEN invalid_object_definition THEN
            NULL; -- covered by the partition from before migration 012
        END;
    END LOOP;
    IF retention_days > 0 THEN
        FOR part IN
            SELECT c.relname,
                   (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz AS upper
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'heartbeats'::regclass
        LOOP
            CONTINUE WHEN part.upper IS NULL OR part.upper > now() - make_interval(days => retention_days);
            IF EXISTS (SELECT 1 FROM cm_rollup_tail() t WHERE t.received_at < part.upper) THEN
                kept := kept + 1; -- the rollup worker has not summed all of it yet
                CONTINUE;
            END IF;
            EXECUTE format('DROP TABLE %I', part.relname);
            dropped := dropped + 1;
        END LOOP;
    END IF;
    DELETE FROM heartbeat_ids WHERE received_at < now() - interval '8 days';
    GET DIAGNOSTICS pruned = ROW_COUNT;
    RETURN format('created=%s dropped=%s kept=%s ids_pruned=%s', created, dropped, kept, pruned);
END
$fn$;
SELECT cm_heartbeat_maintain(0, 14);
