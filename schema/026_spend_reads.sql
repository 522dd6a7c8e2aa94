-- An agent's spend read under load: the tail read once, an intent's end
-- found through an index of the rows that end intents.
--
-- With single heartbeats running (1,000 agents, 4,000-6,000 a second) and
-- 16 clients polling agents' spend, PostgreSQL spent ~3.8 ms of CPU per
-- spend read against 0.65 ms on an idle server, and ingest lost 40 % of its
-- rate (make bench, row 4). auto_explain of one read under that load:
--
-- * cm_intent_outcome() looked for an intent's end in the org's whole tail:
--   every row of every agent past the watermark (2,000 rows at that rate),
--   once per intent the window names, 3 of the read's 4.3 ms for one intent.
--   A billing or tree read calls it per intent too. Rows that end an intent
--   are few (one per intent); a partial index of them (by intent) finds it in
--   one probe per partition. The ack path adds an index entry only for
--   those rows. An intent's parent in the tail likewise (rows that name a
--   parent), which every root's lookup read the org's tail for.
-- * The agent's tail was read three times (money, models, outcomes). The
--   spend statement now reads it once and hands the rows to
--   cm_unit_outcomes() (unit_tail, below). A unit's spend (a run's, a
--   customer's...) read its org's whole tail three times, attributing every
--   row to its units each time (cm_hb_units, an intent lookup per row it
--   inherits from): it now attributes the tail once and keeps the unit's.
--
-- Same rows, same order, same snapshot: replies are as exact as before. The
-- indexes are built over every kept partition during this migration (one
-- scan of each, while heartbeats wait): on a large database build them by
-- hand first, as docs/operations.md says for 026, and this finds them done.
--
-- Tried, not kept: BRIN ranges of 16 pages instead of 128 on xid. The range
-- the watermark falls in is read whole (up to ~4,000 rows before the
-- watermark checked and dropped at these rates), but a BRIN scan reads every
-- range's summary of the partition: on a 3,000,000-row table a tail read
-- took the same time either way (0.6-0.9 ms), and a day's partition of a
-- large deployment has eight times as many ranges to read at 16 pages.
SET LOCAL lock_timeout = '5s';

CREATE INDEX IF NOT EXISTS heartbeats_ended ON heartbeats (intent_id)
    WHERE intent_id IS NOT NULL AND status IN ('succeeded', 'failed', 'cancelled');
CREATE INDEX IF NOT EXISTS heartbeats_parent ON heartbeats (intent_id) WHERE parent_intent_id IS NOT NULL;

-- The tail's first row (by xid, ts) that ends an intent, and the first that
-- names its parent, each through its partial index. PL/pgSQL, as the tails
-- (025): a statement over every partition in a SQL function is planned
-- into each statement that calls it, 1.3 ms a time here.
CREATE FUNCTION cm_tail_end(org text, intent_id text) RETURNS TABLE (status text, ended_at timestamptz)
    LANGUAGE plpgsql STABLE ROWS 1 SET plan_cache_mode = force_generic_plan SET jit = off AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT h.status, h.ts FROM heartbeats h WHERE h.intent_id = $2 AND h.intent_id IS NOT NULL
        AND h.status IN ('succeeded', 'failed', 'cancelled') AND h.xid >= (SELECT lo FROM rollup_watermark)
        AND split_part(h.address, '/', 3) = $1 ORDER BY h.xid, h.ts LIMIT 1;
END$$;

CREATE FUNCTION cm_tail_parent(org text, intent_id text) RETURNS text
    LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan SET jit = off AS $$
#variable_conflict use_column
BEGIN
    RETURN (SELECT h.parent_intent_id FROM heartbeats h WHERE h.intent_id = $2 AND h.parent_intent_id IS NOT NULL
            AND h.xid >= (SELECT lo FROM rollup_watermark) AND split_part(h.address, '/', 3) = $1
            ORDER BY h.xid, h.ts LIMIT 1);
END$$;

-- 018's, the tail's part through cm_tail_end.
CREATE OR REPLACE FUNCTION cm_intent_outcome(org text, intent_id text)
    RETURNS TABLE (status text, quality numeric, ended_at timestamptz) LANGUAGE sql STABLE ROWS 1 AS $$
    SELECT status, quality, ended_at FROM (
        SELECT o.status, o.quality, o.ended_at, 0 AS pick FROM intent_outcome o WHERE o.org = $1 AND o.intent_id = $2
        UNION ALL
        SELECT t.status, NULL::numeric, t.ended_at, 1 FROM cm_tail_end($1, $2) t) o
    ORDER BY pick LIMIT 1
    $$;

