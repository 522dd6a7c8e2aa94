-- Hour rows folded into days past COSTMESH_ROLLUP_HOURS_DAYS (server/fold.c),
-- so that rollups kept for years cost a row per day, not 24.
--
-- rollup_agent and rollup_scope have day rows beside their hours (written
-- in the same statement), so their old hour rows are only deleted.
-- rollup_intent and rollup_unit have hours only: an old day's hour rows are
-- added into the row of its first hour (00:00 UTC), which from then on holds
-- the whole day, and deleted. A sum over whole days is the same before and
-- after, and a read sees one or the other (one statement, one snapshot).
-- Reads of a window that starts before the hours kept answer at day grain
-- (server/api.c), so they never ask for an hour that may be folded.
--
-- rollup_fold.hours_until records how far hours may have been folded (Unix
-- seconds; only ever raised), so that a replica started with a smaller
-- setting, or 0, still reads those days at day grain.
--
-- Indexes of the rows still to fold only (hour rows; for intents and units
-- those not at 00:00), so a run finds its batch without walking the years of
-- folded days. The rollup upserts never change bucket or grain, so they stay
-- HOT updates; an index entry is added per new hour row.
SET LOCAL lock_timeout = '5s';
CREATE TABLE IF NOT EXISTS rollup_fold (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    hours_until bigint NOT NULL DEFAULT 0   -- every hour row before it may be folded
);
INSERT INTO rollup_fold DEFAULT VALUES ON CONFLICT DO NOTHING;
CREATE INDEX IF NOT EXISTS rollup_agent_hours ON rollup_agent (bucket) WHERE grain = 'h';
CREATE INDEX IF NOT EXISTS rollup_scope_hours ON rollup_scope (bucket) WHERE grain = 'h';
CREATE INDEX IF NOT EXISTS rollup_intent_hours ON rollup_intent (bucket)
    WHERE extract(hour FROM bucket AT TIME ZONE 'UTC') <> 0;
CREATE INDEX IF NOT EXISTS rollup_unit_hours ON rollup_unit (bucket)
    WHERE extract(hour FROM bucket AT TIME ZONE 'UTC') <> 0;

-- Folds at most `batch` hour rows of rollup_intent or rollup_unit (tab; keys:
-- its key without bucket) older than cutoff into their day's 00:00 row, in
-- one statement. Both tables have the same sums, listed once here. Returns
-- the rows folded.
--
-- The counts are bigint. Rows written within the caps of 007 sum to far less
-- than bigint's maximum over a day, but rows from before the caps may hold
-- anything up to it, and a sum past it would fail every run from then on.
-- So a row is folded only when no count of it exceeds 1/48 of the maximum
-- and no count of its day's 00:00 row exceeds half of it: a day has at most
-- 23 other hour rows per key, so the sum fits. A row left unfolded stays an
-- hour row inside a day, which a read at day grain sums all the same.
CREATE OR REPLACE FUNCTION cm_rollup_fold_hours(tab text, keys text[], cutoff timestamptz, batch int) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    counts text[] := ARRAY['cost_nanos', 'tokens_in', 'tokens_out', 'tokens_cached', 'llm_calls', 'tool_calls',
                           'heartbeats'];
    sums text[] := counts || ARRAY['revenue_nanos', 'refund_nanos', 'external_nanos', 'fees_nanos'];
    cols text := (SELECT string_agg(format('%I', k), ', ') FROM unnest(keys) k);
    n bigint;
