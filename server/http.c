#include "http.h"
#include "auth.h"
#include "error.h"
#include "log.h"
#include "routes.h"

#include <microhttpd.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const int tracked_status[] = {200, 201, 202, 204, 400, 401, 403, 404, 405, 413, 429, 500, 503};
enum { NSTATUS = sizeof tracked_status / sizeof tracked_status[0] };

/* The dashboard's files, read once at start and served from memory: only
 * these names exist, so no path from a request reaches the file system. */
typedef struct {
    const char *name; /* after /ui/; "" is the page at / */
    const char *path; /* under web_dir */
    const char *type;
    char *data;       /* owned; NULL when the file was missing */
    size_t len;
} asset;

enum { NASSETS = 4 };

struct cm_http {
    struct MHD_Daemon *d;
    asset assets[NASSETS];
    cm_http_deps deps;
    _Atomic int inflight;
    _Atomic unsigned long long requests[CM_R_COUNT + 1][NSTATUS + 1];
};

/* Per-request state, in *req_cls; freed in the completion callback. */
typedef struct {
    cm_http *h;
    struct MHD_Connection *conn;
    cm_route route;
    int route_status;
    cm_buf body;
    int too_big;
    char method; /* first letter: G, P(OST/UT), D */
    int dispatched; /* counted in inflight until completed */
    cm_job *job; /* owned while not handed to the bridge */
    _Atomic int job_done;
} req;

static int64_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

static void count(cm_http *h, const req *r, unsigned status)
{
    int ri = r && r->route_status == 200 ? (int)r->route.id : CM_R_COUNT;
    int si = NSTATUS;
    for (int i = 0; i < NSTATUS; i++)
        if (tracked_status[i] == (int)status) si = i;
    atomic_fetch_add(&h->requests[ri][si], 1);
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
    count(r->h, r, status);
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

/* Every error leaves through here: the JSON error body. */
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
    cm_buf_add_error(&b, code, msg, field);
    return send_buf(r, status, &b, "application/json");
}

static enum MHD_Result send_apierr(req *r, const cm_apierr *e)
{
    return send_error(r, (unsigned)e->status, e->code, e->field, "%s", e->message);
}

/* ---- routes answered on the HTTP thread ---- */

static enum MHD_Result do_readyz(req *r)
{
    const cm_http_deps *d = &r->h->deps;
    int redis = cm_store_ready(d->store);
    int pg = cm_pg_pool_ready(d->writer) && cm_pg_pool_ready(d->reader);
    cm_buf b;
    cm_buf_init(&b);
    /* Not ready is an error like any other: the error body, plus each
     * store's state. */
    cm_buf_adds(&b, "{");
    if (!(redis && pg))
        cm_buf_adds(&b, "\"error\":{\"code\":\"not_ready\",\"message\":\"a store is unreachable\"},");
    cm_buf_addf(&b, "\"ready\":%s,\"redis\":\"%s\",\"postgres\":\"%s\"}", redis && pg ? "true" : "false",
                redis ? "up" : "down", pg ? "up" : "down");
    return send_buf(r, redis && pg ? 200 : 503, &b, "application/json");
}

