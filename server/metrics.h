/* metrics.h - what /metrics and /readyz say: requests counted by route and
 * status on the HTTP threads, and the gauges that the group commit, the
 * PostgreSQL pools and the Redis store keep.
 *
 * Every function is thread-safe: counters are atomics, and the gauges come
 * from their modules' thread-safe readers. */
#ifndef CM_METRICS_H
#define CM_METRICS_H

#include "buf.h"
#include "routes.h"

/* Declared, not included: the HTTP front, which holds a cm_metrics, must
 * not see the store modules. */
struct cm_pg_pool;
struct cm_hot;
struct cm_ingest;
struct cm_svc;
struct cm_rollup;
struct cm_persist;

typedef struct cm_metrics cm_metrics;

enum { CM_METRICS_MAX_READY_DBS = 4 };

/* What the gauges read; all borrowed, all outlive the cm_metrics. */
typedef struct {
    const struct cm_pg_pool *ingest_db;
    /* The pools requests are served from: /readyz says PostgreSQL is up
     * only while each has a connection (each reconnects on its own
     * schedule after an outage). */
    const struct cm_pg_pool *ready_dbs[CM_METRICS_MAX_READY_DBS];
    int nready_dbs;
    const struct cm_hot *hot;
    const struct cm_ingest *ingest;
    const struct cm_svc *svc; /* its PostgreSQL key lookups */
    const struct cm_rollup *rollup;
    const struct cm_persist *persist; /* NULL unless Redis is the durable point */
} cm_metrics_deps;

/* CM_OK or CM_ENOMEM. */
int cm_metrics_new(const cm_metrics_deps *deps, cm_metrics **out);
/* NULL is a no-op. */
void cm_metrics_free(cm_metrics *m);

/* Counts one answered request; route CM_R_COUNT for a request that matched
 * no route. Statuses outside the tracked set count as "other". */
void cm_metrics_count(cm_metrics *m, cm_route_id route, int status);

/* Appends the Prometheus text of every counter and gauge to out. inflight
 * is the HTTP front's own gauge: requests waiting for the loop thread. */
void cm_metrics_render(const cm_metrics *m, int inflight, cm_buf *out);

/* Appends the /readyz JSON body to out and returns its status: 200 when
 * Redis and both PostgreSQL pools are up, else 503. */
int cm_metrics_readyz(const cm_metrics *m, cm_buf *out);

#endif
