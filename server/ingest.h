/* ingest.h - heartbeats into PostgreSQL (group commit), then their totals
 * into the hot windows (hot.h).
 *
 * Loop thread only. Jobs queue while a statement runs and go together in the
 * next one: one statement inserts the raw heartbeats whose (agent, id) is
 * new to heartbeat_ids, upserts the hourly/daily/monthly rollups of the
 * new rows only, and returns which rows were new plus the rollups' absolute
 * totals. Those totals are merged into Redis as max(current, value), which is
 * idempotent and order-free, so a crash between the commit and the merge, a
 * Redis restart or a FLUSHALL is healed by merging PostgreSQL's totals again
 * (hot.h does that by itself). The job is answered after the commit: 202
 * means it is in PostgreSQL. A statement PostgreSQL refuses for good
 * (cm_refusal_of, refusal.h) is split until the request at fault is alone, so one
 * request's rows never fail the others'. */
#ifndef CM_INGEST_H
#define CM_INGEST_H

#include "bridge.h"
#include "notify.h"
#include "pg.h"
#include "hot.h"

#include <stdbool.h>
#include <uv.h>

typedef struct cm_ingest cm_ingest;

/* Group commits in flight at most, one per connection of the ingest pool,
 * which should have this many. A second goes only when a large group waits
 * (ingest.c, SPARE_ROWS): a statement's fixed cost is worth as much as a
 * few dozen rows, so groups of single heartbeats are cheaper one at a time,
 * in larger groups, while large batches still use two cores. It also goes
 * once the first has run stall_ms, so that a statement held up (a row lock
 * someone else holds, a slow disk) does not hold every heartbeat behind it. */
#define CM_INGEST_WRITERS 2

/* Where a 202 is durable. */
typedef struct {
    /* false: a PostgreSQL commit (the group statement above). true: Redis
     * (COSTMESH_DURABLE=redis): the agents not yet known to be registered
     * are upserted into PostgreSQL, then one ACK script (hot.h) dedupes the
     * group by a mark per id, counts it in the hot windows and appends it
     * to the queue the persister drains (persist.h); the job is answered
     * after Redis's fsync of it (appendfsync always). */
    bool durable_redis;
    int mark_ttl_s; /* how long Redis remembers an id (durable_redis) */
    long max_queue; /* entries the queue may hold before heartbeats get 503 (durable_redis) */
    /* Replicas that must hold an ACK before its 202 (WAIT), so a failover
     * to one of them loses nothing acknowledged (durable_redis). */
    int wait_replicas;
    /* Milliseconds a writer's statement may run before another writer takes
     * the waiting jobs however few (COSTMESH_INGEST_STALL_MS); 0: never. */
    int stall_ms;
    /* Milliseconds PostgreSQL may leave a writer's statement unanswered
     * before its connection is dropped and its requests get 503
     * (COSTMESH_STORE_DEADLINE_MS, pg.h's cm_pg_query_prepared_within);
     * 0: no bound. */
    int deadline_ms;
} cm_ingest_opts;

/* db, hot and notify are borrowed; opts is copied. Returns CM_OK, CM_ENOMEM
 * or CM_EIO (the stall timer). */
int cm_ingest_new(uv_loop_t *loop, cm_pg_pool *db, cm_hot *hot, cm_notify *notify, const cm_ingest_opts *opts,
                  cm_ingest **out);
/* Answers what is queued with 503 and frees the ingest once libuv has
 * closed its timer (run the loop after). Free it after the pool and hot:
 * what they have in flight fails when they are freed, and answers its jobs
 * through the ingest. NULL is a no-op. */
void cm_ingest_free(cm_ingest *in);

/* Takes a heartbeat job whose agents are resolved and authorised; answers
 * it through job->done. */
void cm_ingest_submit(cm_ingest *in, cm_job *j);

/* Heartbeat jobs queued or in flight. */
size_t cm_ingest_backlog(const cm_ingest *in);

/* Counters for /metrics (monotonic; read from any thread). */
unsigned long long cm_ingest_accepted(const cm_ingest *in);
unsigned long long cm_ingest_duplicates(const cm_ingest *in);
/* Unknown metric names accepted and reported back (codec.h cm_ignored). */
unsigned long long cm_ingest_ignored(const cm_ingest *in);

/* Where an acknowledged heartbeat request's time went, summed over the
 * requests a group commit answered (202, or 422 for a cap): routing (from
 * the HTTP thread's hand-off to the queue: the loop thread's wait, the key,
 * the agents, pricing), queue (waiting for a writer), store (the group's
 * statement, or Redis's ACK, until its reply: the durable point) and hot
 * (the Redis merge and CHECK until the answer). Also the statements (ACKs)
 * that stored, and their rows: their ratio is the group's size. */
enum { CM_INGEST_STAGES = 4 };
extern const char *const cm_ingest_stage_names[CM_INGEST_STAGES];
typedef struct {
    unsigned long long stage_ns[CM_INGEST_STAGES];
    unsigned long long timed; /* requests */
    unsigned long long groups, group_rows;
} cm_ingest_timing;
void cm_ingest_timing_read(const cm_ingest *in, cm_ingest_timing *out);

#endif
