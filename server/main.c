/* costmeshd: wires the modules together, owns the threads and signals. */
#include "auth.h"
#include "bridge.h"
#include "config.h"
#include "error.h"
#include "fold.h"
#include "hot.h"
#include "http.h"
#include "ingest.h"
#include "persist.h"
#include "intent_log.h"
#include "log.h"
#include "migrate.h"
#include "metrics.h"
#include "notify.h"
#include "pg.h"
#include "reservations.h"
#include "retention.h"
#include "rollup.h"
#include "store.h"
#include "svc.h"
#include "webhook.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

/* Everything the loop thread owns. */
typedef struct {
    uv_loop_t loop;
    uv_async_t stop;
    cm_pg_pool *ingest_db; /* heartbeat group commits, and the reads that rebuild Redis */
    cm_pg_pool *api_db;    /* the rest: the routes' reads and writes, events, health checks */
    cm_pg_pool *read_db;   /* spend and event reads, on database-read-url; NULL: api_db serves them */
    cm_pg_pool *spend_db;  /* agents' and units' spend reads, on database-read-url or database-url: one plan each */
    cm_pg_pool *listen_db; /* hears other replicas' key revocations */
    cm_pg_pool *intents_db; /* admitted intents' group commits */
    cm_pg_pool *rollup_db;  /* background chores: rollups, partitions */
    cm_rollup *rollup;
    cm_pg_pool *persist_db; /* durable=redis only */
    cm_persist *persist;
    cm_retention *retention;
    cm_fold *fold;
    cm_reservations *reservations;
    cm_hot *hot;
    cm_ingest *ingest;
    cm_intent_log *intents;
    cm_webhook *hooks;
    cm_notify *notify;
    cm_svc *svc;
    cm_bridge *bridge;
} app;

static void on_stop(uv_async_t *h)
{
    app *a = h->data;
    cm_bridge_free(a->bridge);
    cm_svc_free(a->svc);
    cm_reservations_free(a->reservations);
    cm_notify_free(a->notify);
    cm_webhook_free(a->hooks);
    cm_hot_free(a->hot);
    cm_pg_pool_free(a->ingest_db);
    cm_pg_pool_free(a->api_db);
    cm_pg_pool_free(a->read_db);
    cm_pg_pool_free(a->spend_db);
    cm_pg_pool_free(a->listen_db);
    cm_pg_pool_free(a->intents_db);
    cm_pg_pool_free(a->rollup_db); /* before its chores: a run in flight calls back */
    cm_rollup_free(a->rollup);
    cm_pg_pool_free(a->persist_db);
    cm_persist_free(a->persist); /* after the pool and Redis: what they had in flight calls back */
    cm_retention_free(a->retention);
    cm_fold_free(a->fold);
    /* After the stores: what they had in flight fails as they close and
     * answers its heartbeats through the ingest. */
    cm_ingest_free(a->ingest);
    cm_intent_log_free(a->intents);
    uv_close((uv_handle_t *)&a->stop, NULL);
}

