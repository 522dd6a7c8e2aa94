-- The rollup worker's groupings from one read of a batch, summed per agent
-- and hour first.
--
-- Until now the worker read the batch's raw rows nine times (every grouping
-- on its own: the units once, the tree three times, billing and models twice
-- through the watermark's trigger, and the scopes, the intents and the lag
-- through copies of the whole tail) and attributed each row alone: an index
-- probe of the row's intent for every grouping that inherits its
-- attributes, three rows per scope to sort, and the plans of the SQL
-- functions made again at every batch. A batch of 20,000 heartbeats of
-- 1,000 agents took 0.87 s of PostgreSQL CPU (BENCHMARKS.md). Here the sums
-- read the batch once, summed per agent, hour and the attributes a grouping
-- reads (a busy agent's rows of an hour become one), the intents named are
-- looked up once per batch, and each grouping sums those partial sums: the
-- same totals, since every sum is of integers and the rows of a part share
-- the attributes it is grouped by. The same batch takes 0.22 s; what is left
-- is mostly the upserts themselves, a rollup row per agent and grouping.
SET LOCAL lock_timeout = '5s';

-- A move of the watermark by a worker whose statement summed every grouping
-- (this release's) sets summed_to to the new lo; a move that leaves it
-- behind lo is an older release's, whose groupings 016's and 019's triggers
-- complete as before.
ALTER TABLE rollup_watermark ADD COLUMN IF NOT EXISTS summed_to bigint;

-- Sums the raw rows with lo <= xid < hi into the groupings named in parts:
--   intents  rollup_intent;
--   units    rollup_unit, the unit days and their margin_negative events (021);
--   tree     rollup_unit_intent, intent_edge, intent_outcome (018);
--   billing  rollup_billing and rollup_model (019);
--   scopes   rollup_scope (017).
-- Returns a row per count (tag 'rows': the raw rows read; 'intents',
-- 'units', 'billing': the rollup rows written), a row per scope, grain and
-- bucket written (tag 's', n its new total) and a row per intent with cost
-- (tag 'i', n the batch's cost). The BRIN index on xid is summarized first,
-- as every move of the watermark did since 022.
--
-- A part (a row of g) is the batch's rows of one agent, hour and set of
-- attributes. The units, scopes and billing a part counts in are
-- cm_hb_units', cm_hb_scopes' and cm_hb_billed's, called with the part's
-- attributes already inherited from its intent and intent_id NULL (so no
-- lookup per part): ia is their lookup (the org's earliest row of the id),
-- once per batch. Ratings (cm_hb_rated) depend on the ts, so they are
-- summed per raw row into the parts. The edges and outcomes keep the
-- earliest row by (xid, ts): they read again the rows that carry one.
--
-- PL/pgSQL for its plan, which the worker's connection keeps from one batch
-- to the next: a generic one, since the statement is the same at every
-- batch and parts only switches its CTEs on and off. A SQL function's
-- statement is planned again at every call: about 6 ms here, as long as
-- reading and summing a thousand heartbeats.
CREATE OR REPLACE FUNCTION cm_rollup_sum(lo bigint, hi bigint, parts text[])
    RETURNS TABLE (tag text, org text, kind text, id text, grain text, bucket timestamptz, n numeric)
    LANGUAGE plpgsql VOLATILE ROWS 100
    SET enable_seqscan = off SET jit = off SET plan_cache_mode = force_generic_plan
    AS $$
    #variable_conflict use_column
    BEGIN
    PERFORM cm_tail_summarize();
    RETURN QUERY
    WITH g AS (SELECT h.address, split_part(h.address, '/', 3) AS org, date_trunc('hour', h.ts, 'UTC') AS hour,
            h.intent_id, h.run_id, h.session_id, h.workflow, h.customer, h.model,
            count(*) AS heartbeats, sum(h.cost_nanos) AS cost_nanos, sum(h.tokens_in) AS tokens_in,
            sum(h.tokens_out) AS tokens_out, sum(h.tokens_cached) AS tokens_cached,
            sum(h.tokens_cache_write) AS tokens_cache_write, sum(h.llm_calls) AS llm_calls,
            sum(h.tool_calls) AS tool_calls, sum(h.compute_ms) AS compute_ms, sum(h.revenue_nanos) AS revenue_nanos,
            sum(h.refund_nanos) AS refund_nanos, sum(h.external_nanos) AS external_nanos,
            sum(h.fees_nanos) AS fees_nanos, max(h.ts) AS last_ts,
            count(*) FILTER (WHERE h.cost_nanos > 0) AS costed,
            sum(h.cost_nanos) FILTER (WHERE h.cost_nanos > 0) AS cost,
            count(p.fresh) AS rated, sum(p.fresh) AS fresh_e, sum(p.cached) AS cached_e,
            sum(p.cache_write) AS cache_write_e, sum(p.output) AS output_e, sum(p.cached_as_fresh) AS cached_as_fresh_e
        FROM heartbeats h
        LEFT JOIN LATERAL cm_hb_rated(split_part(h.address, '/', 3), h.model, h.ts, h.tokens_in, h.tokens_cached,
            h.tokens_cache_write, h.tokens_out) p ON h.priced_nanos IS NOT NULL AND 'billing' = ANY (parts)
        WHERE h.xid >= lo AND h.xid < hi
        GROUP BY h.address, hour, h.intent_id, h.run_id, h.session_id, h.workflow, h.customer, h.model),
    ia AS (SELECT DISTINCT ON (i.org, i.intent_id) i.org, i.intent_id, i.run_id, i.session_id, i.workflow, i.customer
        FROM intents i WHERE (i.org, i.intent_id) IN (SELECT g.org, g.intent_id FROM g)
        ORDER BY i.org, i.intent_id, i.seq),
    gi AS (SELECT g.*, coalesce(g.run_id, ia.run_id) AS run, coalesce(g.session_id, ia.session_id) AS session,
            coalesce(g.workflow, ia.workflow) AS flow, coalesce(g.customer, ia.customer) AS buyer
        FROM g LEFT JOIN ia ON ia.org = g.org AND ia.intent_id = g.intent_id),
    attributed AS (SELECT gi.*, u.kind, u.unit,
            gi.revenue_nanos - gi.refund_nanos - gi.cost_nanos - gi.external_nanos - gi.fees_nanos AS margin
        FROM gi CROSS JOIN LATERAL cm_hb_units(gi.address, NULL, gi.run, gi.session, gi.flow, gi.buyer) u
        WHERE parts && '{units,tree,billing}'),
    intents AS (INSERT INTO rollup_intent AS r (address, intent_id, bucket, cost_nanos, tokens_in, tokens_out,
            tokens_cached, llm_calls, tool_calls, revenue_nanos, refund_nanos, external_nanos, fees_nanos, heartbeats)
        SELECT address, intent_id, hour, sum(cost_nanos), sum(tokens_in), sum(tokens_out), sum(tokens_cached),
            sum(llm_calls), sum(tool_calls), sum(revenue_nanos), sum(refund_nanos), sum(external_nanos),
            sum(fees_nanos), sum(heartbeats)
        FROM g WHERE intent_id IS NOT NULL AND 'intents' = ANY (parts)
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (address, intent_id, bucket) DO UPDATE SET heartbeats = r.heartbeats + excluded.heartbeats,
            cost_nanos = r.cost_nanos + excluded.cost_nanos, tokens_in = r.tokens_in + excluded.tokens_in,
            tokens_out = r.tokens_out + excluded.tokens_out, tokens_cached = r.tokens_cached + excluded.tokens_cached,
            llm_calls = r.llm_calls + excluded.llm_calls, tool_calls = r.tool_calls + excluded.tool_calls,
            revenue_nanos = r.revenue_nanos + excluded.revenue_nanos,
            refund_nanos = r.refund_nanos + excluded.refund_nanos,
            external_nanos = r.external_nanos + excluded.external_nanos, fees_nanos = r.fees_nanos + excluded.fees_nanos
        RETURNING 1),
    units AS (INSERT INTO rollup_unit AS r (org, kind, unit, address, bucket, cost_nanos, tokens_in, tokens_out,
            tokens_cached, llm_calls, tool_calls, heartbeats, revenue_nanos, refund_nanos, external_nanos, fees_nanos)
        SELECT org, kind, unit, address, hour, sum(cost_nanos), sum(tokens_in), sum(tokens_out), sum(tokens_cached),
            sum(llm_calls), sum(tool_calls), sum(heartbeats), sum(revenue_nanos), sum(refund_nanos),
            sum(external_nanos), sum(fees_nanos)
        FROM attributed WHERE 'units' = ANY (parts)
        GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (org, kind, unit, address, bucket) DO UPDATE SET
            cost_nanos = r.cost_nanos + excluded.cost_nanos, tokens_in = r.tokens_in + excluded.tokens_in,
            tokens_out = r.tokens_out + excluded.tokens_out, tokens_cached = r.tokens_cached + excluded.tokens_cached,
            llm_calls = r.llm_calls + excluded.llm_calls, tool_calls = r.tool_calls + excluded.tool_calls,
            heartbeats = r.heartbeats + excluded.heartbeats, revenue_nanos = r.revenue_nanos + excluded.revenue_nanos,
            refund_nanos = r.refund_nanos + excluded.refund_nanos,
            external_nanos = r.external_nanos + excluded.external_nanos, fees_nanos = r.fees_nanos + excluded.fees_nanos
        RETURNING 1),
    unit_days AS (SELECT org, kind, unit, date_trunc('day', hour, 'UTC') AS day, sum(margin) AS delta,
            sum(revenue_nanos) AS revenue
        FROM attributed WHERE 'units' = ANY (parts) GROUP BY 1, 2, 3, 4),
    days AS (INSERT INTO rollup_unit_day AS d (org, kind, unit, day, revenue_nanos, margin_nanos)
        SELECT org, kind, unit, day, revenue, delta FROM unit_days ORDER BY 1, 2, 3, 4
        ON CONFLICT (org, kind, unit, day) DO UPDATE SET revenue_nanos = d.revenue_nanos + excluded.revenue_nanos,
            margin_nanos = d.margin_nanos + excluded.margin_nanos
        RETURNING d.org, d.kind, d.unit, d.day, d.revenue_nanos, d.margin_nanos),
    turned AS (SELECT d.org, d.kind, d.unit, d.day, d.margin_nanos AS after FROM days d
        JOIN unit_days b ON b.org = d.org AND b.kind = d.kind AND b.unit = d.unit AND b.day = d.day
        WHERE b.delta < 0 AND d.margin_nanos - b.delta >= 0 AND d.margin_nanos < 0 AND d.revenue_nanos > 0),
    ev AS (INSERT INTO events (org, address, event_type, details)
        SELECT org, CASE WHEN kind = 'agent' THEN unit END, 'margin_negative',
            json_build_object('by', kind, 'id', unit, 'window', 'day',
                'from', to_char(day AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                'margin_usd', trim_scale(after / 1000000000))::jsonb
        FROM turned ORDER BY org, kind, unit, day
        RETURNING id, org),
    hooks AS (INSERT INTO webhook_deliveries (org, event_id) SELECT ev.org, ev.id FROM ev
        JOIN webhooks k ON k.org = ev.org RETURNING 1),
    unit_intents AS (INSERT INTO rollup_unit_intent AS r (org, kind, unit, intent_id, address, bucket, cost_nanos,
            last_ts)
        SELECT org, kind, unit, intent_id, address, hour, sum(cost_nanos), max(last_ts)
        FROM attributed WHERE intent_id IS NOT NULL AND 'tree' = ANY (parts)
        GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
        ON CONFLICT (org, kind, unit, intent_id, address, bucket) DO UPDATE SET
            cost_nanos = r.cost_nanos + excluded.cost_nanos, last_ts = greatest(r.last_ts, excluded.last_ts)
        RETURNING 1),
    firsts AS (SELECT split_part(h.address, '/', 3) AS org, h.intent_id, h.parent_intent_id, h.status, h.xid, h.ts
        FROM heartbeats h
        WHERE h.xid >= lo AND h.xid < hi AND h.intent_id IS NOT NULL AND 'tree' = ANY (parts)
            AND (h.parent_intent_id IS NOT NULL OR h.status IN ('succeeded', 'failed', 'cancelled'))),
    edges AS (INSERT INTO intent_edge (org, intent_id, parent_intent_id)
        SELECT DISTINCT ON (1, 2) org, intent_id, parent_intent_id FROM firsts WHERE parent_intent_id IS NOT NULL
        ORDER BY 1, 2, xid, ts
        ON CONFLICT DO NOTHING),
    ended AS (INSERT INTO intent_outcome (org, intent_id, status, ended_at)
        SELECT DISTINCT ON (1, 2) org, intent_id, status, ts FROM firsts
        WHERE status IN ('succeeded', 'failed', 'cancelled')
        ORDER BY 1, 2, xid, ts
        ON CONFLICT DO NOTHING),
    billed AS (INSERT INTO rollup_billing AS r (org, customer, run, bucket, steps, compute_ms, heartbeats)
        SELECT gi.org, b.customer, b.run, gi.hour, sum(gi.llm_calls + gi.tool_calls), sum(gi.compute_ms),
            sum(gi.heartbeats)
        FROM gi CROSS JOIN LATERAL cm_hb_billed(gi.address, NULL, gi.run, gi.session, gi.flow, gi.buyer) b
        WHERE gi.buyer IS NOT NULL AND 'billing' = ANY (parts) -- the parts cm_hb_billed bills (no call for the rest)
        GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (org, customer, run, bucket) DO UPDATE SET steps = r.steps + excluded.steps,
            compute_ms = r.compute_ms + excluded.compute_ms, heartbeats = r.heartbeats + excluded.heartbeats
        RETURNING 1),
    models AS (INSERT INTO rollup_model AS r (org, kind, unit, address, model, bucket, cost_nanos, tokens_in,
            tokens_out, tokens_cached, tokens_cache_write, heartbeats, rated, fresh_e, cached_e, cache_write_e,
            output_e, cached_as_fresh_e)
        SELECT org, kind, unit, address, model, hour, sum(cost_nanos), sum(tokens_in), sum(tokens_out),
            sum(tokens_cached), sum(tokens_cache_write), sum(heartbeats), sum(rated), coalesce(sum(fresh_e), 0),
            coalesce(sum(cached_e), 0), coalesce(sum(cache_write_e), 0), coalesce(sum(output_e), 0),
            coalesce(sum(cached_as_fresh_e), 0)
        FROM attributed WHERE model IS NOT NULL AND 'billing' = ANY (parts)
        GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
        ON CONFLICT (org, kind, unit, address, model, bucket) DO UPDATE SET
            cost_nanos = r.cost_nanos + excluded.cost_nanos, tokens_in = r.tokens_in + excluded.tokens_in,
            tokens_out = r.tokens_out + excluded.tokens_out, tokens_cached = r.tokens_cached + excluded.tokens_cached,
            tokens_cache_write = r.tokens_cache_write + excluded.tokens_cache_write,
            heartbeats = r.heartbeats + excluded.heartbeats, rated = r.rated + excluded.rated,
            fresh_e = r.fresh_e + excluded.fresh_e, cached_e = r.cached_e + excluded.cached_e,
            cache_write_e = r.cache_write_e + excluded.cache_write_e, output_e = r.output_e + excluded.output_e,
            cached_as_fresh_e = r.cached_as_fresh_e + excluded.cached_as_fresh_e
        RETURNING 1),
    -- The grains of cm_scope_batch (017), which reads' tails still use.
    scope_hours AS (SELECT gi.org, s.kind, s.scope, gi.hour, sum(gi.cost) AS cost
        FROM gi CROSS JOIN LATERAL cm_hb_scopes(gi.address, NULL, gi.run, gi.flow, gi.buyer) s
        WHERE gi.costed > 0 AND 'scopes' = ANY (parts) GROUP BY 1, 2, 3, 4),
    scopes AS (INSERT INTO rollup_scope AS r (org, kind, scope, grain, bucket, cost_nanos)
        SELECT h.org, h.kind, h.scope, t.grain, date_trunc(t.unit, h.hour, 'UTC'), sum(h.cost)
        FROM scope_hours h CROSS JOIN (VALUES ('h', 'hour'), ('d', 'day'), ('m', 'month')) AS t(grain, unit)
        GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (org, kind, scope, grain, bucket) DO UPDATE SET cost_nanos = r.cost_nanos + excluded.cost_nanos
        RETURNING r.org, r.kind, r.scope, r.grain, r.bucket, r.cost_nanos)
    SELECT 'rows', NULL, NULL, NULL, NULL, NULL::timestamptz, coalesce(sum(heartbeats), 0) FROM g
    UNION ALL SELECT 'intents', NULL, NULL, NULL, NULL, NULL, count(*) FROM intents
    UNION ALL SELECT 'units', NULL, NULL, NULL, NULL, NULL, count(*) FROM units
    UNION ALL SELECT 'billing', NULL, NULL, NULL, NULL, NULL,
        (SELECT count(*) FROM billed) + (SELECT count(*) FROM models)
    UNION ALL SELECT 's', org, kind, scope, grain, bucket, cost_nanos FROM scopes
    UNION ALL SELECT 'i', org, NULL, intent_id, NULL, NULL, sum(cost) FROM g
        WHERE intent_id IS NOT NULL AND costed > 0 AND 'intents' = ANY (parts) GROUP BY g.org, g.intent_id;
    END
    $$;

-- 016's and 018's groupings for an older release's move (016's trigger, or
-- the statement of the release before this one), and 019's: both through
-- the function above.
CREATE OR REPLACE FUNCTION cm_rollup_units(lo bigint, hi bigint) RETURNS bigint LANGUAGE sql VOLATILE
    AS $$SELECT n::bigint FROM cm_rollup_sum(lo, hi, '{units,tree}') WHERE tag = 'units'$$;
CREATE OR REPLACE FUNCTION cm_rollup_billing(lo bigint, hi bigint) RETURNS bigint LANGUAGE sql VOLATILE
    AS $$SELECT n::bigint FROM cm_rollup_sum(lo, hi, '{billing}') WHERE tag = 'billing'$$;
DROP FUNCTION IF EXISTS cm_rollup_units_016(bigint, bigint);
DROP FUNCTION IF EXISTS cm_rollup_tree(bigint, bigint);

-- 019's trigger, for the moves that did not sum billing themselves.
CREATE OR REPLACE FUNCTION cm_rollup_billing_on_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.lo > OLD.lo AND NEW.summed_to IS DISTINCT FROM NEW.lo THEN
        PERFORM cm_rollup_billing(OLD.lo, NEW.lo);
    END IF;
    RETURN NEW;
END $$;

-- How far behind the worker is: the oldest raw row past the watermark, as
-- the calling statement's snapshot sees it (the rows of cm_rollup_tail(),
-- without copying them out of a function).
CREATE OR REPLACE FUNCTION cm_rollup_tail_oldest() RETURNS timestamptz
    LANGUAGE sql STABLE SET enable_seqscan = off SET jit = off
    AS 'SELECT min(received_at) FROM heartbeats WHERE xid >= (SELECT lo FROM rollup_watermark)';
