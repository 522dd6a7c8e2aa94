/* webhook.h - delivers event notifications to the orgs' webhook URLs.
 *
 * The only module that includes libcurl. One worker thread posts each
 * delivery with the header X-Costmesh-Signature: sha256=<hex HMAC-SHA256 of
 * the body under the org's secret>, and retries failures (no answer or a
 * non-2xx status) with exponential backoff from 500 ms, up to 6 attempts,
 * so a slow or failing receiver never blocks a request. Deliveries live in
 * memory: a crash of costmeshd drops the ones not yet delivered (the event
 * itself is in PostgreSQL). */
#ifndef CM_WEBHOOK_H
#define CM_WEBHOOK_H

#include <stddef.h>

typedef struct cm_webhook cm_webhook;

/* Starts the worker. CM_OK, CM_ENOMEM or CM_EIO. */
int cm_webhook_new(cm_webhook **out);
/* Stops the worker (an attempt in flight finishes) and frees. NULL is a no-op. */
void cm_webhook_free(cm_webhook *w);
/* Any thread. Queues one delivery; url, secret and body are copied.
 * CM_OK, CM_ENOMEM, or CM_ETOOBIG when 10000 deliveries already wait. */
int cm_webhook_post(cm_webhook *w, const char *url, const char *secret, const char *body);
/* Deliveries that succeeded / were abandoned after the last attempt. */
unsigned long cm_webhook_delivered(const cm_webhook *w);
unsigned long cm_webhook_abandoned(const cm_webhook *w);

#endif