static enum MHD_Result do_metrics(req *r)
{
    cm_http *h = r->h;
    const cm_http_deps *d = &h->deps;
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "# TYPE costmesh_http_requests_total counter\n");
    for (int ri = 0; ri <= CM_R_COUNT; ri++) {
        for (int si = 0; si <= NSTATUS; si++) {
            unsigned long long n = atomic_load(&h->requests[ri][si]);
            if (!n) continue;
            char st[8];
            if (si < NSTATUS) snprintf(st, sizeof st, "%d", tracked_status[si]);
            else snprintf(st, sizeof st, "other");
            cm_buf_addf(&b, "costmesh_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                        ri < CM_R_COUNT ? cm_route_name((cm_route_id)ri) : "none", st, n);
        }
    }
    cm_buf_addf(&b,
                "# TYPE costmesh_heartbeats_accepted_total counter\n"
                "costmesh_heartbeats_accepted_total %llu\n"
                "# TYPE costmesh_heartbeats_duplicate_total counter\n"
                "costmesh_heartbeats_duplicate_total %llu\n"
                "# TYPE costmesh_persistence_backlog gauge\n"
                "costmesh_persistence_backlog{stage=\"ingest_jobs\"} %zu\n"
                "costmesh_persistence_backlog{stage=\"postgres_writer\"} %zu\n"
                "costmesh_persistence_backlog{stage=\"redis\"} %zu\n"
                "# TYPE costmesh_store_up gauge\n"
                "costmesh_store_up{store=\"redis\"} %d\n"
                "costmesh_store_up{store=\"postgres\"} %d\n"
                "# TYPE costmesh_http_inflight gauge\n"
                "costmesh_http_inflight %d\n",
                cm_ingest_accepted(d->ingest), cm_ingest_duplicates(d->ingest),
                cm_ingest_backlog(d->ingest), cm_pg_pool_backlog(d->writer), cm_store_backlog(d->store),
                cm_store_ready(d->store) ? 1 : 0, cm_pg_pool_ready(d->writer) ? 1 : 0,
                atomic_load(&h->inflight));
    return send_buf(r, 200, &b, "text/plain; version=0.0.4");
}

static const asset asset_defs[NASSETS] = {
    {"", "index.html", "text/html; charset=utf-8", NULL, 0},
    {"app.js", "app.js", "text/javascript; charset=utf-8", NULL, 0},
    {"app.css", "app.css", "text/css; charset=utf-8", NULL, 0},
    {"chart.umd.js", "node_modules/chart.js/dist/chart.umd.js", "text/javascript; charset=utf-8", NULL, 0},
};

static void load_assets(cm_http *h, const char *dir)
{
    for (int i = 0; i < NASSETS; i++) {
        h->assets[i] = asset_defs[i];
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, asset_defs[i].path);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        cm_buf b;
        cm_buf_init(&b);
        char chunk[8192];
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) cm_buf_add(&b, chunk, n);
        fclose(f);
        h->assets[i].data = cm_buf_take(&b, &h->assets[i].len);
    }
    if (!h->assets[0].data) cm_log(CM_LOG_INFO, "event=dashboard_missing dir=%s", dir);
}

static void free_assets(cm_http *h)
{
    for (int i = 0; i < NASSETS; i++) free(h->assets[i].data);
}

static enum MHD_Result do_ui(req *r)
{
    const char *name = r->route.param;
    for (int i = 0; i < NASSETS; i++) {
        const asset *a = &r->h->assets[i];
        if (strcmp(a->name, name) != 0 || !a->data) continue;
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(a->len, a->data, MHD_RESPMEM_PERSISTENT);
        if (!resp) return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, a->type);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        MHD_add_response_header(resp, "Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'");
        count(r->h, r, 200);
        enum MHD_Result ret = MHD_queue_response(r->conn, 200, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    return send_error(r, 404, "not_found", NULL, "no such file (is the dashboard built? run make)");
}

/* ---- building jobs ---- */

/* A query argument, percent-decoded into out. Returns 0 when absent, 1 when
 * present, -1 when malformed. */
static int query_arg(req *r, const char *name, char *out, size_t outsz)
{
    const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
    if (!v) return 0;
    size_t n;
    if (cm_pct_decode(v, strlen(v), out, outsz, &n) != CM_OK || cm_utf8_valid_prefix(out, n) != n) return -1;
    return 1;
}

static int api_key_hash(req *r, unsigned char *hash)
{
    const char *k = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "x-api-key");
    if (!k) {
        const char *a = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        if (a && strncasecmp(a, "Bearer ", 7) == 0) k = a + 7;
    }
    if (!k || !*k || strlen(k) > 256) return 0;
    return cm_auth_hash(k, strlen(k), hash) == CM_OK;
}

