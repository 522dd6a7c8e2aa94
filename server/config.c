#include "config.h"
#include "address.h"
#include "error.h"
#include "fold.h"
#include "log.h"
#include "money.h"
#include "routes.h"
#include "version.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name; /* flag name; env is COSTMESH_ + upper(name) */
    const char *def;
    const char *help;
} option;

static const option options[] = {
    {"listen", "127.0.0.1:8080", "HTTP listen address host:port"},
    {"redis-url", "redis://127.0.0.1:6379/0", "Redis URL"},
    {"database-url", "postgresql://costmesh@127.0.0.1:5432/costmesh", "PostgreSQL URI or conninfo"},
    {"admin-key", "", "bootstrap admin API key for COSTMESH_ORG (at least 24 characters)"},
    {"org", "default", "org of the bootstrap admin key"},
    {"log-level", "info", "debug|info|warn|error"},
    {"http-threads", "2", "HTTP worker threads"},
    {"pg-readers", "2", "PostgreSQL connections of the API pool (the routes' reads and writes)"},
    {"max-connections", "2048", "HTTP connections in total"},
    {"max-per-ip", "64", "HTTP connections per client address (a few addresses must not fill max-connections)"},
    {"conn-timeout", "10", "seconds a connection may stay idle (between requests, or stalled) before it is closed"},
    {"key-cache-ms", "2000", "how long a looked-up API key is trusted"},
    {"admission-fail-open", "0", "1: admit intents unchecked while Redis is unreachable (default 0: answer 503)"},
    {"web-dir", "web", "folder of the dashboard's files (index.html, app.js, app.css, node_modules/chart.js)"},
    {"openapi-file", "docs/openapi.yaml", "the OpenAPI document served at /openapi.yaml"},
    {"webhook-allow", "", "comma-separated CIDRs webhooks may reach although internal (loopback, private, ...)"},
    {"max-agents-per-org", "100000", "agents an org may register (its own quota row in org_limits overrides it)"},
    {"interop-env", "production", "ENV of the agents that OTLP spans and CloudEvents name (agent://ORG/ENV/NAME)"},
    {"test-interop-faults", "", "test hook: statuses (429, 503) answered to the next OTLP/CloudEvents requests after their commit"},
    {"body-timeout", "10", "seconds from a request's headers to the end of its body: past it the connection is closed"},
    {"body-memory-mb", "32", "MiB of request bodies buffered across all connections: past it an upload gets 503"},
    {"metrics-token", "", "when set, /metrics needs Authorization: Bearer with this token (else it is open)"},
    {"rollup-ms", "500", "milliseconds between two moves of the rollup watermark (replies are exact either way)"},
    {"retention-days", "0", "days of raw heartbeats kept, in daily partitions (0: all; rollups are kept either way)"},
    {"retention-check-ms", "60000", "milliseconds between two runs of the partition maintenance"},
    {"price-tolerance-pct", "1", "percent of the rate card's price a client's cost_usd may differ by before it counts as a discrepancy"},
    {"redis-sentinel", "", "Sentinels host:port[,host:port...] to ask for the Redis primary (redis-url's host is then unused)"},
    {"redis-sentinel-master", "", "the name the Sentinels monitor the primary under (with redis-sentinel)"},
    {"database-read-url", "", "PostgreSQL URI or conninfo for spend and event reads, e.g. a standby (default: database-url)"},
    {"reservation-ttl", "3600", "seconds an intent's unspent estimated_cost_usd stays reserved unless it ends first"},
    {"forecast-horizon", "3600", "seconds ahead a cost limit's predicted exhaustion is an exhaustion_predicted event"},
    {"intent-abandon-s", "3600", "seconds without a heartbeat after which an intent that has not ended is reported abandoned"},
    {"rollup-hours-days", "0", "days of hour rows kept in the rollups (0, or 2 and more); older hours are folded into days (0: hours forever)"},
    {"durable", "postgres", "where a 202 is durable: postgres (a commit per group) or redis (Redis with appendfsync always, drained into PostgreSQL)"},
    {"dedupe-mark-s", "600", "durable=redis: seconds Redis remembers a heartbeat id (later retries are still counted once, by PostgreSQL)"},
    {"queue-max", "2000000", "durable=redis: heartbeats waiting for PostgreSQL past which new ones get 503"},
    {"redis-wait-replicas", "auto", "durable=redis: Redis replicas that must hold a heartbeat before its 202 (auto: 1 with redis-sentinel, else 0)"},
    {"read-wait-ms", "5000", "durable=redis: how long a read waits for the heartbeats acknowledged before it to reach PostgreSQL"},
    {"ingest-stall-ms", "100", "milliseconds a heartbeat write may run before a second one takes the heartbeats waiting behind it (0: only once 256 wait)"},
    {"store-deadline-ms", "10000", "milliseconds Redis, or PostgreSQL on a write clients wait on (heartbeats, an agent's registration, intents), may go without answering: past it that connection is dropped and those requests get 503, a retry counting once (0: no bound; else at least 2000)"},
};
enum { NOPT = sizeof options / sizeof options[0] };