static void *loop_main(void *arg)
{
    app *a = arg;
    uv_run(&a->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Wipes a secret setting once it is used, and from the environment, where
 * /proc/<pid>/environ shows it: getenv points into that block, so wipe it
 * there, then drop it. */
static void forget_secret(char *value, size_t size, const char *env)
{
    explicit_bzero(value, size);
    char *in_env = getenv(env);
    if (in_env) explicit_bzero(in_env, strlen(in_env));
    unsetenv(env);
}

static int die(const char *why)
{
    fprintf(stderr, "costmeshd: %s\n", why);
    return 1;
}

int main(int argc, char **argv)
{
    cm_config cfg;
    char err[512];
    int rc = cm_config_load(&cfg, argc, argv, err, sizeof err);
    if (rc == CM_ENOTFOUND) return 0;
    if (rc != CM_OK) return die(err);

    unsigned char admin_hash[CM_KEY_HASH_LEN];
    char admin_bytea[CM_KEY_BYTEA_LEN];
    int have_admin = cfg.admin_key[0] != '\0';
    if (have_admin && cm_auth_hash(cfg.admin_key, strlen(cfg.admin_key), admin_hash) != CM_OK)
        return die("cannot hash the admin key");
    if (have_admin) cm_auth_bytea(admin_hash, admin_bytea);
    forget_secret(cfg.admin_key, sizeof cfg.admin_key, "COSTMESH_ADMIN_KEY");

    if (cm_store_ping(&cfg.redis, cfg.durable_redis, err, sizeof err) != CM_OK) return die(err);
    if (cm_migrate_run(cfg.database_url, have_admin ? admin_bytea : NULL, cfg.org, cfg.max_agents_per_org, err,
                       sizeof err) != CM_OK)
        return die(err);

    /* Signals go to the main thread only: block them before any thread. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    static app a;
    if (uv_loop_init(&a.loop) != 0) return die("cannot create the event loop");
    uv_async_init(&a.loop, &a.stop, on_stop);
    a.stop.data = &a;
    /* Spend and event reads go to database-read-url when it is set. */
    const char *read_url = cfg.database_read_url[0] ? cfg.database_read_url : cfg.database_url;
    cm_ingest_opts ingest_opts = {.durable_redis = cfg.durable_redis, .mark_ttl_s = cfg.dedupe_mark_s,
                                  .max_queue = cfg.queue_max, .wait_replicas = cfg.wait_replicas,
                                  .stall_ms = cfg.ingest_stall_ms, .deadline_ms = cfg.store_deadline_ms};
    if (cm_pg_pool_new(&a.loop, cfg.database_url, CM_INGEST_WRITERS, "ingest", &a.ingest_db) != CM_OK ||
        cm_pg_pool_new(&a.loop, cfg.database_url, cfg.pg_readers, "api", &a.api_db) != CM_OK ||
        cm_pg_pool_new(&a.loop, cfg.database_url, 1, "listen", &a.listen_db) != CM_OK ||
        cm_pg_pool_new(&a.loop, cfg.database_url, 1, "intents", &a.intents_db) != CM_OK ||
        cm_pg_pool_new(&a.loop, cfg.database_url, 1, "rollup", &a.rollup_db) != CM_OK ||
        (cfg.database_read_url[0] &&
         cm_pg_pool_new(&a.loop, read_url, cfg.pg_readers, "read", &a.read_db) != CM_OK) ||
        cm_pg_pool_new_one_plan(&a.loop, read_url, cfg.pg_readers, "spend", &a.spend_db) != CM_OK ||
        cm_hot_new(&a.loop, &cfg.redis, a.ingest_db, &a.hot) != CM_OK ||
        cm_webhook_new(&a.loop, a.api_db, &cfg.webhook_allow, &a.hooks) != CM_OK ||
        cm_notify_new(a.api_db, a.hooks, &a.notify) != CM_OK ||
        cm_ingest_new(&a.loop, a.ingest_db, a.hot, a.notify, &ingest_opts, &a.ingest) != CM_OK ||
        cm_intent_log_new(a.intents_db, cfg.store_deadline_ms, &a.intents) != CM_OK)
        return die("out of memory");
    if (cm_notify_watch_health(a.notify, &a.loop) != CM_OK) return die("cannot start the health timer");
    if (cfg.durable_redis &&
        (cm_pg_pool_new(&a.loop, cfg.database_url, 1, "persist", &a.persist_db) != CM_OK ||
         cm_persist_new(&a.loop, a.persist_db, a.hot, cfg.read_wait_ms, &a.persist) != CM_OK))
        return die("cannot start the persister");
    if (cm_rollup_new(&a.loop, a.rollup_db, a.hot, a.notify, cfg.rollup_ms, &a.rollup) != CM_OK)
        return die("cannot start the rollup worker");
    if (cm_retention_new(&a.loop, a.rollup_db, cfg.retention_days, cfg.retention_check_ms, &a.retention) != CM_OK)
        return die("cannot start the partition maintenance");
    if (cm_fold_new(&a.loop, a.rollup_db, cfg.rollup_hours_days, cfg.retention_check_ms, &a.fold) != CM_OK)
        return die("cannot start the rollup fold");
    if (cm_reservations_new(&a.loop, a.hot, a.notify, &a.reservations) != CM_OK) return die("out of memory");
    cm_hot_set_horizon(a.hot, cfg.forecast_horizon_s);
    cm_hot_set_all_windows(a.hot, cfg.durable_redis);
    cm_hot_set_deadline(a.hot, cfg.store_deadline_ms);
    cm_svc_deps sd = {.loop = &a.loop, .db = a.api_db, .read_db = a.read_db ? a.read_db : a.api_db,
                      .spend_db = a.spend_db,
                      .listen_db = a.listen_db, .ingest = a.ingest,
                      .intents = a.intents, .hot = a.hot, .notify = a.notify, .key_cache_ms = cfg.key_cache_ms,
                      .fail_open = cfg.fail_open, .reservation_ttl_s = cfg.reservation_ttl_s,
                      .fold = a.fold,
                      .interop_env = cfg.interop_env,
                      .intent_abandon_s = cfg.intent_abandon_s,
                      .interop_faults = cfg.interop_faults, .price_tolerance = cfg.price_tolerance,
                      .persist = a.persist};
    if (cm_svc_new(&sd, &a.svc) != CM_OK ||
        cm_bridge_new(&a.loop, cm_svc_run, a.svc, &a.bridge) != CM_OK)
        return die("out of memory");

    pthread_t loop_thread;
    if (pthread_create(&loop_thread, NULL, loop_main, &a) != 0) return die("cannot start the loop thread");

    const cm_store *redis = cm_hot_store(a.hot);
    for (int i = 0; i < 100 && !(cm_pg_pool_ready(a.ingest_db) && cm_pg_pool_ready(a.api_db) && cm_store_ready(redis));
         i++)
        sleep_ms(100);
    if (!cm_pg_pool_ready(a.ingest_db) || !cm_pg_pool_ready(a.api_db))
        return die("PostgreSQL connections did not come up");
    if (!cm_store_ready(redis)) return die("Redis did not come up");

    /* The spend pool serves from the primary unless a read URL moves it to
     * a standby, whose outage must not take the writes out of service. */
    cm_metrics_deps md = {.ingest_db = a.ingest_db,
                          .ready_dbs = {a.ingest_db, a.api_db, a.intents_db, a.spend_db},
                          .nready_dbs = cfg.database_read_url[0] ? 3 : 4,
                          .hot = a.hot, .ingest = a.ingest, .svc = a.svc, .rollup = a.rollup, .persist = a.persist};
    cm_metrics *metrics;
    if (cm_metrics_new(&md, &metrics) != CM_OK) return die("out of memory");
    cm_http_deps deps = {.bridge = a.bridge, .metrics = metrics, .keys = cm_svc_keys(a.svc)};
    cm_http *http;
    if (cm_http_start(&cfg, &deps, &http, err, sizeof err) != CM_OK) return die(err);
    forget_secret(cfg.metrics_token, sizeof cfg.metrics_token, "COSTMESH_METRICS_TOKEN"); /* its hash is kept */
    cm_log(CM_LOG_INFO, "event=listening addr=%s:%d", cfg.listen_host, cfg.listen_port);

    int sig = 0;
    sigwait(&sigs, &sig);
    cm_log(CM_LOG_INFO, "event=stopping signal=%d", sig);
    /* Drain: refuse new requests and jobs, let suspended requests finish
     * (the loop answers them), and only then stop the HTTP threads and the
     * loop: a suspended connection must never outlive its daemon. */
    cm_http_drain(http);
    cm_bridge_close(a.bridge);
    for (int i = 0; i < 1000 && cm_http_inflight(http) > 0; i++) sleep_ms(10);
    cm_http_stop(http);
    cm_metrics_free(metrics);
    uv_async_send(&a.stop);
    pthread_join(loop_thread, NULL);
    uv_loop_close(&a.loop);
    cm_log(CM_LOG_INFO, "event=stopped");
    return 0;
}
