#include "webhook.h"
#include "auth.h"
#include "buf.h"
#include "error.h"
#include "log.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* The numbers webhook.h promises. */
#define PER_ORG 4
#define IN_FLIGHT 32
#define POLL_MS 500
#define CONNECT_TIMEOUT_MS 3000L
#define ATTEMPT_TIMEOUT_MS 10000L
#define LEASE_S 30 /* well over an attempt: a live attempt never loses its lease */
#define MAX_ATTEMPTS 6
#define FIRST_RETRY_MS 500

/* $1 attempts in flight per org, $2 how many to claim, $3 the lease in
 * seconds. Each org with a webhook offers its oldest due deliveries, as
 * many as it has room for under $1 (its leases, on every replica, use the
 * rest); rn interleaves the orgs. The row locks are taken last, on the
 * rows picked: SKIP LOCKED passes over another replica's claim in
 * progress, and the re-checked WHERE over one it has committed. Columns:
 * 0 delivery id, 1 attempts, 2 url, 3 secret, then the event: 4 id, 5 time,
 * 6 type, 7 org, 8 address, 9 details. */
static const char claim_sql[] =
    "WITH pick AS (SELECT d.id FROM webhooks w"
    " CROSS JOIN LATERAL (SELECT count(*) AS n FROM webhook_deliveries b WHERE b.org = w.org"
    "  AND b.status = 'pending' AND b.lease_until > now()) busy"
    " CROSS JOIN LATERAL (SELECT x.id, x.due_at, row_number() OVER (ORDER BY x.due_at, x.id) AS rn"
    "  FROM webhook_deliveries x WHERE x.org = w.org AND x.status = 'pending' AND x.due_at <= now()"
    "  ORDER BY x.due_at, x.id LIMIT $1::int) d"
    " WHERE d.rn + busy.n <= $1::int ORDER BY d.rn, d.due_at LIMIT $2::int),"
    " claimed AS (UPDATE webhook_deliveries d SET attempts = d.attempts + 1,"
    "  lease_until = now() + $3::int * interval '1 second', due_at = now() + $3::int * interval '1 second'"
    "  FROM (SELECT x.id FROM webhook_deliveries x WHERE x.id IN (SELECT id FROM pick)"
    "   AND x.status = 'pending' AND x.due_at <= now() FOR UPDATE SKIP LOCKED) l"
    "  WHERE d.id = l.id RETURNING d.id, d.attempts, d.org, d.event_id)"
    " SELECT c.id, c.attempts, w.url, w.secret, e.id, " CM_PG_EPOCH("e.ts") ", e.event_type, e.org,"
    " e.address, e.details::text FROM claimed c JOIN webhooks w ON w.org = c.org JOIN events e ON e.id = c.event_id";

/* One claimed delivery, from its claim until its outcome is written. */
typedef struct {
    cm_webhook *w;
    int slot; /* its place in w->running while libcurl has it */
    CURL *easy;
    CURLU *url;
    struct curl_slist *headers;
    char *body;
    char id[24], event_id[24];
    int attempts; /* as claimed: the fence for the outcome */
    char host[256];
    const char *refused; /* why an address was refused, set by open_socket */
    char refused_addr[INET6_ADDRSTRLEN];
    char errbuf[CURL_ERROR_SIZE];
    const char *state; /* the outcome: delivered, pending or abandoned */
    char reason[CURL_ERROR_SIZE + 128];
} attempt;

struct cm_webhook {
    uv_loop_t *loop;
    cm_pg_pool *pg;
    cm_egress_allow allow;
    CURLM *multi;
    uv_timer_t poll;       /* claims every POLL_MS */
    uv_timer_t curl_timer; /* libcurl's timeouts */
    attempt *running[IN_FLIGHT];
    int in_flight; /* claimed, outcome not yet written */
    int claiming;  /* a claim statement is out */
    int again;     /* kicked meanwhile: claim once it is back */
    int closing;
    int handles;   /* timers not yet closed */
    int queries;   /* statements whose callbacks are still to come */
};

/* A socket libcurl asked the loop to watch. */
typedef struct {
    uv_poll_t poll;
    curl_socket_t fd;
    cm_webhook *w;
} sockwatch;

static void claim(cm_webhook *w);

static void maybe_free(cm_webhook *w)
{
    if (w->closing && w->handles == 0 && w->queries == 0) free(w);
}

static void attempt_free(attempt *a)
{
    curl_easy_cleanup(a->easy);
    curl_url_cleanup(a->url);
    curl_slist_free_all(a->headers);
    free(a->body);
    free(a);
}

/* The attempt is over and written (or could not be): room for another. */
static void done(attempt *a)
{
    cm_webhook *w = a->w;
    attempt_free(a);
    w->in_flight--;
    if (w->closing) maybe_free(w);
    else claim(w);
}

