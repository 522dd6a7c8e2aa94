-- A delegation tree's cost reads its org's tail once, not twice.
--
-- cm_intent_tree_cost() is on the admission path of an intent whose agent's
-- policy caps trees. It read the org's tail (every raw row past the rollup
-- watermark) once for the tree's edges that only the tail holds, inside
-- cm_intent_tree(), and once more for the nodes' rows not yet in
-- rollup_intent: ~2 ms each with single heartbeats running (ninth session,
-- BENCHMARKS.md). The tree now takes the tail's rows as an array, which the
-- cost reads once and hands over; the two-argument cm_intent_tree() (the
-- tree read's) reads them itself, as before.
--
-- Same rows, same snapshot: the answers are the same.

CREATE OR REPLACE FUNCTION cm_intent_tree(org text, root text, tail heartbeats[])
    RETURNS TABLE (intent_id text, parent_intent_id text, depth int, path text[]) LANGUAGE sql STABLE ROWS 20 AS $$
    WITH RECURSIVE tail_edges AS MATERIALIZED (
        SELECT DISTINCT h.intent_id, h.parent_intent_id FROM unnest($3) h
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

CREATE OR REPLACE FUNCTION cm_intent_tree(org text, root text)
    RETURNS TABLE (intent_id text, parent_intent_id text, depth int, path text[]) LANGUAGE sql STABLE ROWS 20 AS $$
    SELECT * FROM cm_intent_tree($1, $2, ARRAY(SELECT h FROM cm_org_tail($1) h))
    $$;

CREATE OR REPLACE FUNCTION cm_intent_tree_cost(org text, root text) RETURNS numeric LANGUAGE sql STABLE AS $$
    WITH tail AS MATERIALIZED (SELECT ARRAY(SELECT h FROM cm_org_tail($1) h) AS rows),
    n AS MATERIALIZED (SELECT t.intent_id FROM tail, cm_intent_tree($1, $2, tail.rows) t)
    SELECT coalesce(sum(x.cost_nanos), 0) FROM (
        SELECT r.cost_nanos FROM n JOIN rollup_intent r ON r.intent_id = n.intent_id
            AND split_part(r.address, '/', 3) = $1
        UNION ALL
        SELECT h.cost_nanos FROM tail, unnest(tail.rows) h WHERE h.intent_id IN (SELECT intent_id FROM n)) x
    $$;
