#include "metrics.h"
#include "persist.h"
#include "rollup.h"
#include "api_routes.h"
#include "otlp.h"
#include "error.h"
#include "ingest.h"
#include "pg.h"
#include "hot.h"
#include "svc.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static const int tracked_status[] = {200, 201, 202, 204, 400, 401, 403, 404, 405, 413, 414, 429, 431, 500, 503};
enum { NSTATUS = sizeof tracked_status / sizeof tracked_status[0] };

struct cm_metrics {
    cm_metrics_deps deps;
    /* [route, CM_R_COUNT for none][status index, NSTATUS for other] */
    _Atomic unsigned long long requests[CM_R_COUNT + 1][NSTATUS + 1];
};

int cm_metrics_new(const cm_metrics_deps *deps, cm_metrics **out)
{
    cm_metrics *m = calloc(1, sizeof *m);
    if (!m) return CM_ENOMEM;
    m->deps = *deps;
    *out = m;
    return CM_OK;
}

void cm_metrics_free(cm_metrics *m)
{
    free(m);
}

void cm_metrics_count(cm_metrics *m, cm_route_id route, int status)
{
    int ri = route < CM_R_COUNT ? (int)route : CM_R_COUNT;
    int si = NSTATUS;
    for (int i = 0; i < NSTATUS; i++)
        if (tracked_status[i] == status) si = i;
    atomic_fetch_add(&m->requests[ri][si], 1);
}

