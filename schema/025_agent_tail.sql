-- A read about one agent copies out only that agent's raw rows past the
-- watermark, a read about an org only the org's, and the tails' plans are
-- kept.
--
-- cm_rollup_tail() returns every raw row past the watermark, and a function
-- with SET options is never inlined: all its rows are copied into a
-- tuplestore before the caller's WHERE keeps one agent's. Under load the
-- tail is thousands of rows, and an agent's spend statement read it three
-- times (its money, its models, its outcomes), the outcomes attributing
-- every row of the org through cm_hb_units before keeping the agent's: a
-- spend statement took 37 ms at the median while single heartbeats ran,
-- 16 pollers got 47 answers a second and cost ingest 57 % (make bench).
-- A unit's read copied every org's tail. Same rows, same
-- snapshot: replies are as exact as before. Measured on a quiet machine
-- with 1,000 agents: a spend statement on an idle server 15 ms -> 9 ms;
-- while single heartbeats ran, 16 pollers got 69 answers a second instead
-- of 47 and the heartbeats 1,800-2,000 a second instead of 1,544.
SET LOCAL lock_timeout = '5s';

-- The tails in PL/pgSQL, whose plans a session keeps: a SQL function's
-- statement is planned again at every statement that calls it, and with a
-- partition a day that took 1.6 to 2 ms a call site for a scan of 0.2 ms
-- (an agent's spend statement has four). The org's tail keeps the org's
-- rows itself, as the agent's does. STABLE, so they read the calling
-- statement's snapshot, as before. No parallel workers: the estimate of the
-- tail's rows before the agent's are kept is the whole of today's partition
-- (BRIN cannot tell), and starting two workers for the few rows there are
-- cost 6 to 40 ms under load. The plan does not depend on the address, so
-- the generic one is used from the first call.
CREATE OR REPLACE FUNCTION cm_rollup_tail() RETURNS SETOF heartbeats
    LANGUAGE plpgsql STABLE ROWS 100 SET enable_seqscan = off SET jit = off
    AS $$BEGIN RETURN QUERY SELECT * FROM heartbeats WHERE xid >= (SELECT lo FROM rollup_watermark); END$$;

CREATE OR REPLACE FUNCTION cm_org_tail(org text) RETURNS SETOF heartbeats
    LANGUAGE plpgsql STABLE ROWS 100 SET enable_seqscan = off SET jit = off SET max_parallel_workers_per_gather = 0
    SET plan_cache_mode = force_generic_plan
    AS $$BEGIN
    RETURN QUERY SELECT * FROM heartbeats h
        WHERE h.xid >= (SELECT lo FROM rollup_watermark) AND split_part(h.address, '/', 3) = $1;
END$$;

CREATE OR REPLACE FUNCTION cm_agent_tail(agent text) RETURNS SETOF heartbeats
    LANGUAGE plpgsql STABLE ROWS 10 SET enable_seqscan = off SET jit = off SET max_parallel_workers_per_gather = 0
    SET plan_cache_mode = force_generic_plan
    AS $$BEGIN
    RETURN QUERY SELECT * FROM heartbeats h WHERE h.xid >= (SELECT lo FROM rollup_watermark) AND h.address = $1;
END$$;

-- 018's outcomes, the tail read for the agent the question is about: the
-- agent itself (kind 'agent': its own rows are its unit's, no attribution
-- needed) or the agent's part of another unit (address given). Only a
-- unit's outcomes over all its agents read the org's tail. Each branch's
-- condition on the arguments alone is checked once, before its scan. In
-- PL/pgSQL, as the tails: a SQL function's statement is parsed and planned
-- again at every statement that calls it, which was most of an agent's
-- spend read once the tails were cheap (16 pollers of an idle server: 212 ->
-- 348 answers a second at the same PostgreSQL CPU). The statement names
-- the arguments by number; where a column and an argument or result share
-- a name, the name is the column's.
CREATE OR REPLACE FUNCTION cm_unit_outcomes(org text, kind text, unit text, address text, t0 timestamptz,
                                            t1 timestamptz, abandon interval, now timestamptz, spend numeric)
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
                  FROM cm_agent_tail($3) h
                  WHERE $2 = 'agent' AND h.intent_id IS NOT NULL AND split_part(h.address, '/', 3) = $1
              UNION ALL
              SELECT h.intent_id, h.address, date_trunc('hour', h.ts, 'UTC'), h.cost_nanos, h.ts
                  FROM (SELECT * FROM cm_agent_tail($4) WHERE $2 <> 'agent' AND $4 IS NOT NULL
                        UNION ALL SELECT * FROM cm_org_tail($1) WHERE $2 <> 'agent' AND $4 IS NULL) h
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
