/* pg.h - the PostgreSQL driver: pools of asynchronous connections on the
 * libuv loop, and one blocking connection for start-up work.
 *
 * The only module that includes libpq. Everything but cm_pg_blocking_* runs
 * on the loop thread. A pool holds N connections that each run one statement
 * at a time; statements queue per pool and go to the next idle connection. A
 * dropped connection reconnects by itself with backoff. */
#ifndef CM_PG_H
#define CM_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

typedef struct cm_pg_pool cm_pg_pool;
typedef struct cm_pgres cm_pgres; /* a result, lent to callbacks only */

/* Called once per statement on the loop thread. rc is CM_OK with a result
 * of tuples (or command status), or CM_ESTORE when the statement failed or
 * its connection dropped while it ran (it may or may not have committed);
 * sqlstate then holds the five-character SQLSTATE or "", and res is
 * PostgreSQL's error when it sent one (no rows; cm_pgres_constraint), else
 * NULL. */
typedef void (*cm_pg_cb)(void *arg, int rc, const cm_pgres *res, const char *sqlstate);

/* Creates a pool of n connections to conninfo (copied) and starts
 * connecting. Returns CM_OK or CM_ENOMEM. */
int cm_pg_pool_new(uv_loop_t *loop, const char *conninfo, int n, const char *name,
                   cm_pg_pool **out);
/* As cm_pg_pool_new, for prepared statements whose plan does not hinge on
 * their parameters' values (equalities on indexed keys, no "$1 IS NULL OR"
 * branches): each connection plans such a statement once, for any values
 * (plan_cache_mode=force_generic_plan), where PostgreSQL would otherwise
 * plan it anew at every call, inlined SQL functions parsed again. */
int cm_pg_pool_new_one_plan(uv_loop_t *loop, const char *conninfo, int n, const char *name,
                            cm_pg_pool **out);
/* Closes the connections; queued statements get CM_ESTORE. Memory is freed
 * once libuv has closed the handles (run the loop after). NULL is a no-op. */
void cm_pg_pool_free(cm_pg_pool *p);
/* True when at least one connection is up. */
bool cm_pg_pool_ready(const cm_pg_pool *p);
/* Statements queued or running. */
size_t cm_pg_pool_backlog(const cm_pg_pool *p);

/* Queues a statement with n text parameters (NULL entries are SQL NULL).
 * sql and the parameters are copied. Returns CM_OK and later calls cb once,
 * or CM_ESTORE at once when no connection is up (cb never runs), or
 * CM_ENOMEM. */
int cm_pg_query(cm_pg_pool *p, const char *sql, int n, const char *const *params,
                cm_pg_cb cb, void *arg);

/* As cm_pg_query, for a statement run often: each connection parses and
 * plans it once (a named prepared statement) instead of on every call. sql
 * must have static storage: its address names it. */
int cm_pg_query_prepared(cm_pg_pool *p, const char *sql, int n, const char *const *params, cm_pg_cb cb, void *arg);

/* As cm_pg_query_prepared, for a short write a client is waiting on (a
 * commit on the acknowledged path): when PostgreSQL leaves it unanswered
 * deadline_ms after it was sent, its connection is dropped as if it had
 * broken (cb gets CM_ESTORE, the outcome unknown: it may yet commit) and
 * reconnects with backoff. A hung server or a partition is then answered,
 * instead of holding the requests behind the statement for as long as it
 * lasts. deadline_ms <= 0: no bound, as cm_pg_query_prepared. */
int cm_pg_query_prepared_within(cm_pg_pool *p, int deadline_ms, const char *sql, int n, const char *const *params,
                                cm_pg_cb cb, void *arg);

/* PostgreSQL's LISTEN/NOTIFY, for news every replica must hear at once.
 * on_notify gets each notification of the NULL-terminated `channels`
 * (lowercase identifiers; it is told which;
 * payload "" when none); on_listening runs each time a connection has
 * started listening, after which notifications sent while none listened
 * are lost: the caller must assume it missed some. Give a pool of its own
 * (one connection): the statement is sent on every (re)connect. Returns
 * CM_OK, CM_EINVAL for a bad channel name, or CM_ENOMEM. */
typedef void (*cm_pg_notify_cb)(void *arg, const char *channel, const char *payload);
typedef void (*cm_pg_listening_cb)(void *arg);
int cm_pg_listen(cm_pg_pool *p, const char *const *channels, cm_pg_notify_cb on_notify,
                 cm_pg_listening_cb on_listening, void *arg);

/* SQL for the Unix seconds of a timestamptz expression, truncated: every
 * time costmesh shows is whole seconds, cut the same way everywhere. */
#define CM_PG_EPOCH(x) "floor(extract(epoch FROM " x "))::bigint"

int cm_pgres_rows(const cm_pgres *r);
/* Text of a cell, "" for NULL; valid during the callback only. */
const char *cm_pgres_get(const cm_pgres *r, int row, int col);
bool cm_pgres_isnull(const cm_pgres *r, int row, int col);
/* The constraint a failed statement violated, "" when none or r is NULL. */
const char *cm_pgres_constraint(const cm_pgres *r);
/* Rows affected by INSERT/UPDATE/DELETE. */
long cm_pgres_affected(const cm_pgres *r);


/* ---- One blocking connection, for start-up work before the loop runs ----
 * (the migrations). Error texts written into err are one line. */

typedef struct cm_pg_blocking cm_pg_blocking;

/* Connects and waits until the connection is up. CM_OK, or CM_ESTORE with
 * "cannot connect to PostgreSQL: <reason>" in err. */
int cm_pg_blocking_open(const char *conninfo, cm_pg_blocking **out, char *err, size_t errsz);
/* Runs sql and waits for its result. With n == 0 sql may hold several
 * statements (a migration file: the last one's result counts); otherwise it
 * is one statement with n text parameters (NULL entries are SQL NULL).
 * Returns the number of rows returned (0 for a command), or CM_ESTORE with
 * PostgreSQL's message in err; err may be NULL when the failure does not
 * matter to the caller. */
int cm_pg_blocking_exec(cm_pg_blocking *db, const char *sql, int n, const char *const *params, char *err,
                        size_t errsz);
/* Closes the connection. */
void cm_pg_blocking_close(cm_pg_blocking *db);

#endif
