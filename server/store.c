#include "store.h"
#include "error.h"
#include "log.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Field values compare as decimal strings: Lua numbers are doubles and
 * would round nano-dollar totals above 2^53. */
static const char merge_lua[] =
    "local function gt(a, b)\n"
    "  if #a ~= #b then return #a > #b end\n"
    "  return a > b\n"
    "end\n"
    "local pos = 1\n"
    "for i = 2, #KEYS do\n"
    "  local k = KEYS[i]\n"
    "  local ttl = ARGV[pos]\n"
    "  local nf = tonumber(ARGV[pos + 1])\n"
    "  pos = pos + 2\n"
    "  local fields = {}\n"
    "  for j = 1, nf do fields[j] = ARGV[pos + 2 * (j - 1)] end\n"
    "  local cur = redis.call('HMGET', k, unpack(fields))\n"
    "  local set = {}\n"
    "  for j = 1, nf do\n"
    "    local v = ARGV[pos + 2 * (j - 1) + 1]\n"
    "    if not cur[j] or gt(v, cur[j]) then\n"
    "      set[#set + 1] = fields[j]\n"
    "      set[#set + 1] = v\n"
    "    end\n"
    "  end\n"
    "  pos = pos + 2 * nf\n"
    "  if #set > 0 then redis.call('HSET', k, unpack(set)) end\n"
    "  redis.call('EXPIRE', k, ttl)\n"
    "end\n"
    "return redis.call('EXISTS', KEYS[1])\n";

static const char *const scripts[CM_SCRIPT_COUNT] = {merge_lua};

typedef struct call {
    cm_store *s;
    int script;
    int argc;       /* arguments after EVALSHA sha nkeys */
    char **argv;
    size_t *lens;
    int nkeys;
    int retried;    /* re-sent as EVAL after NOSCRIPT */
    cm_store_cb cb;
    void *arg;
} call;

struct cm_store {
    uv_loop_t *loop;
    char host[128];
    int port;
    int db;
    redisAsyncContext *ac; /* NULL while disconnected */
    char sha[CM_SCRIPT_COUNT][41];
    int loaded;            /* scripts whose SHA arrived this connection */
    _Atomic int ready;
    _Atomic size_t backlog;
    uv_timer_t retry;
    int backoff_ms;
    int closing;
    cm_store_ready_cb on_ready;
    void *ready_arg;
};

static void start_connect(cm_store *s);

static void call_free(call *c)
{
    for (int i = 0; i < c->argc; i++) free(c->argv[i]);
    free(c->argv);
    free(c->lens);
    free(c);
}

static void schedule_retry(cm_store *s)
{
    if (s->closing) return;
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : 100;
    if (s->backoff_ms > 5000) s->backoff_ms = 5000;
    uv_timer_start(&s->retry, (uv_timer_cb)start_connect, (uint64_t)s->backoff_ms, 0);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    cm_store *s = ac->data;
    (void)status;
    s->ac = NULL;
    atomic_store(&s->ready, 0);
    cm_log(CM_LOG_WARN, "event=redis_disconnected");
    schedule_retry(s);
}

static void on_loaded(redisAsyncContext *ac, void *r, void *priv)
{
    cm_store *s = ac->data;
    redisReply *reply = r;
    int i = (int)(intptr_t)priv;
    if (!reply || reply->type != REDIS_REPLY_STRING || reply->len != 40) {
        cm_log(CM_LOG_ERROR, "event=redis_script_load_failed script=%d", i);
        return;
    }
    memcpy(s->sha[i], reply->str, 40);
    s->sha[i][40] = '\0';
    if (++s->loaded == CM_SCRIPT_COUNT) {
        atomic_store(&s->ready, 1);
        s->backoff_ms = 0;
        cm_log(CM_LOG_INFO, "event=redis_ready");
        if (s->on_ready) s->on_ready(s->ready_arg);
    }
}

static void load_scripts(cm_store *s)
{
    s->loaded = 0;
    for (int i = 0; i < CM_SCRIPT_COUNT; i++)
        redisAsyncCommand(s->ac, on_loaded, (void *)(intptr_t)i, "SCRIPT LOAD %s", scripts[i]);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    cm_store *s = ac->data;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        s->ac = NULL;
        cm_log(CM_LOG_WARN, "event=redis_connect_failed");
        schedule_retry(s);
        return;
    }
    cm_log(CM_LOG_INFO, "event=redis_connected host=%s port=%d", s->host, s->port);
    if (s->db) redisAsyncCommand(s->ac, NULL, NULL, "SELECT %d", s->db);
    load_scripts(s);
}