static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return CM_EINVAL;
    *out = (int)v;
    return CM_OK;
}

static int parse_hostport(const char *s, char *host, size_t hostsz, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= hostsz || colon == s) return CM_EINVAL;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    return parse_int(colon + 1, 1, 65535, port);
}

static int copy_str(char *dst, size_t dstsz, const char *src)
{
    size_t n = strlen(src);
    if (n >= dstsz) return CM_EINVAL;
    memcpy(dst, src, n + 1);
    return CM_OK;
}

/* redis://[:password@]host[:port][/db] without password support: the
 * deployment keeps Redis on a private address. */
static int parse_redis_url(const char *s, cm_config *c)
{
    const char *p = s;
    if (strncmp(p, "redis://", 8) == 0) p += 8;
    if (strchr(p, '@')) return CM_EINVAL;
    char hostport[160];
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    if (n == 0 || n >= sizeof hostport) return CM_EINVAL;
    memcpy(hostport, p, n);
    hostport[n] = '\0';
    cm_store_hostport *server = &c->redis.server;
    c->redis.db = 0;
    if (slash && slash[1] && parse_int(slash + 1, 0, 1000, &c->redis.db) != CM_OK) return CM_EINVAL;
    if (!strchr(hostport, ':')) {
        if (n >= sizeof server->host) return CM_EINVAL;
        memcpy(server->host, hostport, n + 1);
        server->port = 6379;
        return CM_OK;
    }
    return parse_hostport(hostport, server->host, sizeof server->host, &server->port);
}

/* host:port[,host:port...], at most CM_STORE_MAX_SENTINELS; "" is none. */
static int parse_sentinels(const char *s, cm_store_where *w)
{
    w->nsentinels = 0;
    while (*s) {
        if (w->nsentinels == CM_STORE_MAX_SENTINELS) return CM_EINVAL;
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        char one[160];
        if (n == 0 || n >= sizeof one) return CM_EINVAL;
        memcpy(one, s, n);
        one[n] = '\0';
        cm_store_hostport *t = &w->sentinels[w->nsentinels++];
        if (parse_hostport(one, t->host, sizeof t->host, &t->port) != CM_OK) return CM_EINVAL;
        s += n + (comma ? 1 : 0);
        if (comma && !*s) return CM_EINVAL; /* a trailing comma */
    }
    return CM_OK;
}

/* Sentinel's name of a primary: letters, digits, '.', '_' and '-'. */
static int parse_master_name(const char *v, cm_store_where *w)
{
    if (strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != strlen(v)) return CM_EINVAL;
    return copy_str(w->master, sizeof w->master, v);
}