/* ?limit=: 1..1000, default 100. */
static int limit_arg(req *r, int *limit, cm_apierr *e)
{
    char tmp[16], *end;
    *limit = 100;
    int q = query_arg(r, "limit", tmp, sizeof tmp);
    if (q == 0) return CM_OK;
    long v = q > 0 ? strtol(tmp, &end, 10) : 0;
    if (q < 0 || *end || end == tmp || v < 1 || v > 1000)
        return cm_apierr_set(e, 400, "invalid_field", "limit", "limit must be an integer from 1 to 1000");
    *limit = (int)v;
    return CM_OK;
}

/* The {address_id} of the path into address. */
static int address_param(req *r, char address[CM_ADDR_MAX], cm_apierr *e)
{
    if (cm_addr_parse(r->route.param, strlen(r->route.param), NULL) != CM_OK)
        return cm_apierr_set(e, 400, "invalid_field", "address_id",
                             "the path must name a percent-encoded address agent://ORG/ENV/NAME");
    memcpy(address, r->route.param, strlen(r->route.param) + 1);
    return CM_OK;
}

/* Is `s` one of the NULL-terminated `names`? */
static int one_of(const char *s, const char *const *names)
{
    for (; *names; names++)
        if (strcmp(s, *names) == 0) return 1;
    return 0;
}

/* Fills j from the request: CM_OK when j is ready for the loop thread, else
 * e says what to answer. */
