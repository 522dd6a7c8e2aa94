#include "pg.h"
#include "backoff.h"
#include "error.h"
#include "log.h"
#include "queue.h"

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

typedef struct query {
    struct query *next;
    char *sql;
    int n;
    char **params;
    const char *stmt; /* the caller's static text when it is to be prepared, else NULL */
    int deadline_ms;  /* cm_pg_query_prepared_within's, from its sending; <= 0: none */
    cm_pg_cb cb;
    void *arg;
} query;

CM_QUEUE_DEFINE(queryq, query, next)

enum { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY };

/* Distinct statements a connection keeps prepared; more run unprepared. */
#define MAX_PREPARED 8

/* A poll on a duplicate of libpq's socket: libpq closes its own when the
 * connection breaks, before the poll is stopped, and the number may then be
 * reused (an accepted HTTP connection, another pool's socket) while the
 * loop's epoll still holds it. The duplicate keeps the socket open until
 * the poll is closed. */
typedef struct {
    uv_poll_t h;
    int fd; /* owned: the duplicate */
} watcher;

typedef struct conn {
    cm_pg_pool *pool;
    PGconn *pg;
    watcher *poll; /* owned; freed in its close callback */
    int fd;         /* libpq's socket the watcher watches */
    int state;
    query *cur;
    PGresult *result; /* of cur, kept until its last result arrives */
    /* While DOWN: the reconnect after backoff. While BUSY with a statement
     * that has a deadline: the end of the wait for PostgreSQL's answer. */
    uv_timer_t timer;
    cm_backoff backoff;
    /* Statements prepared on this connection (by their static text), named
     * cm_s<index>; forgotten when the connection is lost. */
    const char *prepared[MAX_PREPARED];
    int nprepared;
    bool preparing; /* cur's PQsendPrepare is running; its execution follows */
} conn;

struct cm_pg_pool {
    uv_loop_t *loop;
    char *conninfo;
    char name[16];
    int n;
    conn *conns;
    queryq waiting;      /* statements no connection has taken yet */
    _Atomic int up;      /* connections IDLE or BUSY, read by HTTP threads */
    _Atomic size_t backlog;
    int closing;
    bool one_plan;       /* cm_pg_pool_new_one_plan's */
    int open_handles;    /* the connections' timers not yet closed */
    char **listen_sql;   /* "LISTEN ..." each, sent first on every connection */
    int nlisten;
    cm_pg_notify_cb on_notify;
    cm_pg_listening_cb on_listening;
    void *listen_arg;
};

static void start_connect(conn *c);
static void lose(conn *c, const char *why);
static void on_poll(uv_poll_t *h, int status, int events);
static void listen_again(cm_pg_pool *p);
static void dispatch(cm_pg_pool *p);

static void query_free(query *q)
{
    if (!q) return;
    for (int i = 0; i < q->n; i++) free(q->params[i]);
    free(q->params);
    free(q->sql);
    free(q);
}

static void finish(query *q, int rc, PGresult *res, const char *sqlstate)
{
    q->cb(q->arg, rc, (const cm_pgres *)res, sqlstate ? sqlstate : "");
    query_free(q);
}

static void free_poll(uv_handle_t *h)
{
    watcher *w = (watcher *)h;
    close(w->fd);
    free(w);
}

static void drop_poll(conn *c)
{
    if (c->poll) {
        uv_close((uv_handle_t *)&c->poll->h, free_poll);
        c->poll = NULL;
    }
    c->fd = -1;
}

static int watch(conn *c, int events)
{
    int fd = PQsocket(c->pg);
    if (fd < 0) return CM_ESTORE;
    if (fd != c->fd) {
        /* libpq may open a new socket while connecting (another host). */
        drop_poll(c);
        c->poll = malloc(sizeof *c->poll);
        if (!c->poll) return CM_ENOMEM;
        c->poll->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (c->poll->fd < 0 || uv_poll_init(c->pool->loop, &c->poll->h, c->poll->fd) != 0) {
            if (c->poll->fd >= 0) close(c->poll->fd);
            free(c->poll);
            c->poll = NULL;
            return CM_ESTORE;
        }
        c->poll->h.data = c;
        c->fd = fd;
    }
    return uv_poll_start(&c->poll->h, events, on_poll) == 0 ? CM_OK : CM_ESTORE;
}

static void fail_queue(cm_pg_pool *p)
{
    for (query *q; (q = queryq_pop(&p->waiting));) {
        atomic_fetch_sub(&p->backlog, 1);
        finish(q, CM_ESTORE, NULL, NULL);
    }
}