static void on_written(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    attempt *a = arg;
    a->w->queries--;
    if (rc != CM_OK)
        cm_log(CM_LOG_WARN, "event=webhook_outcome_unsaved event_id=%s reason=postgres", a->event_id);
    else if (cm_pgres_affected(res) == 0)
        cm_log(CM_LOG_INFO, "event=webhook_outcome_stale event_id=%s", a->event_id); /* lease lost or webhook removed */
    else if (strcmp(a->state, "abandoned") == 0)
        cm_log(CM_LOG_WARN, "event=webhook_abandoned event_id=%s host=%s attempts=%d reason=\"%s\"", a->event_id,
               a->host, a->attempts, a->reason);
    else if (strcmp(a->state, "pending") == 0)
        cm_log(CM_LOG_INFO, "event=webhook_retry event_id=%s host=%s attempt=%d reason=\"%s\"", a->event_id, a->host,
               a->attempts, a->reason);
    done(a);
}

/* Writes the outcome (a->state, status 0 for no answer, a->reason) and the
 * next attempt's time. A statement that cannot be sent leaves the lease to
 * run out: the delivery is tried again then. */
static void conclude(attempt *a, long status)
{
    char att[16], st[16], retry[16];
    snprintf(att, sizeof att, "%d", a->attempts);
    snprintf(st, sizeof st, "%ld", status);
    /* Pending means 1 <= attempts < MAX_ATTEMPTS. */
    snprintf(retry, sizeof retry, "%ld", strcmp(a->state, "pending") == 0 ? (long)FIRST_RETRY_MS << (a->attempts - 1) : 0L);
    const char *params[] = {a->id, att, a->state, status ? st : NULL, a->reason[0] ? a->reason : NULL, retry};
    a->w->queries++;
    if (cm_pg_query(a->w->pg,
                    "UPDATE webhook_deliveries SET status = $3, last_status = $4::int, last_error = $5,"
                    " last_attempt_at = now(), lease_until = NULL, due_at = now() + $6::int * interval '1 millisecond'"
                    " WHERE id = $1::bigint AND attempts = $2::int AND status = 'pending'",
                    6, params, on_written, a) != CM_OK)
        on_written(a, CM_ESTORE, NULL, "");
}

/* A failed attempt: why, one line without quotes (it goes into the log),
 * and whether it was the last. */
static void fail(attempt *a, int last, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(attempt *a, int last, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->reason, sizeof a->reason, fmt, ap);
    va_end(ap);
    for (char *p = a->reason; *p; p++)
        if (*p == '"' || *p == '\n' || *p == '\r') *p = ' ';
    a->state = last || a->attempts >= MAX_ATTEMPTS ? "abandoned" : "pending";
}

/* libcurl has finished the transfer. */
static void finish(attempt *a, CURLcode code)
{
    a->w->running[a->slot] = NULL;
    long status = 0;
    if (code == CURLE_OK) curl_easy_getinfo(a->easy, CURLINFO_RESPONSE_CODE, &status);
    if (code == CURLE_OK && status >= 200 && status < 300)
        a->state = "delivered";
    else if (code == CURLE_OK)
        fail(a, 0, "answered HTTP %ld", status);
    else if (a->refused && code == CURLE_COULDNT_CONNECT)
        fail(a, 1, "refused address %s (%s); COSTMESH_WEBHOOK_ALLOW can allow it", a->refused_addr, a->refused);
    else
        fail(a, 0, "%s", a->errbuf[0] ? a->errbuf : curl_easy_strerror(code));
    /* The connection stays in the multi handle's cache for the next one. */
    curl_easy_cleanup(a->easy);
    a->easy = NULL;
    conclude(a, status);
}

/* Every connect goes through here, with the address about to be used. */
static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *addr)
{
    attempt *a = arg;
    const char *why = purpose == CURLSOCKTYPE_IPCXN ? cm_egress_refusal(&a->w->allow, &addr->addr) : "not-ip";
    if (!why) return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    a->refused = why;
    const void *ip = addr->family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)(void *)&addr->addr)->sin6_addr
                                              : (const void *)&((struct sockaddr_in *)(void *)&addr->addr)->sin_addr;
    if (!inet_ntop(addr->family, ip, a->refused_addr, sizeof a->refused_addr))
        snprintf(a->refused_addr, sizeof a->refused_addr, "?");
    return CURL_SOCKET_BAD;
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* The body a receiver gets: the event as GET /v1/mesh/events shows it,
 * plus its org. */
