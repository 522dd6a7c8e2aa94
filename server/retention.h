/* retention.h - the raw heartbeats' daily partitions: created ahead, dropped
 * past the retention, and the dedupe ids pruned to their 8 days, by
 * cm_heartbeat_maintain() in schema/012_partitions.sql (one replica at a
 * time, never a partition the rollup worker has not finished with). */
#ifndef CM_RETENTION_H
#define CM_RETENTION_H

#include "pg.h"

#include <uv.h>

/* Days of partitions kept ready ahead of today. */
#define CM_RETENTION_AHEAD_DAYS 14

typedef struct cm_retention cm_retention;

/* Maintains the partitions every interval_ms on db, keeping retention_days
 * of raw heartbeats (0: all of them). Returns CM_OK, CM_ENOMEM or CM_EIO. */
int cm_retention_new(uv_loop_t *loop, cm_pg_pool *db, int retention_days, int interval_ms, cm_retention **out);
/* Free db first (see chore.h). NULL is a no-op. */
void cm_retention_free(cm_retention *r);

#endif