-- 025's, with the unit's tail rows given by a caller that has read them
-- (unit_tail: the raw rows past the watermark that are the unit's, its
-- bound agent's only when address is given; '{}' when there are none);
-- NULL reads and attributes them here as before. A call with nine
-- arguments, an older release's, reaches this one; this release's spend
-- statements always give the rows, so the NULL branches serve only older
-- replicas during a roll, and the release after this one can drop them
-- (docs/operations.md, rule 3). The body is 025's whole: a function is
-- replaced whole.
DROP FUNCTION cm_unit_outcomes(text, text, text, text, timestamptz, timestamptz, interval, timestamptz, numeric);
CREATE FUNCTION cm_unit_outcomes(org text, kind text, unit text, address text, t0 timestamptz, t1 timestamptz,
                                 abandon interval, now timestamptz, spend numeric,
                                 unit_tail heartbeats[] DEFAULT NULL)
    RETURNS TABLE (succeeded bigint, failed bigint, cancelled bigint, abandoned bigint,
                   cost_per_success numeric, failed_share numeric, unfinished_share numeric)
    LANGUAGE plpgsql STABLE ROWS 1 SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH ui AS (
        SELECT x.intent_id, sum(x.cost_nanos) AS cost,
               coalesce(sum(x.cost_nanos) FILTER (WHERE x.bucket >= $5 AND x.bucket < $6), 0) AS wcost,
               max(x.last_ts) AS last_ts
        FROM (SELECT r.intent_id, r.address, r.bucket, r.cost_nanos, r.last_ts FROM rollup_unit_intent r
                  WHERE r.org = $1 AND r.kind = $2 AND r.unit = $3
              UNION ALL
              SELECT h.intent_id, h.address, date_trunc('hour', h.ts, 'UTC'), h.cost_nanos, h.ts
                  FROM unnest($10) h WHERE $10 IS NOT NULL AND h.intent_id IS NOT NULL
              UNION ALL
              SELECT h.intent_id, h.address, date_trunc('hour', h.ts, 'UTC'), h.cost_nanos, h.ts
                  FROM cm_agent_tail($3) h
                  WHERE $10 IS NULL AND $2 = 'agent' AND h.intent_id IS NOT NULL AND split_part(h.address, '/', 3) = $1
              UNION ALL
              SELECT h.intent_id, h.address, date_trunc('hour', h.ts, 'UTC'), h.cost_nanos, h.ts
                  FROM (SELECT * FROM cm_agent_tail($4) WHERE $10 IS NULL AND $2 <> 'agent' AND $4 IS NOT NULL
                        UNION ALL SELECT * FROM cm_org_tail($1) WHERE $10 IS NULL AND $2 <> 'agent' AND $4 IS NULL) h
                  CROSS JOIN LATERAL cm_hb_units(h.address, h.intent_id, h.run_id, h.session_id, h.workflow,
                                                 h.customer) u
                  WHERE h.intent_id IS NOT NULL AND split_part(h.address, '/', 3) = $1
                        AND u.kind = $2 AND u.unit = $3) x
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
    FROM s;
END
$$;

-- 018's, the tail's part through cm_tail_parent. It reaches the tail for
-- every intent without a parent in intents or intent_edge, so for every
-- root: a tree-capped admission looked up its root's parent
-- (cm_intent_root) by reading the org's tail, and the tree's cost again.
CREATE OR REPLACE FUNCTION cm_intent_parent(org text, intent_id text) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT i.parent_intent_id FROM intents i WHERE i.org = $1 AND i.intent_id = $2 ORDER BY i.seq LIMIT 1),
        (SELECT e.parent_intent_id FROM intent_edge e WHERE e.org = $1 AND e.intent_id = $2),
        cm_tail_parent($1, $2))
    $$;

-- 018's tree and tree cost with the org's tail read once per call, not once
-- per node: the edges the tail names are taken once (tail_edges) for the
-- recursion, and the cost sums the tail's rows of every node at once. Each
-- node's parent is still cm_intent_parent's, so the same tree. Under load
-- (tail ~2,500 rows), a 41-node tree's cost took 16-18 ms, now 9 ms; it is
-- on the admission path of an intent whose agent's policy caps trees.
CREATE OR REPLACE FUNCTION cm_intent_tree(org text, root text)
    RETURNS TABLE (intent_id text, parent_intent_id text, depth int, path text[]) LANGUAGE sql STABLE ROWS 20 AS $$
    WITH RECURSIVE tail_edges AS MATERIALIZED (
        SELECT DISTINCT h.intent_id, h.parent_intent_id FROM cm_org_tail($1) h
        WHERE h.parent_intent_id IS NOT NULL AND h.intent_id IS NOT NULL),
    t(intent_id, parent_intent_id, depth, path) AS (
        SELECT $2, cm_intent_parent($1, $2), 0, ARRAY[$2]
        UNION ALL
        SELECT c.id, t.intent_id, t.depth + 1, t.path || c.id FROM t
        CROSS JOIN LATERAL (
            SELECT i.intent_id AS id FROM intents i WHERE i.org = $1 AND i.parent_intent_id = t.intent_id
            UNION SELECT e.intent_id FROM intent_edge e WHERE e.org = $1 AND e.parent_intent_id = t.intent_id
            UNION SELECT te.intent_id FROM tail_edges te WHERE te.parent_intent_id = t.intent_id) c
        WHERE t.depth < 64 AND c.id <> ALL (t.path) AND cm_intent_parent($1, c.id) = t.intent_id
    )
    SELECT intent_id, parent_intent_id, depth, path FROM t
    $$;
CREATE OR REPLACE FUNCTION cm_intent_tree_cost(org text, root text) RETURNS numeric LANGUAGE sql STABLE AS $$
    WITH n AS MATERIALIZED (SELECT intent_id FROM cm_intent_tree($1, $2))
    SELECT coalesce(sum(x.cost_nanos), 0) FROM (
        SELECT r.cost_nanos FROM n JOIN rollup_intent r ON r.intent_id = n.intent_id
            AND split_part(r.address, '/', 3) = $1
        UNION ALL
        SELECT h.cost_nanos FROM cm_org_tail($1) h WHERE h.intent_id IN (SELECT intent_id FROM n)) x
    $$;