static char *event_body(const cm_pgres *res, int row)
{
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_addf(&b, "{\"id\":%s,\"ts\":", cm_pgres_get(res, row, 4));
    cm_buf_add_jtime(&b, strtoll(cm_pgres_get(res, row, 5), NULL, 10));
    cm_buf_adds(&b, ",\"event_type\":");
    cm_buf_add_jstr(&b, cm_pgres_get(res, row, 6));
    cm_buf_adds(&b, ",\"org\":");
    cm_buf_add_jstr(&b, cm_pgres_get(res, row, 7));
    cm_buf_adds(&b, ",\"agent\":");
    if (cm_pgres_isnull(res, row, 8)) cm_buf_adds(&b, "null");
    else cm_buf_add_jstr(&b, cm_pgres_get(res, row, 8));
    cm_buf_adds(&b, ",\"details\":");
    cm_buf_adds(&b, cm_pgres_get(res, row, 9));
    cm_buf_adds(&b, "}");
    return cm_buf_take(&b, NULL);
}

/* The headers that sign "<now>.<body>" under secret. NULL when out of
 * memory. */
static struct curl_slist *signed_headers(const char *secret, const char *body)
{
    char ts[24];
    snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
    cm_buf m;
    cm_buf_init(&m);
    cm_buf_addf(&m, "%s.", ts);
    cm_buf_adds(&m, body);
    size_t len;
    char *msg = cm_buf_take(&m, &len);
    unsigned char mac[CM_KEY_HASH_LEN];
    char hex[2 * CM_KEY_HASH_LEN + 1], stamp[64], sig[128];
    int ok = msg && cm_auth_hmac(secret, strlen(secret), msg, len, mac) == CM_OK;
    free(msg);
    if (!ok) return NULL;
    cm_auth_hex(mac, sizeof mac, hex);
    snprintf(stamp, sizeof stamp, "X-Costmesh-Timestamp: %s", ts);
    snprintf(sig, sizeof sig, "X-Costmesh-Signature: sha256=%s", hex);
    /* "Expect:" keeps libcurl from waiting up to a second for a 100
     * Continue before a body over 1 KiB. */
    const char *const lines[] = {"Content-Type: application/json", "Expect:", stamp, sig};
    struct curl_slist *h = NULL;
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        struct curl_slist *next = curl_slist_append(h, lines[i]);
        if (!next) {
            curl_slist_free_all(h);
            return NULL;
        }
        h = next;
    }
    return h;
}

/* Starts the attempt of claim row `row`. */
static void start(cm_webhook *w, const cm_pgres *res, int row)
{
    attempt *a = calloc(1, sizeof *a);
    if (!a) {
        cm_log(CM_LOG_WARN, "event=webhook_attempt_skipped event_id=%s reason=memory", cm_pgres_get(res, row, 4));
        return; /* its lease runs out: it is tried again then */
    }
    a->w = w;
    w->in_flight++;
    snprintf(a->id, sizeof a->id, "%s", cm_pgres_get(res, row, 0));
    a->attempts = (int)strtol(cm_pgres_get(res, row, 1), NULL, 10);
    snprintf(a->event_id, sizeof a->event_id, "%s", cm_pgres_get(res, row, 4));
    snprintf(a->host, sizeof a->host, "?");
    char *host = NULL;
    a->url = curl_url();
    if (!a->url || curl_url_set(a->url, CURLUPART_URL, cm_pgres_get(res, row, 2), 0) != CURLUE_OK) {
        fail(a, 1, "the URL is malformed");
        conclude(a, 0);
        return;
    }
    if (curl_url_get(a->url, CURLUPART_HOST, &host, 0) == CURLUE_OK) snprintf(a->host, sizeof a->host, "%s", host);
    curl_free(host);
    a->body = event_body(res, row);
    a->headers = a->body ? signed_headers(cm_pgres_get(res, row, 3), a->body) : NULL;
    if (!a->headers || !(a->easy = curl_easy_init())) {
        fail(a, 0, "out of memory");
        conclude(a, 0);
        return;
    }
    CURL *e = a->easy;
    curl_easy_setopt(e, CURLOPT_CURLU, a->url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, a->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(a->body));
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, a->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "costmeshd-webhook");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ATTEMPT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* a proxy would connect where open_socket cannot see */
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, a);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, a->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, a);
    if (curl_multi_add_handle(w->multi, e) != CURLM_OK) {
        fail(a, 0, "out of memory");
        conclude(a, 0);
        return;
    }
    /* A free slot exists: in_flight, which counts this attempt too, never
     * passes IN_FLIGHT. */
    while (w->running[a->slot]) a->slot++;
    w->running[a->slot] = a;
}

static void on_claimed(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_webhook *w = arg;
    w->claiming = 0;
    w->queries--;
    if (w->closing) {
        maybe_free(w); /* what it claimed waits for its leases to run out */
        return;
    }
    for (int i = 0; rc == CM_OK && i < cm_pgres_rows(res); i++) start(w, res, i);
    if (w->again) {
        w->again = 0;
        claim(w);
    }
}