BEGIN
    EXECUTE format(
        'WITH gone AS (DELETE FROM %1$I WHERE ctid = ANY (ARRAY(SELECT t.ctid FROM %1$I t WHERE t.bucket < $1'
        ' AND extract(hour FROM t.bucket AT TIME ZONE ''UTC'') <> 0 AND greatest(%6$s) <= 9223372036854775807 / 48'
        ' AND NOT EXISTS (SELECT 1 FROM %1$I d WHERE %7$s AND d.bucket = date_trunc(''day'', t.bucket, ''UTC'')'
        ' AND greatest(%8$s) > 9223372036854775807 / 2) LIMIT $2)) RETURNING *),'
        ' folded AS (INSERT INTO %1$I AS r (%2$s, bucket, %3$s)'
        ' SELECT %2$s, date_trunc(''day'', bucket, ''UTC''), %4$s FROM gone'
        ' GROUP BY %2$s, date_trunc(''day'', bucket, ''UTC'')'
        ' ON CONFLICT (%2$s, bucket) DO UPDATE SET %5$s RETURNING 1)'
        ' SELECT count(*) FROM gone',
        tab, cols, array_to_string(sums, ', '),
        (SELECT string_agg(format('sum(%I)', c), ', ') FROM unnest(sums) c),
        (SELECT string_agg(format('%1$I = r.%1$I + excluded.%1$I', c), ', ') FROM unnest(sums) c),
        (SELECT string_agg(format('t.%I', c), ', ') FROM unnest(counts) c),
        (SELECT string_agg(format('d.%1$I = t.%1$I', k), ' AND ') FROM unnest(keys) k),
        (SELECT string_agg(format('d.%I', c), ', ') FROM unnest(counts) c))
        INTO n USING cutoff, batch;
    RETURN n;
END
$fn$;

-- One batch of at most `batch` rows per table, for the hours of the days that
-- ended more than hours_days + 1 days ago (the extra day: a read decides its
-- grain by its own clock, which may be behind PostgreSQL's). One replica at a
-- time (the advisory lock; 'busy' to the others). lock_timeout: a row the
-- rollup worker holds (a late heartbeat's hour) makes the run give up rather
-- than wait, and it is tried again at the next run; a row updated while the
-- run waited no longer has the ctid it was chosen by, so it is left for the
-- next run instead of folded with its old sums. more: a table gave a full
-- batch, so there is likely more to fold now. hours_until: as recorded, after
-- this run; hours_days 0 folds nothing and only reads it.
CREATE OR REPLACE FUNCTION cm_rollup_fold(hours_days int, batch int, OUT summary text, OUT more boolean,
                                          OUT hours_until bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
    cutoff timestamptz := date_trunc('day', now(), 'UTC') - make_interval(days => hours_days + 1);
    agents bigint;
    scopes bigint;
    intents bigint;
    units bigint;
BEGIN
    more := false;
    SELECT f.hours_until INTO hours_until FROM rollup_fold f;
    IF hours_days = 0 THEN
        summary := 'off';
        RETURN;
    END IF;
    IF NOT pg_try_advisory_xact_lock(7366003) THEN
        summary := 'busy';
        RETURN;
    END IF;
    SET LOCAL lock_timeout = '200ms';
    -- Recorded before any row is folded, in the same transaction: a read at
    -- day grain is exact whether its days are folded yet or not.
    UPDATE rollup_fold f SET hours_until = greatest(f.hours_until, extract(epoch FROM cutoff)::bigint)
        RETURNING f.hours_until INTO hours_until;
    DELETE FROM rollup_agent WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM rollup_agent WHERE grain = 'h' AND bucket < cutoff LIMIT batch));
    GET DIAGNOSTICS agents = ROW_COUNT;
    DELETE FROM rollup_scope WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM rollup_scope WHERE grain = 'h' AND bucket < cutoff LIMIT batch));
    GET DIAGNOSTICS scopes = ROW_COUNT;
    intents := cm_rollup_fold_hours('rollup_intent', ARRAY['address', 'intent_id'], cutoff, batch);
    units := cm_rollup_fold_hours('rollup_unit', ARRAY['org', 'kind', 'unit', 'address'], cutoff, batch);
    more := greatest(agents, scopes, intents, units) >= batch;
    summary := format('agent=%s scope=%s intent=%s unit=%s', agents, scopes, intents, units);
END
$fn$;
