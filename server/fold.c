#include "fold.h"
#include "chore.h"
#include "error.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows per table per run: a run stays well under a second, so it holds back
 * neither the rollup worker's watermark nor the pool it shares. */
#define FOLD_BATCH "10000"

struct cm_fold {
    cm_chore *chore; /* owned */
    int hours_days;
    int64_t hours_until; /* rollup_fold's, as of the last run */
    char days[16];
    const char *params[2];
};

static const char fold_sql[] = "SELECT summary, more::text, hours_until::text FROM cm_rollup_fold($1::int, $2::int)";

static void on_folded(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    cm_fold *f = arg;
    if (rc != CM_OK) {
        /* lock_timeout (55P03) included: tried again at the next run. */
        cm_log(CM_LOG_WARN, "event=fold_failed sqlstate=%s", sqlstate);
        return;
    }
    cm_log(CM_LOG_DEBUG, "event=fold %s", cm_pgres_get(res, 0, 0));
    f->hours_until = strtoll(cm_pgres_get(res, 0, 2), NULL, 10);
    if (strcmp(cm_pgres_get(res, 0, 1), "true") == 0) cm_chore_run(f->chore);
}

int cm_fold_new(uv_loop_t *loop, cm_pg_pool *db, int hours_days, int interval_ms, cm_fold **out)
{
    cm_fold *f = calloc(1, sizeof *f);
    if (!f) return CM_ENOMEM;
    f->hours_days = hours_days;
    snprintf(f->days, sizeof f->days, "%d", hours_days);
    f->params[0] = f->days;
    f->params[1] = FOLD_BATCH;
    int rc = cm_chore_new(loop, db, interval_ms, fold_sql, 2, f->params, on_folded, f, &f->chore);
    if (rc != CM_OK) {
        free(f);
        return rc;
    }
    /* Soon, not a whole interval after the start: until its first answer
     * this replica knows only its own setting. */
    cm_chore_soon(f->chore, 1000);
    *out = f;
    return CM_OK;
}

void cm_fold_free(cm_fold *f)
{
    if (!f) return;
    cm_chore_free(f->chore);
    free(f);
}

int64_t cm_fold_horizon(const cm_fold *f, int64_t now)
{
    int64_t kept = cm_fold_hours_from(f->hours_days, now);
    return kept > f->hours_until ? kept : f->hours_until;
}

int64_t cm_fold_hours_from(int hours_days, int64_t now)
{
    if (hours_days == 0) return 0;
    int64_t today = now - ((now % 86400) + 86400) % 86400;
    return today - (int64_t)hours_days * 86400;
}
