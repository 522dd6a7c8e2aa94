-- Spend by run, session, workflow and customer, and money in and out
-- (issue 14 items 1, 2 and 5).
--
-- Heartbeats gain raw columns only: the customer, and the money beside the
-- model cost (revenue, external spend such as tools and paid APIs, fees,
-- refunds). Money is never negative in a heartbeat: a refund is its own
-- non-negative metric, subtracted from revenue, so every delta stays >= 0
-- as the caps of 007 assume. Known margin = revenue - refunds - cost -
-- external spend - fees.
SET LOCAL lock_timeout = '5s';

ALTER TABLE heartbeats
    ADD COLUMN IF NOT EXISTS customer text,
    ADD COLUMN IF NOT EXISTS revenue_nanos bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS refund_nanos bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS external_nanos bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS fees_nanos bigint NOT NULL DEFAULT 0;

-- An intent's attributes, inherited field by field by its heartbeats that
-- omit them. Resolved by the rollup worker (and by a read's tail), never
-- by the acknowledged statement: see cm_hb_units below.
ALTER TABLE intents
    ADD COLUMN IF NOT EXISTS run_id text,
    ADD COLUMN IF NOT EXISTS session_id text,
    ADD COLUMN IF NOT EXISTS workflow text,
    ADD COLUMN IF NOT EXISTS customer text;

-- The money columns of rollups are numeric: they are summed off the
-- acknowledged path, where no cap can refuse a request, and a bigint
-- overflow there would stop the worker for everyone. Cost and counts stay
-- bigint: each rollup row is a part of an agent's capped hour row.
ALTER TABLE rollup_intent
    ADD COLUMN IF NOT EXISTS revenue_nanos numeric NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS refund_nanos numeric NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS external_nanos numeric NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS fees_nanos numeric NOT NULL DEFAULT 0;

-- One table for every unit: kind 'agent' (unit = the address: the agent's
-- money in and out, which rollup_agent on the acknowledged path does not
-- carry), 'run', 'session', 'workflow', 'customer'. A unit spans agents
-- (a run's sub-agents are other agents), so a row is per unit, agent and
-- hour: the unit's spend sums its agents, an agent's breakdown sums its
-- units, and hour buckets give every window and series.
CREATE TABLE IF NOT EXISTS rollup_unit (
    org             text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('agent', 'run', 'session', 'workflow', 'customer')),
    unit            text NOT NULL,
    address         text NOT NULL,
    bucket          timestamptz NOT NULL,
    cost_nanos      bigint NOT NULL DEFAULT 0,
    tokens_in       bigint NOT NULL DEFAULT 0,
    tokens_out      bigint NOT NULL DEFAULT 0,
    tokens_cached   bigint NOT NULL DEFAULT 0,
    llm_calls       bigint NOT NULL DEFAULT 0,
    tool_calls      bigint NOT NULL DEFAULT 0,
    heartbeats      bigint NOT NULL DEFAULT 0,
    revenue_nanos   numeric NOT NULL DEFAULT 0,
    refund_nanos    numeric NOT NULL DEFAULT 0,
    external_nanos  numeric NOT NULL DEFAULT 0,
    fees_nanos      numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (org, kind, unit, address, bucket)
);
-- An org's most expensive units of a kind in a window (GET /v1/mesh/top).
CREATE INDEX IF NOT EXISTS rollup_unit_top ON rollup_unit (org, kind, bucket);
-- One agent's breakdown (GET /v1/mesh/top?agent=).
CREATE INDEX IF NOT EXISTS rollup_unit_agent ON rollup_unit (address, kind, bucket);

-- The units a heartbeat counts in: its agent, and each of run, session,
-- workflow and customer that it names or, when it omits one, that its
-- intent (the org's intent of that id; ids are unique within an org, the
-- earliest row decides for older duplicates) names. One definition for the
-- worker and for a read's tail, so both attribute a row alike. A heartbeat
-- rolled up before its intent was recorded keeps what it named itself.
CREATE OR REPLACE FUNCTION cm_hb_units(address text, intent_id text, run_id text, session_id text,
                                       workflow text, customer text)
    RETURNS TABLE (kind text, unit text) LANGUAGE sql STABLE
    AS $$
    SELECT u.kind, u.unit FROM (SELECT 1) one
    LEFT JOIN LATERAL (SELECT i.run_id, i.session_id, i.workflow, i.customer FROM intents i
        WHERE $2 IS NOT NULL AND i.org = split_part($1, '/', 3) AND i.intent_id = $2
        ORDER BY i.seq LIMIT 1) i ON true
    CROSS JOIN LATERAL (VALUES ('agent', $1), ('run', coalesce($3, i.run_id)),
        ('session', coalesce($4, i.session_id)), ('workflow', coalesce($5, i.workflow)),
        ('customer', coalesce($6, i.customer))) AS u(kind, unit)
    WHERE u.unit IS NOT NULL
    $$;

-- Sums the raw rows with lo <= xid < hi into rollup_unit, and records a
-- margin_negative event (its webhook delivery queued in the same statement)
-- for each unit that earns in a UTC day (revenue that day) whose margin was
-- >= 0 before these rows and is < 0 with them; a unit with cost and no
-- revenue has no margin to watch (it would fire for every unpaid run).
-- Returns the rollup rows written. The worker calls it in its batch
-- statement, in the transaction that moves the watermark past the rows, so
-- they are counted once. It reads the range itself, through the BRIN index
-- on xid, not through cm_rollup_tail(): the watermark row may already show
-- the move. Money columns are numeric (see above); the margin "before" is
-- the rollup as this function's statement sees it, before its own upsert.
CREATE OR REPLACE FUNCTION cm_rollup_units(lo bigint, hi bigint) RETURNS bigint
    LANGUAGE sql VOLATILE SET enable_seqscan = off SET jit = off
    AS $$
    WITH attributed AS (SELECT split_part(h.address, '/', 3) AS org, u.kind, u.unit, h.address,
            date_trunc('hour', h.ts, 'UTC') AS hour, h.cost_nanos, h.tokens_in, h.tokens_out, h.tokens_cached,
            h.llm_calls, h.tool_calls, h.revenue_nanos, h.refund_nanos, h.external_nanos, h.fees_nanos,
            h.revenue_nanos - h.refund_nanos - h.cost_nanos - h.external_nanos - h.fees_nanos AS margin
        FROM heartbeats h
        CROSS JOIN LATERAL cm_hb_units(h.address, h.intent_id, h.run_id, h.session_id, h.workflow, h.customer) u
        WHERE h.xid >= lo AND h.xid < hi),
    units AS (INSERT INTO rollup_unit AS r (org, kind, unit, address, bucket, cost_nanos, tokens_in, tokens_out,
            tokens_cached, llm_calls, tool_calls, heartbeats, revenue_nanos, refund_nanos, external_nanos, fees_nanos)
        SELECT org, kind, unit, address, hour, sum(cost_nanos), sum(tokens_in), sum(tokens_out), sum(tokens_cached),
            sum(llm_calls), sum(tool_calls), count(*), sum(revenue_nanos), sum(refund_nanos), sum(external_nanos),
            sum(fees_nanos)
        FROM attributed GROUP BY 1, 2, 3, 4, 5
        ON CONFLICT (org, kind, unit, address, bucket) DO UPDATE SET
            cost_nanos = r.cost_nanos + excluded.cost_nanos, tokens_in = r.tokens_in + excluded.tokens_in,
            tokens_out = r.tokens_out + excluded.tokens_out, tokens_cached = r.tokens_cached + excluded.tokens_cached,
            llm_calls = r.llm_calls + excluded.llm_calls, tool_calls = r.tool_calls + excluded.tool_calls,
            heartbeats = r.heartbeats + excluded.heartbeats, revenue_nanos = r.revenue_nanos + excluded.revenue_nanos,
            refund_nanos = r.refund_nanos + excluded.refund_nanos,
            external_nanos = r.external_nanos + excluded.external_nanos, fees_nanos = r.fees_nanos + excluded.fees_nanos
        RETURNING 1),
    losses AS (SELECT org, kind, unit, date_trunc('day', hour, 'UTC') AS day, sum(margin) AS delta,
            sum(revenue_nanos) AS revenue
        FROM attributed GROUP BY 1, 2, 3, 4 HAVING sum(margin) < 0),
    turned AS (SELECT l.*, b.before + l.delta AS after FROM losses l CROSS JOIN LATERAL
            (SELECT coalesce(sum(r.revenue_nanos - r.refund_nanos - r.cost_nanos - r.external_nanos - r.fees_nanos), 0)
                    AS before, coalesce(sum(r.revenue_nanos), 0) AS revenue
             FROM rollup_unit r WHERE r.org = l.org AND r.kind = l.kind AND r.unit = l.unit AND r.bucket >= l.day
             AND r.bucket < l.day + interval '1 day') b
        WHERE b.before >= 0 AND b.before + l.delta < 0 AND b.revenue + l.revenue > 0),
    ev AS (INSERT INTO events (org, address, event_type, details)
        SELECT org, CASE WHEN kind = 'agent' THEN unit END, 'margin_negative',
            json_build_object('by', kind, 'id', unit, 'window', 'day',
                'from', to_char(day AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                'margin_usd', trim_scale(after / 1000000000))::jsonb
        FROM turned ORDER BY org, kind, unit, day
        RETURNING id, org),
    hooks AS (INSERT INTO webhook_deliveries (org, event_id) SELECT ev.org, ev.id FROM ev
        JOIN webhooks k ON k.org = ev.org RETURNING 1)
    SELECT count(*) FROM units
    $$;

-- The rolling upgrade (docs/operations.md): a worker of the previous
-- release still moves the watermark, summing only what it knows. This
-- release's worker bumps gen as it moves it (and sums the units itself);
-- a move without the bump is the previous release's, and the trigger sums
-- the units of the rows it passes, in its transaction. So every row is
-- counted in rollup_unit once, whichever release moved the watermark past
-- it, and the old binary keeps working (rollback included).
ALTER TABLE rollup_watermark ADD COLUMN IF NOT EXISTS gen bigint NOT NULL DEFAULT 0;
CREATE OR REPLACE FUNCTION cm_rollup_units_catch_up() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.gen = OLD.gen AND NEW.lo > OLD.lo THEN
        PERFORM cm_rollup_units(OLD.lo, NEW.lo);
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS rollup_units_catch_up ON rollup_watermark;
CREATE TRIGGER rollup_units_catch_up BEFORE UPDATE ON rollup_watermark
    FOR EACH ROW EXECUTE FUNCTION cm_rollup_units_catch_up();

-- The rows already below the watermark, summed once: the lock keeps every
-- worker out until this migration commits; the trigger covers every move
-- after it.
SELECT lo FROM rollup_watermark FOR UPDATE;
INSERT INTO rollup_unit AS r (org, kind, unit, address, bucket, cost_nanos, tokens_in, tokens_out, tokens_cached,
                              llm_calls, tool_calls, heartbeats)
SELECT split_part(h.address, '/', 3), u.kind, u.unit, h.address, date_trunc('hour', h.ts, 'UTC'), sum(h.cost_nanos),
       sum(h.tokens_in), sum(h.tokens_out), sum(h.tokens_cached), sum(h.llm_calls), sum(h.tool_calls), count(*)
FROM heartbeats h
CROSS JOIN LATERAL cm_hb_units(h.address, h.intent_id, h.run_id, h.session_id, h.workflow, h.customer) u
WHERE h.xid IS NULL OR h.xid < (SELECT lo FROM rollup_watermark)
GROUP BY 1, 2, 3, 4, 5
ON CONFLICT DO NOTHING;
