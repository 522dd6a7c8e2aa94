/* http.h - the HTTP front, transport only: libmicrohttpd threads read and
 * limit requests, answer the routes that need no loop thread, and suspend
 * the rest while the loop thread works on them. What a request means is
 * decode.h's; what /metrics and /readyz say, metrics.h's; the dashboard's
 * files, ui.h's.
 *
 * The only module that includes microhttpd. */
#ifndef CM_HTTP_H
#define CM_HTTP_H

#include "bridge.h"
#include "config.h"
#include "keycache.h"
#include "metrics.h"

#define CM_BODY_MAX (1024 * 1024) /* bytes in a request body: 413 past it */
#define CM_TARGET_MAX (8 * 1024)   /* bytes in the path and query: 414 past it */
#define CM_HEAD_MAX (32 * 1024)    /* bytes in the target and header lines: 431 past it */
#define CM_HEAD_LINES_MAX 100      /* header lines: 431 past it */
/* libmicrohttpd's memory per connection, which bounds what it reads of a
 * request's head: past it (about 126 KiB of header bytes, or some 1,800
 * header lines), libmicrohttpd answers 431 or 414 itself, with its own
 * HTML body that no option replaces. Four times CM_HEAD_MAX, so that heads
 * well past the limits still get costmeshd's JSON refusal. */
#define CM_CONN_MEMORY (4 * CM_HEAD_MAX)

typedef struct cm_http cm_http;

/* What the front reads; all borrowed, all outlive the front. */
typedef struct {
    cm_bridge *bridge;
    cm_metrics *metrics; /* counts every answer; says /metrics and /readyz */
    const cm_keycache *keys; /* read before a body: a known key goes on, a known-unknown one is 401 */
} cm_http_deps;

/* Starts listening. Writes a one-line reason into err on failure. */
int cm_http_start(const cm_config *cfg, const cm_http_deps *deps, cm_http **out, char *err,
                  size_t errsz);
/* From now on every new request, /healthz excepted (so /readyz too), is
 * answered 503 shutting_down; requests in flight go on. Any thread. */
void cm_http_drain(cm_http *h);
/* Requests suspended waiting for the loop thread. */
int cm_http_inflight(const cm_http *h);
/* Stops the threads and frees. NULL is a no-op. */
void cm_http_stop(cm_http *h);

#endif
