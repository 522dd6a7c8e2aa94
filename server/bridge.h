/* bridge.h - the one door between the HTTP threads and the loop thread.
 *
 * An HTTP thread fills a cm_job with a validated request and submits it;
 * the loop thread runs it against the stores, fills the reply fields and
 * calls job->done, which hands the job back (resumes the HTTP connection).
 * uv_async_send may coalesce wake-ups, so the loop drains the whole queue
 * each time. */
#ifndef CM_BRIDGE_H
#define CM_BRIDGE_H

#include "job.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct cm_bridge cm_bridge;
typedef void (*cm_bridge_fn)(void *arg, cm_job *j);

/* Creates the bridge on `loop` (call on the loop thread before it runs);
 * fn runs each submitted job on the loop thread. */
int cm_bridge_new(uv_loop_t *loop, cm_bridge_fn fn, void *arg, cm_bridge **out);
/* Any thread. Returns CM_OK, or CM_ESHUTDOWN after cm_bridge_close (the job
 * stays the caller's). */
int cm_bridge_submit(cm_bridge *b, cm_job *j);
/* Any thread: from now on cm_bridge_submit refuses jobs; those already
 * queued still run. */
void cm_bridge_close(cm_bridge *b);
/* Loop thread: closes, runs what is still queued, and frees the bridge once
 * libuv has closed its handle. NULL is a no-op. */
void cm_bridge_free(cm_bridge *b);

#endif
