#include "rollup.h"
#include "error.h"
#include "log.h"

#include <stdatomic.h>
#include <stdlib.h>

/* Transaction ids one batch may span, so that a worker that was down for a
 * long time catches up in statements of bounded size. */
#define BATCH_XIDS "100000"

struct cm_rollup {
    cm_pg_pool *db;
    uv_timer_t timer;
    int busy; /* a batch is in flight */
    _Atomic unsigned long long rows, failures;
};

/* The sums a rollup row adds up, as the columns of its INSERT, the sums of
 * its SELECT, and its ON CONFLICT update (one list, so a grouping cannot
 * forget a column). */
#define SUMS(X)                                                                                    \
    X(cost_nanos) X(tokens_in) X(tokens_out) X(tokens_cached) X(llm_calls) X(tool_calls)           \
    X(revenue_nanos) X(refund_nanos) X(external_nanos) X(fees_nanos)
#define COL(c) ", " #c
#define SUM(c) ", sum(" #c ")"
#define ADD(c) ", " #c " = r." #c " + excluded." #c
#define COLS SUMS(COL) ", heartbeats"
#define SUMS_SQL SUMS(SUM) ", count(*)"
#define ADDS " heartbeats = r.heartbeats + excluded.heartbeats" SUMS(ADD)

/* Known margin of a row's sums (schema/012_units.sql). */
#define MARGIN(p) p "revenue_nanos - " p "refund_nanos - " p "cost_nanos - " p "external_nanos - " p "fees_nanos"

/* One batch: lock the watermark (another replica holding it means that one
 * is at work: skip), sum the raw rows in [lo, hi) into each grouping, move
 * lo to hi. hi is the oldest transaction still running as this statement's
 * snapshot sees it: every row below has committed or never will. When the
 * lock was waited for by a replica whose snapshot is older than the move it
 * waited for, greatest() keeps lo from going back and [lo, hi) is empty.
 * cm_rollup_tail() reads the rows past the watermark of the statement's
 * snapshot through the BRIN index; the join keeps those of the batch.
 *
 * Groupings: intents; units (an agent's money, runs, sessions, workflows,
 * customers: cm_hb_units() names a row's units, inheriting what it omits
 * from its intent), and each unit's intents; the delegation tree's edges
 * and the outcomes that heartbeats' status ends (the first of an intent
 * wins: schema/014_intent_tree.sql). The move bumps gen and tree_gen,
 * which the fences of migrations 012 and 014 require. A unit whose day margin was >= 0 before the batch (the rollup
 * as this statement sees it, before its own update) and is < 0 after it
 * gets a margin_negative event, queued for the org's webhook in the same
 * statement: counted once, like the sums. */
