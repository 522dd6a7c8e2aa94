/* fsync_floor.c - the latency of one durable write on a folder's disk.
 *
 *   fsync_floor DIR RATE SECONDS
 *
 * Appends 8 KiB (a PostgreSQL WAL page) to a fresh file in DIR and
 * fdatasync()s it, RATE times a second for SECONDS, and prints one line
 * "RESULT n=… p50_us=… p90_us=… p99_us=… p999_us=… max_us=…
 * over2_pct=… over10_pct=…". The file is removed at the end.
 *
 * Every acknowledged heartbeat or intent waits for at least one such
 * flush (a PostgreSQL commit, or Redis's fsync under appendfsync always),
 * and flushes of one log are serial: a write that arrives while a flush
 * of L ms runs waits for its end, then for its own. overN_pct is the
 * share of the run's time at which a write arriving would wait more than
 * N ms for the flush under way alone: the sum over the flushes seen of
 * max(0, L - N), over the run's length. When the disk stalls like that,
 * requests sent on a schedule (bench/openloop.c) wait more than N ms at
 * least that often, whatever the design on top; the flushes the probe did
 * not see only add to it.
 * Benchmark tool only: not part of costmeshd. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAGE 8192
#define MAX_SAMPLES 1000000L

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t pct(const int64_t *v, long n, double p)
{
    long i = (long)(p / 100.0 * (double)n + 0.999999) - 1;
    return v[i < 0 ? 0 : i];
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: fsync_floor DIR RATE SECONDS\n");
        return 2;
    }
    long rate = atol(argv[2]), secs = atol(argv[3]);
    if (rate <= 0 || rate > 10000 || secs <= 0 || rate * secs > MAX_SAMPLES) {
        fprintf(stderr, "fsync_floor: RATE in 1..10000, RATE x SECONDS <= %ld\n", MAX_SAMPLES);
        return 2;
    }
    char path[4096];
    if (snprintf(path, sizeof path, "%s/fsync_floor.%ld", argv[1], (long)getpid()) >= (int)sizeof path) {
        fprintf(stderr, "fsync_floor: DIR too long\n");
        return 2;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND, 0600);
    if (fd < 0) {
        fprintf(stderr, "fsync_floor: %s: %s\n", path, strerror(errno));
        return 1;
    }
    static char page[PAGE];
    memset(page, 'x', sizeof page);
    long n = rate * secs, done = 0;
    int64_t *lat = malloc((size_t)n * sizeof *lat);
    if (!lat) {
        perror("fsync_floor");
        return 1;
    }
    int rc = 0;
    int64_t start = now_ns(), period = 1000000000L / rate, over2 = 0, over10 = 0;
    for (; done < n; done++) {
        /* Paced, not back to back: the disk's latency at a modest load,
         * as a group commit flushes once per group. */
        int64_t due = start + done * period, t = now_ns();
        if (due > t) {
            struct timespec ts = {.tv_sec = (due - t) / 1000000000L, .tv_nsec = (due - t) % 1000000000L};
            nanosleep(&ts, NULL);
        }
        t = now_ns();
        if (write(fd, page, sizeof page) != (ssize_t)sizeof page || fdatasync(fd) != 0) {
            fprintf(stderr, "fsync_floor: %s: %s\n", path, strerror(errno));
            rc = 1;
            break;
        }
        lat[done] = (now_ns() - t) / 1000;
        if (lat[done] > 2000) over2 += lat[done] - 2000;
        if (lat[done] > 10000) over10 += lat[done] - 10000;
    }
    double run_us = (double)(now_ns() - start) / 1000.0;
    close(fd);
    unlink(path);
    if (rc || done == 0) return 1;
    qsort(lat, (size_t)done, sizeof *lat, cmp_i64);
    printf("RESULT n=%ld p50_us=%lld p90_us=%lld p99_us=%lld p999_us=%lld max_us=%lld over2_pct=%.2f over10_pct=%.2f\n",
           done, (long long)pct(lat, done, 50), (long long)pct(lat, done, 90), (long long)pct(lat, done, 99),
           (long long)pct(lat, done, 99.9), (long long)lat[done - 1], 100.0 * (double)over2 / run_us,
           100.0 * (double)over10 / run_us);
    free(lat);
    return 0;
}
