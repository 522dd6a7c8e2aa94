-- The delegation tree and outcomes (issue 14 items 3 and 4). After
-- 017_budgets, whose intents columns (run, workflow, customer, the
-- reservation's) it leaves alone.
--
-- Intents form a tree through parent_intent_id. An intent's parent is said
-- by its intents row (POST /v1/mesh/intents names it) or by its heartbeats;
-- the row decides, else the earliest heartbeat that names one. Heartbeats'
-- edges, the outcomes their status ends and each unit's intents are summed
-- by cm_rollup_units() (016, extended below) like every other grouping, so
-- the acknowledged statement gains nothing; reads add the tail past the
-- watermark (cm_rollup_tail) and are exact right after a 202. Raw rows have
-- had no seq since 012: "the earliest row" is the one of the lowest xid,
-- then ts.
ALTER TABLE intents ADD COLUMN IF NOT EXISTS parent_intent_id text;
CREATE INDEX IF NOT EXISTS intents_parent ON intents (org, parent_intent_id) WHERE parent_intent_id IS NOT NULL;

-- Edges heard from heartbeats: the first batch to carry an intent's parent
-- wins, and within a batch the earliest row.
CREATE TABLE IF NOT EXISTS intent_edge (
    org                 text NOT NULL,
    intent_id           text NOT NULL,
    parent_intent_id    text NOT NULL,
    PRIMARY KEY (org, intent_id)
);
CREATE INDEX IF NOT EXISTS intent_edge_parent ON intent_edge (org, parent_intent_id);

-- An intent spans agents: its rows are found by id, then kept to the org.
CREATE INDEX IF NOT EXISTS rollup_intent_id ON rollup_intent (intent_id);

-- How an intent ended: the first of POST .../end and a heartbeat whose
-- status ends it decides; a repeat changes nothing.
CREATE TABLE IF NOT EXISTS intent_outcome (
    org         text NOT NULL,
    intent_id   text NOT NULL,
    status      text NOT NULL CHECK (status IN ('succeeded', 'failed', 'cancelled')),
    quality     numeric CHECK (quality >= 0 AND quality <= 1),
    ended_at    timestamptz NOT NULL,
    PRIMARY KEY (org, intent_id)
);

-- Each unit's intents, per agent and hour, with their last heartbeat: what
-- the outcome figures of a spend reply count (which intents a run, session,
-- workflow, customer or agent had, what each cost in a window, and when
-- each was last heard of, for abandonment). Same units as rollup_unit.
CREATE TABLE IF NOT EXISTS rollup_unit_intent (
    org         text NOT NULL,
    kind        text NOT NULL,
    unit        text NOT NULL,
    intent_id   text NOT NULL,
    address     text NOT NULL,
    bucket      timestamptz NOT NULL,
    cost_nanos  bigint NOT NULL DEFAULT 0,
    last_ts     timestamptz NOT NULL,
    PRIMARY KEY (org, kind, unit, intent_id, address, bucket)
);
-- One intent's last heartbeat (its 'agent' rows), for abandonment.
CREATE INDEX IF NOT EXISTS rollup_unit_intent_id ON rollup_unit_intent (org, intent_id);

-- The raw rows past the watermark of one org (a read's tail).
CREATE OR REPLACE FUNCTION cm_org_tail(org text) RETURNS SETOF heartbeats LANGUAGE sql STABLE ROWS 100
    AS 'SELECT * FROM cm_rollup_tail() h WHERE split_part(h.address, ''/'', 3) = $1';
-- Nearer estimates than the default 1000 rows a set-returning function is
-- planned with: the tail is the last second or so of rows, and a heartbeat
-- counts in at most five units.
ALTER FUNCTION cm_rollup_tail() ROWS 100;
ALTER FUNCTION cm_hb_units(text, text, text, text, text, text) ROWS 5;

-- An intent's parent: its intents row's (the earliest row of the id
-- decides), else the edge the worker kept, else the earliest tail row that
-- names one. NULL for a root.
CREATE OR REPLACE FUNCTION cm_intent_parent(org text, intent_id text) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT i.parent_intent_id FROM intents i WHERE i.org = $1 AND i.intent_id = $2 ORDER BY i.seq LIMIT 1),
        (SELECT e.parent_intent_id FROM intent_edge e WHERE e.org = $1 AND e.intent_id = $2),
        (SELECT h.parent_intent_id FROM cm_org_tail($1) h WHERE h.intent_id = $2
            AND h.parent_intent_id IS NOT NULL ORDER BY h.xid, h.ts LIMIT 1))
    $$;

