/* intent_log.h - admitted intents into PostgreSQL, group-committed.
 *
 * Loop thread only. Each admitted intent used to commit its own INSERT on
 * the API pool, so at a few thousand admissions a second they queued
 * behind each other's commits and behind spend reads. Here records queue
 * while one statement runs on a connection of their own, and the next
 * statement takes all of them: one commit (and one fsync) for many 201s.
 * A record's callback runs after its statement's commit, so a 201 still
 * means the intent is recorded. */
#ifndef CM_INTENT_LOG_H
#define CM_INTENT_LOG_H

#include "pg.h"

#include <stdint.h>

typedef struct cm_intent_log cm_intent_log;

/* An intent to record. The strings are borrowed until the callback runs;
 * intent_type, idem_key and the scopes it names (run_id, workflow,
 * customer) may be "" (stored as NULL). */
typedef struct {
    const char *agent, *org, *intent_id, *intent_type, *idem_key;
    const char *run_id, *session_id, *workflow, *customer; /* what its heartbeats inherit; "" when none */
    const char *parent_intent_id; /* its parent in the delegation tree; "" for a root */
    int64_t at; /* admitted, Unix seconds */
    int64_t estimate, reserved_until; /* estimate 0: none (both stored as NULL) */
} cm_intent_rec;

/* rc CM_OK: the intent is recorded, or prev is the address of the agent
 * whose intent of the org already had this id (then nothing was written).
 * rc CM_ESTORE: the statement failed; it may or may not have committed;
 * sqlstate and constraint (else "") say why. A statement PostgreSQL refuses
 * for good (SQLSTATE class 22 or 23, e.g. an org's agent quota) is retried
 * one record at a time, so only the records at fault fail. */
typedef void (*cm_intent_log_cb)(void *arg, int rc, const char *prev, const char *sqlstate, const char *constraint);

/* db (borrowed) should be a pool of its own: group commits only. A
 * statement PostgreSQL leaves unanswered deadline_ms (> 0) is given up
 * (pg.h's cm_pg_query_prepared_within): its records get CM_ESTORE. */
int cm_intent_log_new(cm_pg_pool *db, int deadline_ms, cm_intent_log **out);
/* Answers what is queued with CM_ESTORE. Free it after the pool, whose
 * statement in flight answers its records as the pool closes. NULL is a
 * no-op. */
void cm_intent_log_free(cm_intent_log *l);

/* Queues r; cb runs once. CM_OK, or CM_ENOMEM (cb never runs). */
int cm_intent_log_record(cm_intent_log *l, const cm_intent_rec *r, cm_intent_log_cb cb, void *arg);

#endif
