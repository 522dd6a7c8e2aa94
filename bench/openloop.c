/* openloop.c - an open-loop HTTP/1.1 load for costmeshd's heartbeat route.
 *
 *   openloop PORT KEY NONCE AGENTS RATE CONNS SECONDS
 *
 * Request i is due at start + i/RATE seconds, whatever the answers so far.
 * A due request goes out on the first idle one of CONNS keep-alive
 * connections to 127.0.0.1:PORT; when all are busy it waits, and its latency
 * still counts from its due time. That is the point of it: wrk's paced runs
 * are closed loops, where a stall delays the next requests' sending and so
 * hides them (coordinated omission); here a stall shows in the percentiles.
 *
 * Each request is one heartbeat, the body bench/load.lua sends in "single"
 * mode (agent picked at random among AGENTS, id unique by NONCE and
 * sequence), with the admin key in x-api-key. RATE x SECONDS requests are
 * scheduled; after SECONDS, the late ones get DRAIN_S more to finish, then
 * whatever is unsent or unanswered counts as err_timeout.
 *
 * Prints one line "RESULT key=value ..." with the keys of load.lua's done(),
 * so bench/run.sh records it like a wrk run; latencies in microseconds.
 * Benchmark tool only: not part of costmeshd. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/times.h>
#include <time.h>
#include <unistd.h>

#define DRAIN_S 10
#define MAX_CONNS 1024
#define MAX_REQUESTS 20000000L /* bounds the latency array (80 MB) */
#define RECONNECT_NS 100000000L /* a refused connection is retried after 100 ms */
#define NS 1000000000L

enum state { CLOSED, CONNECTING, IDLE, BUSY };

typedef struct conn {
    int fd;
    enum state st;
    int64_t retry_at;
    int64_t due; /* due time of the request in flight */
    char out[1024];
    size_t out_len, out_off;
    char in[4096];
    size_t in_len;
} conn;

static conn conns[MAX_CONNS];
static int nconns, port, agents;
static long rate;
static const char *key, *nonce;
static int ep;
static uint32_t *lat_us;
static long done, non2xx, err_connect, err_read, err_write, inflight;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static void open_conn(conn *c, int64_t now)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        perror("openloop: socket");
        exit(1);
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->in_len = 0;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        c->st = CLOSED;
        c->retry_at = now + RECONNECT_NS;
        err_connect++;
        return;
    }
    /* Readable or hung up means the connect finished; writable too, so wait
     * for EPOLLOUT once, then only for input. */
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    c->st = CONNECTING;
}

/* Drops the connection; its request in flight, if any, is an error of kind
 * *counter. It is reopened on the next turn of the loop. */
static void fail(conn *c, long *counter, int64_t now)
{
    if (c->st == BUSY) inflight--;
    (*counter)++;
    close(c->fd);
    c->fd = -1;
    c->st = CLOSED;
    c->retry_at = now;
}

static void want(conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void flush_out(conn *c, int64_t now)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) {
                want(c, EPOLLIN | EPOLLOUT);
                return;
            }
            fail(c, &err_write, now);
            return;
        }
        c->out_off += (size_t)n;
    }
    want(c, EPOLLIN);
}

