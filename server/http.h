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
#include "metrics.h"

#define CM_BODY_MAX (1024 * 1024) /* bytes in a request body */

typedef struct cm_http cm_http;

/* What the front reads; all borrowed, all outlive the front. */
typedef struct {
    cm_bridge *bridge;
    cm_metrics *metrics; /* counts every answer; says /metrics and /readyz */
} cm_http_deps;

/* Starts listening. Writes a one-line reason into err on failure. */
int cm_http_start(const cm_config *cfg, const cm_http_deps *deps, cm_http **out, char *err,
                  size_t errsz);
/* Stops accepting new connections; requests in flight go on. */
void cm_http_quiesce(cm_http *h);
/* Requests suspended waiting for the loop thread. */
int cm_http_inflight(const cm_http *h);
/* Stops the threads and frees. NULL is a no-op. */
void cm_http_stop(cm_http *h);

#endif
