-- Rollups advanced off the acknowledged path (server/rollup.c).
--
-- A group commit writes the raw rows and the agent's own hour/day/month
-- rows (Redis mirrors those and policy checks read them before the reply).
-- Every other grouping (intents now; runs, sessions, workflows, customers,
-- models next) is summed later, in batches, by one replica at a time, from
-- the raw rows past a watermark. So a new grouping adds no work per row to
-- the statement a 202 waits for.
--
-- The watermark is a transaction id, not `seq`: sequence values are taken
-- before commit, so two writers commit out of order and a `seq` watermark
-- would skip a row committed late. Every transaction below the oldest one
-- still running (pg_snapshot_xmin) has ended, so the rows below that point
-- are final: the worker sums [lo, xmin) and moves lo to xmin, in one
-- transaction. `xid` is a bigint (xid8 as a number: 64 bits with the epoch,
-- never wraps) because BRIN has no operator class for xid8, and a BRIN index
-- costs a few bytes per thousand rows where a btree would cost ~20 per row.
--
-- Rows from before this migration have xid NULL and are already counted in
-- rollup_intent, which starts as a copy of rollup_intent_hour. The old table
-- is left to binaries of the previous release (it stays as they left it
-- and is dropped by a later release; see docs/operations.md).
ALTER TABLE heartbeats ADD COLUMN IF NOT EXISTS xid bigint;
ALTER TABLE heartbeats ALTER COLUMN xid SET DEFAULT pg_current_xact_id()::text::bigint;
CREATE INDEX IF NOT EXISTS heartbeats_xid ON heartbeats USING brin (xid) WITH (autosummarize = on);

CREATE TABLE IF NOT EXISTS rollup_watermark (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    lo      bigint NOT NULL,            -- every row with xid < lo is in the rollups
    moved_at timestamptz NOT NULL DEFAULT now()
);
-- A row gets an xid only once this migration has committed (its ALTER
-- TABLE waits for every writer before it and holds the rest back), from a
-- transaction still running now or started later: at or above this xmin.
INSERT INTO rollup_watermark (lo) VALUES (pg_snapshot_xmin(pg_current_snapshot())::text::bigint)
    ON CONFLICT DO NOTHING;

-- The raw rows past the watermark, as the calling statement's snapshot sees
-- them (STABLE functions share it), so a read that adds them to a rollup
-- sees both sides of any move of the watermark at once. A function because
-- the planner would not pick the BRIN index on its own: its cost model
-- reads the column's physical correlation, which the NULL xids of the rows
-- from before this migration hide, and a sequential scan of the whole table
-- for the few rows of the last second is the one plan never wanted here.
-- jit off: the estimates it would be triggered by are the wrong ones.
CREATE OR REPLACE FUNCTION cm_rollup_lo() RETURNS bigint
    LANGUAGE sql STABLE AS 'SELECT lo FROM rollup_watermark';
CREATE OR REPLACE FUNCTION cm_rollup_tail() RETURNS SETOF heartbeats
    LANGUAGE sql STABLE SET enable_seqscan = off SET jit = off
    AS 'SELECT * FROM heartbeats WHERE xid >= cm_rollup_lo()';

-- Same columns and key as the table it replaces (an hour per intent).
CREATE TABLE IF NOT EXISTS rollup_intent (LIKE rollup_intent_hour INCLUDING ALL);
INSERT INTO rollup_intent SELECT * FROM rollup_intent_hour ON CONFLICT DO NOTHING;
