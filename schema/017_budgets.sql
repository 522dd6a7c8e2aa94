-- Budgets at every level (issue 15 items 3, 4, 5): cost policies on the org,
-- an environment, a customer, a workflow and a run, beside the agent's;
-- reservations. After 016_units, whose heartbeat customer it reads.
--
-- An intent names its run, workflow and customer; its heartbeats that omit
-- one inherit the intent's (cm_hb_scopes). The same columns as 016_units
-- adds (ADD COLUMN IF NOT EXISTS).
ALTER TABLE intents
    ADD COLUMN IF NOT EXISTS run_id text,
    ADD COLUMN IF NOT EXISTS workflow text,
    ADD COLUMN IF NOT EXISTS customer text;

-- Reservations (issue 15 item 4): an intent's estimated_cost_usd is held in
-- Redis until it is spent, the intent ends or reserved_until passes; these
-- columns are what the Redis rebuild restores the open ones from.
ALTER TABLE intents
    ADD COLUMN IF NOT EXISTS estimated_cost_nanos bigint,
    ADD COLUMN IF NOT EXISTS reserved_until timestamptz,
    ADD COLUMN IF NOT EXISTS ended_at timestamptz;
-- The open reservations, for the rebuild: a partial index stays small.
CREATE INDEX IF NOT EXISTS intents_reserved ON intents (reserved_until)
    WHERE estimated_cost_nanos > 0 AND ended_at IS NULL;

-- One row per scope with a policy; the columns of cost_policies
-- (policy_row.h). scope is '' for the org, the ENV for an environment.
CREATE TABLE IF NOT EXISTS scope_policies (
    org                     text NOT NULL,
    kind                    text NOT NULL CHECK (kind IN ('org', 'env', 'customer', 'workflow', 'run')),
    scope                   text NOT NULL,
    max_intents_per_hour    bigint,
    max_intents_per_day     bigint,
    max_cost_per_hour       bigint,
    max_cost_per_day        bigint,
    max_cost_per_month      bigint,
    action_on_breach        text NOT NULL CHECK (action_on_breach IN ('block', 'alert')),
    alert_thresholds        text NOT NULL,
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org, kind, scope)
);

-- A scope's cost per hour, day and month: what Redis mirrors (as absolute
-- totals, merged as maxima) for admission. Summed by the rollup worker off
-- the acknowledged path (server/rollup.c), so it lags the 202 by one batch.
-- numeric: an org's total is a sum of many capped agents, and an overflow
-- here would stop the worker for everyone.
CREATE TABLE IF NOT EXISTS rollup_scope (
    org         text NOT NULL,
    kind        text NOT NULL,
    scope       text NOT NULL,
    grain       text NOT NULL CHECK (grain IN ('h', 'd', 'm')),
    bucket      timestamptz NOT NULL,
    cost_nanos  numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (org, kind, scope, grain, bucket)
);
-- The Redis rebuild reads the current windows of every scope.
CREATE INDEX IF NOT EXISTS rollup_scope_bucket ON rollup_scope (bucket);

-- The scopes a heartbeat's cost counts in besides its agent: its org and
-- environment always, the run, workflow and customer it names or else its
-- intent names (as cm_hb_units of 016 attributes them). One definition for
-- the worker and the backfill below.
CREATE OR REPLACE FUNCTION cm_hb_scopes(address text, intent_id text, run_id text, workflow text, customer text)
    RETURNS TABLE (kind text, scope text) LANGUAGE sql STABLE
    AS $$
    SELECT u.kind, u.scope FROM (SELECT 1) one
    LEFT JOIN LATERAL (SELECT i.run_id, i.workflow, i.customer FROM intents i
        WHERE $2 IS NOT NULL AND i.org = split_part($1, '/', 3) AND i.intent_id = $2
        ORDER BY i.seq LIMIT 1) i ON true
    CROSS JOIN LATERAL (VALUES ('org', ''), ('env', split_part($1, '/', 4)), ('run', coalesce($3, i.run_id)),
        ('workflow', coalesce($4, i.workflow)), ('customer', coalesce($5, i.customer))) AS u(kind, scope)
    WHERE u.scope IS NOT NULL
    $$;

-- A batch's cost per scope and window (server/rollup.c inserts it into
-- rollup_scope): the raw rows with lo <= xid < hi as the calling
-- statement's snapshot sees them (STABLE: the same snapshot). A function
-- with jit off because the planner's estimates for the tail are meaningless
-- (cm_rollup_tail() is "1000 rows", joined here per scope and grain), and
-- the JIT compilation they would trigger takes seconds for a batch of a few
-- rows: the scopes' cost in Redis would lag by that much. ROWS: a batch is
-- the last half second or so of rows, and the caller's plan (and whether
-- it is JIT-compiled) follows this estimate.
CREATE OR REPLACE FUNCTION cm_scope_batch(lo bigint, hi bigint)
    RETURNS TABLE (org text, kind text, scope text, grain text, bucket timestamptz, cost_nanos numeric)
    LANGUAGE sql STABLE ROWS 100 SET jit = off
    AS $$
    SELECT split_part(s.address, '/', 3), u.kind, u.scope, g.grain, date_trunc(g.unit, s.ts, 'UTC'),
           sum(s.cost_nanos)
    FROM cm_rollup_tail() s
    CROSS JOIN LATERAL cm_hb_scopes(s.address, s.intent_id, s.run_id, s.workflow, s.customer) u
    CROSS JOIN (VALUES ('h', 'hour'), ('d', 'day'), ('m', 'month')) AS g(grain, unit)
    WHERE s.xid >= $1 AND s.xid < $2 AND s.cost_nanos > 0
    GROUP BY 1, 2, 3, 4, 5
    $$;

-- The rollup worker's statement is planned from the estimates of the tail
-- (1000 rows by default) and of the one-row watermark table (about 1,800
-- rows while it has no statistics): with rollup_scope's CTE the plan's cost
-- passed jit_above_cost, and compiling it took seconds for a batch of a few
-- rows, which would make the scopes' cost in Redis lag by that much. A
-- batch is the last half second or so of rows.
ALTER FUNCTION cm_rollup_tail() ROWS 100;
ANALYZE rollup_watermark;

-- This month's rows already below the watermark, summed once (older
-- windows bind no budget): the lock keeps the worker out until this
-- migration commits.
SELECT lo FROM rollup_watermark FOR UPDATE;
INSERT INTO rollup_scope AS r (org, kind, scope, grain, bucket, cost_nanos)
SELECT split_part(h.address, '/', 3), u.kind, u.scope, g.grain, date_trunc(g.unit, h.ts, 'UTC'), sum(h.cost_nanos)
FROM heartbeats h
CROSS JOIN LATERAL cm_hb_scopes(h.address, h.intent_id, h.run_id, h.workflow, h.customer) u
CROSS JOIN (VALUES ('h', 'hour'), ('d', 'day'), ('m', 'month')) AS g(grain, unit)
WHERE (h.xid IS NULL OR h.xid < (SELECT lo FROM rollup_watermark))
  AND h.ts >= date_trunc('month', now(), 'UTC') - interval '1 month'
GROUP BY 1, 2, 3, 4, 5
ON CONFLICT DO NOTHING;
