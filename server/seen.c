#include "seen.h"
#include "address.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Agents written in one second: 8,192 slots (2 MiB) leave few collisions
 * at the agents one replica sees per second, and a collision is only one
 * more write. */
#define SLOTS 8192

typedef struct {
    int64_t sec; /* 0: empty slot */
    char address[CM_ADDR_MAX];
} slot;

struct cm_seen {
    slot slots[SLOTS];
};

int cm_seen_new(cm_seen **out)
{
    cm_seen *s = calloc(1, sizeof *s);
    if (!s) return CM_ENOMEM;
    *out = s;
    return CM_OK;
}

void cm_seen_free(cm_seen *s)
{
    free(s);
}

/* FNV-1a: addresses share long prefixes (agent://ORG/ENV/), so every byte
 * must count. */
static size_t slot_index(const char *address)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)address; *p; p++) h = (h ^ *p) * 16777619u;
    return h % SLOTS;
}

bool cm_seen_written(const cm_seen *s, const char *address, int64_t sec)
{
    const slot *e = &s->slots[slot_index(address)];
    return e->sec == sec && strcmp(e->address, address) == 0;
}

void cm_seen_put(cm_seen *s, const char *address, int64_t sec)
{
    slot *e = &s->slots[slot_index(address)];
    e->sec = sec;
    snprintf(e->address, sizeof e->address, "%s", address);
}