static void claim(cm_webhook *w)
{
    if (w->closing) return;
    if (w->claiming) {
        w->again = 1;
        return;
    }
    int room = IN_FLIGHT - w->in_flight;
    if (room <= 0) return; /* a finished attempt claims again */
    char per_org[16], limit[16], lease[16];
    snprintf(per_org, sizeof per_org, "%d", PER_ORG);
    snprintf(limit, sizeof limit, "%d", room);
    snprintf(lease, sizeof lease, "%d", LEASE_S);
    const char *params[] = {per_org, limit, lease};
    /* PostgreSQL away: the next poll tries again. */
    if (cm_pg_query(w->pg, claim_sql, 3, params, on_claimed, w) != CM_OK) return;
    w->claiming = 1;
    w->queries++;
}

void cm_webhook_kick(cm_webhook *w)
{
    claim(w);
}

/* ---- libcurl's multi interface on the loop ---- */

static void check_done(cm_webhook *w)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(w->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        /* m does not outlive the removal. */
        CURL *e = m->easy_handle;
        CURLcode code = m->data.result;
        char *a;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, &a);
        curl_multi_remove_handle(w->multi, e);
        finish((attempt *)(void *)a, code);
    }
}

static void on_socket_ready(uv_poll_t *p, int status, int events)
{
    sockwatch *s = p->data;
    cm_webhook *w = s->w;
    /* On an error (libuv stops the watch) libcurl reads or writes and
     * finds the socket's own error, "connection refused" rather than "poll
     * failed". */
    int flags = status < 0 ? CURL_CSELECT_IN | CURL_CSELECT_OUT : 0;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(w->multi, s->fd, flags, &running);
    check_done(w);
}

static void free_watch(uv_handle_t *h)
{
    free(h->data);
}

/* libcurl calls this before it closes a socket, so a watch never outlives
 * its descriptor. */
static int on_curl_socket(CURL *e, curl_socket_t fd, int what, void *arg, void *socketp)
{
    (void)e;
    cm_webhook *w = arg;
    sockwatch *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(w->multi, fd, NULL);
            uv_close((uv_handle_t *)&s->poll, free_watch);
        }
        return 0;
    }
    if (!s) {
        if (!(s = calloc(1, sizeof *s))) return -1;
        if (uv_poll_init_socket(w->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        s->fd = fd;
        s->w = w;
        curl_multi_assign(w->multi, fd, s);
    }
    int events = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    return uv_poll_start(&s->poll, events, on_socket_ready) == 0 ? 0 : -1;
}

static void on_curl_timeout(uv_timer_t *t)
{
    cm_webhook *w = t->data;
    int running;
    curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(w);
}

/* libcurl wants to be called after ms (0: at the next turn of the loop,
 * never from inside this callback). */
static int on_curl_timer(CURLM *m, long ms, void *arg)
{
    (void)m;
    cm_webhook *w = arg;
    if (ms < 0) uv_timer_stop(&w->curl_timer);
    else uv_timer_start(&w->curl_timer, on_curl_timeout, (uint64_t)ms, 0);
    return 0;
}

/* ---- life ---- */

static void on_poll(uv_timer_t *t)
{
    claim(t->data);
}

static void on_timer_closed(uv_handle_t *h)
{
    cm_webhook *w = h->data;
    w->handles--;
    maybe_free(w);
}

int cm_webhook_new(uv_loop_t *loop, cm_pg_pool *pg, const cm_egress_allow *allow, cm_webhook **out)
{
    cm_webhook *w = calloc(1, sizeof *w);
    if (!w) return CM_ENOMEM;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        free(w);
        return CM_EIO;
    }
    if (!(w->multi = curl_multi_init())) {
        curl_global_cleanup();
        free(w);
        return CM_ENOMEM;
    }
    w->loop = loop;
    w->pg = pg;
    w->allow = *allow;
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
    uv_timer_init(loop, &w->poll);
    uv_timer_init(loop, &w->curl_timer);
    w->poll.data = w->curl_timer.data = w;
    w->handles = 2;
    uv_timer_start(&w->poll, on_poll, POLL_MS, POLL_MS);
    *out = w;
    return CM_OK;
}

void cm_webhook_free(cm_webhook *w)
{
    if (!w) return;
    w->closing = 1;
    for (int i = 0; i < IN_FLIGHT; i++) {
        attempt *a = w->running[i];
        if (!a) continue;
        curl_multi_remove_handle(w->multi, a->easy);
        attempt_free(a);
        w->running[i] = NULL;
        w->in_flight--;
    }
    curl_multi_cleanup(w->multi);
    curl_global_cleanup();
    uv_close((uv_handle_t *)&w->poll, on_timer_closed);
    uv_close((uv_handle_t *)&w->curl_timer, on_timer_closed);
}
