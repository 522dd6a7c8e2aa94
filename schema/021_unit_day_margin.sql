-- The margin_negative check of the rollup worker without a scan per unit.
--
-- 016's cm_rollup_units found a unit's margin for the day before a batch by
-- summing its rollup_unit rows of that day, once per unit and day with a
-- loss in the batch: nearly every unit (cost without revenue is a loss).
-- The planner reached those rows through rollup_unit_top (org, kind,
-- bucket), which reads every unit of the org and kind that day, so a batch
-- cost units x units: 17,000 heartbeats of 15,600 agents took 44 s, and the
-- worker fell behind any real load. rollup_unit_day keeps each unit's day
-- totals as the batches add them; the check becomes one upsert per unit and
-- day, whose new total and the batch's delta give the margin before and
-- after. Only the margin and revenue are kept: the check needs no more.
SET LOCAL lock_timeout = '5s';

CREATE TABLE IF NOT EXISTS rollup_unit_day (
    org           text NOT NULL,
    kind          text NOT NULL,
    unit          text NOT NULL,
    day           timestamptz NOT NULL,
    revenue_nanos numeric NOT NULL DEFAULT 0,
    margin_nanos  numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (org, kind, unit, day)
);

-- 016's body (018 renamed it cm_rollup_units_016 and calls it from
-- cm_rollup_units), with the day totals upserted instead of summed from
-- rollup_unit. Same events: a unit whose day has revenue and whose margin
-- goes from >= 0 before the batch to < 0 with it.
CREATE OR REPLACE FUNCTION cm_rollup_units_016(lo bigint, hi bigint) RETURNS bigint
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
    batch AS (SELECT org, kind, unit, date_trunc('day', hour, 'UTC') AS day, sum(margin) AS delta,
            sum(revenue_nanos) AS revenue
        FROM attributed GROUP BY 1, 2, 3, 4),
    days AS (INSERT INTO rollup_unit_day AS d (org, kind, unit, day, revenue_nanos, margin_nanos)
        SELECT org, kind, unit, day, revenue, delta FROM batch ORDER BY 1, 2, 3, 4
        ON CONFLICT (org, kind, unit, day) DO UPDATE SET revenue_nanos = d.revenue_nanos + excluded.revenue_nanos,
            margin_nanos = d.margin_nanos + excluded.margin_nanos
        RETURNING d.org, d.kind, d.unit, d.day, d.revenue_nanos, d.margin_nanos),
    turned AS (SELECT d.org, d.kind, d.unit, d.day, d.margin_nanos AS after FROM days d
        JOIN batch b ON b.org = d.org AND b.kind = d.kind AND b.unit = d.unit AND b.day = d.day
        WHERE b.delta < 0 AND d.margin_nanos - b.delta >= 0 AND d.margin_nanos < 0 AND d.revenue_nanos > 0),
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

-- The days already summed, once: under the watermark's lock no worker moves
-- it until this migration commits, and every move after it goes through the
-- function above. Days older than the oldest heartbeat a client may still
-- send (7 days) never change again, but are cheap and kept for simplicity.
SELECT lo FROM rollup_watermark FOR UPDATE;
INSERT INTO rollup_unit_day (org, kind, unit, day, revenue_nanos, margin_nanos)
SELECT org, kind, unit, date_trunc('day', bucket, 'UTC'), sum(revenue_nanos),
       sum(revenue_nanos - refund_nanos - cost_nanos - external_nanos - fees_nanos)
FROM rollup_unit GROUP BY 1, 2, 3, 4
ON CONFLICT DO NOTHING;
