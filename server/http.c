#include "http.h"
#include "auth.h"
#include "decode.h"
#include "error.h"
#include "log.h"
#include "routes.h"
#include "ui.h"
#include "version.h"

#include <microhttpd.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct cm_http {
    struct MHD_Daemon *d;
    cm_ui *ui;
    cm_http_deps deps;
    _Atomic int inflight;
    _Atomic bool draining; /* stopping: new requests are answered 503 */
    _Atomic size_t body_bytes; /* reserved by the bodies being read, all connections */
    size_t body_cap;           /* body_bytes never passes it */
    unsigned conn_timeout_s, body_timeout_s;
    bool metrics_locked; /* /metrics needs the token whose hash this is */
    unsigned char metrics_hash[CM_KEY_HASH_LEN];
};

/* Per-request state, in *req_cls; freed in the completion callback. */
typedef struct {
    cm_http *h;
    struct MHD_Connection *conn;
    cm_route route;
    int route_status;
    cm_buf body;
    int too_big;
    int store;           /* the body is kept: it goes to the loop thread */
    int no_room;         /* the body did not fit under body_cap: 503 */
    size_t reserved;     /* bytes of h->body_bytes held for the body */
    uint64_t deadline_ms; /* the body must be in by then */
    int short_timeout;   /* the idle timeout is body_timeout_s until the body is in */
    int dispatched; /* counted in inflight until completed */
    cm_job *job; /* owned while not handed to the bridge */
    _Atomic int job_done;
    unsigned char key_hash[CM_KEY_HASH_LEN]; /* taken at the headers, by check_key */
    cm_error_form errors; /* how its errors are written, from its route and Content-Type */
} req;

static int64_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

/* The clock of deadlines and of the key cache (CLOCK_MONOTONIC, as the
 * loop thread's uv_now). */
static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void count(const req *r, unsigned status)
{
    cm_metrics_count(r->h->deps.metrics, r->route_status == 200 ? r->route.id : CM_R_COUNT, (int)status);
}

/* Queues `len` bytes of `body` (taken, malloc'd) as the response. */
static enum MHD_Result send_owned(req *r, unsigned status, char *body, size_t len,
                                  const char *ctype, const char *hname, const char *hval)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, body ? body : (char *)"", body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    if (len) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (hname) MHD_add_response_header(resp, hname, hval);
    if (status == 503) MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    count(r, status);
    enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_buf(req *r, unsigned status, cm_buf *b, const char *ctype)
{
    size_t len;
    char *text = cm_buf_take(b, &len);
    if (!text) return send_owned(r, 500, NULL, 0, NULL, NULL, NULL);
    return send_owned(r, status, text, len, ctype, NULL, NULL);
}

