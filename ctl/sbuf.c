/* sbuf.c - growable text buffer (see sbuf.h). */
#include "sbuf.h"

#include <stdlib.h>
#include <string.h>

static char empty[1];

void cmctl_buf_init(cmctl_buf *b)
{
    /* Points at a static "" so an unused buffer needs no allocation. */
    b->p = empty;
    b->len = 0;
    b->cap = 0;
    b->oom = 0;
}

static int reserve(cmctl_buf *b, size_t more)
{
    if (b->oom) return -1;
    if (more > ((size_t)-1) / 2 - b->len) {
        b->oom = 1;
        return -1;
    }
    size_t need = b->len + more + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    char *p = realloc(b->cap ? b->p : NULL, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    if (!b->cap) p[0] = '\0';
    b->p = p;
    b->cap = cap;
    return 0;
}

void cmctl_buf_add(cmctl_buf *b, const char *s, size_t n)
{
    if (reserve(b, n) != 0) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void cmctl_buf_adds(cmctl_buf *b, const char *s)
{
    cmctl_buf_add(b, s, strlen(s));
}

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

void cmctl_buf_add_pct(cmctl_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
        if (unreserved(*q)) {
            cmctl_buf_add(b, (const char *)q, 1);
        } else {
            char e[3] = {'%', hex[*q >> 4], hex[*q & 15]};
            cmctl_buf_add(b, e, 3);
        }
    }
}

void cmctl_buf_add_query(cmctl_buf *b, const char *name, const char *value)
{
    if (!value) return;
    cmctl_buf_adds(b, b->oom || !strchr(b->p, '?') ? "?" : "&");
    cmctl_buf_adds(b, name);
    cmctl_buf_adds(b, "=");
    cmctl_buf_add_pct(b, value);
}

void cmctl_buf_agent_path(cmctl_buf *b, const char *address, const char *suffix)
{
    cmctl_buf_adds(b, "/v1/mesh/agents/");
    cmctl_buf_add_pct(b, address);
    cmctl_buf_adds(b, suffix);
}

const char *cmctl_buf_str(const cmctl_buf *b)
{
    return b->oom ? NULL : b->p;
}

void cmctl_buf_free(cmctl_buf *b)
{
    if (!b) return;
    if (b->cap) free(b->p);
    cmctl_buf_init(b);
}