static int apply(cm_config *c, int i, const char *v)
{
    switch (i) {
    case 0: return parse_hostport(v, c->listen_host, sizeof c->listen_host, &c->listen_port);
    case 1: return parse_redis_url(v, c);
    case 2: return copy_str(c->database_url, sizeof c->database_url, v);
    case 3: return copy_str(c->admin_key, sizeof c->admin_key, v);
    case 4:
        if (cm_addr_check_org(v, strlen(v)) != CM_OK) return CM_EINVAL;
        return copy_str(c->org, sizeof c->org, v);
    case 5:
        if (cm_log_set_level(v) != CM_OK) return CM_EINVAL;
        return copy_str(c->log_level, sizeof c->log_level, v);
    case 6: return parse_int(v, 1, 64, &c->http_threads);
    case 7: return parse_int(v, 1, 16, &c->pg_readers);
    case 8: return parse_int(v, 16, 65536, &c->max_connections);
    case 9: return parse_int(v, 1, 65536, &c->max_per_ip);
    case 10: return parse_int(v, 1, 3600, &c->conn_timeout_s);
    case 11: return parse_int(v, 0, 600000, &c->key_cache_ms);
    case 12: {
        int on;
        if (parse_int(v, 0, 1, &on) != CM_OK) return CM_EINVAL;
        c->fail_open = on;
        return CM_OK;
    }
    case 13: return copy_str(c->web_dir, sizeof c->web_dir, v);
    case 14: return copy_str(c->openapi_file, sizeof c->openapi_file, v);
    case 15: return cm_egress_parse_allow(v, &c->webhook_allow);
    case 16: return parse_int(v, 1, 1000000000, &c->max_agents_per_org);
    case 17:
        if (cm_addr_check_org(v, strlen(v)) != CM_OK) return CM_EINVAL; /* an address segment */
        return copy_str(c->interop_env, sizeof c->interop_env, v);
    case 18: return copy_str(c->interop_faults, sizeof c->interop_faults, v);
    case 19: return parse_int(v, 1, 3600, &c->body_timeout_s);
    case 20: return parse_int(v, 1, 65536, &c->body_memory_mb);
    case 21: return copy_str(c->metrics_token, sizeof c->metrics_token, v);
    case 22: return parse_int(v, 10, 600000, &c->rollup_ms);
    case 23: return parse_int(v, 0, 36500, &c->retention_days);
    case 24: return parse_int(v, 100, 86400000, &c->retention_check_ms);
    case 25: return cm_money_parse(v, strlen(v), &c->price_tolerance);
    case 26: return parse_sentinels(v, &c->redis);
    case 27: return parse_master_name(v, &c->redis);
    case 28: return copy_str(c->database_read_url, sizeof c->database_read_url, v);
    case 29: return parse_int(v, 1, 30 * 86400, &c->reservation_ttl_s);
    case 30: return parse_int(v, 0, 40 * 86400, &c->forecast_horizon_s);
    case 31: return parse_int(v, 1, 30 * 86400, &c->intent_abandon_s);
    case 32:
        if (parse_int(v, 0, 36500, &c->rollup_hours_days) != CM_OK ||
            (c->rollup_hours_days != 0 && c->rollup_hours_days < CM_FOLD_MIN_DAYS))
            return CM_EINVAL;
        return CM_OK;
    case 33:
        if (strcmp(v, "postgres") != 0 && strcmp(v, "redis") != 0) return CM_EINVAL;
        c->durable_redis = strcmp(v, "redis") == 0;
        return CM_OK;
    case 34: return parse_int(v, 1, 7 * 86400, &c->dedupe_mark_s);
    case 35: return parse_int(v, 1000, 1000000000, &c->queue_max);
    case 36:
        if (strcmp(v, "auto") == 0) {
            c->wait_replicas = -1;
            return CM_OK;
        }
        return parse_int(v, 0, 16, &c->wait_replicas);
    case 37: return parse_int(v, 0, 600000, &c->read_wait_ms);
    case 38: return parse_int(v, 0, 600000, &c->ingest_stall_ms);
    case 39:
        /* Above the longest Redis call: WAIT's 1 s (ingest.c). */
        if (parse_int(v, 0, 3600000, &c->store_deadline_ms) != CM_OK ||
            (c->store_deadline_ms != 0 && c->store_deadline_ms < 2000))
            return CM_EINVAL;
        return CM_OK;
    }
    return CM_EINVAL;
}

