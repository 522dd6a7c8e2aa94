/* sbuf.h - a growable, always NUL-terminated text buffer for URLs and paths.
 *
 * An allocation failure is sticky: later appends do nothing and
 * cmctl_buf_ok() says so, so callers check once at the end. */
#ifndef CMCTL_SBUF_H
#define CMCTL_SBUF_H

#include <stddef.h>

typedef struct cmctl_buf {
    char *p;    /* owned; "" after init, NUL-terminated */
    size_t len;
    size_t cap;
    int oom;
} cmctl_buf;

void cmctl_buf_init(cmctl_buf *b);
void cmctl_buf_add(cmctl_buf *b, const char *s, size_t n);
void cmctl_buf_adds(cmctl_buf *b, const char *s);
/* Appends s percent-encoded: everything but RFC 3986 unreserved characters,
 * so "agent://o/e/n" becomes one path segment the server decodes back. */
void cmctl_buf_add_pct(cmctl_buf *b, const char *s);
/* Appends "?name=value" or "&name=value" (value percent-encoded); value NULL
 * appends nothing. */
void cmctl_buf_add_query(cmctl_buf *b, const char *name, const char *value);
/* Appends "/v1/mesh/agents/{address percent-encoded}" and then suffix
 * ("/spend", "" ...), the path of everything about one agent. */
void cmctl_buf_agent_path(cmctl_buf *b, const char *address, const char *suffix);
/* The text (borrowed), or NULL after an allocation failure. */
const char *cmctl_buf_str(const cmctl_buf *b);
/* Frees the text; NULL and a freed buffer are fine. */
void cmctl_buf_free(cmctl_buf *b);

#endif
