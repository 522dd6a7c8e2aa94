/* money.c - JSON number text <-> int64 nano-dollars, by digit arithmetic.
 *
 * A double cannot hold 0.1 exactly, and summing 2000 of them drifts; budgets
 * must add up to the cent, so every step here works on decimal digits. */
#include "money.h"

#include "error.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

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

/* cm_money_parse, telling whether rounding dropped a non-zero digit. */
static int parse(const char *text, size_t len, int64_t *out, bool *inexact)
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
    *inexact = false;
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
        *inexact = r != 0 || sticky;
    } else if (m < 0) {
        *inexact = true; /* below a tenth of a nano, rounds to 0 */
    }

    if (v > CM_MONEY_MAX || (neg && v != 0))
        return CM_ERANGE;
    *out = v;
    return CM_OK;
}

int cm_money_parse(const char *text, size_t len, int64_t *out)
{
    bool inexact;
    return parse(text, len, out, &inexact);
}

int cm_money_parse_exact(const char *text, size_t len, int64_t *out)
{
    bool inexact;
    int rc = parse(text, len, out, &inexact);
    return rc == CM_OK && inexact ? CM_EINVAL : rc;
}

size_t cm_money_format_text(const char *nanos, char *buf, size_t bufsz)
{
    bool neg;
    const char *d;
    size_t n, ilen, lead, flen, len, pos = 0;

    if (nanos == NULL || buf == NULL)
        return 0;
    neg = nanos[0] == '-';
    d = nanos + neg;
    n = strspn(d, "0123456789");
    if (n == 0 || d[n] != '\0')
        return 0;
    while (n > 1 && d[0] == '0') {
        d++;
        n--;
    }
    neg = neg && d[0] != '0'; /* "-0" is 0 */
    /* The last 9 digits are the fraction (zero-padded on the left when
     * there are fewer), the rest the dollars; the fraction is printed
     * without its trailing zeros. */
    ilen = n > 9 ? n - 9 : 0;
    lead = 9 - (n - ilen);
    flen = n - ilen;
    while (flen > 0 && d[ilen + flen - 1] == '0')
        flen--;
    len = (size_t)neg + (ilen ? ilen : 1) + (flen ? 1 + lead + flen : 0);
    if (len >= bufsz)
        return 0;
    if (neg)
        buf[pos++] = '-';
    if (ilen == 0)
        buf[pos++] = '0';
    memcpy(buf + pos, d, ilen);
    pos += ilen;
    if (flen) {
        buf[pos++] = '.';
        memset(buf + pos, '0', lead);
        pos += lead;
        memcpy(buf + pos, d + ilen, flen);
        pos += flen;
    }
    buf[pos] = '\0';
    return len;
}

size_t cm_money_format(int64_t nanos, char *buf, size_t bufsz)
{
    char text[CM_MONEY_BUFSZ];

    if (buf == NULL || bufsz < CM_MONEY_BUFSZ)
        return 0;
    snprintf(text, sizeof text, "%lld", (long long)nanos);
    return cm_money_format_text(text, buf, bufsz);
}
