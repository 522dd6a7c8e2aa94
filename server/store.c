#include "store.h"
#include "backoff.h"
#include "error.h"
#include "log.h"
#include "queue.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdint.h>
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
    size_t nbytes;      /* of the caller's arguments */
    bool bulk;          /* of the bulk lane (cm_store_eval_bulk) */
    struct call *next;  /* in the bulk lane's waiting queue */
    cm_store_cb cb;
    void *arg;
} call;

CM_QUEUE_DEFINE(callq, call, next)

/* The bulk lane's bounds on what is in flight: a normal call waits behind
 * this much of a whole rebuild at most (two or three MERGE chunks of 200
 * windows: a few ms of an idle Redis, ~100 ms measured with Redis busy
 * serving heartbeats too), while the pipe stays full enough that the
 * rebuild itself does not wait on round trips (or, with appendfsync
 * always, on an fsync per call). */
#define BULK_CALLS 64
#define BULK_BYTES (64 * 1024)

struct cm_store {
    uv_loop_t *loop;
    cm_store_where where;  /* with Sentinels, where.server is the primary they named last */
    redisAsyncContext *ac; /* NULL while disconnected */
    redisAsyncContext *asking; /* the Sentinel being asked, NULL when none */
    redisAsyncContext *watch;  /* subscribed to a Sentinel's +switch-master, NULL when none */
    int sentinel;          /* the Sentinel to ask first: the last one that answered */
    int asked;             /* Sentinels that failed in this round */
    const char *const *scripts; /* borrowed Lua texts */
    int nscripts;
    char (*sha)[41];       /* owned: one SHA per script */
    int loaded;            /* scripts whose SHA arrived this connection */
    cm_store_hostport last_ready; /* the server of the last connection that became ready */
    _Atomic unsigned long generation; /* cm_store_generation */
    _Atomic int ready;
    _Atomic size_t backlog;
    uv_timer_t retry;   /* reconnect after backoff, and connect or Sentinel timeout */
    int connected;      /* the current ac finished connecting */
    cm_backoff backoff;
    int closing;
    cm_store_ready_cb on_ready;
    void *ready_arg;
    callq bulk_waiting;          /* owned: bulk calls not sent yet, in order */
    int bulk_calls;              /* bulk calls in flight */
    size_t bulk_bytes;           /* and their arguments' bytes */
    int bulk_holds;              /* cm_store_bulk_hold(true) not yet released */
    /* The deadline (cm_store_set_deadline): a timer looks every quarter of
     * it whether replies are awaited and nothing came since it last looked. */
    uv_timer_t watchdog;
    int deadline_ms;             /* 0: none */
    unsigned long reads;         /* times ac's socket was readable: Redis sent something */
    unsigned long reads_seen;    /* as the watchdog last saw it */
    uint64_t quiet_since;        /* loop time since which no reply came while one was awaited */
    int open_handles;            /* timers not closed yet */
};

static void start_connect(cm_store *s);
static void schedule_retry(cm_store *s);
static void bulk_fail_waiting(cm_store *s);

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

/* Gives up on the current context: its pending callbacks run with a NULL
 * reply inside this call (CM_ESTORE to the callers, their outcome
 * unknown), and a new connection is tried after backoff. */
static void abandon(cm_store *s)
{
    redisAsyncContext *ac = s->ac;
    s->ac = NULL; /* callbacks of this context are ignored from now on */
    atomic_store(&s->ready, 0);
    redisAsyncFree(ac);
    bulk_fail_waiting(s);
    schedule_retry(s);
}

static void on_connect_timeout(uv_timer_t *t)
{
    cm_store *s = t->data;
    if (!s->ac || s->connected) return;
    cm_log(CM_LOG_WARN, "event=redis_connect_failed reason=timeout");
    abandon(s);
}

/* A Redis that stops answering without closing (a stopped process, a
 * partition that drops packets) would otherwise hold every call, and the
 * requests waiting on them, for as long as it lasts. */
