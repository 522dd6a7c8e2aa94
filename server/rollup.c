#include "rollup.h"
#include "chore.h"
#include "error.h"
#include "log.h"

#include <stdatomic.h>
#include <stdlib.h>

/* Transaction ids one batch may span, so that a worker that was down for a
 * long time catches up in statements of bounded size. */
#define BATCH_XIDS "100000"

struct cm_rollup {
    cm_chore *chore; /* owned */
    _Atomic unsigned long long rows, failures;
    _Atomic long long lag; /* seconds, as the last batch saw it */
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
 * customers, and the margin_negative events; since 017_intent_tree.sql also
 * each unit's intents, the delegation tree's edges and the outcomes that
 * heartbeats' status ends), summed by cm_rollup_units() of
 * schema/016_units.sql, which the previous releases' worker reaches
 * through a trigger on the watermark: the move bumps gen to say this one
 * summed them already. */
static const char batch_sql[] =
    "WITH w AS (SELECT lo, greatest(lo, least(pg_snapshot_xmin(pg_current_snapshot())::text::bigint,"
    " lo + " BATCH_XIDS ")) AS hi FROM rollup_watermark FOR UPDATE SKIP LOCKED),"
    " src AS (SELECT t.* FROM cm_rollup_tail() t JOIN w ON t.xid >= w.lo AND t.xid < w.hi),"
    " intents AS (INSERT INTO rollup_intent AS r (address, intent_id, bucket" COLS ")"
    " SELECT address, intent_id, date_trunc('hour', ts, 'UTC')" SUMS_SQL
    " FROM src WHERE intent_id IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    " ON CONFLICT (address, intent_id, bucket) DO UPDATE SET" ADDS " RETURNING 1),"
    " units AS (SELECT cm_rollup_units(w.lo, w.hi) AS n FROM w WHERE w.hi > w.lo),"
    " moved AS (UPDATE rollup_watermark SET lo = w.hi, moved_at = now(), gen = gen + 1 FROM w WHERE w.hi > w.lo"
    " RETURNING w.hi - w.lo = " BATCH_XIDS " AS cut)"
    " SELECT (SELECT count(*) FROM src)::text, coalesce((SELECT cut FROM moved), false)::text,"
    " (SELECT count(*) FROM intents)::text, coalesce((SELECT n FROM units), 0)::text,"
    " (SELECT coalesce(floor(extract(epoch FROM now() - min(received_at))), 0) FROM cm_rollup_tail())::text";

static void on_batch(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    cm_rollup *r = arg;
    if (rc != CM_OK) {
        atomic_fetch_add(&r->failures, 1);
        cm_log(CM_LOG_WARN, "event=rollup_failed sqlstate=%s", sqlstate);
        return;
    }
    unsigned long long n = strtoull(cm_pgres_get(res, 0, 0), NULL, 10);
    atomic_fetch_add(&r->rows, n);
    atomic_store(&r->lag, strtoll(cm_pgres_get(res, 0, 4), NULL, 10));
    /* A batch cut at its size: the rest is due now, not at the next tick. */
    if (cm_pgres_get(res, 0, 1)[0] == 't') cm_chore_run(r->chore);
}

int cm_rollup_new(uv_loop_t *loop, cm_pg_pool *db, int interval_ms, cm_rollup **out)
{
    cm_rollup *r = calloc(1, sizeof *r);
    if (!r) return CM_ENOMEM;
    int rc = cm_chore_new(loop, db, interval_ms, batch_sql, 0, NULL, on_batch, r, &r->chore);
    if (rc != CM_OK) {
        free(r);
        return rc;
    }
    *out = r;
    return CM_OK;
}

void cm_rollup_free(cm_rollup *r)
{
    if (!r) return;
    cm_chore_free(r->chore);
    free(r);
}

unsigned long long cm_rollup_rows(const cm_rollup *r)
{
    return atomic_load(&((cm_rollup *)r)->rows);
}

unsigned long long cm_rollup_failures(const cm_rollup *r)
{
    return atomic_load(&((cm_rollup *)r)->failures);
}

long long cm_rollup_lag(const cm_rollup *r)
{
    return atomic_load(&((cm_rollup *)r)->lag);
}
