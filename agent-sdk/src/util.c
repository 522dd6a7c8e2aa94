/* util.c - ids, backoff, randomness, hashing, error names. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

CM_API const char *cm_version(void)
{
    return CM_VERSION_STRING;
}

CM_API const char *cm_strerror(int rc)
{
    switch (rc) {
    case CM_OK: return "success";
    case CM_EINVAL: return "invalid argument";
    case CM_ENOMEM: return "out of memory";
    case CM_EFULL: return "buffer full: too many distinct intents waiting to be sent";
    case CM_ERANGE: return "value out of range";
    case CM_ETIMEDOUT: return "timed out (the data is kept and still sent)";
    case CM_ENETWORK: return "no answer from the server";
    case CM_EBUDGET: return "a cost policy blocks new intents";
    case CM_EKILLED: return "the agent is killed";
    case CM_EAUTH: return "the API key may not do this";
    case CM_EHTTP: return "unexpected HTTP status";
    case CM_EPROTO: return "unreadable reply from the server";
    case CM_ETHREAD: return "could not start a thread";
    case CM_ESHUTDOWN: return "the client is shutting down";
    case CM_EREJECTED: return "the server rejected a batch as invalid";
    default: return "unknown error";
    }
}

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static bool read_random(unsigned char *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(p + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        got += (size_t)r;
    }
    if (got == n) return true;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    return got == n;
}

void cm__id_prefix(char out[CM__ID_PREFIX_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char r[CM__ID_PREFIX_LEN / 2];
    if (!read_random(r, sizeof r)) {
        /* Last resort: time, pid and an address, mixed. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t s = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
        s ^= (uint64_t)getpid() << 32;
        s ^= (uint64_t)(uintptr_t)&r;
        for (size_t i = 0; i < sizeof r; i++) {
            s = mix64(s);
            r[i] = (unsigned char)s;
        }
    }
    for (size_t i = 0; i < sizeof r; i++) {
        out[2 * i] = hex[r[i] >> 4];
        out[2 * i + 1] = hex[r[i] & 15];
    }
    out[CM__ID_PREFIX_LEN] = 0;
}

size_t cm__id_format(const char *prefix, uint64_t counter, char *out, size_t outsz)
{
    static const char hex[] = "0123456789abcdef";
    size_t pl = strlen(prefix);
    if (outsz < pl + 3 + 1 + 16 + 1) {
        if (outsz) out[0] = 0;
        return 0;
    }
    size_t n = 0;
    out[n++] = 'c';
    out[n++] = 'm';
    out[n++] = '-';
    memcpy(out + n, prefix, pl);
    n += pl;
    out[n++] = '-';
    char tmp[16];
    size_t k = 0;
    do {
        tmp[k++] = hex[counter & 15];
        counter >>= 4;
    } while (counter);
    while (k) out[n++] = tmp[--k];
    out[n] = 0;
    return n;
}

int64_t cm__backoff_ms(int attempt, int initial_ms, int max_ms, int64_t retry_after_ms, uint32_t rnd)
{
    if (initial_ms < 1) initial_ms = 1;
    if (max_ms < initial_ms) max_ms = initial_ms;
    if (attempt < 1) attempt = 1;
    int64_t d = initial_ms;
    for (int i = 1; i < attempt && d < max_ms; i++) d *= 2;
    if (d > max_ms) d = max_ms;
    int64_t half = d / 2;
    d = half + (int64_t)(rnd % (uint64_t)(d - half + 1));
    if (retry_after_ms > 0) {
        if (retry_after_ms > 3600000) retry_after_ms = 3600000;
        if (d < retry_after_ms) d = retry_after_ms;
    }
    return d;
}

uint32_t cm__rand_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return (uint32_t)((x * 0x2545f4914f6cdd1dULL) >> 32);
}

int64_t cm__parse_retry_after(const char *v, size_t n)
{
    while (n && (*v == ' ' || *v == '\t')) v++, n--;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r' || v[n - 1] == '\n')) n--;
    if (n == 0 || n > 9) return -1;
    int64_t s = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        s = s * 10 + (v[i] - '0');
    }
    return s;
}

uint32_t cm__hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

bool cm__utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c == 0) return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned min;
        if (c >= 0xc2 && c <= 0xdf) len = 2, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef) len = 3, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4) len = 4, min = 0x10000;
        else return false;
        if (i + len > n) return false;
        unsigned cp = c & (0xff >> (len + 1));
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += len;
    }
    return true;
}

int64_t cm__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