static void start_connect(cm_store *s)
{
    if (s->closing) return;
    redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);
    if (!ac || ac->err) {
        if (ac) redisAsyncFree(ac);
        schedule_retry(s);
        return;
    }
    ac->data = s;
    if (redisLibuvAttach(ac, s->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        schedule_retry(s);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    s->ac = ac;
}

int cm_store_new(uv_loop_t *loop, const char *host, int port, int db,
                 cm_store_ready_cb on_ready, void *arg, cm_store **out)
{
    cm_store *s = calloc(1, sizeof *s);
    if (!s) return CM_ENOMEM;
    s->loop = loop;
    snprintf(s->host, sizeof s->host, "%s", host);
    s->port = port;
    s->db = db;
    s->on_ready = on_ready;
    s->ready_arg = arg;
    uv_timer_init(loop, &s->retry);
    s->retry.data = s;
    start_connect(s);
    *out = s;
    return CM_OK;
}

static void on_retry_closed(uv_handle_t *h)
{
    free(h->data);
}

void cm_store_free(cm_store *s)
{
    if (!s) return;
    s->closing = 1;
    atomic_store(&s->ready, 0);
    if (s->ac) {
        redisAsyncContext *ac = s->ac;
        s->ac = NULL;
        /* Pending callbacks run with a NULL reply inside this call. */
        redisAsyncFree(ac);
    }
    uv_close((uv_handle_t *)&s->retry, on_retry_closed);
}

bool cm_store_ready(const cm_store *s)
{
    return s && atomic_load(&((cm_store *)s)->ready);
}

size_t cm_store_backlog(const cm_store *s)
{
    return s ? atomic_load(&((cm_store *)s)->backlog) : 0;
}

static int send_call(call *c);

static void on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    call *c = priv;
    cm_store *s = c->s;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0 &&
        !c->retried && s->ac) {
        /* Redis restarted or flushed its script cache: send the body once
         * and load it again for the next calls. */
        c->retried = 1;
        cm_log(CM_LOG_INFO, "event=redis_noscript script=%d", c->script);
        load_scripts(s);
        if (send_call(c) == CM_OK) return;
    }
    atomic_fetch_sub(&s->backlog, 1);
    long long vals[64];
    int n = 0, rc = CM_OK;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply) cm_log(CM_LOG_WARN, "event=redis_error script=%d message=\"%.120s\"", c->script, reply->str);
        rc = CM_ESTORE;
    } else if (reply->type == REDIS_REPLY_INTEGER) {
        vals[n++] = reply->integer;
    } else if (reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < reply->elements && n < 64; i++) {
            redisReply *e = reply->element[i];
            vals[n++] = e->type == REDIS_REPLY_INTEGER ? e->integer
                      : e->type == REDIS_REPLY_STRING ? strtoll(e->str, NULL, 10) : 0;
        }
    }
    c->cb(c->arg, rc, vals, n);
    call_free(c);
}

static int send_call(call *c)
{
    cm_store *s = c->s;
    int total = c->argc + 3;
    const char **argv = malloc((size_t)total * sizeof *argv);
    size_t *lens = malloc((size_t)total * sizeof *lens);
    char nk[16];
    int rc = CM_ENOMEM;
    if (!argv || !lens) goto out;
    snprintf(nk, sizeof nk, "%d", c->nkeys);
    argv[0] = c->retried ? "EVAL" : "EVALSHA";
    argv[1] = c->retried ? scripts[c->script] : s->sha[c->script];
    argv[2] = nk;
    for (int i = 0; i < 3; i++) lens[i] = strlen(argv[i]);
    for (int i = 0; i < c->argc; i++) {
        argv[i + 3] = c->argv[i];
        lens[i + 3] = c->lens[i];
    }
    rc = redisAsyncCommandArgv(s->ac, on_reply, c, total, argv, lens) == REDIS_OK ? CM_OK : CM_ESTORE;
out:
    free(argv);
    free(lens);
    return rc;
}

int cm_store_eval(cm_store *s, int script, int nkeys, int argc, const char *const *argv,
                  const size_t *lens, cm_store_cb cb, void *arg)
{
    if (!s->ac || !atomic_load(&s->ready)) return CM_ESTORE;
    call *c = calloc(1, sizeof *c);
    if (!c) return CM_ENOMEM;
    c->s = s;
    c->script = script;
    c->nkeys = nkeys;
    c->cb = cb;
    c->arg = arg;
    c->argv = calloc((size_t)argc + 1, sizeof *c->argv);
    c->lens = calloc((size_t)argc + 1, sizeof *c->lens);
    if (!c->argv || !c->lens) goto oom;
    for (int i = 0; i < argc; i++) {
        c->argv[i] = malloc(lens[i] + 1);
        if (!c->argv[i]) goto oom;
        c->argc = i + 1;
        memcpy(c->argv[i], argv[i], lens[i]);
        c->argv[i][lens[i]] = '\0';
        c->lens[i] = lens[i];
    }
    int rc = send_call(c);
    if (rc != CM_OK) {
        call_free(c);
        return rc;
    }
    atomic_fetch_add(&s->backlog, 1);
    return CM_OK;
oom:
    call_free(c);
    return CM_ENOMEM;
}

int cm_store_set(cm_store *s, const char *key, const char *value)
{
    if (!s->ac) return CM_ESTORE;
    return redisAsyncCommand(s->ac, NULL, NULL, "SET %s %s", key, value) == REDIS_OK ? CM_OK : CM_ESTORE;
}

int cm_store_ping(const char *host, int port, char *err, size_t errsz)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c || c->err) {
        snprintf(err, errsz, "cannot connect to Redis at %s:%d: %s", host, port, c ? c->errstr : "out of memory");
        redisFree(c);
        return CM_ESTORE;
    }
    redisReply *r = redisCommand(c, "PING");
    int ok = r && r->type == REDIS_REPLY_STATUS;
    if (!ok) snprintf(err, errsz, "Redis at %s:%d did not answer PING", host, port);
    freeReplyObject(r);
    redisFree(c);
    return ok ? CM_OK : CM_ESTORE;
}
