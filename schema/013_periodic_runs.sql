-- Periodic jobs that every replica schedules but one should run per period.
-- A replica whose timer fires runs the job only if its UPDATE moves the
-- job's last_run (a row lock: a racing replica waits, then finds it moved),
-- so N replicas sweep once per period, not N times (server/notify.c).
CREATE TABLE IF NOT EXISTS periodic_runs (
    job      text PRIMARY KEY,
    last_run timestamptz NOT NULL DEFAULT '-infinity',
    runs     bigint NOT NULL DEFAULT 0  -- passes claimed, for operators and tests
);
INSERT INTO periodic_runs (job) VALUES ('health_sweep') ON CONFLICT (job) DO NOTHING;