/* Every error leaves through here: the error body of the request's form. */
static enum MHD_Result send_error(req *r, unsigned status, const char *code, const char *field,
                                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static enum MHD_Result send_error(req *r, unsigned status, const char *code, const char *field,
                                  const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cm_buf b;
    cm_buf_init(&b);
    const char *ctype = cm_job_error_body(r->errors, (int)status, code, field, msg, &b);
    return send_buf(r, status, &b, ctype);
}

static enum MHD_Result send_apierr(req *r, const cm_apierr *e)
{
    return send_error(r, (unsigned)e->status, e->code, e->field, "%s", e->message);
}

/* ---- routes answered on the HTTP thread ---- */

static enum MHD_Result do_readyz(req *r)
{
    cm_buf b;
    cm_buf_init(&b);
    int status = cm_metrics_readyz(r->h->deps.metrics, &b);
    return send_buf(r, (unsigned)status, &b, "application/json");
}

/* With COSTMESH_METRICS_TOKEN set, /metrics needs it as a bearer token;
 * the hashes are compared in constant time. */
static enum MHD_Result do_metrics(req *r)
{
    if (r->h->metrics_locked) {
        const char *a = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        unsigned char got[CM_KEY_HASH_LEN];
        if (!a || strncasecmp(a, "Bearer ", 7) != 0 || cm_auth_hash(a + 7, strlen(a + 7), got) != CM_OK ||
            !cm_auth_equal(got, r->h->metrics_hash, sizeof got))
            return send_error(r, 401, "unauthorized", NULL,
                              "/metrics needs Authorization: Bearer with the metrics token (COSTMESH_METRICS_TOKEN)");
    }
    cm_buf b;
    cm_buf_init(&b);
    cm_metrics_render(r->h->deps.metrics, atomic_load(&r->h->inflight), &b);
    return send_buf(r, 200, &b, "text/plain; version=0.0.4");
}

/* One of the files read at start; `missing` says why when it is NULL. */
static enum MHD_Result send_file(req *r, const cm_ui_file *f, const char *missing)
{
    if (!f) return send_error(r, 404, "not_found", NULL, "%s", missing);
    struct MHD_Response *resp = MHD_create_response_from_buffer(f->len, (void *)f->data, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, f->type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                            "base-uri 'none'; form-action 'self'");
    count(r, 200);
    enum MHD_Result ret = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- the access handler ---- */

/* Called on the loop thread: the job is finished. */
static void on_job_done(cm_job *j)
{
    req *r = j->done_arg;
    atomic_store(&r->job_done, 1);
    MHD_resume_connection(r->conn);
}

/* The decoder's view of the connection's headers and query arguments. */
static const char *lookup(void *conn, cm_decode_kind kind, const char *name)
{
    return MHD_lookup_connection_value(conn, kind == CM_DECODE_HEADER ? MHD_HEADER_KIND : MHD_GET_ARGUMENT_KIND,
                                       name);
}

static enum MHD_Result answer_job(req *r)
{
    cm_job *j = r->job;
    char *body = j->body;
    size_t len = j->body_len;
    j->body = NULL;
    char ra[24];
    snprintf(ra, sizeof ra, "%ld", j->retry_after);
    return send_owned(r, (unsigned)j->status, body, len, j->content_type ? j->content_type : "application/json",
                      j->retry_after > 0 ? MHD_HTTP_HEADER_RETRY_AFTER : NULL, ra);
}

/* Routes answered on the HTTP thread: no key, no loop thread. */
static bool answered_here(cm_route_id id)
{
    return id == CM_R_HEALTHZ || id == CM_R_READYZ || id == CM_R_UI || id == CM_R_OPENAPI || id == CM_R_METRICS;
}

static enum MHD_Result answer_here(req *r)
{
    switch (r->route.id) {
    case CM_R_HEALTHZ: {
        cm_buf b;
        cm_buf_init(&b);
        cm_buf_adds(&b, "{\"status\":\"ok\",\"version\":\"" CM_SERVER_VERSION "\"}");
        return send_buf(r, 200, &b, "application/json");
    }
    case CM_R_READYZ: return do_readyz(r);
    case CM_R_UI:
        return send_file(r, cm_ui_find(r->h->ui, r->route.param), "no such file (is the dashboard built? run make)");
    case CM_R_OPENAPI:
        return send_file(r, cm_ui_openapi(r->h->ui), "no OpenAPI document was found at start (COSTMESH_OPENAPI_FILE)");
    case CM_R_METRICS: return do_metrics(r);
    default: return send_error(r, 500, "internal", NULL, "unroutable request");
    }
}

/* Hands r->job to the loop thread; the connection waits suspended. */
static enum MHD_Result submit(req *r)
{
    cm_job *j = r->job;
    j->done = on_job_done;
    j->done_arg = r;
    /* Suspend before handing over: the loop may finish and resume at once. */
    MHD_suspend_connection(r->conn);
    if (!r->dispatched) {
        r->dispatched = 1;
        atomic_fetch_add(&r->h->inflight, 1);
    }
    if (cm_bridge_submit(r->h->deps.bridge, j) != CM_OK) {
        cm_job_fail(j, 503, "shutting_down", NULL, "the server is stopping; retry");
        on_job_done(j);
    }
    return MHD_YES;
}

/* Frees the body and gives back the memory it held under body_cap. */
static void drop_body(req *r)
{
    cm_buf_free(&r->body);
    cm_buf_init(&r->body);
    atomic_fetch_sub(&r->h->body_bytes, r->reserved);
    r->reserved = 0;
}

/* Takes n more bytes of body_cap for r; 0 when they are not left. */
static int reserve(req *r, size_t n)
{
    size_t cur = atomic_load(&r->h->body_bytes);
    do {
        if (n > r->h->body_cap - cur) return 0;
    } while (!atomic_compare_exchange_weak(&r->h->body_bytes, &cur, cur + n));
    r->reserved += n;
    return 1;
}

static enum MHD_Result overloaded(req *r)
{
    return send_error(r, 503, "overloaded", NULL,
                      "the request bodies being read fill the memory set aside for them; retry");
}

static enum MHD_Result dispatch(req *r)
{
    if (answered_here(r->route.id)) return answer_here(r);
    cm_job *j = calloc(1, sizeof *j);
    if (!j) return send_error(r, 500, "internal", NULL, "out of memory");
    r->job = j;
    /* The route's method: a HEAD is decoded and answered as its GET. */
    cm_decode_req dr = {&r->route, r->route.method, r->body.data, r->body.len, now_s(), lookup, r->conn,
                        r->key_hash};
    cm_apierr e;
    int rc = cm_decode_job(&dr, j, &e);
    drop_body(r); /* the job holds what it needs */
    if (rc != CM_OK) return send_apierr(r, &e);
    j->errors = r->errors;
    return submit(r);
}

/* The size of a request's head, as its parts are added up. */
typedef struct {
    size_t bytes;
    unsigned lines;
} head_size;

/* Adds one header line ("k: v" CRLF) or query argument ("k=v&") to *cls. */
static enum MHD_Result add_len(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    head_size *n = cls;
    n->bytes += strlen(key) + (value ? strlen(value) : 0) + (kind == MHD_HEADER_KIND ? 4 : 2);
    n->lines++;
    return MHD_YES;
}

/* The key is known: the body may be read. Its declared length is taken
 * from body_cap now, or the upload is refused (503, Retry-After) before it
 * is read when the bodies in flight already hold it all; a body without a
 * declared length takes its share as it arrives. */
static enum MHD_Result admit_body(req *r)
{
    r->store = 1;
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    size_t n = cl ? (size_t)strtoull(cl, NULL, 10) : 0; /* at most CM_BODY_MAX here */
    if (n && !reserve(r, n)) return overloaded(r);
    return MHD_YES;
}

/* A request for the loop thread, with its headers in and no body read: a
 * missing, malformed or unknown key is answered 401 now, so that it costs
 * neither reading nor parsing its body. A key the cache knows goes on at
 * once, even when its entry aged; any other is asked of the loop thread (one PostgreSQL lookup for
 * every request of that key meanwhile) while the connection waits. */
static enum MHD_Result check_key(req *r)
{
    cm_apierr e;
    if (cm_decode_key(lookup, r->conn, r->key_hash, &e) != CM_OK) return send_apierr(r, &e);
    switch (cm_keycache_get(r->h->deps.keys, r->key_hash, mono_ms(), NULL)) {
    case CM_KEYCACHE_FOUND:
    case CM_KEYCACHE_AGED: return admit_body(r); /* the loop thread asks again (svc.c) */
    case CM_KEYCACHE_UNKNOWN: return send_apierr(r, cm_decode_unauthorized(&e));
    case CM_KEYCACHE_MISS: break;
    }
    cm_job *j = calloc(1, sizeof *j);
    if (!j) return send_error(r, 500, "internal", NULL, "out of memory");
    r->job = j;
    memcpy(j->key_hash, r->key_hash, CM_KEY_HASH_LEN);
    j->op = CM_OP_AUTH;
    j->errors = r->errors;
    return submit(r);
}

/* The whole body must be in within body_timeout_s of the headers: while it
 * is read, the connection's idle timeout is that short too (restored once
 * it is in, for the keep-alive that follows). */
static void start_body_clock(req *r)
{
    cm_http *h = r->h;
    r->deadline_ms = mono_ms() + (uint64_t)h->body_timeout_s * 1000;
    int body = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING) ||
               MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (body && h->body_timeout_s < h->conn_timeout_s) {
        MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, h->body_timeout_s);
        r->short_timeout = 1;
    }
}

