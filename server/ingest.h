/* ingest.h - heartbeats into PostgreSQL (group commit) and the hot windows
 * into Redis.
 *
 * Loop thread only. Jobs queue while a statement runs and go together in the
 * next one: one statement inserts the raw heartbeats (ON CONFLICT on
 * (agent, id) DO NOTHING), upserts the hourly/daily/monthly rollups of the
 * new rows only, and returns which rows were new plus the rollups' absolute
 * totals. Those totals are merged into Redis as max(current, value), which is
 * idempotent and order-free, so a crash between the commit and the merge, a
 * Redis restart or a FLUSHALL is healed by merging PostgreSQL's totals again
 * (cm_ingest_rebuild). The job is answered after the commit: 202 means it
 * is in PostgreSQL. */
#ifndef CM_INGEST_H
#define CM_INGEST_H

#include "bridge.h"
#include "notify.h"
#include "pg.h"
#include "store.h"

typedef struct cm_ingest cm_ingest;

/* Group commits in flight at once, one per connection of the writer pool,
 * which should have this many: the statement's CPU in PostgreSQL, not the
 * commit's fsync, is what takes the time. */
#define CM_INGEST_WRITERS 2

/* writer, store and notify are borrowed and must outlive the ingest. */
int cm_ingest_new(uv_loop_t *loop, cm_pg_pool *writer, cm_store *store, cm_notify *notify,
                  cm_ingest **out);
/* Answers what is queued with 503 and frees the ingest once its timer has
 * closed (run the loop after). NULL is a no-op. */
void cm_ingest_free(cm_ingest *in);

/* Takes a heartbeat job whose agents are resolved and authorised; answers
 * it through job->done. */
void cm_ingest_submit(cm_ingest *in, cm_job *j);

/* Merges the current windows of every agent from PostgreSQL into Redis,
 * then marks Redis as complete. One at a time; a request while one runs
 * asks for one more after it; a failed one is tried again a second later. */
void cm_ingest_rebuild(cm_ingest *in);

/* Heartbeat jobs queued or in flight. */
size_t cm_ingest_backlog(const cm_ingest *in);

/* Counters for /metrics (monotonic; read from any thread). */
unsigned long long cm_ingest_accepted(const cm_ingest *in);
unsigned long long cm_ingest_duplicates(const cm_ingest *in);

#endif
