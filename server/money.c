/* money.c - JSON number text <-> int64 nano-dollars, by digit arithmetic.
 *
 * A double cannot hold 0.1 exactly, and summing 2000 of them drifts; budgets
 * must add up to the cent, so every step here works on decimal digits. */
#include "money.h"

#include "error.h"

#include <stdbool.h>

/* Clamp for the written exponent. Far beyond any digit count a request body
 * can carry, so clamping never changes the outcome, and small enough that
 * the int64 arithmetic below cannot overflow. */
#define EXP_CLAMP 1000000000000LL

/* Digits of the mantissa seen as one sequence: the integer part followed by
 * the fraction, without copying (the input may be long and we do not
 * allocate). */
typedef struct {
    const char *ip; size_t ilen;
    const char *fp; size_t flen;
} digits;

static int digit_at(const digits *d, size_t k)
{
    if (k < d->ilen)
        return d->ip[k] - '0';
    return d->fp[k - d->ilen] - '0';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Splits `text` along the RFC 8259 number grammar. The exponent saturates at
 * EXP_CLAMP. Returns false when the text is not a JSON number. */
static bool scan(const char *text, size_t len, bool *neg, digits *d, int64_t *exp)
{
    size_t i = 0;

    *neg = false;
    *exp = 0;
    if (i < len && text[i] == '-') {
        *neg = true;
        i++;
    }
    d->ip = text + i;
    if (i >= len || !is_digit(text[i]))
        return false;
    if (text[i] == '0') {
        i++;
    } else {
        while (i < len && is_digit(text[i]))
            i++;
    }
    d->ilen = (size_t)(text + i - d->ip);

    d->fp = text + i;
    d->flen = 0;
    if (i < len && text[i] == '.') {
        i++;
        d->fp = text + i;
        while (i < len && is_digit(text[i]))
            i++;
        d->flen = (size_t)(text + i - d->fp);
        if (d->flen == 0)
            return false;
    }

    if (i < len && (text[i] == 'e' || text[i] == 'E')) {
        bool eneg = false;
        size_t start;
        int64_t e = 0;

        i++;
        if (i < len && (text[i] == '+' || text[i] == '-')) {
            eneg = text[i] == '-';
            i++;
        }
        start = i;
        while (i < len && is_digit(text[i])) {
            if (e < EXP_CLAMP)
                e = e * 10 + (text[i] - '0');
            i++;
        }
        if (i == start)
            return false;
        if (e > EXP_CLAMP)
            e = EXP_CLAMP;
        *exp = eneg ? -e : e;
    }
    return i == len;
}

int cm_money_parse(const char *text, size_t len, int64_t *out)
{
    bool neg;
    digits d;
    int64_t exp, shift, m, n, total;
    size_t lead;
    int64_t v = 0;

    if (text == NULL || out == NULL || !scan(text, len, &neg, &d, &exp))
        return CM_EINVAL;
    /* A digit sequence longer than the clamp would let a clamped exponent
     * change the result; no body we accept comes near a terabyte, so such
     * text is refused rather than misread. */
    if (len > (size_t)EXP_CLAMP)
        return CM_EINVAL;

    total = (int64_t)(d.ilen + d.flen);
    lead = 0;
    while ((int64_t)lead < total && digit_at(&d, lead) == 0)
        lead++;
    if ((int64_t)lead == total) {
        *out = 0;
        return CM_OK;
    }

    /* Significant digits s[0..n) with value s * 10^shift nanos; the first m
     * of them (zero-padded past n) are the integer nanos. */
    n = total - (int64_t)lead;
    shift = exp - (int64_t)d.flen + 9;
    m = n + shift;
    /* CM_MONEY_MAX has 16 digits; 17 or more is over it whatever they are. */
    if (m > 16)
        return CM_ERANGE;

    for (int64_t k = 0; k < m; k++)
        v = v * 10 + (k < n ? digit_at(&d, lead + (size_t)k) : 0);

    if (m >= 0 && m < n) {
        int r = digit_at(&d, lead + (size_t)m);
        bool sticky = false;

        for (int64_t k = m + 1; k < n && !sticky; k++)
            sticky = digit_at(&d, lead + (size_t)k) != 0;
        if (r > 5 || (r == 5 && (sticky || (v & 1))))
            v++;
    }
    /* m < 0: below a tenth of a nano, rounds to 0. */

    if (v > CM_MONEY_MAX || (neg && v != 0))
        return CM_ERANGE;
    *out = v;
    return CM_OK;
}

size_t cm_money_format(int64_t nanos, char *buf, size_t bufsz)
{
    char tmp[CM_MONEY_BUFSZ];
    size_t pos = sizeof tmp;
    size_t len;
    uint64_t mag, ip;
    uint32_t frac;
    bool neg = nanos < 0;

    if (buf == NULL || bufsz < CM_MONEY_BUFSZ)
        return 0;
    /* Negate in unsigned so INT64_MIN does not overflow. */
    mag = neg ? 0 - (uint64_t)nanos : (uint64_t)nanos;
    ip = mag / (uint64_t)CM_NANOS_PER_USD;
    frac = (uint32_t)(mag % (uint64_t)CM_NANOS_PER_USD);

    /* Build right to left: fraction without trailing zeros, then integer. */
    tmp[--pos] = '\0';
    if (frac != 0) {
        int width = 9;

        while (frac % 10 == 0) {
            frac /= 10;
            width--;
        }
        while (width-- > 0) {
            tmp[--pos] = (char)('0' + frac % 10);
            frac /= 10;
        }
        tmp[--pos] = '.';
    }
    do {
        tmp[--pos] = (char)('0' + ip % 10);
        ip /= 10;
    } while (ip != 0);
    if (neg)
        tmp[--pos] = '-';

    len = sizeof tmp - pos - 1;
    for (size_t i = 0; i <= len; i++)
        buf[i] = tmp[pos + i];
    return len;
}
