/* buf.h - growable byte buffer with JSON text writers.
 *
 * An allocation failure is sticky: later appends are no-ops and
 * cm_buf_take() returns NULL, so callers check once at the end. */
#ifndef CM_BUF_H
#define CM_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *data; /* owned; NUL-terminated when len > 0 */
    size_t len;
    size_t cap;
    int failed;
} cm_buf;

/* Empties b; an all-zero cm_buf (a calloc'd struct's) is empty too. */
void cm_buf_init(cm_buf *b);
/* Frees the data; the buffer may be reused after cm_buf_init. */
void cm_buf_free(cm_buf *b);
void cm_buf_add(cm_buf *b, const char *s, size_t n);
void cm_buf_adds(cm_buf *b, const char *s);
/* Appends unless b would grow past max bytes: then returns CM_ETOOBIG and
 * the buffer is spent (as after an allocation failure, CM_ENOMEM). For
 * request bodies, which are read to the end even when refused. */
int cm_buf_add_capped(cm_buf *b, const char *s, size_t n, size_t max);
void cm_buf_addf(cm_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* v in decimal, as "%lld" writes it, without printf's machinery: the
 * statements' column arrays and the queue's arguments write one per
 * number per heartbeat. cm_int_text writes it and its NUL into out and
 * answers its length. */
enum { CM_INT_TEXT_MAX = 21 }; /* "-9223372036854775808" and its NUL */
size_t cm_int_text(int64_t v, char out[CM_INT_TEXT_MAX]);
void cm_buf_add_int(cm_buf *b, int64_t v);
/* JSON string literal, quoted, escaping '"', '\\' and control bytes;
 * bytes that are not well-formed UTF-8 become U+FFFD, so a reply that
 * echoes hostile input is still valid JSON. */
void cm_buf_add_jstr(cm_buf *b, const char *s);
/* Bytes of s[0..n) that form well-formed UTF-8 from the start: n when all
 * of it is valid. */
size_t cm_utf8_valid_prefix(const char *s, size_t n);
/* Exact money as a JSON number. */
void cm_buf_add_money(cm_buf *b, int64_t nanos);
/* The same from nano-dollars as decimal text (a numeric sum, which may be
 * past int64). Text that is not a decimal integer spends the buffer, as an
 * allocation failure does. */
void cm_buf_add_money_text(cm_buf *b, const char *nanos);
/* One element of a PostgreSQL array literal of text ("{a,b}"): quoted,
 * '"' and '\\' escaped; "" becomes NULL. The separators are the caller's. */
void cm_buf_add_pg_text(cm_buf *b, const char *s);
/* Quoted RFC 3339 UTC time. */
void cm_buf_add_jtime(cm_buf *b, int64_t t);
/* The one shape of every error body:
 * {"error":{"code":...,"message":...,"field":...}}; field omitted when
 * NULL or empty. */
void cm_buf_add_error(cm_buf *b, const char *code, const char *message, const char *field);
/* Its member alone, "error":{...}, for a body that carries it beside the
 * fields of another protocol's error (OTLP's google.rpc.Status, otlp.h). */
void cm_buf_add_error_member(cm_buf *b, const char *code, const char *message, const char *field);
/* Hands the NUL-terminated text to the caller (free() it), resets b.
 * NULL when an allocation failed. */
char *cm_buf_take(cm_buf *b, size_t *len);

#endif
