#include "store.h"
#include "backoff.h"
#include "error.h"
#include "log.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A call kept until its reply, so NOSCRIPT can resend it. The command is
 * laid out once: argv[0..3) is "EVALSHA sha nkeys" (or "EVAL body nkeys"
 * on the resend), then the caller's arguments, copied into one block. */
typedef struct call {
    cm_store *s;
    int script;
    int total;          /* 3 + the caller's argc */
    const char **argv;  /* owned array; strings point into bytes or are static */
    size_t *lens;       /* owned */
    char *bytes;        /* owned: the caller's arguments */
    char nkeys[16];
    int retried;        /* re-sent as EVAL after NOSCRIPT */
    cm_store_cb cb;
    void *arg;
} call;

struct cm_store {
    uv_loop_t *loop;
    char host[128];
    int port;
    int db;
    redisAsyncContext *ac; /* NULL while disconnected */
    const char *const *scripts; /* borrowed Lua texts */
    int nscripts;
    char (*sha)[41];       /* owned: one SHA per script */
    int loaded;            /* scripts whose SHA arrived this connection */
    _Atomic int ready;
    _Atomic size_t backlog;
    uv_timer_t retry;   /* reconnect after backoff, and connect timeout */
    int connected;      /* the current ac finished connecting */
    cm_backoff backoff;
    int closing;
    cm_store_ready_cb on_ready;
    void *ready_arg;
};

static void start_connect(cm_store *s);
static void schedule_retry(cm_store *s);

static void call_free(call *c)
{
    free(c->argv);
    free(c->lens);
    free(c->bytes);
    free(c);
}

static void on_retry(uv_timer_t *t)
{
    start_connect(t->data);
}

static void on_connect_timeout(uv_timer_t *t)
{
    cm_store *s = t->data;
    redisAsyncContext *ac = s->ac;
    if (!ac || s->connected) return;
    s->ac = NULL; /* callbacks of this context are ignored from now on */
    redisAsyncFree(ac);
    cm_log(CM_LOG_WARN, "event=redis_connect_failed reason=timeout");
    schedule_retry(s);
}

static void schedule_retry(cm_store *s)
{
    if (s->closing) return;
    uv_timer_start(&s->retry, on_retry, cm_backoff_next(&s->backoff), 0);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    cm_store *s = ac->data;
    (void)status;
    if (ac != s->ac) return; /* a context we already gave up on */
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
    if (++s->loaded == s->nscripts) {
        atomic_store(&s->ready, 1);
        cm_backoff_reset(&s->backoff);
        cm_log(CM_LOG_INFO, "event=redis_ready");
        if (s->on_ready) s->on_ready(s->ready_arg);
    }
}

static void load_scripts(cm_store *s)
{
    s->loaded = 0;
    for (int i = 0; i < s->nscripts; i++)
        redisAsyncCommand(s->ac, on_loaded, (void *)(intptr_t)i, "SCRIPT LOAD %s", s->scripts[i]);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    cm_store *s = ac->data;
    if (ac != s->ac) return;
    uv_timer_stop(&s->retry);
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        s->ac = NULL;
        cm_log(CM_LOG_WARN, "event=redis_connect_failed");
        schedule_retry(s);
        return;
    }
    s->connected = 1;
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
    s->connected = 0;
    /* hiredis 0.14's libuv adapter drops the error of a refused
     * non-blocking connect, so on_connect may never run: give up on the
     * attempt after a second. */
    uv_timer_start(&s->retry, on_connect_timeout, 1000, 0);
}

int cm_store_new(uv_loop_t *loop, const char *host, int port, int db, const char *const *scripts, int nscripts,
                 cm_store_ready_cb on_ready, void *arg, cm_store **out)
{
    cm_store *s = calloc(1, sizeof *s);
    if (s) s->sha = calloc((size_t)nscripts, sizeof *s->sha);
    if (!s || !s->sha) {
        free(s);
        return CM_ENOMEM;
    }
    s->loop = loop;
    s->scripts = scripts;
    s->nscripts = nscripts;
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
    cm_store *s = h->data;
    free(s->sha);
    free(s);
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
    int rc = CM_OK;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply) cm_log(CM_LOG_WARN, "event=redis_error script=%d message=\"%.120s\"", c->script, reply->str);
        rc = CM_ESTORE;
    }
    c->cb(c->arg, rc, rc == CM_OK ? (const cm_store_reply *)reply : NULL);
    call_free(c);
}

