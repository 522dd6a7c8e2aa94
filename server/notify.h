/* notify.h - records events in PostgreSQL and sends the ones that notify to
 * the org's webhook.
 *
 * Loop thread only. Fire-and-forget: an event that cannot be recorded is
 * logged, never allowed to fail the request that caused it. */
#ifndef CM_NOTIFY_H
#define CM_NOTIFY_H

#include "pg.h"
#include "webhook.h"

#include <stdbool.h>

typedef struct cm_notify cm_notify;

/* pg and hooks are borrowed and must outlive the notifier. */
int cm_notify_new(cm_pg_pool *pg, cm_webhook *hooks, cm_notify **out);
void cm_notify_free(cm_notify *n);

/* Records an event of `type` for org (address may be NULL) with details, a
 * JSON object's text; when `webhook`, also posts it to the org's webhook if
 * one is set. All strings are copied. */
void cm_notify_event(cm_notify *n, const char *org, const char *address, const char *type,
                     const char *details, bool webhook);

#endif