static int fill_job(req *r, cm_job *j, cm_apierr *e)
{
    static const char *const healths[] = {"healthy", "degraded", "unreachable", "killed", NULL};
    static const char *const event_types[] = {"policy_breached", "threshold_crossed", "agent_killed",
                                              "agent_resumed", "health_changed", "policy_changed", NULL};
    const char *body = r->body.data ? r->body.data : "";
    size_t len = r->body.len;
    char tmp[CM_ADDR_MAX];
    int q;
    switch (r->route.id) {
    case CM_R_HEARTBEAT:
        j->op = CM_OP_HEARTBEAT;
        return cm_codec_heartbeats(body, len, j->now, &j->req.heartbeat.hbs, &j->req.heartbeat.n, e);
    case CM_R_KEYS:
        if (r->method == 'G') {
            j->op = CM_OP_KEY_LIST;
            return CM_OK;
        }
        j->op = CM_OP_KEY_CREATE;
        return cm_codec_keyreq(body, len, &j->req.key_create, e);
    case CM_R_KEY:
        j->op = CM_OP_KEY_REVOKE;
        if (strlen(r->route.param) > CM_KEY_ID_MAX)
            return cm_apierr_set(e, 404, "not_found", NULL, "no such key in this org");
        memcpy(j->req.key_revoke.id, r->route.param, strlen(r->route.param) + 1);
        return CM_OK;
    case CM_R_AGENTS:
        j->op = CM_OP_AGENT_LIST;
        q = query_arg(r, "health", j->req.agent_list.health, sizeof j->req.agent_list.health);
        if (q < 0 || (q > 0 && !one_of(j->req.agent_list.health, healths)))
            return cm_apierr_set(e, 400, "invalid_field", "health",
                                 "health must be healthy, degraded, unreachable or killed");
        return limit_arg(r, &j->req.agent_list.limit, e);
    case CM_R_AGENT_SPEND: {
        cm_req_spend_agent *sa = &j->req.spend_agent;
        j->op = CM_OP_SPEND_AGENT;
        if (address_param(r, sa->address, e) != CM_OK) return CM_EINVAL;
        sa->window = CM_WIN_DAY;
        sa->at = j->now;
        q = query_arg(r, "window", tmp, sizeof tmp);
        if (q < 0 || (q > 0 && cm_window_parse(tmp, &sa->window) != CM_OK))
            return cm_apierr_set(e, 400, "invalid_field", "window", "window must be hour, day, week or month");
        q = query_arg(r, "at", tmp, sizeof tmp);
        /* Kept well inside 1970..9999 so every window around it prints. */
        if (q < 0 || (q > 0 && (cm_time_parse(tmp, strlen(tmp), &sa->at) != CM_OK || sa->at < 946684800 ||
                                sa->at >= 253370764800LL)))
            return cm_apierr_set(e, 400, "invalid_field", "at", "at must be an RFC 3339 time from 2000 to 9998");
        return CM_OK;
    }
    case CM_R_INTENT_SPEND:
        j->op = CM_OP_SPEND_INTENT;
        if (strlen(r->route.param) > CM_ID_MAX)
            return cm_apierr_set(e, 400, "invalid_field", "intent_id", "intent_id is longer than %d bytes", CM_ID_MAX);
        memcpy(j->req.spend_intent.intent_id, r->route.param, strlen(r->route.param) + 1);
        q = query_arg(r, "agent", j->req.spend_intent.agent, sizeof j->req.spend_intent.agent);
        if (q < 0 || (q > 0 && cm_addr_parse(j->req.spend_intent.agent, strlen(j->req.spend_intent.agent), NULL) != CM_OK))
            return cm_apierr_set(e, 400, "invalid_field", "agent", "agent must be an address agent://ORG/ENV/NAME");
        return CM_OK;
    case CM_R_KILL:
        j->op = CM_OP_KILL;
        return address_param(r, j->req.agent.address, e);
    case CM_R_RESUME:
        j->op = CM_OP_RESUME;
        return address_param(r, j->req.agent.address, e);
    case CM_R_AGENT:
        j->op = CM_OP_AGENT_GET;
        return address_param(r, j->req.agent.address, e);
    case CM_R_POLICY:
        if (address_param(r, j->req.policy.address, e) != CM_OK) return CM_EINVAL;
        j->op = r->method == 'G' ? CM_OP_POLICY_GET : r->method == 'D' ? CM_OP_POLICY_DELETE : CM_OP_POLICY_PUT;
        return j->op == CM_OP_POLICY_PUT ? cm_codec_policy(body, len, &j->req.policy.policy, e) : CM_OK;
    case CM_R_INTENTS:
    case CM_R_AXME_INTENTS: {
        j->op = CM_OP_INTENT;
        j->req.intent.axme = r->route.id == CM_R_AXME_INTENTS;
        if (cm_codec_intent(body, len, j->req.intent.axme, &j->req.intent.body, e) != CM_OK) return CM_EINVAL;
        const char *k = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Idempotency-Key");
        if (!k) return CM_OK;
        size_t n = strlen(k);
        int bad = n == 0 || n > CM_ID_MAX;
        for (size_t i = 0; i < n && !bad; i++) bad = (unsigned char)k[i] <= 0x20 || (unsigned char)k[i] >= 0x7f;
        if (bad)
            return cm_apierr_set(e, 400, "invalid_header", "Idempotency-Key",
                                 "Idempotency-Key must be 1 to %d visible ASCII characters", CM_ID_MAX);
        memcpy(j->req.intent.idem_key, k, n + 1);
        return CM_OK;
    }
    case CM_R_EVENTS:
        j->op = CM_OP_EVENTS;
        q = query_arg(r, "event_type", j->req.events.event_type, sizeof j->req.events.event_type);
        if (q < 0 || (q > 0 && !one_of(j->req.events.event_type, event_types)))
            return cm_apierr_set(e, 400, "invalid_field", "event_type",
                                 "event_type must be policy_breached, threshold_crossed, agent_killed, "
                                 "agent_resumed, health_changed or policy_changed");
        return limit_arg(r, &j->req.events.limit, e);
    case CM_R_WEBHOOK:
        if (r->method == 'G' || r->method == 'D') {
            j->op = r->method == 'G' ? CM_OP_WEBHOOK_GET : CM_OP_WEBHOOK_DELETE;
            return CM_OK;
        }
        j->op = CM_OP_WEBHOOK_PUT;
        return cm_codec_webhook(body, len, &j->req.webhook_put, e);
    default:
        return cm_apierr_set(e, 500, "internal", NULL, "unroutable request");
    }
}

/* ---- the access handler ---- */

