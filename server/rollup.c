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

/* One batch: lock the watermark (another replica holding it means that one
 * is at work: skip), sum the raw rows in [lo, hi) into every grouping, move
 * lo to hi. hi is the oldest transaction still running as this statement's
 * snapshot sees it: every row below has committed or never will. When the
 * lock was waited for by a replica whose snapshot is older than the move it
 * waited for, greatest() keeps lo from going back and [lo, hi) is empty.
 *
 * cm_rollup_sum() of schema/024_worker_speed.sql reads the rows of [lo, hi)
 * once and sums them into every grouping: intents; units (an agent's money,
 * runs, sessions, workflows, customers, the margin_negative events); each
 * unit's intents, the delegation tree's edges and the outcomes heartbeats'
 * status ends; billing and the model split; the budget scopes. The move
 * bumps gen and sets summed_to, which tells the triggers that the previous
 * releases' workers rely on (016's units, 019's billing) that this one
 * summed them already. The lag is read from the tail as the statement's
 * snapshot sees it, this batch's rows included. */
static const char batch_sql[] =
    "WITH w AS (SELECT lo, greatest(lo, least(pg_snapshot_xmin(pg_current_snapshot())::text::bigint,"
    " lo + " BATCH_XIDS ")) AS hi FROM rollup_watermark FOR UPDATE SKIP LOCKED),"
    " sums AS (SELECT s.* FROM w, cm_rollup_sum(w.lo, w.hi, '{intents,units,tree,billing,scopes}') s"
    " WHERE w.hi > w.lo),"
    " moved AS (UPDATE rollup_watermark SET lo = w.hi, moved_at = now(), gen = gen + 1, summed_to = w.hi FROM w"
    " WHERE w.hi > w.lo RETURNING w.hi - w.lo = " BATCH_XIDS " AS cut)"
    " SELECT 'w', coalesce((SELECT n FROM sums WHERE tag = 'rows'), 0)::text,"
    " coalesce((SELECT cut FROM moved), false)::text, coalesce((SELECT n FROM sums WHERE tag = 'intents'), 0)::text,"
    " coalesce((SELECT n FROM sums WHERE tag = 'units'), 0)::text,"
    " coalesce(floor(extract(epoch FROM now() - cm_rollup_tail_oldest())), 0)::text"
    " UNION ALL SELECT 's', " CM_BUDGET_TAG_SQL("org", "kind", "id") ", grain,"
    " extract(epoch FROM bucket)::bigint::text, least(n, 9223372036854775807)::text, NULL FROM sums WHERE tag = 's'"
    " UNION ALL SELECT 'i', org, id, least(n, 9223372036854775807)::text, NULL, NULL FROM sums WHERE tag = 'i'";

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