static void on_watchdog(uv_timer_t *t)
{
    cm_store *s = t->data;
    uint64_t now = uv_now(s->loop);
    if (!s->ac || !s->ac->replies.head || s->reads != s->reads_seen) {
        s->reads_seen = s->reads;
        s->quiet_since = now;
        return;
    }
    if (now - s->quiet_since <= (uint64_t)s->deadline_ms) return;
    cm_log(CM_LOG_WARN, "event=redis_disconnected reason=\"no answer within %d ms\"", s->deadline_ms);
    s->quiet_since = now;
    abandon(s);
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
    bulk_fail_waiting(s);
    schedule_retry(s);
}

static void on_loaded(redisAsyncContext *ac, void *r, void *priv)
{
    cm_store *s = ac->data;
    redisReply *reply = r;
    int i = (int)(intptr_t)priv;
    if (!reply || reply->type != REDIS_REPLY_STRING || reply->len != 40) {
        cm_log(CM_LOG_ERROR, "event=redis_script_load_failed script=%d message=\"%.120s\"", i,
               reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "");
        /* A Redis still loading its append-only file refuses (LOADING):
         * connect again, with backoff, rather than stay half-loaded. */
        if (reply && ac == s->ac) redisAsyncDisconnect(ac);
        return;
    }
    memcpy(s->sha[i], reply->str, 40);
    s->sha[i][40] = '\0';
    if (++s->loaded == s->nscripts) {
        if (strcmp(s->last_ready.host, s->where.server.host) != 0 || s->last_ready.port != s->where.server.port) {
            atomic_fetch_add(&s->generation, 1);
            s->last_ready = s->where.server;
        }
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

static void on_role(redisAsyncContext *ac, void *r, void *priv)
{
    cm_store *s = ac->data;
    redisReply *reply = r;
    (void)priv;
    if (ac != s->ac) return;
    const char *role = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
                               reply->element[0]->type == REDIS_REPLY_STRING
                           ? reply->element[0]->str
                           : "unknown";
    if (strcmp(role, "master") == 0) {
        load_scripts(s);
        return;
    }
    /* Sentinel named a server that is no longer (or not yet) the primary,
     * or redis-url points at a replica: writes would fail, so ask again. */
    cm_log(CM_LOG_WARN, "event=redis_not_primary host=%s port=%d role=%s", s->where.server.host, s->where.server.port,
           role);
    redisAsyncDisconnect(ac);
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
    cm_log(CM_LOG_INFO, "event=redis_connected host=%s port=%d", s->where.server.host, s->where.server.port);
    if (s->where.db) redisAsyncCommand(s->ac, NULL, NULL, "SELECT %d", s->where.db);
    redisAsyncCommand(s->ac, on_role, NULL, "ROLE");
}

/* hiredis 0.14's libuv adapter drops a poll error, which libuv reports
 * (and stops watching) instead of the event when the socket has failed: a
 * connection reset by a Redis killed mid-call then hangs with its calls
 * unanswered, and a refused connect is never reported. These hooks replace
 * the adapter's and let hiredis read the error, as hiredis 1.0's do. Every
 * reply comes through here, so the main connection's reads are counted
 * here for the watchdog (Sentinels' contexts share the hooks, not the
 * count). */
static void on_poll(uv_poll_t *handle, int status, int events)
{
    redisLibuvEvents *p = handle->data;
    int ev = status < 0 ? p->events : events;
    if (p->context && (ev & UV_READABLE)) {
        cm_store *s = p->context->data;
        if (p->context == s->ac) s->reads++;
        redisAsyncHandleRead(p->context);
    }
    if (p->context && (ev & UV_WRITABLE)) redisAsyncHandleWrite(p->context);
}

static void poll_events(redisLibuvEvents *p, int add, int drop)
{
    p->events = (p->events | add) & ~drop;
    if (p->events)
        uv_poll_start(&p->handle, p->events, on_poll);
    else
        uv_poll_stop(&p->handle);
}

static void add_read(void *p) { poll_events(p, UV_READABLE, 0); }
static void del_read(void *p) { poll_events(p, 0, UV_READABLE); }
static void add_write(void *p) { poll_events(p, UV_WRITABLE, 0); }
static void del_write(void *p) { poll_events(p, 0, UV_WRITABLE); }

/* A new context on the loop, or NULL. */
static redisAsyncContext *open_async(cm_store *s, const cm_store_hostport *at,
                                     void (*on_up)(const redisAsyncContext *, int),
                                     void (*on_down)(const redisAsyncContext *, int))
{
    redisAsyncContext *ac = redisAsyncConnect(at->host, at->port);
    if (!ac || ac->err) {
        if (ac) redisAsyncFree(ac);
        return NULL;
    }
    ac->data = s;
    if (redisLibuvAttach(ac, s->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        return NULL;
    }
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    redisAsyncSetConnectCallback(ac, on_up);
    redisAsyncSetDisconnectCallback(ac, on_down);
    return ac;
}

static void connect_server(cm_store *s)
{
    redisAsyncContext *ac = open_async(s, &s->where.server, on_connect, on_disconnect);
    if (!ac) {
        schedule_retry(s);
        return;
    }
    s->ac = ac;
    s->connected = 0;
    /* A host that does not answer at all (gone from the network) leaves
     * the connect pending: give up on the attempt after a second. */
    uv_timer_start(&s->retry, on_connect_timeout, 1000, 0);
}

/* ---- asking Sentinel for the primary ---- */

static void ask_sentinel(cm_store *s);

/* SENTINEL get-master-addr-by-name's answer: an array of host and port. */
static int read_master_addr(const redisReply *r, cm_store_hostport *out)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_STRING || r->element[0]->len >= sizeof out->host)
        return CM_ENOTFOUND;
    char *end;
    long port = strtol(r->element[1]->str, &end, 10);
    if (*end || port < 1 || port > 65535) return CM_ENOTFOUND;
    memcpy(out->host, r->element[0]->str, r->element[0]->len + 1);
    out->port = (int)port;
    return CM_OK;
}

/* The Sentinel asked did not name a primary: ask the next one, or, when
 * every one failed in this round, wait the backoff and start again. */
static void sentinel_failed(cm_store *s, const char *why)
{
    const cm_store_hostport *t = &s->where.sentinels[s->sentinel];
    cm_log(CM_LOG_WARN, "event=redis_sentinel_failed sentinel=%s:%d reason=\"%.120s\"", t->host, t->port, why);
    s->sentinel = (s->sentinel + 1) % s->where.nsentinels;
    if (++s->asked < s->where.nsentinels) {
        ask_sentinel(s);
        return;
    }
    s->asked = 0;
    schedule_retry(s);
}

/* Stops listening to the Sentinel asked; hiredis frees its context. */
static void leave_sentinel(cm_store *s, redisAsyncContext *ac, int from_timer)
{
    s->asking = NULL;
    if (from_timer)
        redisAsyncFree(ac);
    else
        redisAsyncDisconnect(ac); /* from its own callback: after it returns */
}

static void on_sentinel_timeout(uv_timer_t *t)
{
    cm_store *s = t->data;
    if (!s->asking) return;
    leave_sentinel(s, s->asking, 1);
    sentinel_failed(s, "no answer within a second");
}

static void on_sentinel_up(const redisAsyncContext *ac, int status)
{
    cm_store *s = ac->data;
    if (ac != s->asking || status == REDIS_OK) return;
    s->asking = NULL; /* hiredis frees it after this callback */
    uv_timer_stop(&s->retry);
    sentinel_failed(s, "cannot connect");
}

static void on_sentinel_down(const redisAsyncContext *ac, int status)
{
    cm_store *s = ac->data;
    (void)status;
    if (ac != s->asking) return;
    s->asking = NULL;
    uv_timer_stop(&s->retry);
    sentinel_failed(s, "disconnected");
}

/* ---- hearing of a failover from Sentinel ---- */

/* A planned failover (SENTINEL FAILOVER, or one after a partition) leaves
 * the old primary serving for seconds before Sentinel demotes it, and its
 * connections open: Sentinel's announcement is the first sign. */
static void on_switch(redisAsyncContext *ac, void *r, void *priv)
{
    cm_store *s = ac->data;
    redisReply *reply = r;
    (void)priv;
    if (ac != s->watch || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING || strcmp(reply->element[0]->str, "message") != 0 ||
        reply->element[2]->type != REDIS_REPLY_STRING)
        return;
    /* "<name> <old host> <old port> <new host> <new port>" */
    const char *msg = reply->element[2]->str;
    size_t n = strlen(s->where.master);
    if (strncmp(msg, s->where.master, n) != 0 || msg[n] != ' ') return;
    cm_log(CM_LOG_INFO, "event=redis_switch_master message=\"%.160s\"", msg);
    if (s->ac && s->connected) redisAsyncDisconnect(s->ac); /* and connect again, asking Sentinel */
}

static void on_watch_up(const redisAsyncContext *ac, int status)
{
    cm_store *s = ac->data;
    if (ac == s->watch && status != REDIS_OK) s->watch = NULL; /* hiredis frees it */
}

static void on_watch_down(const redisAsyncContext *ac, int status)
{
    cm_store *s = ac->data;
    (void)status;
    if (ac == s->watch) s->watch = NULL;
}

/* Subscribes to the Sentinel that answered, unless already subscribed. A
 * Sentinel lost takes its subscription along until the next connect opens
 * one again; meanwhile a drop or READONLY still makes costmeshd follow. */
static void watch_sentinel(cm_store *s)
{
    if (s->watch) return;
    s->watch = open_async(s, &s->where.sentinels[s->sentinel], on_watch_up, on_watch_down);
    if (s->watch) redisAsyncCommand(s->watch, on_switch, NULL, "SUBSCRIBE +switch-master");
}

static void on_master_addr(redisAsyncContext *ac, void *r, void *priv)
{
    cm_store *s = ac->data;
    redisReply *reply = r;
    (void)priv;
    if (ac != s->asking) return;
    uv_timer_stop(&s->retry);
    leave_sentinel(s, ac, 0);
    cm_store_hostport primary;
    if (read_master_addr(reply, &primary) != CM_OK) {
        sentinel_failed(s, !reply                              ? "disconnected"
                           : reply->type == REDIS_REPLY_ERROR ? reply->str
                                                              : "no primary of that name");
        return;
    }
    if (strcmp(primary.host, s->where.server.host) != 0 || primary.port != s->where.server.port) {
        const cm_store_hostport *t = &s->where.sentinels[s->sentinel];
        cm_log(CM_LOG_INFO, "event=redis_primary host=%s port=%d sentinel=%s:%d", primary.host, primary.port,
               t->host, t->port);
        s->where.server = primary;
    }
    s->asked = 0;
    watch_sentinel(s);
    connect_server(s);
}

static void ask_sentinel(cm_store *s)
{
    redisAsyncContext *ac = open_async(s, &s->where.sentinels[s->sentinel], on_sentinel_up, on_sentinel_down);
    if (!ac) {
        sentinel_failed(s, "cannot open a connection");
        return;
    }
    s->asking = ac;
    redisAsyncCommand(ac, on_master_addr, NULL, "SENTINEL get-master-addr-by-name %s", s->where.master);
    uv_timer_start(&s->retry, on_sentinel_timeout, 1000, 0);
}

static void start_connect(cm_store *s)
{
    if (s->closing) return;
    if (s->where.nsentinels > 0)
        ask_sentinel(s);
    else
        connect_server(s);
}

int cm_store_new(uv_loop_t *loop, const cm_store_where *where, const char *const *scripts, int nscripts,
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
    s->where = *where;
    s->on_ready = on_ready;
    s->ready_arg = arg;
    uv_timer_init(loop, &s->retry);
    s->retry.data = s;
    uv_timer_init(loop, &s->watchdog);
    s->watchdog.data = s;
    s->open_handles = 2;
    start_connect(s);
    *out = s;
    return CM_OK;
}

static void on_timer_closed(uv_handle_t *h)
{
    cm_store *s = h->data;
    if (--s->open_handles > 0) return;
    free(s->sha);
    free(s);
}

void cm_store_set_deadline(cm_store *s, int ms)
{
    s->deadline_ms = ms > 0 ? ms : 0;
    if (!s->deadline_ms) {
        uv_timer_stop(&s->watchdog);
        return;
    }
    uint64_t every = (uint64_t)s->deadline_ms / 4;
    s->quiet_since = uv_now(s->loop);
    uv_timer_start(&s->watchdog, on_watchdog, every, every);
}

void cm_store_free(cm_store *s)
{
    if (!s) return;
    s->closing = 1;
    atomic_store(&s->ready, 0);
    redisAsyncContext *sentinels[] = {s->asking, s->watch};
    s->asking = s->watch = NULL; /* their callbacks, run by the frees, then do nothing */
    for (int i = 0; i < 2; i++)
        if (sentinels[i]) redisAsyncFree(sentinels[i]);
    if (s->ac) {
        redisAsyncContext *ac = s->ac;
        s->ac = NULL;
        /* Pending callbacks run with a NULL reply inside this call. */
        redisAsyncFree(ac);
    }
    bulk_fail_waiting(s);
    uv_close((uv_handle_t *)&s->retry, on_timer_closed);
    uv_close((uv_handle_t *)&s->watchdog, on_timer_closed);
}

bool cm_store_ready(const cm_store *s)
{
    return s && atomic_load(&((cm_store *)s)->ready);
}

unsigned long cm_store_generation(const cm_store *s)
{
    return atomic_load(&((cm_store *)s)->generation);
}

size_t cm_store_backlog(const cm_store *s)
{
    return s ? atomic_load(&((cm_store *)s)->backlog) : 0;
}

static int send_call(call *c);
static void bulk_pump(cm_store *s);

static void on_reply(redisAsyncContext *ac, void *r, void *priv)
{
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
    if (c->bulk) {
        s->bulk_calls--;
        s->bulk_bytes -= c->nbytes;
    }
    int rc = CM_OK;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply) cm_log(CM_LOG_WARN, "event=redis_error script=%d message=\"%.120s\"", c->script, reply->str);
        rc = CM_ESTORE;
    }
    if (reply && reply->type == REDIS_REPLY_ERROR && strstr(reply->str, "READONLY") && ac == s->ac) {
        /* The primary was demoted to a replica (a script's write fails with
         * READONLY, bare or inside ERR): reconnect, asking Sentinel again. */
        cm_log(CM_LOG_WARN, "event=redis_demoted host=%s port=%d", s->where.server.host, s->where.server.port);
        redisAsyncDisconnect(ac);
    }
    bool bulk = c->bulk;
    c->cb(c->arg, rc, rc == CM_OK ? (const cm_store_reply *)reply : NULL);
    call_free(c);
    if (bulk) bulk_pump(s);
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
    if (!s->ac) return CM_ESTORE;
    c->argv[0] = c->retried ? "EVAL" : "EVALSHA";
    c->argv[1] = c->retried ? s->scripts[c->script] : s->sha[c->script];
    for (int i = 0; i < 3; i++) c->lens[i] = strlen(c->argv[i]);
    return redisAsyncCommandArgv(s->ac, on_reply, c, c->total, c->argv, c->lens) == REDIS_OK ? CM_OK : CM_ESTORE;
}

