-- Bytes per agent-day of the rollups at hour grain and once folded into days
-- (COSTMESH_ROLLUP_HOURS_DAYS, schema/020_rollup_days.sql). Synthetic rows on
-- a database costmeshd has migrated, for :agents agents active every hour of
-- one day 10 days ago: per agent and hour a rollup_agent hour row, an 'agent'
-- unit row (and with runs=1 a 'run' unit row: a run of its own each hour) and
-- an intent row; the agent's day and month rows.
-- Sizes are taken after VACUUM FULL, i.e. as compact as the rows allow (a
-- live table reuses the space the fold frees; it does not shrink).
-- On an empty database (it folds every hour row older than 3 days):
--   psql "$COSTMESH_DATABASE_URL" -v agents=10000 -v runs=1 -f bench/fold_storage.sql
\set ON_ERROR_STOP on
CREATE TEMP TABLE fold_day AS SELECT date_trunc('day', now(), 'UTC') - interval '10 days' AS d;
INSERT INTO rollup_agent (address, grain, bucket, cost_nanos, tokens_in, tokens_out, llm_calls, heartbeats)
SELECT format('agent://bench/production/fold-%s', a), g.grain,
       CASE g.grain WHEN 'h' THEN (SELECT d FROM fold_day) + make_interval(hours => h)
                    WHEN 'd' THEN (SELECT d FROM fold_day) ELSE date_trunc('month', (SELECT d FROM fold_day), 'UTC') END,
       120000000, 2000, 800, 120, 120
FROM generate_series(1, :agents) a CROSS JOIN generate_series(0, 23) h
CROSS JOIN (VALUES ('h'), ('d'), ('m')) g(grain)
WHERE g.grain = 'h' OR h = 0;
INSERT INTO rollup_unit (org, kind, unit, address, bucket, cost_nanos, tokens_in, heartbeats, revenue_nanos)
SELECT 'bench', u.kind, CASE u.kind WHEN 'agent' THEN format('agent://bench/production/fold-%s', a)
                                    ELSE format('run-%s-%s', a, h) END,
       format('agent://bench/production/fold-%s', a), (SELECT d FROM fold_day) + make_interval(hours => h),
       120000000, 2000, 120, 500000000
FROM generate_series(1, :agents) a CROSS JOIN generate_series(0, 23) h CROSS JOIN (VALUES ('agent'), ('run')) u(kind)
WHERE u.kind = 'agent' OR :runs = 1;
INSERT INTO rollup_intent (address, intent_id, bucket, cost_nanos, tokens_in, heartbeats)
SELECT format('agent://bench/production/fold-%s', a), format('int-%s', a),
       (SELECT d FROM fold_day) + make_interval(hours => h), 120000000, 2000, 120
FROM generate_series(1, :agents) a CROSS JOIN generate_series(0, 23) h;
VACUUM FULL rollup_agent, rollup_unit, rollup_intent;
CREATE TEMP TABLE fold_sizes AS SELECT t AS tab, pg_total_relation_size(t::regclass) AS hours, 0::bigint AS days
    FROM unnest(ARRAY['rollup_agent', 'rollup_unit', 'rollup_intent']) t;
DO $$ BEGIN LOOP EXIT WHEN NOT (SELECT more FROM cm_rollup_fold(2, 100000)); END LOOP; END $$;
VACUUM FULL rollup_agent, rollup_unit, rollup_intent;
UPDATE fold_sizes SET days = pg_total_relation_size(tab::regclass);
-- The 'run' units are one per agent and hour (a run shorter than an hour has one row either way):
-- the fold saves nothing on them; the agent's unit, its intent and its hour rows fold 24 to 1.
SELECT tab, hours / :agents AS hour_grain_bytes_per_agent_day, days / :agents AS folded_bytes_per_agent_day
    FROM fold_sizes UNION ALL
SELECT 'all', sum(hours) / :agents, sum(days) / :agents FROM fold_sizes;
