/* config.h - costmeshd settings from the environment and command line.
 *
 * Every setting is an environment variable (COSTMESH_LISTEN) and a flag of
 * the same name (--listen VALUE or --listen=VALUE); the flag wins. */
#ifndef CM_CONFIG_H
#define CM_CONFIG_H

#include "egress.h"
#include "store.h"

#include <stdbool.h>
#include <stddef.h>

#define CM_ADMIN_KEY_MIN 24 /* characters in COSTMESH_ADMIN_KEY */

typedef struct {
    char listen_host[64];
    int listen_port;
    cm_store_where redis;      /* redis-url, or the Sentinels and the primary's name */
    char database_url[1024];
    char database_read_url[1024]; /* "": reads go to database_url */
    char admin_key[256]; /* empty when unset; a secret, never logged */
    char metrics_token[256]; /* empty: /metrics is open; a secret, never logged */
    char org[64];
    char log_level[16];
    int http_threads;          /* libmicrohttpd thread pool size */
    int pg_readers;            /* connections of the API pool (the name predates its writes) */
    int max_connections;       /* total HTTP connections */
    int max_per_ip;            /* HTTP connections per client address */
    int max_agents_per_org;    /* the default quota of agents per org */
    int conn_timeout_s;        /* idle/stalled connection timeout */
    int body_timeout_s;        /* from a request's headers to the end of its body */
    int body_memory_mb;        /* request bodies buffered across all connections */
    int key_cache_ms;          /* how long a key lookup is trusted */
    int rollup_ms;             /* between two moves of the rollup watermark */
    int intent_abandon_s;      /* silence after which an intent not ended is abandoned */
    int retention_days;        /* of raw heartbeats; 0 keeps them all */
    int retention_check_ms;    /* between two partition maintenance runs */
    int rollup_hours_days;     /* hour rows kept before they are folded into days; 0 keeps them */
    int reservation_ttl_s;     /* an unended intent's reservation is released after it */
    int forecast_horizon_s;    /* how far ahead a predicted exhaustion is an event */
    bool fail_open;            /* admit intents unchecked while Redis is down */
    char web_dir[512];         /* the dashboard's files */
    char openapi_file[512];    /* served at /openapi.yaml */
    cm_egress_allow webhook_allow; /* internal networks webhooks may reach */
    char interop_env[64];      /* ENV of agents named by OTLP spans and CloudEvents */
    char interop_faults[64];   /* test hook (api.h cm_api), "" in production */
    int64_t price_tolerance;   /* nano-percent (api.h cm_api) */
    bool durable_redis;        /* a 202 is durable in Redis, drained into PostgreSQL (ingest.h, persist.h) */
    int dedupe_mark_s;         /* how long Redis remembers a heartbeat id (durable_redis) */
    int queue_max;             /* heartbeats queued for PostgreSQL before new ones get 503 (durable_redis) */
    int ingest_stall_ms;       /* a group commit's time before a second takes the queue (0: never) */
    int store_deadline_ms;     /* Redis, or an acknowledged write to PostgreSQL, silent past it: 503 (0: never) */
    int wait_replicas;         /* Redis replicas that hold an ACK before its 202 (durable_redis) */
    int read_wait_ms;          /* a read waits this long at most for the queue to reach it (durable_redis) */
} cm_config;

/* Fills `c` from defaults, then the environment, then argv. On CM_EINVAL
 * writes a one-line reason into err. "--help", "--version" and "--routes"
 * return CM_ENOTFOUND after printing to stdout. */
int cm_config_load(cm_config *c, int argc, char **argv, char *err, size_t errsz);

#endif
