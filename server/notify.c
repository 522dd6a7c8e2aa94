#include "notify.h"
#include "buf.h"
#include "error.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

struct cm_notify {
    cm_pg_pool *pg;
    cm_webhook *hooks;
};

/* What the webhook body needs once the event has its id and time. */
typedef struct {
    cm_notify *n;
    char *body_tail; /* ,"event_type":...,"details":{...}} */
} pending_event;

int cm_notify_new(cm_pg_pool *pg, cm_webhook *hooks, cm_notify **out)
{
    cm_notify *n = calloc(1, sizeof *n);
    if (!n) return CM_ENOMEM;
    n->pg = pg;
    n->hooks = hooks;
    *out = n;
    return CM_OK;
}

void cm_notify_free(cm_notify *n)
{
    free(n);
}

static void on_recorded(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    pending_event *pe = arg;
    if (rc != CM_OK) {
        cm_log(CM_LOG_WARN, "event=event_record_failed");
    } else if (cm_pgres_rows(res) == 1 && !cm_pgres_isnull(res, 0, 2)) {
        cm_buf b;
        cm_buf_init(&b);
        cm_buf_addf(&b, "{\"id\":%s,\"ts\":", cm_pgres_get(res, 0, 0));
        cm_buf_add_jtime(&b, strtoll(cm_pgres_get(res, 0, 1), NULL, 10));
        cm_buf_adds(&b, pe->body_tail);
        char *body = cm_buf_take(&b, NULL);
        if (!body || cm_webhook_post(pe->n->hooks, cm_pgres_get(res, 0, 2), cm_pgres_get(res, 0, 3), body) != CM_OK)
            cm_log(CM_LOG_WARN, "event=webhook_dropped reason=queue");
        free(body);
    }
    free(pe->body_tail);
    free(pe);
}

void cm_notify_event(cm_notify *n, const char *org, const char *address, const char *type,
                     const char *details, bool webhook)
{
    pending_event *pe = calloc(1, sizeof *pe);
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, ",\"event_type\":");
    cm_buf_add_jstr(&b, type);
    cm_buf_adds(&b, ",\"org\":");
    cm_buf_add_jstr(&b, org);
    cm_buf_adds(&b, ",\"agent\":");
    if (address) cm_buf_add_jstr(&b, address);
    else cm_buf_adds(&b, "null");
    cm_buf_adds(&b, ",\"details\":");
    cm_buf_adds(&b, details);
    cm_buf_adds(&b, "}");
    if (!pe || !(pe->body_tail = cm_buf_take(&b, NULL))) {
        free(pe);
        cm_log(CM_LOG_WARN, "event=event_record_failed reason=memory");
        return;
    }
    pe->n = n;
    const char *params[] = {org, address, type, details, webhook ? "true" : "false"};
    if (cm_pg_query(n->pg,
                    "WITH e AS (INSERT INTO events (org, address, event_type, details)"
                    " VALUES ($1, $2, $3, $4::jsonb) RETURNING id, ts)"
                    " SELECT e.id::text, extract(epoch FROM e.ts)::bigint::text, w.url, w.secret"
                    " FROM e LEFT JOIN webhooks w ON w.org = $1 AND $5::boolean",
                    5, params, on_recorded, pe) != CM_OK) {
        cm_log(CM_LOG_WARN, "event=event_record_failed reason=postgres");
        free(pe->body_tail);
        free(pe);
    }
}