/* A call of script with the caller's arguments copied, or NULL. */
static call *call_new(cm_store *s, int script, int nkeys, int argc, const char *const *argv, const size_t *lens,
                      cm_store_cb cb, void *arg)
{
    call *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    for (int i = 0; i < argc; i++) c->nbytes += lens[i];
    c->s = s;
    c->script = script;
    c->total = argc + 3;
    c->cb = cb;
    c->arg = arg;
    c->argv = malloc((size_t)c->total * sizeof *c->argv);
    c->lens = malloc((size_t)c->total * sizeof *c->lens);
    c->bytes = malloc(c->nbytes ? c->nbytes : 1);
    if (!c->argv || !c->lens || !c->bytes) {
        call_free(c);
        return NULL;
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
    return c;
}

int cm_store_eval(cm_store *s, int script, int nkeys, int argc, const char *const *argv,
                  const size_t *lens, cm_store_cb cb, void *arg)
{
    if (!s->ac || !atomic_load(&s->ready)) return CM_ESTORE;
    call *c = call_new(s, script, nkeys, argc, argv, lens, cb, arg);
    if (!c) return CM_ENOMEM;
    int rc = send_call(c);
    if (rc != CM_OK) {
        call_free(c);
        return rc;
    }
    atomic_fetch_add(&s->backlog, 1);
    return CM_OK;
}

/* A bulk call that will not be sent: answered CM_ESTORE. */
static void bulk_fail(cm_store *s, call *c)
{
    atomic_fetch_sub(&s->backlog, 1);
    c->cb(c->arg, CM_ESTORE, NULL);
    call_free(c);
}

/* One more bulk call of nbytes may be in flight now. */
static bool bulk_fits(const cm_store *s, size_t nbytes)
{
    if (s->bulk_holds > 0) return false;
    return s->bulk_calls == 0 || (s->bulk_calls < BULK_CALLS && s->bulk_bytes + nbytes <= BULK_BYTES);
}

static void bulk_sent(cm_store *s, const call *c)
{
    s->bulk_calls++;
    s->bulk_bytes += c->nbytes;
}

/* Sends the waiting bulk calls that fit; runs as a reply frees room. */
static void bulk_pump(cm_store *s)
{
    while (s->bulk_waiting.head && bulk_fits(s, s->bulk_waiting.head->nbytes)) {
        call *c = callq_pop(&s->bulk_waiting);
        if (send_call(c) == CM_OK) bulk_sent(s, c);
        else bulk_fail(s, c); /* the lane is settled first: its callback may add calls */
    }
}

static void bulk_fail_waiting(cm_store *s)
{
    call *c;
    while ((c = callq_pop(&s->bulk_waiting))) bulk_fail(s, c);
}

void cm_store_bulk_hold(cm_store *s, bool hold)
{
    s->bulk_holds += hold ? 1 : -1;
    if (s->bulk_holds == 0) bulk_pump(s);
}

int cm_store_eval_bulk(cm_store *s, int script, int nkeys, int argc, const char *const *argv,
                       const size_t *lens, cm_store_cb cb, void *arg)
{
    if (!s->ac || !atomic_load(&s->ready)) return CM_ESTORE;
    call *c = call_new(s, script, nkeys, argc, argv, lens, cb, arg);
    if (!c) return CM_ENOMEM;
    c->bulk = true;
    if (!s->bulk_waiting.head && bulk_fits(s, c->nbytes)) {
        /* Sent now, failing at once as cm_store_eval does. A waiting call
         * is sent, or fails, only from a reply's callback, a hold's release
         * or a drop. */
        int rc = send_call(c);
        if (rc != CM_OK) {
            call_free(c);
            return rc;
        }
        bulk_sent(s, c);
    } else {
        callq_push(&s->bulk_waiting, c);
    }
    atomic_fetch_add(&s->backlog, 1);
    return CM_OK;
}

typedef struct {
    cm_store *s;
    cm_store_cb cb;
    void *arg;
} wait_call;

static void on_wait_reply(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    wait_call *w = priv;
    redisReply *reply = r;
    atomic_fetch_sub(&w->s->backlog, 1);
    int rc = reply && reply->type == REDIS_REPLY_INTEGER ? CM_OK : CM_ESTORE;
    w->cb(w->arg, rc, rc == CM_OK ? (const cm_store_reply *)reply : NULL);
    free(w);
}

int cm_store_wait(cm_store *s, int replicas, int timeout_ms, cm_store_cb cb, void *arg)
{
    if (!s->ac || !atomic_load(&s->ready)) return CM_ESTORE;
    wait_call *w = malloc(sizeof *w);
    if (!w) return CM_ENOMEM;
    *w = (wait_call){s, cb, arg};
    atomic_fetch_add(&s->backlog, 1);
    if (redisAsyncCommand(s->ac, on_wait_reply, w, "WAIT %d %d", replicas, timeout_ms) != REDIS_OK) {
        atomic_fetch_sub(&s->backlog, 1);
        free(w);
        return CM_ESTORE;
    }
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

/* Blocking: a connection within two seconds, or NULL with the reason in err. */
static redisContext *connect_blocking(const cm_store_hostport *at, const char *what, char *err, size_t errsz)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout(at->host, at->port, tv);
    if (!c || c->err) {
        snprintf(err, errsz, "cannot connect to %s at %s:%d: %s", what, at->host, at->port,
                 c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    return c;
}

/* The primary the first answering Sentinel names; else the last one's
 * failure in err. */
static int find_primary(const cm_store_where *where, cm_store_hostport *out, char *err, size_t errsz)
{
    for (int i = 0; i < where->nsentinels; i++) {
        redisContext *c = connect_blocking(&where->sentinels[i], "Sentinel", err, errsz);
        if (!c) continue;
        redisReply *r = redisCommand(c, "SENTINEL get-master-addr-by-name %s", where->master);
        int rc = read_master_addr(r, out);
        if (rc != CM_OK)
            snprintf(err, errsz, "Sentinel at %s:%d names no primary called %s", where->sentinels[i].host,
                     where->sentinels[i].port, where->master);
        freeReplyObject(r);
        redisFree(c);
        if (rc == CM_OK) return CM_OK;
    }
    return CM_ESTORE;
}

/* CONFIG GET name into out; 0 when Redis would not say. */
static int config_get(redisContext *c, const char *name, char *out, size_t outsz)
{
    redisReply *r = redisCommand(c, "CONFIG GET %s", name);
    int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->type == REDIS_REPLY_STRING;
    if (ok) snprintf(out, outsz, "%s", r->element[1]->str);
    freeReplyObject(r);
    return ok;
}

int cm_store_ping(const cm_store_where *where, bool need_fsync_always, char *err, size_t errsz)
{
    cm_store_hostport at = where->server;
    if (where->nsentinels > 0 && find_primary(where, &at, err, errsz) != CM_OK) return CM_ESTORE;
    redisContext *c = connect_blocking(&at, "Redis", err, errsz);
    if (!c) return CM_ESTORE;
    redisReply *r = redisCommand(c, "PING");
    int ok = r && r->type == REDIS_REPLY_STATUS;
    if (!ok) snprintf(err, errsz, "Redis at %s:%d did not answer PING", at.host, at.port);
    freeReplyObject(r);
    if (ok && need_fsync_always) {
        char fsync[32], aof[32];
        int known = config_get(c, "appendfsync", fsync, sizeof fsync) && config_get(c, "appendonly", aof, sizeof aof);
        if (!known) {
            /* A Redis that does not show its settings (CONFIG renamed away,
             * as managed services do) is taken at its operator's word. */
            cm_log(CM_LOG_WARN, "event=redis_fsync_unknown host=%s port=%d", at.host, at.port);
        } else if (strcmp(fsync, "always") != 0 || strcmp(aof, "yes") != 0) {
            ok = 0;
            snprintf(err, errsz,
                     "Redis at %s:%d has appendonly %s and appendfsync %s: COSTMESH_DURABLE=redis needs"
                     " appendonly yes and appendfsync always, or a 202 could be lost with Redis",
                     at.host, at.port, aof, fsync);
        }
    }
    redisFree(c);
    return ok ? CM_OK : CM_ESTORE;
}
