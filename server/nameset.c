#include "nameset.h"
#include "error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Open addressing with linear probing, at most half full. */
struct cm_nameset {
    char **slots; /* owned strings; NULL: empty */
    size_t cap;   /* a power of two */
    size_t n, max;
};

#define FIRST_CAP 1024

/* FNV-1a: addresses share long prefixes (agent://ORG/ENV/), so every byte
 * must count. */
static size_t hash(const char *name)
{
    uint64_t h = 14695981039346656037ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 1099511628211ull;
    return (size_t)h;
}

int cm_nameset_new(size_t max, cm_nameset **out)
{
    cm_nameset *s = calloc(1, sizeof *s);
    if (!s || !(s->slots = calloc(FIRST_CAP, sizeof *s->slots))) {
        free(s);
        return CM_ENOMEM;
    }
    s->cap = FIRST_CAP;
    s->max = max;
    *out = s;
    return CM_OK;
}

static void clear(cm_nameset *s)
{
    for (size_t i = 0; i < s->cap; i++) {
        free(s->slots[i]);
        s->slots[i] = NULL;
    }
    s->n = 0;
}

void cm_nameset_free(cm_nameset *s)
{
    if (!s) return;
    clear(s);
    free(s->slots);
    free(s);
}

/* The slot holding name, or the empty one where it would go. */
static size_t find(char *const *slots, size_t cap, const char *name)
{
    size_t i = hash(name) & (cap - 1);
    while (slots[i] && strcmp(slots[i], name) != 0) i = (i + 1) & (cap - 1);
    return i;
}

bool cm_nameset_has(const cm_nameset *s, const char *name)
{
    return s->slots[find(s->slots, s->cap, name)] != NULL;
}

static int grow(cm_nameset *s)
{
    size_t cap = s->cap * 2;
    char **slots = calloc(cap, sizeof *slots);
    if (!slots) return CM_ENOMEM;
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i]) slots[find(slots, cap, s->slots[i])] = s->slots[i];
    free(s->slots);
    s->slots = slots;
    s->cap = cap;
    return CM_OK;
}

int cm_nameset_add(cm_nameset *s, const char *name)
{
    if (cm_nameset_has(s, name)) return CM_OK;
    if (s->n >= s->max) clear(s);
    if (2 * (s->n + 1) > s->cap && grow(s) != CM_OK) return CM_ENOMEM;
    char *copy = strdup(name);
    if (!copy) return CM_ENOMEM;
    s->slots[find(s->slots, s->cap, name)] = copy;
    s->n++;
    return CM_OK;
}

size_t cm_nameset_size(const cm_nameset *s)
{
    return s->n;
}