static void on_timer(uv_timer_t *t)
{
    conn *c = t->data;
    if (c->state == C_DOWN) {
        start_connect(c);
    } else if (c->state == C_BUSY) {
        char why[64];
        snprintf(why, sizeof why, "no answer within %d ms", c->cur->deadline_ms);
        lose(c, why);
    }
}

/* Tears the connection down and schedules a reconnect. The running
 * statement's outcome is unknown: its caller gets CM_ESTORE. */
static void lose(conn *c, const char *why)
{
    cm_pg_pool *p = c->pool;
    if (c->state == C_IDLE || c->state == C_BUSY) {
        atomic_fetch_sub(&p->up, 1);
        cm_log(p->closing ? CM_LOG_DEBUG : CM_LOG_WARN, "event=pg_disconnected pool=%s reason=\"%s\"", p->name, why);
    }
    drop_poll(c);
    if (c->pg) PQfinish(c->pg);
    c->pg = NULL;
    c->state = C_DOWN;
    c->nprepared = 0;
    c->preparing = false;
    query *q = c->cur;
    c->cur = NULL;
    PQclear(c->result);
    c->result = NULL;
    if (q) {
        atomic_fetch_sub(&p->backlog, 1);
        finish(q, CM_ESTORE, NULL, NULL);
    }
    if (atomic_load(&p->up) == 0) fail_queue(p);
    if (p->closing) {
        uv_timer_stop(&c->timer);
        return;
    }
    uv_timer_start(&c->timer, on_timer, cm_backoff_next(&c->backoff), 0);
}

static void connect_step(conn *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        if (watch(c, UV_READABLE) != CM_OK) lose(c, "poll failed");
        return;
    case PGRES_POLLING_WRITING:
        if (watch(c, UV_WRITABLE) != CM_OK) lose(c, "poll failed");
        return;
    case PGRES_POLLING_OK:
        if (PQsetnonblocking(c->pg, 1) != 0 || watch(c, UV_READABLE) != CM_OK) {
            lose(c, "setup failed");
            return;
        }
        c->state = C_IDLE;
        cm_backoff_reset(&c->backoff);
        atomic_fetch_add(&c->pool->up, 1);
        cm_log(CM_LOG_INFO, "event=pg_connected pool=%s", c->pool->name);
        if (c->pool->nlisten) listen_again(c->pool);
        dispatch(c->pool);
        return;
    default: {
        char why[160];
        snprintf(why, sizeof why, "%s", PQerrorMessage(c->pg));
        why[strcspn(why, "\r\n\"")] = '\0';
        lose(c, why);
    }
    }
}

/* The conninfo's own options (a search_path, ...) and then ours, in a
 * string to free; NULL when out of memory. */
static char *options_with(const char *conninfo, const char *ours)
{
    const char *own = "";
    PQconninfoOption *o = PQconninfoParse(conninfo, NULL);
    for (PQconninfoOption *p = o; p && p->keyword; p++)
        if (strcmp(p->keyword, "options") == 0 && p->val) own = p->val;
    size_t n = strlen(own) + 1 + strlen(ours) + 1;
    char *out = malloc(n);
    if (out) snprintf(out, n, "%s%s%s", own, *own ? " " : "", ours);
    PQconninfoFree(o);
    return out;
}

static void start_connect(conn *c)
{
    if (c->pool->closing) return;
    c->state = C_CONNECTING;
    /* JIT off: costmesh's statements are short, but the planner's guesses
     * for its set-returning functions (the rollup tail, a heartbeat's
     * units, a delegation tree) put their plans past jit_above_cost, and
     * compiling one took seconds, longer than running it. A one-plan pool
     * also keeps generic plans (pg.h). Later keywords override the expanded
     * conninfo's, so the conninfo's own options are given again before it. */
    char *options = options_with(c->pool->conninfo, c->pool->one_plan ? "-c jit=off -c plan_cache_mode=force_generic_plan"
                                                                       : "-c jit=off");
    if (!options) {
        lose(c, "out of memory");
        return;
    }
    static const char *const keys[] = {"dbname", "options", NULL};
    const char *values[] = {c->pool->conninfo, options, NULL};
    c->pg = PQconnectStartParams(keys, values, 1);
    free(options);
    if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
        lose(c, c->pg ? "bad conninfo or no memory" : "out of memory");
        return;
    }
    if (watch(c, UV_WRITABLE) != CM_OK) lose(c, "poll failed");
}