/* On the first call, with the headers in and no body read: a request over
 * a limit, or without a valid key, is refused now. libmicrohttpd sends a
 * response queued before the body with Connection: close and reads nothing
 * more, so a client that declares 4 MiB is answered at once instead of
 * being read (or waited for until the timeout). Heads larger still than
 * the connection memory never get here: libmicrohttpd answers those
 * itself. */
static enum MHD_Result at_headers(req *r, const char *url)
{
    start_body_clock(r);
    if (atomic_load(&r->h->draining) && !(r->route_status == 200 && r->route.id == CM_R_HEALTHZ))
        return send_error(r, 503, "shutting_down", NULL, "the server is stopping; retry");
    head_size target = {strlen(url), 0};
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, add_len, &target);
    head_size head = {target.bytes, 0};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, add_len, &head);
    if (target.bytes > CM_TARGET_MAX)
        return send_error(r, 414, "uri_too_long", NULL, "the request target is over %d bytes", CM_TARGET_MAX);
    if (head.bytes > CM_HEAD_MAX || head.lines > CM_HEAD_LINES_MAX)
        return send_error(r, 431, "headers_too_large", NULL, "the request's headers are over %d bytes or %d lines",
                          CM_HEAD_MAX, CM_HEAD_LINES_MAX);
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > CM_BODY_MAX)
        return send_error(r, 413, "payload_too_large", NULL, "request body is over %d bytes", CM_BODY_MAX);
    if (r->route_status != 200 || answered_here(r->route.id)) return MHD_YES; /* its body is not kept */
    return check_key(r);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **req_cls)
{
    (void)version;
    cm_http *h = cls;
    req *r = *req_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->h = h;
        r->conn = conn;
        *req_cls = r;
        r->route_status = cm_route_match(method, url, &r->route);
        /* OTLP/HTTP answers an export's every 4xx and 5xx with a
         * google.rpc.Status in the request's encoding. */
        if (r->route_status == 200 && r->route.id == CM_R_OTLP_TRACES)
            r->errors = cm_otlp_error_form(
                MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE));
        return at_headers(r, url);
    }
    if (*upload_size) {
        /* Past the deadline libmicrohttpd takes no answer (the body is not
         * in): close. */
        if (mono_ms() > r->deadline_ms) {
            cm_log(CM_LOG_DEBUG, "event=body_timeout route=%s", cm_route_name(r->route.id));
            return MHD_NO;
        }
        /* A body without a declared length (chunked) is only known to be
         * too big, or past body_cap, while it is read: libmicrohttpd takes
         * no answer before the body's end, so keep reading without
         * storing, and the client gets the 413 or 503 instead of a reset
         * connection. */
        size_t need = r->body.len + *upload_size;
        if (r->store && need > r->reserved && need <= CM_BODY_MAX && !reserve(r, need - r->reserved)) {
            r->store = 0;
            r->no_room = 1;
            drop_body(r);
        }
        if (r->store && !r->too_big) {
            int rc = cm_buf_add_capped(&r->body, upload, *upload_size, CM_BODY_MAX);
            if (rc == CM_ENOMEM) return MHD_NO;
            r->too_big = rc == CM_ETOOBIG;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->job && atomic_load(&r->job_done)) {
        /* The key was asked of the loop thread before the body: unknown
         * (or no answer) is the reply; known, the body may come. */
        if (r->job->op != CM_OP_AUTH || r->job->status != 204) return answer_job(r);
        cm_job_free(r->job);
        r->job = NULL;
        atomic_store(&r->job_done, 0);
        return admit_body(r);
    }
    if (r->job) return MHD_YES; /* resumed spuriously; still waiting */

    /* The body is in. */
    if (r->short_timeout) {
        MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, h->conn_timeout_s);
        r->short_timeout = 0;
    }
    if (r->no_room) return overloaded(r);

    if (r->too_big)
        return send_error(r, 413, "payload_too_large", NULL, "request body is over %d bytes", CM_BODY_MAX);
    if (r->route_status == 404) return send_error(r, 404, "not_found", NULL, "no such path");
    if (r->route_status == 400)
        return send_error(r, 400, "invalid_path", NULL, "the path parameter is not valid percent-encoded UTF-8");
    if (r->route_status == 405) {
        cm_buf b;
        cm_buf_init(&b);
        cm_buf_add_error(&b, "method_not_allowed", "this path does not take this method", NULL);
        size_t len;
        char *text = cm_buf_take(&b, &len);
        return send_owned(r, 405, text, text ? len : 0, "application/json", MHD_HTTP_HEADER_ALLOW, r->route.allow);
    }
    return dispatch(r);
}

