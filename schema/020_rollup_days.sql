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
-- Indexes of the rows still to fold only (hour rows; for intents and units
-- those not at 00:00), so a run finds its batch without walking the years of
-- folded days. The rollup upserts never change bucket or grain, so they stay
-- HOT updates; an index entry is added per new hour row.
SET LOCAL lock_timeout = '5s';
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
CREATE OR REPLACE FUNCTION cm_rollup_fold_hours(tab text, keys text, cutoff timestamptz, batch int) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    sums text[] := ARRAY['cost_nanos', 'tokens_in', 'tokens_out', 'tokens_cached', 'llm_calls', 'tool_calls',
                         'heartbeats', 'revenue_nanos', 'refund_nanos', 'external_nanos', 'fees_nanos'];
    n bigint;
BEGIN
    EXECUTE format(
        'WITH gone AS (DELETE FROM %1$I WHERE ctid = ANY (ARRAY(SELECT ctid FROM %1$I WHERE bucket < $1'
        ' AND extract(hour FROM bucket AT TIME ZONE ''UTC'') <> 0 LIMIT $2)) RETURNING *),'
        ' folded AS (INSERT INTO %1$I AS r (%2$s, bucket, %3$s)'
        ' SELECT %2$s, date_trunc(''day'', bucket, ''UTC''), %4$s FROM gone'
        ' GROUP BY %2$s, date_trunc(''day'', bucket, ''UTC'')'
        ' ON CONFLICT (%2$s, bucket) DO UPDATE SET %5$s RETURNING 1)'
        ' SELECT count(*) FROM gone',
        tab, keys, array_to_string(sums, ', '),
        (SELECT string_agg(format('sum(%I)', c), ', ') FROM unnest(sums) c),
        (SELECT string_agg(format('%1$I = r.%1$I + excluded.%1$I', c), ', ') FROM unnest(sums) c))
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
-- batch, so there is likely more to fold now.
CREATE OR REPLACE FUNCTION cm_rollup_fold(hours_days int, batch int, OUT summary text, OUT more boolean)
LANGUAGE plpgsql AS $fn$
DECLARE
    cutoff timestamptz := date_trunc('day', now(), 'UTC') - make_interval(days => hours_days + 1);
    agents bigint;
    scopes bigint;
    intents bigint;
    units bigint;
BEGIN
    more := false;
    IF NOT pg_try_advisory_xact_lock(7366003) THEN
        summary := 'busy';
        RETURN;
    END IF;
    SET LOCAL lock_timeout = '200ms';
    DELETE FROM rollup_agent WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM rollup_agent WHERE grain = 'h' AND bucket < cutoff LIMIT batch));
    GET DIAGNOSTICS agents = ROW_COUNT;
    DELETE FROM rollup_scope WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM rollup_scope WHERE grain = 'h' AND bucket < cutoff LIMIT batch));
    GET DIAGNOSTICS scopes = ROW_COUNT;
    intents := cm_rollup_fold_hours('rollup_intent', 'address, intent_id', cutoff, batch);
    units := cm_rollup_fold_hours('rollup_unit', 'org, kind, unit, address', cutoff, batch);
    more := greatest(agents, scopes, intents, units) >= batch;
    summary := format('agent=%s scope=%s intent=%s unit=%s', agents, scopes, intents, units);
END
$fn$;