static void prepared_name(int i, char name[16])
{
    snprintf(name, 16, "cm_s%d", i);
}

/* Sends c->cur: as the prepared statement it names when it has one (the
 * first time on this connection, its PQsendPrepare, after which
 * read_results sends it again), else parsed and planned anew. */
static void send_cur(conn *c)
{
    query *q = c->cur;
    int i = 0, ok;
    char name[16];
    while (q->stmt && i < c->nprepared && c->prepared[i] != q->stmt) i++;
    prepared_name(i, name);
    if (q->stmt && i < c->nprepared)
        ok = PQsendQueryPrepared(c->pg, name, q->n, (const char *const *)q->params, NULL, NULL, 0);
    else if (q->stmt && i < MAX_PREPARED)
        ok = c->preparing = PQsendPrepare(c->pg, name, q->sql, q->n, NULL) == 1;
    else
        ok = PQsendQueryParams(c->pg, q->sql, q->n, NULL, (const char *const *)q->params, NULL, NULL, 0);
    if (!ok) {
        lose(c, "send failed");
        return;
    }
    int f = PQflush(c->pg);
    if (f < 0 || watch(c, f ? UV_READABLE | UV_WRITABLE : UV_READABLE) != CM_OK) lose(c, "flush failed");
}

static void send_next(conn *c)
{
    c->cur = queryq_pop(&c->pool->waiting);
    c->state = C_BUSY;
    if (c->cur->deadline_ms > 0) uv_timer_start(&c->timer, on_timer, (uint64_t)c->cur->deadline_ms, 0);
    send_cur(c);
}

static void dispatch(cm_pg_pool *p)
{
    for (int i = 0; i < p->n && p->waiting.head; i++)
        if (p->conns[i].state == C_IDLE) send_next(&p->conns[i]);
}

static void read_results(conn *c)
{
    if (!PQconsumeInput(c->pg)) {
        lose(c, "connection lost");
        return;
    }
    for (PGnotify *nt; (nt = PQnotifies(c->pg)); PQfreemem(nt))
        if (c->pool->on_notify) c->pool->on_notify(c->pool->listen_arg, nt->relname, nt->extra);
    while (c->state == C_BUSY && !PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (r) {
            /* Keep the first error, else the last result. */
            ExecStatusType st = PQresultStatus(r);
            int keep_old = c->result && PQresultStatus(c->result) != PGRES_COMMAND_OK &&
                           PQresultStatus(c->result) != PGRES_TUPLES_OK;
            if (keep_old || st == PGRES_COPY_IN || st == PGRES_COPY_OUT) {
                PQclear(r);
                continue;
            }
            PQclear(c->result);
            c->result = r;
            continue;
        }
        query *q = c->cur;
        PGresult *res = c->result;
        if (c->preparing && res && PQresultStatus(res) == PGRES_COMMAND_OK) {
            /* Prepared: now run it. */
            c->preparing = false;
            c->prepared[c->nprepared++] = q->stmt;
            PQclear(res);
            c->result = NULL;
            send_cur(c);
            return;
        }
        c->preparing = false;
        c->cur = NULL;
        c->result = NULL;
        c->state = C_IDLE;
        uv_timer_stop(&c->timer);
        atomic_fetch_sub(&c->pool->backlog, 1);
        ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
            finish(q, CM_OK, res, NULL);
        } else {
            const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
            char msg[200];
            snprintf(msg, sizeof msg, "%s", res ? PQresultErrorMessage(res) : "no result");
            msg[strcspn(msg, "\r\n\"")] = '\0';
            cm_log(CM_LOG_WARN, "event=pg_error pool=%s sqlstate=%s message=\"%s\"", c->pool->name,
                   state ? state : "", msg);
            finish(q, CM_ESTORE, res, state);
        }
        PQclear(res);
        if (c->state == C_IDLE && c->pool->waiting.head) send_next(c);
        return;
    }
    if (c->state == C_IDLE) {
        /* Nothing was asked: an unsolicited message or EOF. */
        if (PQstatus(c->pg) == CONNECTION_BAD) lose(c, "connection closed");
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    conn *c = h->data;
    if (c->state == C_CONNECTING) {
        /* libuv reports a refused connect as an error (POLLERR): libpq must
         * read it itself, to go on to the next host of a multi-host URL. */
        connect_step(c);
        return;
    }
    if (status < 0) {
        lose(c, uv_strerror(status));
        return;
    }
    if (events & UV_WRITABLE) {
        int f = PQflush(c->pg);
        if (f < 0) {
            lose(c, "flush failed");
            return;
        }
        if (f == 0 && watch(c, UV_READABLE) != CM_OK) {
            lose(c, "poll failed");
            return;
        }
    }
    if (events & UV_READABLE) read_results(c);
}

