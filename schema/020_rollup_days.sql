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
    WITH gone AS (DELETE FROM rollup_intent WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM rollup_intent WHERE bucket < cutoff
            AND extract(hour FROM bucket AT TIME ZONE 'UTC') <> 0 LIMIT batch)) RETURNING *),
        folded AS (INSERT INTO rollup_intent AS r (address, intent_id, bucket, cost_nanos, tokens_in, tokens_out,
                tokens_cached, llm_calls, tool_calls, heartbeats, revenue_nanos, refund_nanos, external_nanos,
                fees_nanos)
            SELECT address, intent_id, date_trunc('day', bucket, 'UTC'), sum(cost_nanos), sum(tokens_in),
                sum(tokens_out), sum(tokens_cached), sum(llm_calls), sum(tool_calls), sum(heartbeats),
                sum(revenue_nanos), sum(refund_nanos), sum(external_nanos), sum(fees_nanos)
            FROM gone GROUP BY 1, 2, 3
            ON CONFLICT (address, intent_id, bucket) DO UPDATE SET
                cost_nanos = r.cost_nanos + excluded.cost_nanos, tokens_in = r.tokens_in + excluded.tokens_in,
                tokens_out = r.tokens_out + excluded.tokens_out,
                tokens_cached = r.tokens_cached + excluded.tokens_cached,
                llm_calls = r.llm_calls + excluded.llm_calls, tool_calls = r.tool_calls + excluded.tool_calls,
                heartbeats = r.heartbeats + excluded.heartbeats,
                revenue_nanos = r.revenue_nanos + excluded.revenue_nanos,
                refund_nanos = r.refund_nanos + excluded.refund_nanos,
                external_nanos = r.external_nanos + excluded.external_nanos,
                fees_nanos = r.fees_nanos + excluded.fees_nanos
            RETURNING 1)
    SELECT count(*) INTO intents FROM gone;
    WITH gone AS (DELETE FROM rollup_unit WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM rollup_unit WHERE bucket < cutoff
            AND extract(hour FROM bucket AT TIME ZONE 'UTC') <> 0 LIMIT batch)) RETURNING *),
        folded AS (INSERT INTO rollup_unit AS r (org, kind, unit, address, bucket, cost_nanos, tokens_in,
                tokens_out, tokens_cached, llm_calls, tool_calls, heartbeats, revenue_nanos, refund_nanos,
                external_nanos, fees_nanos)
            SELECT org, kind, unit, address, date_trunc('day', bucket, 'UTC'), sum(cost_nanos), sum(tokens_in),
                sum(tokens_out), sum(tokens_cached), sum(llm_calls), sum(tool_calls), sum(heartbeats),
                sum(revenue_nanos), sum(refund_nanos), sum(external_nanos), sum(fees_nanos)
            FROM gone GROUP BY 1, 2, 3, 4, 5
            ON CONFLICT (org, kind, unit, address, bucket) DO UPDATE SET
                cost_nanos = r.cost_nanos + excluded.cost_nanos, tokens_in = r.tokens_in + excluded.tokens_in,
                tokens_out = r.tokens_out + excluded.tokens_out,
                tokens_cached = r.tokens_cached + excluded.tokens_cached,
                llm_calls = r.llm_calls + excluded.llm_calls, tool_calls = r.tool_calls + excluded.tool_calls,
                heartbeats = r.heartbeats + excluded.heartbeats,
                revenue_nanos = r.revenue_nanos + excluded.revenue_nanos,
                refund_nanos = r.refund_nanos + excluded.refund_nanos,
                external_nanos = r.external_nanos + excluded.external_nanos,
                fees_nanos = r.fees_nanos + excluded.fees_nanos
            RETURNING 1)
    SELECT count(*) INTO units FROM gone;
    more := greatest(agents, scopes, intents, units) >= batch;
    summary := format('agent=%s scope=%s intent=%s unit=%s', agents, scopes, intents, units);
END
$fn$;
