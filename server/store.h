/* store.h - Redis: one asynchronous connection on the libuv loop that runs
 * the Lua scripts it is given.
 *
 * The only module that includes hiredis; it knows no key of costmesh's
 * (hot.h does). Runs on the loop thread only (cm_store_ready excepted).
 * Reconnects by itself with backoff (hiredis 0.14 does not), loads the
 * scripts on every connect and re-loads them when Redis answers NOSCRIPT.
 *
 * With Sentinels (hiredis has no Sentinel client) each connect first asks
 * them in turn, SENTINEL get-master-addr-by-name, for the primary's
 * address, and every connection must answer ROLE "master" before it is
 * used. A lost connection, or a READONLY error from a primary demoted to a
 * replica, disconnects, so the next attempt asks the Sentinels again: that
 * is how a failover is followed. */
#ifndef CM_STORE_H
#define CM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

typedef struct cm_store cm_store;

#define CM_STORE_MAX_SENTINELS 8

typedef struct {
    char host[128];
    int port;
} cm_store_hostport;

/* Where Redis is: host:port itself, or the primary that the Sentinels
 * monitor under the name `master` when nsentinels > 0 (host:port unused). */
typedef struct {
    cm_store_hostport server;
    int db;
    int nsentinels;
    cm_store_hostport sentinels[CM_STORE_MAX_SENTINELS];
    char master[64];
} cm_store_where;

/* A reply, lent to the callback only. A scalar reply has one element. */
typedef struct cm_store_reply cm_store_reply;
int cm_store_reply_len(const cm_store_reply *r);
/* Element i as an integer: integer replies, or strings of digits; else 0. */
long long cm_store_reply_int(const cm_store_reply *r, int i);
/* Element i as text (integers are printed), "" when absent or nil. */
const char *cm_store_reply_str(const cm_store_reply *r, int i, char *tmp, size_t tmpsz);

/* Called once per call on the loop thread: rc is CM_OK with the reply, or
 * CM_ESTORE (reply NULL) when Redis failed or the connection dropped. */
typedef void (*cm_store_cb)(void *arg, int rc, const cm_store_reply *reply);

/* Called on the loop thread each time the connection is up and the scripts
 * are loaded; a fresh connection may face a restarted or emptied Redis. */
typedef void (*cm_store_ready_cb)(void *arg);

/* where is copied. scripts[0..nscripts) are the Lua texts to load,
 * borrowed: they must outlive the store. */
int cm_store_new(uv_loop_t *loop, const cm_store_where *where, const char *const *scripts, int nscripts,
                 cm_store_ready_cb on_ready, void *arg, cm_store **out);
/* Disconnects; pending calls get CM_ESTORE. Memory is freed when libuv has
 * closed the handles. NULL is a no-op. */
void cm_store_free(cm_store *s);
/* Bounds how long Redis may leave the calls awaiting its replies without
 * answering any: past ms the connection is given up as if it had dropped
 * (pending calls get CM_ESTORE, their outcome unknown: a script may still
 * run when Redis wakes) and a new one is tried with backoff. For a Redis
 * that hangs without closing (a stopped process, a partition). Checked
 * every ms/4, so it fires between ms and 1.25 ms. 0, the default: no bound.
 * Keep it above the longest call (cm_store_wait's timeout). */
void cm_store_set_deadline(cm_store *s, int ms);
/* Connected with scripts loaded. Safe from any thread. */
bool cm_store_ready(const cm_store *s);
/* Calls in flight. */
size_t cm_store_backlog(const cm_store *s);
/* Counts the times the connection came up to another server than the last
 * one (the first connection, then each failover): what was written before
 * may be missing there. Safe from any thread. */
unsigned long cm_store_generation(const cm_store *s);

/* Runs scripts[script] with nkeys keys followed by the other arguments
 * (argv[0..argc), lens[i] bytes each; both copied). Returns CM_OK and later
 * calls cb once, or CM_ESTORE at once when not connected (cb never runs). */
int cm_store_eval(cm_store *s, int script, int nkeys, int argc, const char *const *argv,
                  const size_t *lens, cm_store_cb cb, void *arg);

/* cm_store_eval in the bulk lane, for many calls that may wait (a whole
 * rebuild's): they go in order, a bounded few in flight (BULK_* in
 * store.c) and the rest waiting here, so that a call of the normal lane
 * waits behind that few rather than behind all of them. Same contract as
 * cm_store_eval; a waiting call is answered CM_ESTORE when the connection
 * drops or the store is freed. */
int cm_store_eval_bulk(cm_store *s, int script, int nkeys, int argc, const char *const *argv,
                       const size_t *lens, cm_store_cb cb, void *arg);
/* Holds the bulk lane (true) or releases one hold (false): while any hold
 * stands no more bulk calls are sent, so calls made meanwhile wait only
 * behind the few already in flight. Each hold is released once. */
void cm_store_bulk_hold(cm_store *s, bool hold);
/* Start-up, blocking: PING within two seconds (with Sentinels, the primary
 * the first of them that answers names) and, with need_fsync_always, an
 * append-only file fsynced on every write when Redis shows its settings.
 * Writes a one-line reason into err on failure. */
int cm_store_ping(const cm_store_where *where, bool need_fsync_always, char *err, size_t errsz);

/* Fire-and-forget commands: SET key value [EX ttl_s when > 0], DEL key,
 * HINCRBY key field by. CM_OK when sent, CM_ESTORE when disconnected. */
/* WAIT: the reply is the number of replicas that have every write sent
 * before it on this connection, after at most timeout_ms. Same contract as
 * cm_store_eval. */
int cm_store_wait(cm_store *s, int replicas, int timeout_ms, cm_store_cb cb, void *arg);
int cm_store_set(cm_store *s, const char *key, const char *value, long ttl_s);
int cm_store_del(cm_store *s, const char *key);
int cm_store_hincrby(cm_store *s, const char *key, const char *field, long long by);

#endif