static const char batch_sql[] =
    "WITH w AS (SELECT lo, greatest(lo, least(pg_snapshot_xmin(pg_current_snapshot())::text::bigint,"
    " lo + " BATCH_XIDS ")) AS hi FROM rollup_watermark FOR UPDATE SKIP LOCKED),"
    " src AS (SELECT t.*, date_trunc('hour', t.ts, 'UTC') AS hour FROM cm_rollup_tail() t"
    " JOIN w ON t.xid >= w.lo AND t.xid < w.hi),"
    " intents AS (INSERT INTO rollup_intent AS r (address, intent_id, bucket" COLS ")"
    " SELECT address, intent_id, hour" SUMS_SQL
    " FROM src WHERE intent_id IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    " ON CONFLICT (address, intent_id, bucket) DO UPDATE SET" ADDS " RETURNING 1),"
    " attributed AS (SELECT split_part(s.address, '/', 3) AS org, u.kind, u.unit, s.* FROM src s"
    " CROSS JOIN LATERAL cm_hb_units(s.address, s.intent_id, s.run_id, s.session_id, s.workflow, s.customer) u),"
    " units AS (INSERT INTO rollup_unit AS r (org, kind, unit, address, bucket" COLS ")"
    " SELECT org, kind, unit, address, hour" SUMS_SQL
    " FROM attributed GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5"
    " ON CONFLICT (org, kind, unit, address, bucket) DO UPDATE SET" ADDS " RETURNING 1),"
    " unit_intents AS (INSERT INTO rollup_unit_intent AS r (org, kind, unit, intent_id, address, bucket,"
    " cost_nanos, last_ts) SELECT org, kind, unit, intent_id, address, hour, sum(cost_nanos), max(ts)"
    " FROM attributed WHERE intent_id IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6"
    " ON CONFLICT (org, kind, unit, intent_id, address, bucket) DO UPDATE SET"
    " cost_nanos = r.cost_nanos + excluded.cost_nanos, last_ts = greatest(r.last_ts, excluded.last_ts)),"
    " edges AS (INSERT INTO intent_edge (org, intent_id, parent_intent_id)"
    " SELECT DISTINCT ON (1, 2) split_part(address, '/', 3), intent_id, parent_intent_id FROM src"
    " WHERE intent_id IS NOT NULL AND parent_intent_id IS NOT NULL ORDER BY 1, 2, seq ON CONFLICT DO NOTHING),"
    " ended AS (INSERT INTO intent_outcome (org, intent_id, status, ended_at)"
    " SELECT DISTINCT ON (1, 2) split_part(address, '/', 3), intent_id, status, ts FROM src"
    " WHERE intent_id IS NOT NULL AND status IN " CM_ROLLUP_ENDED_SQL " ORDER BY 1, 2, seq ON CONFLICT DO NOTHING),"
    " losses AS (SELECT org, kind, unit, date_trunc('day', hour, 'UTC') AS day, sum(" MARGIN("") ") AS delta"
    " FROM attributed GROUP BY 1, 2, 3, 4 HAVING sum(" MARGIN("") ") < 0),"
    " turned AS (SELECT l.*, b.before + l.delta AS after FROM losses l CROSS JOIN LATERAL"
    " (SELECT coalesce(sum(" MARGIN("r.") "), 0) AS before FROM rollup_unit r WHERE r.org = l.org"
    " AND r.kind = l.kind AND r.unit = l.unit AND r.bucket >= l.day AND r.bucket < l.day + interval '1 day') b"
    " WHERE b.before >= 0 AND b.before + l.delta < 0),"
    " ev AS (INSERT INTO events (org, address, event_type, details)"
    " SELECT org, CASE WHEN kind = 'agent' THEN unit END, 'margin_negative', json_build_object('by', kind,"
    " 'id', unit, 'window', 'day', 'from', to_char(day AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    " 'margin_usd', trim_scale(after / 1000000000))::jsonb FROM turned ORDER BY org, kind, unit, day"
    " RETURNING id, org),"
    " hooks AS (INSERT INTO webhook_deliveries (org, event_id) SELECT ev.org, ev.id FROM ev"
    " JOIN webhooks k ON k.org = ev.org RETURNING 1),"
    " moved AS (UPDATE rollup_watermark SET lo = w.hi, moved_at = now(), gen = gen + 1, tree_gen = tree_gen + 1"
    " FROM w WHERE w.hi > w.lo"
    " RETURNING w.hi - w.lo = " BATCH_XIDS " AS cut)"
    " SELECT (SELECT count(*) FROM src)::text, coalesce((SELECT cut FROM moved), false)::text,"
    " (SELECT count(*) FROM intents)::text, (SELECT count(*) FROM units)::text, (SELECT count(*) FROM hooks)::text";

static void run_batch(uv_timer_t *t);

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_batch(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    cm_rollup *r = arg;
    r->busy = 0;
    if (rc != CM_OK) {
        atomic_fetch_add(&r->failures, 1);
        cm_log(CM_LOG_WARN, "event=rollup_failed sqlstate=%s", sqlstate);
        return;
    }
    unsigned long long n = strtoull(cm_pgres_get(res, 0, 0), NULL, 10);
    atomic_fetch_add(&r->rows, n);
    /* A batch cut at its size: the rest is due now, not at the next tick. */
    if (cm_pgres_get(res, 0, 1)[0] == 't') run_batch(&r->timer);
}

static void run_batch(uv_timer_t *t)
{
    cm_rollup *r = t->data;
    if (r->busy) return;
    if (cm_pg_query(r->db, batch_sql, 0, NULL, on_batch, r) == CM_OK) r->busy = 1;
}

int cm_rollup_new(uv_loop_t *loop, cm_pg_pool *db, int interval_ms, cm_rollup **out)
{
    cm_rollup *r = calloc(1, sizeof *r);
    if (!r) return CM_ENOMEM;
    r->db = db;
    if (uv_timer_init(loop, &r->timer) != 0) {
        free(r);
        return CM_EIO;
    }
    r->timer.data = r;
    if (uv_timer_start(&r->timer, run_batch, (uint64_t)interval_ms, (uint64_t)interval_ms) != 0) {
        uv_close((uv_handle_t *)&r->timer, on_closed);
        return CM_EIO;
    }
    *out = r;
    return CM_OK;
}

void cm_rollup_free(cm_rollup *r)
{
    if (!r) return;
    uv_close((uv_handle_t *)&r->timer, on_closed);
}

unsigned long long cm_rollup_rows(const cm_rollup *r)
{
    return atomic_load(&((cm_rollup *)r)->rows);
}

unsigned long long cm_rollup_failures(const cm_rollup *r)
{
    return atomic_load(&((cm_rollup *)r)->failures);
}