void cm_metrics_render(const cm_metrics *m, int inflight, cm_buf *out)
{
    const cm_metrics_deps *d = &m->deps;
    cm_buf_adds(out, "# TYPE costmesh_http_requests_total counter\n");
    for (int ri = 0; ri <= CM_R_COUNT; ri++) {
        for (int si = 0; si <= NSTATUS; si++) {
            unsigned long long n = atomic_load(&m->requests[ri][si]);
            if (!n) continue;
            char st[8];
            if (si < NSTATUS) snprintf(st, sizeof st, "%d", tracked_status[si]);
            else snprintf(st, sizeof st, "other");
            cm_buf_addf(out, "costmesh_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                        ri < CM_R_COUNT ? cm_route_name((cm_route_id)ri) : "none", st, n);
        }
    }
    cm_buf_addf(out,
                "# TYPE costmesh_heartbeats_accepted_total counter\n"
                "costmesh_heartbeats_accepted_total %llu\n"
                "# TYPE costmesh_heartbeats_duplicate_total counter\n"
                "costmesh_heartbeats_duplicate_total %llu\n"
                "# TYPE costmesh_heartbeat_metrics_ignored_total counter\n"
                "costmesh_heartbeat_metrics_ignored_total %llu\n"
                "# TYPE costmesh_persistence_backlog gauge\n"
                "costmesh_persistence_backlog{stage=\"ingest_jobs\"} %zu\n"
                "costmesh_persistence_backlog{stage=\"postgres_writer\"} %zu\n"
                "costmesh_persistence_backlog{stage=\"redis\"} %zu\n"
                "# TYPE costmesh_store_up gauge\n"
                "costmesh_store_up{store=\"redis\"} %d\n"
                "costmesh_store_up{store=\"postgres\"} %d\n"
                "# TYPE costmesh_http_inflight gauge\n"
                "costmesh_http_inflight %d\n"
                "# TYPE costmesh_key_lookups_total counter\n"
                "costmesh_key_lookups_total %llu\n",
                cm_ingest_accepted(d->ingest), cm_ingest_duplicates(d->ingest), cm_ingest_ignored(d->ingest),
                cm_ingest_backlog(d->ingest), cm_pg_pool_backlog(d->ingest_db), cm_store_backlog(cm_hot_store(d->hot)),
                cm_store_ready(cm_hot_store(d->hot)) ? 1 : 0, cm_pg_pool_ready(d->ingest_db) ? 1 : 0, inflight,
                cm_svc_key_lookups(d->svc));
    cm_buf_addf(out,
                "# TYPE costmesh_otlp_spans_ignored_total counter\n"
                "costmesh_otlp_spans_ignored_total %llu\n"
                "# TYPE costmesh_cloudevents_ignored_total counter\n"
                "costmesh_cloudevents_ignored_total %llu\n"
                "# TYPE costmesh_rollup_rows_total counter\n"
                "costmesh_rollup_rows_total %llu\n"
                "# TYPE costmesh_rollup_failures_total counter\n"
                "costmesh_rollup_failures_total %llu\n"
                "# TYPE costmesh_rollup_lag_seconds gauge\n"
                "costmesh_rollup_lag_seconds %lld\n",
                cm_otlp_ignored(CM_IGNORED_SPANS), cm_otlp_ignored(CM_IGNORED_EVENTS), cm_rollup_rows(d->rollup),
                cm_rollup_failures(d->rollup), cm_rollup_lag(d->rollup));
    cm_buf_addf(out,
                "# TYPE costmesh_heartbeats_priced_total counter\n"
                "costmesh_heartbeats_priced_total %llu\n"
                "# TYPE costmesh_heartbeats_unpriced_total counter\n"
                "costmesh_heartbeats_unpriced_total %llu\n"
                "# TYPE costmesh_price_discrepancies_total counter\n"
                "costmesh_price_discrepancies_total %llu\n",
                cm_api_pricing_count(CM_PRICING_PRICED), cm_api_pricing_count(CM_PRICING_UNPRICED),
                cm_api_pricing_count(CM_PRICING_DISCREPANT));
    cm_ingest_timing t;
    cm_ingest_timing_read(d->ingest, &t);
    cm_buf_adds(out, "# TYPE costmesh_ingest_stage_seconds summary\n");
    for (int s = 0; s < CM_INGEST_STAGES; s++)
        cm_buf_addf(out,
                    "costmesh_ingest_stage_seconds_sum{stage=\"%s\"} %llu.%09llu\n"
                    "costmesh_ingest_stage_seconds_count{stage=\"%s\"} %llu\n",
                    cm_ingest_stage_names[s], t.stage_ns[s] / 1000000000ull, t.stage_ns[s] % 1000000000ull,
                    cm_ingest_stage_names[s], t.timed);
    cm_buf_addf(out,
                "# TYPE costmesh_ingest_groups_total counter\n"
                "costmesh_ingest_groups_total %llu\n"
                "# TYPE costmesh_ingest_group_heartbeats_total counter\n"
                "costmesh_ingest_group_heartbeats_total %llu\n",
                t.groups, t.group_rows);
    if (d->persist)
        cm_buf_addf(out,
                    "# TYPE costmesh_queue_entries gauge\n"
                    "costmesh_queue_entries %llu\n"
                    "# TYPE costmesh_queue_stored_total counter\n"
                    "costmesh_queue_stored_total %llu\n"
                    "# TYPE costmesh_queue_duplicates_total counter\n"
                    "costmesh_queue_duplicates_total %llu\n"
                    "# TYPE costmesh_queue_refused_total counter\n"
                    "costmesh_queue_refused_total %llu\n",
                    cm_persist_queued(d->persist), cm_persist_stored(d->persist),
                    cm_persist_duplicates(d->persist), cm_persist_refused(d->persist));
    unsigned long servers = cm_store_generation(cm_hot_store(d->hot)); /* the first, then one per failover */
    cm_buf_addf(out,
                "# TYPE costmesh_redis_primary_changes_total counter\n"
                "costmesh_redis_primary_changes_total %lu\n",
                servers > 1 ? servers - 1 : 0);
}

int cm_metrics_readyz(const cm_metrics *m, cm_buf *out)
{
    const cm_metrics_deps *d = &m->deps;
    /* Redis counts as ready once it holds the whole mirror again, that is
     * when intent admission works without rebuilding agents on demand. */
    bool connected = cm_store_ready(cm_hot_store(d->hot)), redis = cm_hot_ready(d->hot);
    bool pg = true;
    for (int i = 0; i < d->nready_dbs; i++) pg = pg && cm_pg_pool_ready(d->ready_dbs[i]);
    /* Not ready is an error like any other: the error body, plus each
     * store's state. */
    cm_buf_adds(out, "{");
    if (!(redis && pg))
        cm_buf_addf(out, "\"error\":{\"code\":\"not_ready\",\"message\":\"%s\"},",
                    pg && connected ? "Redis is being rebuilt from PostgreSQL" : "a store is unreachable");
    cm_buf_addf(out, "\"ready\":%s,\"redis\":\"%s\",\"postgres\":\"%s\"}", redis && pg ? "true" : "false",
                redis ? "up" : connected ? "rebuilding" : "down", pg ? "up" : "down");
    return redis && pg ? 200 : 503;
}
