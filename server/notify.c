#include "notify.h"
#include "error.h"
#include "health.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

struct cm_notify {
    cm_pg_pool *pg;
    cm_webhook *hooks;
    uv_timer_t health;
    int watching;
};

/* A caller waiting for its event to be recorded. */
typedef struct {
    cm_notify *n;
    cm_notify_cb cb;
    void *arg;
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

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void cm_notify_free(cm_notify *n)
{
    if (!n) return;
    if (n->watching) uv_close((uv_handle_t *)&n->health, on_timer_closed);
    else free(n);
}

static void on_health_checked(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)arg;
    (void)sqlstate;
    if (rc == CM_OK && cm_pgres_affected(res) > 0)
        cm_log(CM_LOG_INFO, "event=health_changed agents=%ld", cm_pgres_affected(res));
}

/* The health sweep: each agent's health from its last heartbeat's age,
 * stored, and a health_changed event for each change. One replica runs it
 * per period (claim_sql below); should two passes still overlap, the row
 * lock of the UPDATE makes the later one see the new value and record
 * nothing. One pass reads every agent (BENCHMARKS.md times it at 100,000). */
static const char health_sql[] =
    "WITH h AS (SELECT address, org, health AS old, "
    CM_HEALTH_CASE_SQL("killed", "last_heartbeat", "extract(epoch FROM now() - last_heartbeat)")
    " AS new FROM agents),"
    " u AS (UPDATE agents a SET health = h.new FROM h WHERE a.address = h.address"
    " AND a.health IS DISTINCT FROM h.new RETURNING a.address, a.org, h.old, h.new)"
    " INSERT INTO events (org, address, event_type, details)"
    " SELECT org, address, 'health_changed', json_build_object('from', old, 'to', new)::jsonb FROM u";

/* The sweep's period. A pass is claimed for the whole fleet of replicas
 * when the last one began at least a second less than the period ago, so
 * a replica's own next tick always finds it due. */
#define HEALTH_PERIOD_MS 15000
#define HEALTH_CLAIM_S "14"

static const char claim_sql[] =
    "UPDATE periodic_runs SET last_run = now(), runs = runs + 1 WHERE job = 'health_sweep'"
    " AND last_run <= now() - " HEALTH_CLAIM_S " * interval '1 second'";

/* Claimed apart from the sweep (the bench times health_sql alone): a
 * claimed pass that then fails is simply the period's missed pass. */
static void on_sweep_claimed(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_notify *n = arg;
    if (rc != CM_OK || cm_pgres_affected(res) == 0) return;
    if (cm_pg_query(n->pg, health_sql, 0, NULL, on_health_checked, n) != CM_OK)
        cm_log(CM_LOG_DEBUG, "event=health_check_skipped reason=postgres");
}

static void check_health(uv_timer_t *t)
{
    cm_notify *n = t->data;
    if (cm_pg_query(n->pg, claim_sql, 0, NULL, on_sweep_claimed, n) != CM_OK)
        cm_log(CM_LOG_DEBUG, "event=health_check_skipped reason=postgres");
}

int cm_notify_watch_health(cm_notify *n, uv_loop_t *loop)
{
    if (uv_timer_init(loop, &n->health) != 0) return CM_EIO;
    n->health.data = n;
    n->watching = 1;
    return uv_timer_start(&n->health, check_health, HEALTH_PERIOD_MS, HEALTH_PERIOD_MS) == 0 ? CM_OK : CM_EIO;
}

static void on_recorded(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    pending_event *pe = arg;
    if (rc != CM_OK) cm_log(CM_LOG_WARN, "event=event_record_failed");
    else if (strcmp(cm_pgres_get(res, 0, 0), "0") != 0) cm_webhook_kick(pe->n->hooks);
    if (pe->cb) pe->cb(pe->arg, rc);
    free(pe);
}

void cm_notify_event(cm_notify *n, const char *org, const char *address, const char *type,
                     const char *details, bool webhook, cm_notify_cb cb, void *arg)
{
    pending_event *pe = calloc(1, sizeof *pe);
    if (!pe) {
        cm_log(CM_LOG_WARN, "event=event_record_failed reason=memory");
        if (cb) cb(arg, CM_ENOMEM);
        return;
    }
    pe->n = n;
    pe->cb = cb;
    pe->arg = arg;
    const char *params[] = {org, address, type, details, webhook ? "true" : "false"};
    /* The delivery is queued in the statement that records the event: both
     * or neither. */
    if (cm_pg_query(n->pg,
                    "WITH e AS (INSERT INTO events (org, address, event_type, details)"
                    " VALUES ($1, $2, $3, $4::jsonb) RETURNING id),"
                    " d AS (INSERT INTO webhook_deliveries (org, event_id)"
                    " SELECT $1, e.id FROM e JOIN webhooks w ON w.org = $1 WHERE $5::boolean RETURNING 1)"
                    " SELECT count(*) FROM d",
                    5, params, on_recorded, pe) != CM_OK) {
        cm_log(CM_LOG_WARN, "event=event_record_failed reason=postgres");
        free(pe);
        if (cb) cb(arg, CM_ESTORE);
    }
}
