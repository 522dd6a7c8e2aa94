/* api.h - what every route handler on the loop thread shares: who asks, the
 * stores a handler may use, the permission checks, the query helper, and
 * the one place a job is answered.
 *
 * Loop thread only. A route family lives in its own api_<family>.c and
 * exports one cm_api_handler per operation; svc.c maps operations to them. */
#ifndef CM_API_H
#define CM_API_H

#include "address.h"
#include "auth.h"
#include "codec.h"
#include "fold.h"
#include "ingest.h"
#include "intent_log.h"
#include "job.h"
#include "keycache.h"
#include "notify.h"
#include "persist.h"
#include "pg.h"
#include "ratecards.h"
#include "hot.h"
#include "timeutil.h"

#include <stdbool.h>
#include <uv.h>

/* What a handler may use; all borrowed, all outlive the handlers. */
typedef struct {
    uv_loop_t *loop;
    cm_pg_pool *db;        /* the API's pool: the routes' reads and writes */
    cm_pg_pool *read_db;   /* spend and event reads, which may lag: a standby's pool (database-read-url), or db */
    cm_pg_pool *spend_db;  /* agents' and units' spend reads: read_db's server, one plan per connection */
    cm_ingest *ingest;
    cm_intent_log *intents; /* admitted intents, group-committed */
    cm_hot *hot;
    cm_notify *notify;
    cm_keycache *keys;
    bool fail_open;        /* admit intents unchecked while Redis is unreachable */
    int intent_abandon_s;  /* an intent not ended and silent this long is reported abandoned */
    int reservation_ttl_s; /* how long an intent's estimate stays reserved unless it ends */
    const cm_fold *fold;   /* how far back hours are kept (cm_fold_horizon) */
    const char *interop_env; /* ENV of agents named by OTLP spans and CloudEvents */
    cm_ratecards *cards;   /* the orgs' rate cards, owned by the service */
    cm_persist *persist;   /* NULL unless Redis is the durable point: PostgreSQL reads of heartbeats wait for it */
    /* A client's cost may differ from the card's by this percent of the
     * card's before it counts as a discrepancy; nano-percent (1% = 1e9). */
    int64_t price_tolerance;
    /* Test hook (COSTMESH_TEST_INTEROP_FAULTS, "" in production): statuses,
     * comma-separated, each answered once, in order, to an OTLP or
     * CloudEvents request instead of its success, after its commit: what
     * a client sees when a proxy or a crash loses the answer. */
    char interop_faults[64];
} cm_api;

/* A handler runs one job for `who`. It returns CM_OK once it has taken the
 * job, which it then answers exactly once through cm_api_answer (or the
 * helpers below that end in it); or it returns an error with e filled, and
 * the caller answers e. */
typedef int (*cm_api_handler)(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);

/* ---- permission checks: CM_OK, or an error with e filled ---- */

/* May `who` act for `address`? 400 when it is no address, 403 when it is
 * another org's or the key is bound to another agent. */
int cm_api_may_act_for(const cm_ident *who, const char *address, const char *field, cm_apierr *e);
/* The agent a request names or, when it names none, the key's bound agent
 * (copied into agent); then cm_api_may_act_for. */
int cm_api_resolve_agent(const cm_ident *who, char agent[CM_ADDR_MAX], const char *field, cm_apierr *e);
/* The key's agent when it is bound to one (it sees only that agent's part of
 * a unit or an intent); NULL for a key that sees every agent's. */
const char *cm_api_bound_agent(const cm_ident *who);
/* 403 unless the key is an admin key. */
int cm_api_need_admin(const cm_ident *who, cm_apierr *e);
/* Fills e as a 503: PostgreSQL could not take or finish a statement. */
int cm_api_store_error(cm_apierr *e);

/* ---- answering ---- */

/* The one place a job leaves the loop thread: hands it back to HTTP. */
void cm_api_answer(cm_job *j);
/* Sets the reply to b's text (taken) and answers. */
void cm_api_reply(cm_job *j, int status, cm_buf *b);
/* Sets the error body of e and answers. */
void cm_api_fail(cm_job *j, const cm_apierr *e);
/* Answers 503: PostgreSQL could not take or finish a statement. */
void cm_api_fail_store(cm_job *j);
/* Answers a failed statement: 422 when PostgreSQL refused it for good (a
 * cap, a quota: cm_refusal_of), else 503. sqlstate and constraint may
 * be "" or NULL. */
void cm_api_fail_statement(cm_job *j, const char *sqlstate, const char *constraint);
/* Sets an error body (field may be NULL) and answers. */
void cm_api_error(cm_job *j, int status, const char *code, const char *field, const char *message);

/* ---- waiting for PostgreSQL ---- */

/* A job waiting for a statement, with who asked. A route that needs more
 * state embeds this as the first member of its own struct. */
typedef struct {
    cm_api *api;
    cm_job *job;
    cm_ident who;
} cm_api_call;

/* A zeroed call of `size` bytes (>= sizeof(cm_api_call)) for j; NULL with e
 * filled when out of memory. Freed with free(). */
void *cm_api_call_new(cm_api *api, cm_job *j, const cm_ident *who, size_t size, cm_apierr *e);

/* A spend read's call: the window it answers (kept for the reply, as the
 * callback gets the call back) and that window as query parameters. */
typedef struct {
    cm_api_call base;
    int64_t from, to, step; /* step: the series' granularity, 3600 or 86400 */
    char from_s[24], to_s[24], step_s[16];
    const char *grain; /* of rollup_agent's rows to read: "h", or "d" past the hours kept (static) */
} cm_api_spend_call;
/* A spend call for j over `window` at `at`. Its step is the window's series
 * bucket (cm_window_bucket), or a day when the window starts before the
 * hours kept (fold.h), and then its grain is "d". NULL with e filled: out of memory, or a 400
 * hours_folded for an hour window there. Freed with free(). */
cm_api_spend_call *cm_api_spend_call_new(cm_api *api, cm_job *j, const cm_ident *who, cm_window window, int64_t at,
                                         cm_apierr *e);
/* ,"window":…,"from":…,"to":…,"granularity":"hour"|"day" of a spend reply
 * (step: its call's). */
void cm_api_window_json(cm_buf *b, cm_window window, int64_t from, int64_t to, int64_t step);
/* Queues sql on the API pool with cb(call). CM_OK; or, when the statement
 * cannot be queued, frees the call, fills e and returns CM_ESTORE. */
int cm_api_query(void *call, const char *sql, int n, const char *const *params, cm_pg_cb cb,
                 cm_apierr *e);
/* As cm_api_query, on the read pool: for a read that may be a little
 * behind the last commits (docs/operations.md says by how much). Clients
 * poll these, so each is prepared once per connection
 * (cm_pg_query_prepared: sql must have static storage). */
int cm_api_read(void *call, const char *sql, int n, const char *const *params, cm_pg_cb cb, cm_apierr *e);
/* As cm_api_read, on the pool that plans each statement once for any
 * parameters (cm_pg_pool_new_one_plan): for the most polled reads (an
 * agent's and a unit's spend), whose planning cost more than their run,
 * and whose plans do not hinge on the values. */
int cm_api_read_one_plan(void *call, const char *sql, int n, const char *const *params, cm_pg_cb cb,
                         cm_apierr *e);
/* The common start of a statement's callback: frees the call and returns
 * its job; or, when the statement failed, answers 503 and returns NULL. */
cm_job *cm_api_take(void *call, int rc);

/* ---- JSON ---- */

/* Appends "name":"value", with a leading comma unless first. */
void cm_api_jfield(cm_buf *b, const char *name, const char *value, int first);

#endif
