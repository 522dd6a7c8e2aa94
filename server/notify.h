/* notify.h - records events in PostgreSQL and queues the ones that notify
 * for the org's webhook (the outbox webhook.h delivers).
 *
 * Loop thread only. Fire-and-forget: an event that cannot be recorded is
 * logged, never allowed to fail the request that caused it. */
#ifndef CM_NOTIFY_H
#define CM_NOTIFY_H

#include "pg.h"
#include "webhook.h"

#include <stdbool.h>

typedef struct cm_notify cm_notify;

/* pg and hooks are borrowed and must outlive the notifier; hooks is told
 * of each delivery queued. */
int cm_notify_new(cm_pg_pool *pg, cm_webhook *hooks, cm_notify **out);
/* Frees once the health timer has closed (run the loop after). NULL is a
 * no-op. */
void cm_notify_free(cm_notify *n);

/* Called once the event is recorded (rc CM_OK) or could not be (CM_ESTORE). */
typedef void (*cm_notify_cb)(void *arg, int rc);

/* Records an event of `type` for org (address may be NULL) with details, a
 * JSON object's text; when `webhook` and the org has a webhook, the same
 * statement queues its delivery, so an event recorded is an event that
 * will be delivered. All strings are copied. cb may be NULL; when given it
 * runs exactly once, so a caller can answer only after the event is
 * readable. */
void cm_notify_event(cm_notify *n, const char *org, const char *address, const char *type,
                     const char *details, bool webhook, cm_notify_cb cb, void *arg);

/* Every 15 s, records a health_changed event for each agent whose health
 * (from its last heartbeat's age, or killed) differs from the one last
 * recorded. Every replica ticks, but one pass per period runs for them all
 * (the periodic_runs row of schema/010). Loop thread; stopped by
 * cm_notify_free. */
int cm_notify_watch_health(cm_notify *n, uv_loop_t *loop);

#endif
