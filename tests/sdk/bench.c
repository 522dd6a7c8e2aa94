/* tests/sdk/bench.c - `make bench-sdk`: cm_report() cost.
 *
 * Prints ns per cm_report() with 1 and 4 threads (per-call latency seen by
 * each thread, and the aggregate), and heap allocations per report in
 * steady state, counted by a malloc wrapper in the reporting threads only
 * (the SDK's sender thread allocates for HTTP, never per report). Targets:
 * < 200 ns single-threaded, < 1 us with 4 threads, 0 allocations. The
 * client points at a closed port: the sender keeps retrying its frozen
 * batch, reports coalesce into the active buffer, as in an outage; the
 * numbers are the same with a server (cm_report never touches the network).
 * Reports its figures only; asserts nothing about timing. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "costmesh.h"

/* ---- malloc counting (glibc: the real allocator is __libc_*) ---- */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static _Thread_local uint64_t allocs;

void *malloc(size_t n)
{
    allocs++;
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b)
{
    allocs++;
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n)
{
    allocs++;
    return __libc_realloc(p, n);
}
void free(void *p)
{
    __libc_free(p);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define NINTENTS 16

typedef struct {
    cm_client *c;
    long n;
    int tid;
    uint64_t allocs, errors;
    pthread_barrier_t *start;
} worker;

static void *run(void *arg)
{
    worker *w = arg;
    char ids[NINTENTS][32];
    for (int i = 0; i < NINTENTS; i++) snprintf(ids[i], sizeof ids[i], "intent-%02d-%d", i, w->tid % 2);
    cm_usage u = {.cost_usd = 0.001, .tokens_in = 1200, .tokens_out = 300, .llm_calls = 1};
    /* Warm-up: the intents exist in the buffer (steady state). */
    for (int i = 0; i < 1000; i++) {
        u.intent_id = ids[i % NINTENTS];
        cm_report(w->c, &u);
    }
    pthread_barrier_wait(w->start);
    uint64_t a0 = allocs, errors = 0;
    for (long i = 0; i < w->n; i++) {
        u.intent_id = ids[i % NINTENTS];
        if (cm_report(w->c, &u) != CM_OK) errors++;
    }
    w->allocs = allocs - a0;
    w->errors = errors;
    return NULL;
}

static int bench(int threads, long per_thread)
{
    cm_options o;
    cm_options_init(&o);
    o.url = "http://127.0.0.1:1";
    o.api_key = "bench";
    o.agent = "agent://bench/dev/sdk";
    o.flush_interval_ms = 100;
    o.close_timeout_ms = 0;
    cm_client *c;
    if (cm_client_new(&o, &c) != CM_OK) return 1;
    pthread_t th[8];
    worker w[8];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++) {
        w[i] = (worker){c, per_thread, i, 0, 0, &start};
        pthread_create(&th[i], NULL, run, &w[i]);
    }
    pthread_barrier_wait(&start);
    double t0 = now_s();
    uint64_t a = 0, errors = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        a += w[i].allocs;
        errors += w[i].errors;
    }
    double el = now_s() - t0;
    long total = per_thread * threads;
    printf("cm_report %d thread%s: %7.1f ns/op per thread, %6.1f ns/op aggregate, %.4f allocations/report, "
           "%llu errors (%ld reports, %.3f s)\n",
           threads, threads == 1 ? " " : "s", el * 1e9 / (double)per_thread, el * 1e9 / (double)total,
           (double)a / (double)total, (unsigned long long)errors, total, el);
    pthread_barrier_destroy(&start);
    cm_client_free(c);
    return errors ? 1 : 0;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 5000000;
    if (n < 1000) n = 1000;
    /* The counter must see the SDK's own allocations: a client's creation allocates. */
    uint64_t a0 = allocs;
    cm_options o;
    cm_options_init(&o);
    o.url = "http://127.0.0.1:1";
    o.api_key = "k";
    o.close_timeout_ms = 0;
    cm_client *c;
    if (cm_client_new(&o, &c) != CM_OK) return 1;
    uint64_t seen = allocs - a0;
    cm_client_free(c);
    if (seen == 0) {
        printf("malloc wrapper counts nothing: the allocation figures would be meaningless\n");
        return 1;
    }
    printf("costmesh SDK %s bench: %d intents per thread, steady state (malloc wrapper saw %llu allocations in "
           "cm_client_new)\n", cm_version(), NINTENTS, (unsigned long long)seen);
    int rc = bench(1, n);
    rc |= bench(4, n / 2);
    return rc;
}
