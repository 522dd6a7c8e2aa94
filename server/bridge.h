/* bridge.h - the one door between the HTTP threads and the loop thread.
 *
 * An HTTP thread fills a cm_job with a validated request and submits it;
 * the loop thread runs it against the stores, fills the reply fields and
 * calls job->done, which hands the job back (resumes the HTTP connection).
 * uv_async_send may coalesce wake-ups, so the loop drains the whole queue
 * each time. */
#ifndef CM_BRIDGE_H
#define CM_BRIDGE_H

#include "buf.h"
#include "codec.h"
#include "timeutil.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

enum {
    CM_OP_HEARTBEAT = 0,
    CM_OP_KEY_CREATE,
    CM_OP_KEY_LIST,
    CM_OP_KEY_REVOKE,
    CM_OP_AGENT_LIST,
    CM_OP_SPEND_AGENT,
    CM_OP_SPEND_INTENT,
    CM_OP_POLICY_PUT,
    CM_OP_POLICY_GET,
    CM_OP_POLICY_DELETE,
    CM_OP_INTENT,
    CM_OP_KILL,
    CM_OP_RESUME,
    CM_OP_AGENT_GET,
    CM_OP_EVENTS,
    CM_OP_WEBHOOK_PUT,
    CM_OP_WEBHOOK_GET,
};

typedef struct cm_job cm_job;

struct cm_job {
    cm_job *next; /* queue link, owned by whoever holds the job */
    int op;
    int64_t now;  /* arrival, Unix seconds */

    /* Request, filled on the HTTP thread. */
    unsigned char key_hash[32];    /* every job has a key: none is a 401 at the door */
    cm_hb *hbs;                    /* owned, CM_OP_HEARTBEAT */
    size_t nhb;
    cm_keyreq keyreq;              /* CM_OP_KEY_CREATE */
    char target[CM_ADDR_MAX];      /* path parameter: address, key id or intent id */
    char agent[CM_ADDR_MAX];       /* ?agent= of an intent's spend */
    cm_window window;
    int64_t at;
    int limit;
    char health[16];               /* ?health= of the agents list, "" for all */
    cm_policy policy;              /* CM_OP_POLICY_PUT */
    cm_intentreq intent;           /* CM_OP_INTENT */
    bool axme;                     /* the AXME form POST /v1/intents */
    char idem_key[CM_ID_MAX + 1];  /* Idempotency-Key header, "" when none */
    char event_type[32];           /* ?event_type= of the events list, "" for all */
    cm_webhookreq webhook;         /* CM_OP_WEBHOOK_PUT */

    /* Reply, filled on the loop thread before done(). */
    int status;
    char *body;                    /* owned, JSON text, NUL-terminated */
    size_t body_len;
    long retry_after;              /* > 0: a Retry-After header, seconds */

    /* Hands the finished job back; called on the loop thread, so it must
     * only do thread-safe things. */
    void (*done)(cm_job *j);
    void *done_arg;
};

/* Sets the reply: status and the text of b (taken; b is reset). An
 * allocation failure becomes a bodiless 500. */
void cm_job_reply(cm_job *j, int status, cm_buf *b);
/* Sets an error reply with the JSON error body. field may be NULL. */
void cm_job_fail(cm_job *j, int status, const char *code, const char *field, const char *message);
/* Frees the job and what it owns. NULL is a no-op. */
void cm_job_free(cm_job *j);

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
