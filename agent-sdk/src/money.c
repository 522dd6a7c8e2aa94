/* money.c - nano-dollar conversions. Money never goes through printf: it is
 * an int64 of nano-dollars from the moment cm_report() sees it. */
#include <math.h>
#include <string.h>

#include "internal.h"

int cm__money_from_double(double usd, int64_t *nanos)
{
    if (!isfinite(usd) || usd < 0) return CM_EINVAL; /* -0.0 < 0 is false: -0.0 is 0 */
    if (usd > CM_COST_MAX_USD) return CM_ERANGE;
    /* usd <= 1e6, so usd * 1e9 <= 1e15 < 2^53: llround cannot overflow. */
    long long v = llround(usd * 1e9);
    if (v < 0) v = 0;
    if (v > CM__MONEY_MAX) return CM_ERANGE;
    *nanos = (int64_t)v;
    return CM_OK;
}

size_t cm__u64_format(uint64_t v, char *buf)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    buf[n] = 0;
    return n;
}

size_t cm__money_format(int64_t nanos, char *buf)
{
    if (nanos < 0) nanos = 0; /* never happens: every path validates >= 0 */
    uint64_t whole = (uint64_t)nanos / (uint64_t)CM__NANOS_PER_USD;
    uint64_t frac = (uint64_t)nanos % (uint64_t)CM__NANOS_PER_USD;
    size_t n = cm__u64_format(whole, buf);
    if (frac) {
        char f[9];
        for (int i = 8; i >= 0; i--) {
            f[i] = (char)('0' + frac % 10);
            frac /= 10;
        }
        int last = 8;
        while (f[last] == '0') last--;
        buf[n++] = '.';
        memcpy(buf + n, f, (size_t)last + 1);
        n += (size_t)last + 1;
        buf[n] = 0;
    }
    return n;
}

int cm__money_parse(const char *s, size_t n, int64_t *nanos)
{
    size_t i = 0;
    bool neg = false;
    if (i < n && s[i] == '-') {
        neg = true;
        i++;
    }
    if (i >= n || s[i] < '0' || s[i] > '9') return CM_EINVAL;
    uint64_t whole = 0;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        if (whole > (uint64_t)INT64_MAX / 10) return CM_ERANGE;
        whole = whole * 10 + (uint64_t)(s[i] - '0');
    }
    uint64_t frac = 0;
    int digits = 0, round_digit = -1;
    bool sticky = false;
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || s[i] < '0' || s[i] > '9') return CM_EINVAL;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            if (digits < 9) {
                frac = frac * 10 + (uint64_t)(s[i] - '0');
                digits++;
            } else if (round_digit < 0) {
                round_digit = s[i] - '0';
            } else if (s[i] != '0') {
                sticky = true;
            }
        }
    }
    if (i != n) return CM_EINVAL;
    for (; digits < 9; digits++) frac *= 10;
    if (whole > (uint64_t)(INT64_MAX / CM__NANOS_PER_USD)) return CM_ERANGE;
    uint64_t v = whole * (uint64_t)CM__NANOS_PER_USD + frac;
    /* Half-even at the 9th decimal. */
    if (round_digit > 5 || (round_digit == 5 && (sticky || (v & 1)))) v++;
    if (v > (uint64_t)INT64_MAX) return CM_ERANGE;
    *nanos = neg ? -(int64_t)v : (int64_t)v;
    return CM_OK;
}