static void completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    req *r = *req_cls;
    if (!r) return;
    if (r->dispatched) atomic_fetch_sub(&r->h->inflight, 1);
    cm_job_free(r->job);
    drop_body(r);
    free(r);
    *req_cls = NULL;
}

/* Paths keep their percent-encoding: an address is one segment only while
 * its %2F stay encoded. Query values are decoded by the handler. */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[256];
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\r\n\"")] = '\0';
    cm_log(CM_LOG_DEBUG, "event=mhd message=\"%s\"", line);
}

int cm_http_start(const cm_config *cfg, const cm_http_deps *deps, cm_http **out, char *err,
                  size_t errsz)
{
    cm_http *h = calloc(1, sizeof *h);
    if (!h || cm_ui_load(cfg->web_dir, cfg->openapi_file, &h->ui) != CM_OK) {
        free(h);
        snprintf(err, errsz, "out of memory");
        return CM_ENOMEM;
    }
    h->deps = *deps;
    h->body_cap = (size_t)cfg->body_memory_mb * 1024 * 1024;
    h->conn_timeout_s = (unsigned)cfg->conn_timeout_s;
    h->body_timeout_s = (unsigned)cfg->body_timeout_s;
    h->metrics_locked = cfg->metrics_token[0] != '\0';
    if (h->metrics_locked && cm_auth_hash(cfg->metrics_token, strlen(cfg->metrics_token), h->metrics_hash) != CM_OK) {
        snprintf(err, errsz, "cannot hash the metrics token");
        cm_ui_free(h->ui);
        free(h);
        return CM_EIO;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)cfg->listen_port);
    const char *host = strcmp(cfg->listen_host, "localhost") == 0 ? "127.0.0.1" : cfg->listen_host;
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(err, errsz, "listen address %s is not an IPv4 address", cfg->listen_host);
        cm_ui_free(h->ui);
        free(h);
        return CM_ECONFIG;
    }
    h->d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
        (uint16_t)cfg->listen_port, NULL, NULL, handler, h,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->http_threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg->max_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->conn_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CM_CONN_MEMORY,
        MHD_OPTION_NOTIFY_COMPLETED, completed, h,
        MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, h,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
        MHD_OPTION_END);
    if (!h->d) {
        snprintf(err, errsz, "cannot listen on %s:%d", cfg->listen_host, cfg->listen_port);
        cm_ui_free(h->ui);
        free(h);
        return CM_EIO;
    }
    *out = h;
    return CM_OK;
}

void cm_http_drain(cm_http *h)
{
    /* Not MHD_quiesce_daemon: with epoll worker threads it races the
     * workers' own removal of the listen socket and can abort the process
     * (an open libmicrohttpd defect). Answering 503 to what still arrives
     * is as good for clients and balancers. */
    if (h) atomic_store(&h->draining, true);
}

int cm_http_inflight(const cm_http *h)
{
    return h ? atomic_load(&((cm_http *)h)->inflight) : 0;
}

void cm_http_stop(cm_http *h)
{
    if (!h) return;
    MHD_stop_daemon(h->d);
    cm_ui_free(h->ui);
    free(h);
}
