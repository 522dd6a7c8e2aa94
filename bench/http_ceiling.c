/* http_ceiling.c - the HTTP-only ceiling of costmeshd's heartbeat route.
 *
 * Same libmicrohttpd daemon settings as server/http.c (internal polling
 * thread + epoll + thread pool + suspend/resume allowed, same limits), same
 * body accumulation, and the project's own decoder (cm_codec_heartbeats).
 * It then answers 202 without touching any store. What costmeshd does on
 * top of this (key hash, loop-thread hand-off, PostgreSQL, Redis) is what
 * the benchmark's ratio to this ceiling measures.
 *
 *   http_ceiling PORT [handoff]
 *
 * With "handoff", each request is also suspended and resumed from another
 * thread through a mutex-protected queue, like costmeshd's bridge does, so
 * the cost of suspend/resume alone can be measured. Runs until SIGTERM or
 * SIGINT. Benchmark tool only: not part of costmeshd. */
#include "buf.h"
#include "codec.h"
#include "error.h"

#include <microhttpd.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BODY_MAX (1024 * 1024)

typedef struct req {
    struct MHD_Connection *conn;
    cm_buf body;
    int too_big;
    int suspended;
    _Atomic int done;
    size_t accepted;
    int status;
    struct req *next; /* hand-off queue */
} req;

static int handoff;
static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcond = PTHREAD_COND_INITIALIZER;
static req *qhead, *qtail;
static volatile sig_atomic_t stopping;

static void *resumer(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&qlock);
        while (!qhead && !stopping) pthread_cond_wait(&qcond, &qlock);
        req *r = qhead;
        qhead = qtail = NULL;
        pthread_mutex_unlock(&qlock);
        if (!r && stopping) return NULL;
        while (r) {
            req *next = r->next;
            atomic_store(&r->done, 1);
            MHD_resume_connection(r->conn);
            r = next;
        }
    }
}

static enum MHD_Result reply(req *r)
{
    char text[96];
    int n = r->status == 202 ? snprintf(text, sizeof text, "{\"accepted\":%zu,\"duplicates\":0}", r->accepted)
                             : snprintf(text, sizeof text, "{\"error\":{\"code\":\"invalid\"}}");
    struct MHD_Response *resp = MHD_create_response_from_buffer((size_t)n, text, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **req_cls)
{
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    req *r = *req_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->conn = conn;
        *req_cls = r;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > BODY_MAX) r->too_big = 1;
        return MHD_YES;
    }
    if (*upload_size) {
        /* The same capped body reading as costmeshd's http.c. */
        if (!r->too_big) {
            int rc = cm_buf_add_capped(&r->body, upload, *upload_size, BODY_MAX);
            if (rc == CM_ENOMEM) return MHD_NO;
            r->too_big = rc == CM_ETOOBIG;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->suspended) return atomic_load(&r->done) ? reply(r) : MHD_YES;
    cm_hb *hbs = NULL;
    size_t n = 0;
    cm_ignored ignored = {0};
    cm_apierr e;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (r->too_big) {
        r->status = 413;
    } else if (cm_codec_heartbeats(r->body.data ? r->body.data : "", r->body.len, (int64_t)ts.tv_sec, &hbs, &n, &ignored,
                                   &e) == 0) {
        r->status = 202;
        r->accepted = n;
    } else {
        r->status = e.status;
    }
    free(hbs);
    cm_buf_free(&ignored.listed);
    if (!handoff) return reply(r);
    MHD_suspend_connection(conn);
    r->suspended = 1;
    pthread_mutex_lock(&qlock);
    if (qtail) qtail->next = r;
    else qhead = r;
    qtail = r;
    pthread_cond_signal(&qcond);
    pthread_mutex_unlock(&qlock);
    return MHD_YES;
}

static void completed(void *cls, struct MHD_Connection *conn, void **req_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    req *r = *req_cls;
    if (!r) return;
    cm_buf_free(&r->body);
    free(r);
    *req_cls = NULL;
}

static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [handoff]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    handoff = argc > 2 && strcmp(argv[2], "handoff") == 0;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_handler = on_signal;
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    pthread_t th;
    if (handoff && pthread_create(&th, NULL, resumer, NULL) != 0) return 1;
    /* The options of server/http.c's cm_http_start, with its defaults. */
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
        (uint16_t)port, NULL, NULL, handler, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)2,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)512,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
        MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
        MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "http_ceiling: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    while (!stopping) pause();
    MHD_stop_daemon(d);
    if (handoff) {
        pthread_mutex_lock(&qlock);
        pthread_cond_signal(&qcond);
        pthread_mutex_unlock(&qlock);
        pthread_join(th, NULL);
    }
    return 0;
}