static void send_request(conn *c, long seq, int64_t due, int64_t now)
{
    char body[320];
    int a = rand() % agents;
    int blen = snprintf(body, sizeof body,
                        "{\"agent\":\"agent://default/bench/a%d\",\"id\":\"%s-0-%ld\",\"intent_id\":\"int_a%d\","
                        "\"metrics\":{\"cost_usd\":0.003,\"tokens_in\":2100,\"tokens_out\":850,\"llm_calls\":4}}",
                        a, nonce, seq, a);
    int n = snprintf(c->out, sizeof c->out,
                     "POST /v1/mesh/heartbeat HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nx-api-key: %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                     port, key, blen, body);
    if (blen >= (int)sizeof body || n >= (int)sizeof c->out) {
        fprintf(stderr, "openloop: key or nonce too long\n");
        exit(2);
    }
    c->out_len = (size_t)n;
    c->out_off = 0;
    c->due = due;
    c->st = BUSY;
    inflight++;
    flush_out(c, now);
}

/* Reads what has arrived; on a whole response (headers and Content-Length
 * bytes of body: libmicrohttpd answers our routes with a length), records
 * its latency from the due time. */
static void read_in(conn *c, int64_t now)
{
    for (;;) {
        if (c->in_len == sizeof c->in - 1) {
            fail(c, &err_read, now);
            return;
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, sizeof c->in - 1 - c->in_len, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
            fail(c, &err_read, now);
            return;
        }
        if (n < 0) return;
        c->in_len += (size_t)n;
        c->in[c->in_len] = '\0';
        char *end = strstr(c->in, "\r\n\r\n");
        if (!end) continue;
        if (c->st != BUSY) { /* an answer to nothing */
            fail(c, &err_read, now);
            return;
        }
        *end = '\0';
        const char *cl = strcasestr(c->in, "\r\nContent-Length:");
        int status = 0;
        if (!cl || sscanf(c->in, "HTTP/1.%*d %d", &status) != 1) {
            fail(c, &err_read, now);
            return;
        }
        size_t need = (size_t)(end + 4 - c->in) + strtoul(cl + 17, NULL, 10);
        *end = '\r';
        if (c->in_len < need) continue;
        if (c->in_len > need) { /* we never pipeline */
            fail(c, &err_read, now);
            return;
        }
        int64_t us = (now - c->due) / 1000;
        lat_us[done++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
        if (status < 200 || status > 299) non2xx++;
        c->in_len = 0;
        c->st = IDLE;
        inflight--;
        return;
    }
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static uint32_t pct(double p)
{
    if (!done) return 0;
    long i = (long)(p / 100.0 * (double)done + 0.999999) - 1;
    return lat_us[i < 0 ? 0 : i];
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: openloop PORT KEY NONCE AGENTS RATE CONNS SECONDS\n");
        return 2;
    }
    port = atoi(argv[1]);
    key = argv[2];
    nonce = argv[3];
    agents = atoi(argv[4]);
    rate = atol(argv[5]);
    nconns = atoi(argv[6]);
    long secs = atol(argv[7]);
    if (port <= 0 || port > 65535 || agents <= 0 || rate <= 0 || rate > 1000000 || nconns <= 0 ||
        nconns > MAX_CONNS || secs <= 0 || secs > 3600 || rate * secs > MAX_REQUESTS) {
        fprintf(stderr, "openloop: argument out of range (rate x seconds <= %ld, conns <= %d)\n", MAX_REQUESTS,
                MAX_CONNS);
        return 2;
    }
    long total = rate * secs;
    lat_us = malloc((size_t)total * sizeof *lat_us);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!lat_us || ep < 0) {
        perror("openloop");
        return 1;
    }
    srand((unsigned)getpid());

    int64_t start = now_ns();
    for (int i = 0; i < nconns; i++) open_conn(&conns[i], start);
    /* The schedule starts once the connections had a moment to open, so
     * the first requests are not late by the handshakes. */
    start += NS / 10;
    int64_t deadline = start + secs * NS + DRAIN_S * NS, now = start;
    long sent = 0, backlog_max = 0;
    struct epoll_event evs[64];

    while ((sent < total || inflight) && now < deadline) {
        now = now_ns();
        long due = now < start ? 0 : (now - start) * rate / NS + 1;
        if (due > total) due = total;
        int idle = 0;
        for (int i = 0; i < nconns; i++) {
            conn *c = &conns[i];
            if (c->st == CLOSED && now >= c->retry_at) open_conn(c, now);
            if (c->st == IDLE && sent < due) send_request(c, sent, start + sent * NS / rate, now), sent++;
            idle += c->st == IDLE;
        }
        if (due - sent > backlog_max) backlog_max = due - sent;
        /* Sleep until the next request is due, unless it would have no
         * connection to go on (then an answer wakes us); the cap keeps the
         * reconnect timers and the deadline looked at. */
        int64_t wait = NS / 100;
        if (sent < total && idle) {
            int64_t next = start + sent * NS / rate - now;
            if (next < wait) wait = next < 0 ? 0 : next;
        }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = wait};
        int n = epoll_pwait2(ep, evs, 64, &ts, NULL);
        if (n < 0 && errno != EINTR) {
            perror("openloop: epoll_pwait2");
            return 1;
        }
        now = now_ns();
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (c->st == CONNECTING) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err || (evs[i].events & (EPOLLERR | EPOLLHUP))) {
                    fail(c, &err_connect, now);
                    c->retry_at = now + RECONNECT_NS;
                    continue;
                }
                c->st = IDLE;
                want(c, EPOLLIN);
                continue;
            }
            if (c->st == CLOSED) continue; /* failed earlier in this batch */
            if (evs[i].events & EPOLLOUT) flush_out(c, now);
            if (c->st != CLOSED && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) read_in(c, now);
        }
    }

    qsort(lat_us, (size_t)done, sizeof *lat_us, cmp_u32);
    double mean = 0;
    for (long i = 0; i < done; i++) mean += lat_us[i];
    if (done) mean /= (double)done;
    struct tms t;
    times(&t);
    int64_t dur = now - start;
    printf("RESULT requests=%ld duration_us=%lld p50_us=%u p90_us=%u p99_us=%u p999_us=%u mean_us=%.0f max_us=%u "
           "non2xx=%ld err_connect=%ld err_read=%ld err_write=%ld err_timeout=%ld wrk_ticks=%ld target_rate=%ld "
           "achieved_rate=%.0f backlog_max=%ld\n",
           done, (long long)(dur / 1000), pct(50), pct(90), pct(99), pct(99.9), mean, done ? lat_us[done - 1] : 0,
           non2xx, err_connect, err_read, err_write, total - sent + inflight, (long)(t.tms_utime + t.tms_stime),
           rate, dur > 0 ? (double)done * NS / (double)dur : 0.0, backlog_max);
    return 0;
}
