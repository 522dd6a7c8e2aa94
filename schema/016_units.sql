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

-- A fence for the rolling upgrade: the worker of this release moves the
-- watermark and bumps gen in the same UPDATE; a worker of the previous
-- release, which does not know rollup_unit, moves it without, and is
-- refused (its batch rolls back and is logged), so no row passes the
-- watermark without being counted in rollup_unit.
ALTER TABLE rollup_watermark ADD COLUMN IF NOT EXISTS gen bigint NOT NULL DEFAULT 0;
CREATE OR REPLACE FUNCTION cm_rollup_fence() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.gen = OLD.gen THEN
        RAISE EXCEPTION 'the rollup worker of a release before migration 016 may not move the watermark'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS rollup_fence ON rollup_watermark;
CREATE TRIGGER rollup_fence BEFORE UPDATE ON rollup_watermark FOR EACH ROW EXECUTE FUNCTION cm_rollup_fence();

-- The rows already below the watermark, summed once: the lock keeps every
-- worker out until this migration commits, and the fence keeps out the
-- previous release's after it.
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