static int pool_new(uv_loop_t *loop, const char *conninfo, int n, const char *name, bool one_plan,
                    cm_pg_pool **out)
{
    cm_pg_pool *p = calloc(1, sizeof *p);
    if (!p) return CM_ENOMEM;
    p->loop = loop;
    p->one_plan = one_plan;
    p->n = n;
    snprintf(p->name, sizeof p->name, "%s", name);
    p->conninfo = strdup(conninfo);
    p->conns = calloc((size_t)n, sizeof *p->conns);
    if (!p->conninfo || !p->conns) {
        free(p->conninfo);
        free(p->conns);
        free(p);
        return CM_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        conn *c = &p->conns[i];
        c->pool = p;
        c->fd = -1;
        uv_timer_init(loop, &c->timer);
        c->timer.data = c;
        p->open_handles++;
        start_connect(c);
    }
    *out = p;
    return CM_OK;
}

int cm_pg_pool_new(uv_loop_t *loop, const char *conninfo, int n, const char *name, cm_pg_pool **out)
{
    return pool_new(loop, conninfo, n, name, false, out);
}

int cm_pg_pool_new_one_plan(uv_loop_t *loop, const char *conninfo, int n, const char *name, cm_pg_pool **out)
{
    return pool_new(loop, conninfo, n, name, true, out);
}

static void on_timer_closed(uv_handle_t *h)
{
    conn *c = h->data;
    cm_pg_pool *p = c->pool;
    if (--p->open_handles == 0) {
        free(p->conns);
        free(p->conninfo);
        for (int i = 0; i < p->nlisten; i++) free(p->listen_sql[i]);
        free(p->listen_sql);
        free(p);
    }
}

void cm_pg_pool_free(cm_pg_pool *p)
{
    if (!p) return;
    p->closing = 1;
    for (int i = 0; i < p->n; i++) lose(&p->conns[i], "closing");
    fail_queue(p);
    for (int i = 0; i < p->n; i++) uv_close((uv_handle_t *)&p->conns[i].timer, on_timer_closed);
}

bool cm_pg_pool_ready(const cm_pg_pool *p)
{
    return p && atomic_load(&((cm_pg_pool *)p)->up) > 0;
}

size_t cm_pg_pool_backlog(const cm_pg_pool *p)
{
    return p ? atomic_load(&((cm_pg_pool *)p)->backlog) : 0;
}

static int enqueue(cm_pg_pool *p, const char *sql, const char *stmt, int deadline_ms, int n,
                   const char *const *params, cm_pg_cb cb, void *arg)
{
    if (p->closing || atomic_load(&p->up) == 0) return CM_ESTORE;
    query *q = calloc(1, sizeof *q);
    if (!q) return CM_ENOMEM;
    q->sql = strdup(sql);
    q->params = n ? calloc((size_t)n, sizeof *q->params) : NULL;
    if (!q->sql || (n && !q->params)) goto oom;
    q->n = n;
    for (int i = 0; i < n; i++)
        if (params[i] && !(q->params[i] = strdup(params[i]))) goto oom;
    q->stmt = stmt;
    q->deadline_ms = deadline_ms;
    q->cb = cb;
    q->arg = arg;
    queryq_push(&p->waiting, q);
    atomic_fetch_add(&p->backlog, 1);
    dispatch(p);
    return CM_OK;
oom:
    query_free(q);
    return CM_ENOMEM;
}

int cm_pg_query(cm_pg_pool *p, const char *sql, int n, const char *const *params, cm_pg_cb cb, void *arg)
{
    return enqueue(p, sql, NULL, 0, n, params, cb, arg);
}

int cm_pg_query_prepared(cm_pg_pool *p, const char *sql, int n, const char *const *params, cm_pg_cb cb, void *arg)
{
    return enqueue(p, sql, sql, 0, n, params, cb, arg);
}

int cm_pg_query_prepared_within(cm_pg_pool *p, int deadline_ms, const char *sql, int n, const char *const *params,
                                cm_pg_cb cb, void *arg)
{
    return enqueue(p, sql, sql, deadline_ms, n, params, cb, arg);
}