/* Called on the loop thread: the job is finished. */
static void on_job_done(cm_job *j)
{
    req *r = j->done_arg;
    atomic_store(&r->job_done, 1);
    MHD_resume_connection(r->conn);
}

static enum MHD_Result answer_job(req *r)
{
    cm_job *j = r->job;
    char *body = j->body;
    size_t len = j->body_len;
    j->body = NULL;
    char ra[24];
    snprintf(ra, sizeof ra, "%ld", j->retry_after);
    return send_owned(r, (unsigned)j->status, body, len, "application/json",
                      j->retry_after > 0 ? MHD_HTTP_HEADER_RETRY_AFTER : NULL, ra);
}

static enum MHD_Result dispatch(req *r)
{
    switch (r->route.id) {
    case CM_R_HEALTHZ: {
        cm_buf b;
        cm_buf_init(&b);
        cm_buf_adds(&b, "{\"status\":\"ok\"}");
        return send_buf(r, 200, &b, "application/json");
    }
    case CM_R_READYZ: return do_readyz(r);
    case CM_R_UI: return do_ui(r);
    case CM_R_METRICS: return do_metrics(r);
    default: break;
    }
    cm_job *j = calloc(1, sizeof *j);
    if (!j) return send_error(r, 500, "internal", NULL, "out of memory");
    r->job = j;
    j->now = now_s();
    if (!api_key_hash(r, j->key_hash))
        return send_error(r, 401, "unauthorized", NULL,
                          "a valid API key is required (x-api-key or Authorization: Bearer)");
    cm_apierr e;
    if (fill_job(r, j, &e) != CM_OK) return send_apierr(r, &e);
    j->done = on_job_done;
    j->done_arg = r;
    /* Suspend before handing over: the loop may finish and resume at once. */
    MHD_suspend_connection(r->conn);
    r->dispatched = 1;
    atomic_fetch_add(&r->h->inflight, 1);
    if (cm_bridge_submit(r->h->deps.bridge, j) != CM_OK) {
        cm_job_fail(j, 503, "shutting_down", NULL, "the server is stopping; retry");
        on_job_done(j);
    }
    return MHD_YES;
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
        r->method = method[0];
        *req_cls = r;
        r->route_status = cm_route_match(method, url, &r->route);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > CM_BODY_MAX) r->too_big = 1;
        return MHD_YES;
    }
    if (*upload_size) {
        /* Keep reading past the limit without storing, so the client gets
         * the 413 instead of a reset connection. */
        if (!r->too_big) {
            int rc = cm_buf_add_capped(&r->body, upload, *upload_size, CM_BODY_MAX);
            if (rc == CM_ENOMEM) return MHD_NO;
            r->too_big = rc == CM_ETOOBIG;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->job && atomic_load(&r->job_done)) return answer_job(r);
    if (r->job) return MHD_YES; /* resumed spuriously; still waiting */

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
    cm_buf_free(&r->body);
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
    if (!h) return CM_ENOMEM;
    h->deps = *deps;
    load_assets(h, cfg->web_dir);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)cfg->listen_port);
    const char *host = strcmp(cfg->listen_host, "localhost") == 0 ? "127.0.0.1" : cfg->listen_host;
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(err, errsz, "listen address %s is not an IPv4 address", cfg->listen_host);
        free_assets(h);
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
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
        MHD_OPTION_NOTIFY_COMPLETED, completed, h,
        MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, h,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
        MHD_OPTION_END);
    if (!h->d) {
        snprintf(err, errsz, "cannot listen on %s:%d", cfg->listen_host, cfg->listen_port);
        free_assets(h);
        free(h);
        return CM_EIO;
    }
    *out = h;
    return CM_OK;
}

void cm_http_quiesce(cm_http *h)
{
    if (h && h->d) MHD_quiesce_daemon(h->d);
}

int cm_http_inflight(const cm_http *h)
{
    return h ? atomic_load(&((cm_http *)h)->inflight) : 0;
}

void cm_http_stop(cm_http *h)
{
    if (!h) return;
    MHD_stop_daemon(h->d);
    free_assets(h);
    free(h);
}
