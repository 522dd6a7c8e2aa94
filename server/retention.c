#include "retention.h"
#include "chore.h"
#include "error.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>

struct cm_retention {
    cm_chore *chore; /* owned */
    char days[16], ahead[16];
    const char *params[2];
};

static const char maintain_sql[] = "SELECT cm_heartbeat_maintain($1::int, $2::int)";

static void on_maintained(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)arg;
    if (rc != CM_OK) {
        /* lock_timeout (55P03) included: tried again at the next run. */
        cm_log(CM_LOG_WARN, "event=retention_failed sqlstate=%s", sqlstate);
        return;
    }
    cm_log(CM_LOG_DEBUG, "event=retention %s", cm_pgres_get(res, 0, 0));
}

int cm_retention_new(uv_loop_t *loop, cm_pg_pool *db, int retention_days, int interval_ms, cm_retention **out)
{
    cm_retention *r = calloc(1, sizeof *r);
    if (!r) return CM_ENOMEM;
    snprintf(r->days, sizeof r->days, "%d", retention_days);
    snprintf(r->ahead, sizeof r->ahead, "%d", CM_RETENTION_AHEAD_DAYS);
    r->params[0] = r->days;
    r->params[1] = r->ahead;
    int rc = cm_chore_new(loop, db, interval_ms, maintain_sql, 2, r->params, on_maintained, r, &r->chore);
    if (rc != CM_OK) {
        free(r);
        return rc;
    }
    *out = r;
    return CM_OK;
}

void cm_retention_free(cm_retention *r)
{
    if (!r) return;
    cm_chore_free(r->chore);
    free(r);
}
