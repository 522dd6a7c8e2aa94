#include "rollup.h"
#include "budget.h"
#include "chore.h"
#include "error.h"
#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Transaction ids one batch may span, so that a worker that was down for a
 * long time catches up in statements of bounded size. */
#define BATCH_XIDS "100000"

struct cm_rollup {
    cm_chore *chore;    /* owned */
    cm_hot *hot;        /* borrowed */
    cm_notify *notify;  /* borrowed */
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
 * customers, and the margin_negative events; since 018_intent_tree.sql also
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
    " scopes AS (INSERT INTO rollup_scope AS r (org, kind, scope, grain, bucket, cost_nanos)"
    " SELECT * FROM cm_scope_batch((SELECT lo FROM w), (SELECT hi FROM w)) ORDER BY 1, 2, 3, 4, 5"
    " ON CONFLICT (org, kind, scope, grain, bucket) DO UPDATE SET cost_nanos = r.cost_nanos + excluded.cost_nanos"
    " RETURNING org, kind, scope, grain, bucket, cost_nanos),"
    " moved AS (UPDATE rollup_watermark SET lo = w.hi, moved_at = now(), gen = gen + 1 FROM w WHERE w.hi > w.lo"
    " RETURNING w.hi - w.lo = " BATCH_XIDS " AS cut)"
    " SELECT 'w', (SELECT count(*) FROM src)::text, coalesce((SELECT cut FROM moved), false)::text,"
    " (SELECT count(*) FROM intents)::text, coalesce((SELECT n FROM units), 0)::text,"
    " (SELECT coalesce(floor(extract(epoch FROM now() - min(received_at))), 0) FROM cm_rollup_tail())::text"
    " UNION ALL SELECT 's', " CM_BUDGET_TAG_SQL("org", "kind", "scope") ", grain,"
    " extract(epoch FROM bucket)::bigint::text, least(cost_nanos, 9223372036854775807)::text, NULL FROM scopes"
    " UNION ALL SELECT 'i', split_part(address, '/', 3), intent_id, least(sum(cost_nanos), 9223372036854775807)::text,"
    " NULL, NULL FROM src WHERE intent_id IS NOT NULL AND cost_nanos > 0 GROUP BY 2, 3";

/* A CHECK of the scopes a batch changed: their tags, until it answers. */
typedef struct {
    cm_rollup *r;
    int n;
    int64_t now;
    char (*tags)[CM_ADDR_MAX];
} scope_check;

/* Records the event of each threshold or limit of a scope's cost newly
 * crossed in its window: threshold_crossed, or policy_breached (the same
 * once-per-window markers as admission's, so each is recorded once), or
 * its exhaustion newly predicted within the horizon. */
static void on_scope_check(void *arg, int rc, const cm_hot_check_result *res)
{
    (void)rc; /* a scope Redis could not answer for is checked at its next batch */
    scope_check *c = arg;
    for (int i = 0; i < res->nmarks; i++) {
        const cm_hot_mark *m = &res->marks[i];
        char org[CM_ADDR_SEG_MAX + 1];
        cm_scope s;
        if (m->agent < 0 || m->agent >= c->n || cm_budget_untag(c->tags[m->agent], org, &s) != CM_OK) continue;
        cm_buf d;
        cm_buf_init(&d);
        const char *type = cm_budget_mark_event(&s, m->limit, m->limit_value, m->current, m->fraction,
                                                &res->forecast[m->agent], c->now, &d);
        char *details = cm_buf_take(&d, NULL);
        if (details) cm_notify_event(c->r->notify, org, NULL, type, details, true, NULL, NULL);
        free(details);
    }
    free(c->tags);
    free(c);
}

static int cmp_tag(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Checks the current windows of the scopes of rows v[0..n), once each
 * (a batch has a row per scope, grain and bucket: sorted, then the
 * repeats skipped, as every run of a busy batch is a scope). */
static void check_scopes(cm_rollup *r, const cm_hot_count *v, int n)
{
    scope_check *c = calloc(1, sizeof *c);
    const char **tags = malloc((size_t)n * sizeof *tags);
    if (c) c->tags = malloc((size_t)n * sizeof *c->tags);
    if (!c || !c->tags || !tags) goto fail;
    c->r = r;
    for (int i = 0; i < n; i++) tags[i] = v[i].tag;
    qsort(tags, (size_t)n, sizeof *tags, cmp_tag);
    /* tags[c->n] is written only after tags[i >= c->n] was read. */
    for (int i = 0; i < n; i++) {
        if (c->n > 0 && strcmp(c->tags[c->n - 1], tags[i]) == 0) continue;
        snprintf(c->tags[c->n], CM_ADDR_MAX, "%s", tags[i]);
        tags[c->n] = c->tags[c->n];
        c->n++;
    }
    c->now = (int64_t)time(NULL);
    if (cm_hot_check(r->hot, tags, c->n, c->now, on_scope_check, c) != CM_OK) goto fail;
    free(tags);
    return;
fail:
    if (c) free(c->tags);
    free(c);
    free(tags);
}

/* The scopes' new totals ('s' rows) into Redis, where admission reads
 * them, then their marks. Fire-and-forget: they are absolute totals,
 * merged as maxima, so a lost merge is made good by the scope's next
 * batch or the next rebuild. Redis runs the CHECK after the merges. */
static void merge_scopes(cm_rollup *r, const cm_pgres *res)
{
    int rows = cm_pgres_rows(res);
    cm_hot_count *v = rows > 1 ? malloc((size_t)rows * sizeof *v) : NULL;
    int n = 0;
    for (int i = 0; v && i < rows; i++)
        if (cm_pgres_get(res, i, 0)[0] == 's')
            v[n++] = (cm_hot_count){.tag = cm_pgres_get(res, i, 1), .grain = cm_pgres_get(res, i, 2)[0],
                                    .start = strtoll(cm_pgres_get(res, i, 3), NULL, 10),
                                    .value = strtoll(cm_pgres_get(res, i, 4), NULL, 10)};
    if (n > 0 && cm_hot_merge_count(r->hot, "cost", v, n, NULL, NULL) == CM_OK) check_scopes(r, v, n);
    free(v);
}

/* The batch's cost per intent ('i' rows) draws the intents' reservations
 * down at the scope levels, now that the scopes' windows hold it. */
static void draw_scopes(cm_rollup *r, const cm_pgres *res)
{
    int rows = cm_pgres_rows(res);
    cm_hot_spent *v = rows > 1 ? malloc((size_t)rows * sizeof *v) : NULL;
    int n = 0;
    for (int i = 0; v && i < rows; i++)
        if (cm_pgres_get(res, i, 0)[0] == 'i')
            v[n++] = (cm_hot_spent){.org = cm_pgres_get(res, i, 1), .intent_id = cm_pgres_get(res, i, 2),
                                    .cost = strtoll(cm_pgres_get(res, i, 3), NULL, 10)};
    if (n > 0) cm_hot_draw(r->hot, true, v, n);
    free(v);
}

static void on_batch(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    cm_rollup *r = arg;
    if (rc != CM_OK) {
        atomic_fetch_add(&r->failures, 1);
        cm_log(CM_LOG_WARN, "event=rollup_failed sqlstate=%s", sqlstate);
        return;
    }
    /* The 'w' row: the batch's raw rows and whether it was cut. */
    int w = 0;
    while (w < cm_pgres_rows(res) && cm_pgres_get(res, w, 0)[0] != 'w') w++;
    if (w == cm_pgres_rows(res)) return;
    unsigned long long n = strtoull(cm_pgres_get(res, w, 1), NULL, 10);
    atomic_fetch_add(&r->rows, n);
    atomic_store(&r->lag, strtoll(cm_pgres_get(res, w, 5), NULL, 10));
    merge_scopes(r, res);
    draw_scopes(r, res);
    /* A batch cut at its size: the rest is due now, not at the next tick. */
    if (cm_pgres_get(res, w, 2)[0] == 't') cm_chore_run(r->chore);
}

int cm_rollup_new(uv_loop_t *loop, cm_pg_pool *db, cm_hot *hot, cm_notify *notify, int interval_ms,
                  cm_rollup **out)
{
    cm_rollup *r = calloc(1, sizeof *r);
    if (!r) return CM_ENOMEM;
    r->hot = hot;
    r->notify = notify;
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