-- An intent and all its descendants, at any depth: each with its parent
-- (the given intent's own, NULL for a root), its depth below the given
-- intent and the path to it from there. A cycle (a client naming a
-- descendant as a parent) stops where it would repeat a node, and depth
-- stops at 64.
CREATE OR REPLACE FUNCTION cm_intent_tree(org text, root text)
    RETURNS TABLE (intent_id text, parent_intent_id text, depth int, path text[]) LANGUAGE sql STABLE ROWS 20 AS $$
    WITH RECURSIVE t(intent_id, parent_intent_id, depth, path) AS (
        SELECT $2, cm_intent_parent($1, $2), 0, ARRAY[$2]
        UNION ALL
        SELECT c.id, t.intent_id, t.depth + 1, t.path || c.id FROM t
        CROSS JOIN LATERAL (
            SELECT i.intent_id AS id FROM intents i WHERE i.org = $1 AND i.parent_intent_id = t.intent_id
            UNION SELECT e.intent_id FROM intent_edge e WHERE e.org = $1 AND e.parent_intent_id = t.intent_id
            UNION SELECT h.intent_id FROM cm_org_tail($1) h
                WHERE h.parent_intent_id = t.intent_id AND h.intent_id IS NOT NULL) c
        WHERE t.depth < 64 AND c.id <> ALL (t.path) AND cm_intent_parent($1, c.id) = t.intent_id
    )
    SELECT intent_id, parent_intent_id, depth, path FROM t
    $$;

-- The root of the tree an intent belongs to (itself when it has no parent).
CREATE OR REPLACE FUNCTION cm_intent_root(org text, intent_id text) RETURNS text LANGUAGE sql STABLE AS $$
    WITH RECURSIVE up(id, depth, path) AS (
        SELECT $2, 0, ARRAY[$2]
        UNION ALL
        SELECT p.parent, up.depth + 1, up.path || p.parent FROM up
        CROSS JOIN LATERAL (SELECT cm_intent_parent($1, up.id) AS parent) p
        WHERE p.parent IS NOT NULL AND p.parent <> ALL (up.path) AND up.depth < 64
    )
    SELECT id FROM up ORDER BY depth DESC LIMIT 1
    $$;

-- How an intent ended: its intent_outcome row, else the earliest tail row
-- whose status ends it. No row: not ended.
CREATE OR REPLACE FUNCTION cm_intent_outcome(org text, intent_id text)
    RETURNS TABLE (status text, quality numeric, ended_at timestamptz) LANGUAGE sql STABLE ROWS 1 AS $$
    SELECT status, quality, ended_at FROM (
        SELECT o.status, o.quality, o.ended_at, 0 AS pick FROM intent_outcome o WHERE o.org = $1 AND o.intent_id = $2
        UNION ALL
        (SELECT h.status, NULL::numeric, h.ts, 1 FROM cm_org_tail($1) h WHERE h.intent_id = $2
            AND h.status IN ('succeeded', 'failed', 'cancelled') ORDER BY h.xid, h.ts LIMIT 1)) o
    ORDER BY pick LIMIT 1
    $$;

-- Three more groupings of the raw rows with lo <= xid < hi: each unit's
-- intents (rollup_unit_intent, the units of cm_hb_units like rollup_unit),
-- the edges heartbeats name (the first batch to carry an intent's parent
-- wins, within it the earliest row) and the outcomes their status ends
-- (likewise). Returns the rollup_unit_intent rows written.
CREATE OR REPLACE FUNCTION cm_rollup_tree(lo bigint, hi bigint) RETURNS bigint
    LANGUAGE sql VOLATILE SET enable_seqscan = off SET jit = off
    AS $$
    WITH attributed AS (SELECT split_part(h.address, '/', 3) AS org, u.kind, u.unit, h.intent_id, h.address,
            date_trunc('hour', h.ts, 'UTC') AS hour, h.cost_nanos, h.ts
        FROM heartbeats h
        CROSS JOIN LATERAL cm_hb_units(h.address, h.intent_id, h.run_id, h.session_id, h.workflow, h.customer) u
        WHERE h.xid >= lo AND h.xid < hi AND h.intent_id IS NOT NULL),
    unit_intents AS (INSERT INTO rollup_unit_intent AS r (org, kind, unit, intent_id, address, bucket, cost_nanos,
            last_ts)
        SELECT org, kind, unit, intent_id, address, hour, sum(cost_nanos), max(ts)
        FROM attributed GROUP BY 1, 2, 3, 4, 5, 6
        ON CONFLICT (org, kind, unit, intent_id, address, bucket) DO UPDATE SET
            cost_nanos = r.cost_nanos + excluded.cost_nanos, last_ts = greatest(r.last_ts, excluded.last_ts)
        RETURNING 1),
    edges AS (INSERT INTO intent_edge (org, intent_id, parent_intent_id)
        SELECT DISTINCT ON (1, 2) split_part(h.address, '/', 3), h.intent_id, h.parent_intent_id FROM heartbeats h
        WHERE h.xid >= lo AND h.xid < hi AND h.intent_id IS NOT NULL AND h.parent_intent_id IS NOT NULL
        ORDER BY 1, 2, h.xid, h.ts
        ON CONFLICT DO NOTHING),
    ended AS (INSERT INTO intent_outcome (org, intent_id, status, ended_at)
        SELECT DISTINCT ON (1, 2) split_part(h.address, '/', 3), h.intent_id, h.status, h.ts FROM heartbeats h
        WHERE h.xid >= lo AND h.xid < hi AND h.intent_id IS NOT NULL
            AND h.status IN ('succeeded', 'failed', 'cancelled')
        ORDER BY 1, 2, h.xid, h.ts
        ON CONFLICT DO NOTHING)
    SELECT count(*) FROM unit_intents
    $$;

-- Every move of the watermark sums through cm_rollup_units(): this
-- release's worker and 016's call it in their batch statement, an older
-- worker's move reaches it through 016's trigger (rollup_units_catch_up), in
-- its transaction. 016's function, kept under another name, and the
-- groupings above both run in it from now on, so every raw row is counted
-- in them once whichever replica moved the watermark past it, and the
-- rolling upgrade needs no fence.
ALTER FUNCTION cm_rollup_units(bigint, bigint) RENAME TO cm_rollup_units_016;
CREATE FUNCTION cm_rollup_units(lo bigint, hi bigint) RETURNS bigint LANGUAGE sql VOLATILE
    AS $$
    SELECT cm_rollup_tree(lo, hi);
    SELECT cm_rollup_units_016(lo, hi)
    $$;

-- The rows already below the watermark, summed once: the lock keeps every
-- worker out until this migration commits; every move after it goes
-- through the function above.
SELECT lo FROM rollup_watermark FOR UPDATE;
INSERT INTO intent_edge (org, intent_id, parent_intent_id)
SELECT DISTINCT ON (1, 2) split_part(address, '/', 3), intent_id, parent_intent_id FROM heartbeats
WHERE intent_id IS NOT NULL AND parent_intent_id IS NOT NULL
  AND (xid IS NULL OR xid < (SELECT lo FROM rollup_watermark))
ORDER BY 1, 2, xid, ts
ON CONFLICT DO NOTHING;
INSERT INTO intent_outcome (org, intent_id, status, ended_at)
SELECT DISTINCT ON (1, 2) split_part(address, '/', 3), intent_id, status, ts FROM heartbeats
WHERE intent_id IS NOT NULL AND status IN ('succeeded', 'failed', 'cancelled')
  AND (xid IS NULL OR xid < (SELECT lo FROM rollup_watermark))
ORDER BY 1, 2, xid, ts
ON CONFLICT DO NOTHING;
INSERT INTO rollup_unit_intent (org, kind, unit, intent_id, address, bucket, cost_nanos, last_ts)
SELECT split_part(h.address, '/', 3), u.kind, u.unit, h.intent_id, h.address, date_trunc('hour', h.ts, 'UTC'),
       sum(h.cost_nanos), max(h.ts)
FROM heartbeats h
CROSS JOIN LATERAL cm_hb_units(h.address, h.intent_id, h.run_id, h.session_id, h.workflow, h.customer) u
WHERE h.intent_id IS NOT NULL AND (h.xid IS NULL OR h.xid < (SELECT lo FROM rollup_watermark))
GROUP BY 1, 2, 3, 4, 5, 6
ON CONFLICT DO NOTHING;

-- The cap of a whole delegation tree, in a cost policy (nano-dollars;
-- NULL: none). Checked at admission of an intent under the tree, as one
-- more level of 017's admission. scope_policies has the columns of
-- cost_policies (policy_row.h), so it gets the column too; the API keeps it
-- NULL there (a tree is capped by the asking agent's policy).
ALTER TABLE cost_policies ADD COLUMN IF NOT EXISTS max_cost_per_intent_tree bigint;
ALTER TABLE scope_policies ADD COLUMN IF NOT EXISTS max_cost_per_intent_tree bigint;

-- The outcome figures of one unit (kind 'agent', 'run', 'session',
-- 'workflow' or 'customer'; address: one agent's part, NULL for all) in the
-- window [t0, t1), rollup + tail: its intents that ended in the window by
-- status; those that became abandoned in it (not ended, no heartbeat for
-- `abandon`, as of `now`); the cost of the intents ended in the window,
-- whatever their status and whenever spent, per success (nano-dollars,
-- NULL without a success); and the shares of `spend` (the unit's cost in
-- the window, intents or not) on intents that failed and on intents not
-- ended by the window's end (NULL when spend is 0).
CREATE OR REPLACE FUNCTION cm_unit_outcomes(org text, kind text, unit text, address text, t0 timestamptz,
                                            t1 timestamptz, abandon interval, now timestamptz, spend numeric)
    RETURNS TABLE (succeeded bigint, failed bigint, cancelled bigint, abandoned bigint,
                   cost_per_success numeric, failed_share numeric, unfinished_share numeric)
    LANGUAGE sql STABLE ROWS 1 AS $$
    WITH ui AS (
        SELECT x.intent_id, sum(x.cost_nanos) AS cost,
               coalesce(sum(x.cost_nanos) FILTER (WHERE x.bucket >= $5 AND x.bucket < $6), 0) AS wcost,
               max(x.last_ts) AS last_ts
        FROM (SELECT r.intent_id, r.address, r.bucket, r.cost_nanos, r.last_ts FROM rollup_unit_intent r
                  WHERE r.org = $1 AND r.kind = $2 AND r.unit = $3
              UNION ALL
              SELECT h.intent_id, h.address, date_trunc('hour', h.ts, 'UTC'), h.cost_nanos, h.ts
                  FROM cm_org_tail($1) h
                  CROSS JOIN LATERAL cm_hb_units(h.address, h.intent_id, h.run_id, h.session_id, h.workflow,
                                                 h.customer) u
                  WHERE h.intent_id IS NOT NULL AND u.kind = $2 AND u.unit = $3) x
        WHERE $4 IS NULL OR x.address = $4
        GROUP BY x.intent_id),
    o AS (SELECT ui.*, oc.status, oc.ended_at, oc.ended_at >= $5 AND oc.ended_at < $6 AS ended_in
          FROM ui LEFT JOIN LATERAL cm_intent_outcome($1, ui.intent_id) oc ON true),
    s AS (SELECT count(*) FILTER (WHERE status = 'succeeded' AND ended_in) AS succeeded,
                 count(*) FILTER (WHERE status = 'failed' AND ended_in) AS failed,
                 count(*) FILTER (WHERE status = 'cancelled' AND ended_in) AS cancelled,
                 count(*) FILTER (WHERE status IS NULL AND last_ts + $7 >= $5 AND last_ts + $7 < least($6, $8))
                     AS abandoned,
                 coalesce(sum(cost) FILTER (WHERE ended_in), 0) AS ended_cost,
                 coalesce(sum(wcost) FILTER (WHERE status = 'failed' AND ended_at < $6), 0) AS failed_spend,
                 coalesce(sum(wcost) FILTER (WHERE status IS NULL OR ended_at >= $6), 0) AS unfinished_spend
          FROM o)
    SELECT succeeded, failed, cancelled, abandoned, round(ended_cost / nullif(succeeded, 0)),
           trim_scale(round(failed_spend / nullif($9, 0), 6)), trim_scale(round(unfinished_spend / nullif($9, 0), 6))
    FROM s
    $$;

-- The cost of the tree under an intent (nano-dollars), rollup + tail: what
-- admission compares with a policy's max_cost_per_intent_tree.
CREATE OR REPLACE FUNCTION cm_intent_tree_cost(org text, root text) RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(x.cost_nanos), 0) FROM cm_intent_tree($1, $2) n
    CROSS JOIN LATERAL (
        SELECT r.cost_nanos FROM rollup_intent r WHERE r.intent_id = n.intent_id AND split_part(r.address, '/', 3) = $1
        UNION ALL SELECT h.cost_nanos FROM cm_org_tail($1) h WHERE h.intent_id = n.intent_id) x
    $$;