static void on_listened(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    cm_pg_pool *p = arg;
    /* What was notified while no connection listened is lost: say so. */
    if (rc == CM_OK && p->on_listening) p->on_listening(p->listen_arg);
}

/* The LISTENs before the last: listening counts once all are done. */
static void on_listened_one(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)arg;
    (void)rc;
    (void)res;
    (void)sqlstate;
}

static void listen_again(cm_pg_pool *p)
{
    /* One connection runs its statements in order, so when the last LISTEN
     * is done, all are. */
    for (int i = 0; i < p->nlisten; i++)
        if (cm_pg_query(p, p->listen_sql[i], 0, NULL, i == p->nlisten - 1 ? on_listened : on_listened_one, p) !=
            CM_OK)
            cm_log(CM_LOG_WARN, "event=pg_listen_failed pool=%s", p->name);
}

int cm_pg_listen(cm_pg_pool *p, const char *const *channels, cm_pg_notify_cb on_notify,
                 cm_pg_listening_cb on_listening, void *arg)
{
    int n = 0;
    for (; channels[n]; n++)
        for (const char *ch = channels[n]; *ch; ch++)
            if (!((*ch >= 'a' && *ch <= 'z') || *ch == '_')) return CM_EINVAL;
    char **sql = calloc(n ? (size_t)n : 1, sizeof *sql);
    for (int i = 0; sql && i < n; i++) {
        size_t len = strlen(channels[i]) + sizeof "LISTEN ";
        if (!(sql[i] = malloc(len))) {
            while (i--) free(sql[i]);
            free(sql);
            return CM_ENOMEM;
        }
        snprintf(sql[i], len, "LISTEN %s", channels[i]);
    }
    if (!sql) return CM_ENOMEM;
    for (int i = 0; i < p->nlisten; i++) free(p->listen_sql[i]);
    free(p->listen_sql);
    p->listen_sql = sql;
    p->nlisten = n;
    p->on_notify = on_notify;
    p->on_listening = on_listening;
    p->listen_arg = arg;
    /* Connections already up listen now; later ones as they connect. */
    if (atomic_load(&p->up) > 0) listen_again(p);
    return CM_OK;
}

int cm_pgres_rows(const cm_pgres *r)
{
    return r ? PQntuples((const PGresult *)r) : 0;
}

const char *cm_pgres_get(const cm_pgres *r, int row, int col)
{
    return PQgetvalue((const PGresult *)r, row, col);
}

bool cm_pgres_isnull(const cm_pgres *r, int row, int col)
{
    return PQgetisnull((const PGresult *)r, row, col) != 0;
}

const char *cm_pgres_constraint(const cm_pgres *r)
{
    const char *name = r ? PQresultErrorField((const PGresult *)r, PG_DIAG_CONSTRAINT_NAME) : NULL;
    return name ? name : "";
}

long cm_pgres_affected(const cm_pgres *r)
{
    const char *s = PQcmdTuples((PGresult *)r);
    return s && *s ? strtol(s, NULL, 10) : 0;
}


/* Copies a libpq message after prefix, cut at its first line break: error
 * texts are one line. A NULL err is a caller that ignores the failure. */
static void put_err(char *err, size_t errsz, const char *prefix, const char *msg)
{
    if (!err || errsz == 0) return;
    snprintf(err, errsz, "%s%s", prefix, msg);
    err[strcspn(err, "\r\n")] = '\0';
}

int cm_pg_blocking_open(const char *conninfo, cm_pg_blocking **out, char *err, size_t errsz)
{
    PGconn *pg = PQconnectdb(conninfo);
    if (PQstatus(pg) != CONNECTION_OK) {
        put_err(err, errsz, "cannot connect to PostgreSQL: ", PQerrorMessage(pg));
        PQfinish(pg);
        return CM_ESTORE;
    }
    *out = (cm_pg_blocking *)pg;
    return CM_OK;
}

int cm_pg_blocking_exec(cm_pg_blocking *db, const char *sql, int n, const char *const *params, char *err,
                        size_t errsz)
{
    PGconn *pg = (PGconn *)db;
    /* Only the simple protocol (PQexec) takes several statements at once. */
    PGresult *r = n ? PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0) : PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = st == PGRES_TUPLES_OK ? PQntuples(r) : st == PGRES_COMMAND_OK ? 0 : CM_ESTORE;
    if (rc < 0) put_err(err, errsz, "", PQresultErrorMessage(r));
    PQclear(r);
    return rc;
}

void cm_pg_blocking_close(cm_pg_blocking *db)
{
    PQfinish((PGconn *)db);
}
