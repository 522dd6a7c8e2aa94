/* store.h - Redis: one asynchronous connection on the libuv loop that runs
 * the project's Lua scripts.
 *
 * The only module that includes hiredis. Runs on the loop thread only
 * (cm_store_ready excepted). Reconnects by itself with backoff (hiredis 0.14
 * does not), loads the scripts on every connect and re-loads them when Redis
 * answers NOSCRIPT. */
#ifndef CM_STORE_H
#define CM_STORE_H

#include "address.h"
#include "policy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct cm_store cm_store;

/* The key scheme, the one place that spells it:
 *   cm:epoch                     present while Redis holds a complete mirror
 *   cm:<address>:<grain>:<start> an agent's window hash; grain h, d or m
 *                                (CM_STORE_GRAINS, in CM_WIN3 order), start in
 *                                Unix seconds
 *   cm:p:<address>               an agent's policy fields and kill flag
 *   cm:i:<org>:<key>             an Idempotency-Key's answer
 *   cm:x:...                     once-per-window markers (the scripts' own) */
#define CM_STORE_EPOCH_KEY "cm:epoch"
#define CM_STORE_GRAINS "hdm"
#define CM_STORE_KEY_MAX (CM_ADDR_MAX + CM_ADDR_SEG_MAX + 40)
void cm_store_key_window(const char *address, char grain, int64_t start, char out[CM_STORE_KEY_MAX]);
void cm_store_key_policy(const char *address, char out[CM_STORE_KEY_MAX]);
/* How long a window hash outlives its window's start, in seconds: long
 * enough for the week and month sums that read it. */
long cm_store_window_ttl(char grain);

/* The scripts (their Lua text is in store.c, with the exact argument
 * layout):
 * MERGE   window hashes become max(current, value) per field. The values are
 *         absolute totals read back from PostgreSQL, so applying them twice,
 *         late or out of order changes nothing. Answers 1 when the epoch key
 *         exists, 0 when Redis lost its data and needs a rebuild.
 * ADMIT   an intent's check-and-increment against the agent's policy, the
 *         kill flag and the Idempotency-Key, atomically.
 * CHECK   after heartbeats: each agent's state (active, blocked, killed) and
 *         the alert thresholds and cost limits newly crossed this window.
 * HREPLACE sets some fields of a hash and deletes others, atomically. */
enum { CM_SCRIPT_MERGE = 0, CM_SCRIPT_ADMIT, CM_SCRIPT_CHECK, CM_SCRIPT_HREPLACE, CM_SCRIPT_COUNT };

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

int cm_store_new(uv_loop_t *loop, const char *host, int port, int db,
                 cm_store_ready_cb on_ready, void *arg, cm_store **out);
/* Disconnects; pending calls get CM_ESTORE. Memory is freed when libuv has
 * closed the handles. NULL is a no-op. */
void cm_store_free(cm_store *s);
/* Connected with scripts loaded. Safe from any thread. */
bool cm_store_ready(const cm_store *s);
/* Calls in flight. */
size_t cm_store_backlog(const cm_store *s);

/* Runs `script` with nkeys keys followed by the other arguments
 * (argv[0..argc), lens[i] bytes each; both copied). Returns CM_OK and later
 * calls cb once, or CM_ESTORE at once when not connected (cb never runs). */
int cm_store_eval(cm_store *s, int script, int nkeys, int argc, const char *const *argv,
                  const size_t *lens, cm_store_cb cb, void *arg);

/* Start-up, blocking: PING within two seconds. Writes a one-line reason into
 * err on failure. */
int cm_store_ping(const char *host, int port, char *err, size_t errsz);

/* Makes the policy hash of `address` say what `pol` says (NULL: no policy),
 * leaving its kill flag alone; or sets or clears the kill flag alone. Both
 * return like cm_store_eval. */
int cm_store_put_policy(cm_store *s, const char *address, const cm_policy *pol, cm_store_cb cb, void *arg);
int cm_store_put_killed(cm_store *s, const char *address, bool killed, cm_store_cb cb, void *arg);

/* Fire-and-forget commands: SET key value [EX ttl_s when > 0], DEL key,
 * HINCRBY key field by. CM_OK when sent, CM_ESTORE when disconnected. */
int cm_store_set(cm_store *s, const char *key, const char *value, long ttl_s);
int cm_store_del(cm_store *s, const char *key);
int cm_store_hincrby(cm_store *s, const char *key, const char *field, long long by);

#endif
