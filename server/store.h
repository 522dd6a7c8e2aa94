/* store.h - Redis: one asynchronous connection on the libuv loop that runs
 * the project's Lua scripts.
 *
 * The only module that includes hiredis. Runs on the loop thread only
 * (cm_store_ready excepted). Reconnects by itself with backoff (hiredis 0.14
 * does not), loads the scripts on every connect and re-loads them when Redis
 * answers NOSCRIPT. */
#ifndef CM_STORE_H
#define CM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

typedef struct cm_store cm_store;

/* The scripts. MERGE: KEYS[1] is the epoch key, KEYS[2..] window hashes;
 * ARGV per window key: ttl seconds, field count, then field/value pairs of
 * decimal non-negative integers. Each field becomes max(current, value): the
 * values are absolute totals read back from PostgreSQL, so applying them
 * twice, late or out of order changes nothing. Answers 1 when the epoch key
 * exists, 0 when Redis lost its data and needs a rebuild. */
enum { CM_SCRIPT_MERGE = 0, CM_SCRIPT_COUNT };

/* Called once per call on the loop thread. rc is CM_OK with the integer
 * reply (or the integers of an array reply) in vals[0..n), lent for the
 * callback; or CM_ESTORE when Redis failed or the connection dropped. */
typedef void (*cm_store_cb)(void *arg, int rc, const long long *vals, int n);

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

/* Sets `key` to `value` (no expiry), fire-and-forget. */
int cm_store_set(cm_store *s, const char *key, const char *value);

#endif