static void env_name(const char *flag, char *out, size_t outsz)
{
    size_t j = 0;
    const char *prefix = "COSTMESH_";
    while (*prefix && j + 1 < outsz) out[j++] = *prefix++;
    for (; *flag && j + 1 < outsz; flag++)
        out[j++] = *flag == '-' ? '_' : (char)(*flag >= 'a' && *flag <= 'z' ? *flag - 32 : *flag);
    out[j] = '\0';
}

static void usage(void);

static void version(void)
{
    printf("costmeshd %s\n", CM_SERVER_VERSION);
}

static void routes(void)
{
    cm_buf b;
    cm_buf_init(&b);
    cm_route_list(&b);
    if (b.data) fputs(b.data, stdout);
    cm_buf_free(&b);
}

/* Flags that print something and exit instead of serving. */
static const struct {
    const char *flag;
    void (*print)(void);
    const char *help;
} commands[] = {
    {"--help", usage, "print this text"},
    {"-h", usage, NULL},
    {"--version", version, "print the version"},
    {"--routes", routes, "print the route table (METHOD PATH, * for a parameter)"},
};
enum { NCMD = sizeof commands / sizeof commands[0] };

static void usage(void)
{
    printf("usage: costmeshd [--option VALUE]...\n"
           "Each option is also an environment variable COSTMESH_<OPTION>.\n");
    for (int i = 0; i < NOPT; i++) {
        char env[64];
        env_name(options[i].name, env, sizeof env);
        printf("  --%-16s %-22s %s (default \"%s\")\n", options[i].name, env, options[i].help,
               options[i].def);
    }
    for (int i = 0; i < NCMD; i++)
        if (commands[i].help) printf("  %-41s %s and exit\n", commands[i].flag, commands[i].help);
}

int cm_config_load(cm_config *c, int argc, char **argv, char *err, size_t errsz)
{
    memset(c, 0, sizeof *c);
    for (int i = 0; i < NOPT; i++) {
        char env[64];
        env_name(options[i].name, env, sizeof env);
        const char *v = getenv(env);
        const char *src = v ? env : "default";
        if (!v) v = options[i].def;
        if (apply(c, i, v) != CM_OK) {
            snprintf(err, errsz, "invalid %s (from %s)", options[i].name, src);
            return CM_EINVAL;
        }
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        for (int i = 0; i < NCMD; i++)
            if (strcmp(arg, commands[i].flag) == 0) {
                commands[i].print();
                return CM_ENOTFOUND;
            }
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, errsz, "unexpected argument %.64s", arg);
            return CM_EINVAL;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        int found = -1;
        for (int i = 0; i < NOPT; i++)
            if (strlen(options[i].name) == nlen && strncmp(options[i].name, name, nlen) == 0) found = i;
        if (found < 0) {
            snprintf(err, errsz, "unknown option --%.*s", (int)nlen, name);
            return CM_EINVAL;
        }
        const char *v = eq ? eq + 1 : (a + 1 < argc ? argv[++a] : NULL);
        if (!v || apply(c, found, v) != CM_OK) {
            snprintf(err, errsz, "invalid --%s", options[found].name);
            return CM_EINVAL;
        }
    }
    if ((c->redis.nsentinels > 0) != (c->redis.master[0] != '\0')) {
        snprintf(err, errsz, "redis-sentinel (COSTMESH_REDIS_SENTINEL) and redis-sentinel-master "
                             "(COSTMESH_REDIS_SENTINEL_MASTER) go together: set both or neither");
        return CM_EINVAL;
    }
    /* With Sentinel a failover promotes a replica, which must already hold
     * every acknowledged heartbeat when Redis is the durable point. */
    if (c->wait_replicas < 0) c->wait_replicas = c->redis.nsentinels > 0 ? 1 : 0;
    /* The bootstrap key opens everything in its org: refuse one short
     * enough to guess (make run and the docs generate 48 hex digits). */
    if (c->admin_key[0] && strlen(c->admin_key) < CM_ADMIN_KEY_MIN) {
        snprintf(err, errsz, "admin-key (COSTMESH_ADMIN_KEY) must be at least %d characters", CM_ADMIN_KEY_MIN);
        return CM_EINVAL;
    }
    return CM_OK;
}
