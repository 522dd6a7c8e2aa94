/* svc.h - the loop-thread side of every API request: who is asking (the API
 * key, from a short cache or PostgreSQL) and which handler runs the job.
 * A revocation reaches every replica's cache at once (PostgreSQL NOTIFY),
 * and privileged writes always ask PostgreSQL.
 *
 * Loop thread only, but for the two readers at the end. Jobs arrive from the bridge and leave through
 * job->done with status and body set. The handlers are in api_*.c. */
#ifndef CM_SVC_H
#define CM_SVC_H

#include "bridge.h"
#include "fold.h"
#include "ingest.h"
#include "intent_log.h"
#include "notify.h"
#include "pg.h"
#include "hot.h"
#include "keycache.h"
#include "persist.h"

typedef struct cm_svc cm_svc;

/* What the service uses; all borrowed, all outlive it. */
typedef struct {
    uv_loop_t *loop;
    cm_pg_pool *db; /* the API's pool: key lookups and the routes' statements */
    cm_pg_pool *read_db; /* spend and event reads (cm_api's read_db) */
    cm_pg_pool *spend_db; /* an agent's spend reads (cm_api's spend_db) */
    cm_pg_pool *listen_db; /* one connection that hears revocations and rate card changes from every replica */
    cm_ingest *ingest;
    cm_intent_log *intents;
    cm_hot *hot;
    cm_notify *notify;
    int key_cache_ms;
    bool fail_open; /* admit intents unchecked while Redis is unreachable */
    int reservation_ttl_s;      /* cm_api */
    int intent_abandon_s;       /* cm_api */
    const cm_fold *fold;        /* cm_api */
    int64_t price_tolerance; /* cm_api */
    const char *interop_env;    /* cm_api */
    const char *interop_faults; /* cm_api */
    cm_persist *persist; /* NULL unless Redis is the durable point: reads then wait for it */
} cm_svc_deps;

int cm_svc_new(const cm_svc_deps *deps, cm_svc **out);
void cm_svc_free(cm_svc *s);

/* A cm_bridge_fn: runs one job. Jobs of one key that is not cached wait
 * for one lookup. */
void cm_svc_run(void *svc, cm_job *j);

/* The key cache, for the HTTP threads to refuse known-unknown keys and
 * let known ones in before they read a body (keycache.h: thread-safe). */
const cm_keycache *cm_svc_keys(const cm_svc *s);
/* PostgreSQL key lookups so far (/metrics); any thread. */
unsigned long long cm_svc_key_lookups(const cm_svc *s);

#endif
