#include "buf.h"
#include "error.h"
#include "money.h"
#include "timeutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cm_buf_init(cm_buf *b)
{
    memset(b, 0, sizeof *b);
}

void cm_buf_free(cm_buf *b)
{
    free(b->data);
    cm_buf_init(b);
}

static int reserve(cm_buf *b, size_t extra)
{
    if (b->failed) return -1;
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->failed = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void cm_buf_add(cm_buf *b, const char *s, size_t n)
{
    if (reserve(b, n) < 0) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

int cm_buf_add_capped(cm_buf *b, const char *s, size_t n, size_t max)
{
    if (b->len + n > max) {
        b->failed = 1;
        return CM_ETOOBIG;
    }
    cm_buf_add(b, s, n);
    return b->failed ? CM_ENOMEM : CM_OK;
}

void cm_buf_adds(cm_buf *b, const char *s)
{
    cm_buf_add(b, s, strlen(s));
}

void cm_buf_addf(cm_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if ((size_t)n < sizeof tmp) {
        cm_buf_add(b, tmp, (size_t)n);
        return;
    }
    if (reserve(b, (size_t)n) < 0) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Length of the well-formed UTF-8 sequence at p (1..4), or 0 when the
 * bytes there are not one (overlong, surrogate, past U+10FFFF, cut). */
static size_t utf8_seq(const unsigned char *p)
{
    unsigned char c = p[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07;
    else return 0;
    for (size_t k = 1; k < len; k++) {
        if ((p[k] & 0xC0) != 0x80) return 0; /* also stops at the NUL */
        cp = (cp << 6) | (p[k] & 0x3F);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

size_t cm_utf8_valid_prefix(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t k = (unsigned char)s[i] < 0x80 ? 1 : 0;
        if (!k) {
            /* utf8_seq reads at most 4 bytes and stops at a continuation
             * mismatch; copy so it never reads past n. */
            unsigned char tmp[5] = {0};
            memcpy(tmp, s + i, n - i < 4 ? n - i : 4);
            k = utf8_seq(tmp);
            if (!k || i + k > n) break;
        }
        i += k;
    }
    return i;
}

void cm_buf_add_jstr(cm_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    cm_buf_add(b, "\"", 1);
    const char *run = s;
    for (const char *p = s; *p;) {
        unsigned char c = (unsigned char)*p;
        if (c >= 0x80) {
            size_t k = utf8_seq((const unsigned char *)p);
            if (k) {
                p += k;
                continue;
            }
            /* Not UTF-8: the reply stays valid JSON with U+FFFD instead. */
            cm_buf_add(b, run, (size_t)(p - run));
            cm_buf_adds(b, "\\ufffd");
            run = ++p;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\') {
            p++;
            continue;
        }
        cm_buf_add(b, run, (size_t)(p - run));
        run = p + 1;
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        if (c == '"' || c == '\\') {
            esc[1] = (char)c;
            cm_buf_add(b, esc, 2);
        } else {
            cm_buf_add(b, esc, 6);
        }
        p++;
    }
    cm_buf_adds(b, run);
    cm_buf_add(b, "\"", 1);
}

size_t cm_int_text(int64_t v, char out[CM_INT_TEXT_MAX])
{
    char rev[CM_INT_TEXT_MAX];
    /* The magnitude as unsigned: -INT64_MIN does not fit an int64. */
    uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    size_t n = 0, len = 0;
    do {
        rev[n++] = (char)('0' + m % 10);
        m /= 10;
    } while (m);
    if (v < 0) out[len++] = '-';
    while (n) out[len++] = rev[--n];
    out[len] = '\0';
    return len;
}

void cm_buf_add_int(cm_buf *b, int64_t v)
{
    char tmp[CM_INT_TEXT_MAX];
    cm_buf_add(b, tmp, cm_int_text(v, tmp));
}

void cm_buf_add_money(cm_buf *b, int64_t nanos)
{
    char tmp[CM_MONEY_BUFSZ];
    size_t n = cm_money_format(nanos, tmp, sizeof tmp);
    cm_buf_add(b, tmp, n);
}

void cm_buf_add_money_text(cm_buf *b, const char *nanos)
{
    /* Room for 61 digits: a numeric sum of bigints has at most 19 plus the
     * digits of its row count. */
    char tmp[64];
    size_t n = cm_money_format_text(nanos, tmp, sizeof tmp);
    if (n == 0) b->failed = 1;
    else cm_buf_add(b, tmp, n);
}

void cm_buf_add_jtime(cm_buf *b, int64_t t)
{
    char tmp[CM_TIME_BUFSZ];
    size_t n = cm_time_format(t, tmp, sizeof tmp);
    cm_buf_add(b, "\"", 1);
    cm_buf_add(b, tmp, n);
    cm_buf_add(b, "\"", 1);
}

void cm_buf_add_error_member(cm_buf *b, const char *code, const char *message, const char *field)
{
    cm_buf_adds(b, "\"error\":{\"code\":");
    cm_buf_add_jstr(b, code);
    cm_buf_adds(b, ",\"message\":");
    cm_buf_add_jstr(b, message);
    if (field && *field) {
        cm_buf_adds(b, ",\"field\":");
        cm_buf_add_jstr(b, field);
    }
    cm_buf_adds(b, "}");
}

void cm_buf_add_error(cm_buf *b, const char *code, const char *message, const char *field)
{
    cm_buf_adds(b, "{");
    cm_buf_add_error_member(b, code, message, field);
    cm_buf_adds(b, "}");
}

char *cm_buf_take(cm_buf *b, size_t *len)
{
    if (b->failed) {
        cm_buf_free(b);
        return NULL;
    }
    if (!b->data && reserve(b, 0) < 0) return NULL;
    if (b->len == 0) b->data[0] = '\0';
    char *out = b->data;
    if (len) *len = b->len;
    cm_buf_init(b);
    return out;
}

void cm_buf_add_pg_text(cm_buf *b, const char *s)
{
    if (!*s) {
        cm_buf_adds(b, "NULL");
        return;
    }
    cm_buf_add(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\') cm_buf_add(b, "\\", 1);
        cm_buf_add(b, p, 1);
    }
    cm_buf_add(b, "\"", 1);
}
