/* persist.h - the persister: with Redis as the durable point
 * (COSTMESH_DURABLE=redis) it moves the queue of acknowledged heartbeats
 * (hot.h ACK) into PostgreSQL, and holds reads back until what was
 * acknowledged before them is there.
 *
 * Loop thread only. Every replica runs one; the one holding the queue's
 * lease drains it (hot.h DRAIN), oldest first, in batches: one statement
 * per batch stores the rows exactly as a group commit would (hbrow.h) and
 * moves persist_mark to the batch's last entry (schema/023_persist.sql), so
 * a batch drained twice is stored once; then DRAINED trims the queue and
 * takes back the increments of entries PostgreSQL found duplicates. A batch
 * PostgreSQL refuses for good is retried an entry at a time, and an entry
 * refused alone is kept in persist_refused. docs/guarantees.md section 12. */
#ifndef CM_PERSIST_H
#define CM_PERSIST_H

#include "hot.h"
#include "pg.h"

#include <stdbool.h>
#include <uv.h>

typedef struct cm_persist cm_persist;

/* db and hot are borrowed. read_wait_ms bounds cm_persist_wait. */
int cm_persist_new(uv_loop_t *loop, cm_pg_pool *db, cm_hot *hot, int read_wait_ms, cm_persist **out);
/* Stops; waiters are called with ok false. Free it after db and hot (what
 * they have in flight calls back into it as they close). NULL is a no-op. */
void cm_persist_free(cm_persist *p);

/* ok: go on with the read (the queue reached it, or read_wait_ms passed, or
 * Redis could not say); false only when the persister is stopping. */
typedef void (*cm_persist_wait_cb)(void *arg, bool ok);

/* Calls cb once every heartbeat acknowledged before this call is in
 * PostgreSQL, or read_wait_ms from now, whichever comes first. */
void cm_persist_wait(cm_persist *p, cm_persist_wait_cb cb, void *arg);

/* For /metrics (any thread): entries stored, found duplicates, kept as
 * refused (monotonic); and the queue's length at this replica's last look. */
unsigned long long cm_persist_stored(const cm_persist *p);
unsigned long long cm_persist_duplicates(const cm_persist *p);
unsigned long long cm_persist_refused(const cm_persist *p);
unsigned long long cm_persist_queued(const cm_persist *p);

#endif