static const redisReply *element(const cm_store_reply *r, int i)
{
    const redisReply *x = (const redisReply *)r;
    if (!x) return NULL;
    if (x->type != REDIS_REPLY_ARRAY) return i == 0 ? x : NULL;
    return i >= 0 && (size_t)i < x->elements ? x->element[i] : NULL;
}

int cm_store_reply_len(const cm_store_reply *r)
{
    const redisReply *x = (const redisReply *)r;
    if (!x) return 0;
    return x->type == REDIS_REPLY_ARRAY ? (int)x->elements : 1;
}

long long cm_store_reply_int(const cm_store_reply *r, int i)
{
    const redisReply *e = element(r, i);
    if (!e) return 0;
    if (e->type == REDIS_REPLY_INTEGER) return e->integer;
    if (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS) return strtoll(e->str, NULL, 10);
    return 0;
}

const char *cm_store_reply_str(const cm_store_reply *r, int i, char *tmp, size_t tmpsz)
{
    const redisReply *e = element(r, i);
    if (!e) return "";
    if (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS) return e->str;
    if (e->type == REDIS_REPLY_INTEGER) {
        snprintf(tmp, tmpsz, "%lld", e->integer);
        return tmp;
    }
    return "";
}

static int send_call(call *c)
{
    cm_store *s = c->s;
    c->argv[0] = c->retried ? "EVAL" : "EVALSHA";
    c->argv[1] = c->retried ? s->scripts[c->script] : s->sha[c->script];
    for (int i = 0; i < 3; i++) c->lens[i] = strlen(c->argv[i]);
    return redisAsyncCommandArgv(s->ac, on_reply, c, c->total, c->argv, c->lens) == REDIS_OK ? CM_OK : CM_ESTORE;
}

int cm_store_eval(cm_store *s, int script, int nkeys, int argc, const char *const *argv,
                  const size_t *lens, cm_store_cb cb, void *arg)
{
    if (!s->ac || !atomic_load(&s->ready)) return CM_ESTORE;
    call *c = calloc(1, sizeof *c);
    if (!c) return CM_ENOMEM;
    size_t nbytes = 0;
    for (int i = 0; i < argc; i++) nbytes += lens[i];
    c->s = s;
    c->script = script;
    c->total = argc + 3;
    c->cb = cb;
    c->arg = arg;
    c->argv = malloc((size_t)c->total * sizeof *c->argv);
    c->lens = malloc((size_t)c->total * sizeof *c->lens);
    c->bytes = malloc(nbytes ? nbytes : 1);
    if (!c->argv || !c->lens || !c->bytes) {
        call_free(c);
        return CM_ENOMEM;
    }
    snprintf(c->nkeys, sizeof c->nkeys, "%d", nkeys);
    c->argv[2] = c->nkeys;
    char *p = c->bytes;
    for (int i = 0; i < argc; i++) {
        memcpy(p, argv[i], lens[i]);
        c->argv[3 + i] = p;
        c->lens[3 + i] = lens[i];
        p += lens[i];
    }
    int rc = send_call(c);
    if (rc != CM_OK) {
        call_free(c);
        return rc;
    }
    atomic_fetch_add(&s->backlog, 1);
    return CM_OK;
}

int cm_store_set(cm_store *s, const char *key, const char *value, long ttl_s)
{
    if (!s->ac) return CM_ESTORE;
    int rc = ttl_s > 0 ? redisAsyncCommand(s->ac, NULL, NULL, "SET %s %s EX %ld", key, value, ttl_s)
                       : redisAsyncCommand(s->ac, NULL, NULL, "SET %s %s", key, value);
    return rc == REDIS_OK ? CM_OK : CM_ESTORE;
}

int cm_store_del(cm_store *s, const char *key)
{
    if (!s->ac) return CM_ESTORE;
    return redisAsyncCommand(s->ac, NULL, NULL, "DEL %s", key) == REDIS_OK ? CM_OK : CM_ESTORE;
}

int cm_store_hincrby(cm_store *s, const char *key, const char *field, long long by)
{
    if (!s->ac) return CM_ESTORE;
    return redisAsyncCommand(s->ac, NULL, NULL, "HINCRBY %s %s %lld", key, field, by) == REDIS_OK ? CM_OK
                                                                                                   : CM_ESTORE;
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
