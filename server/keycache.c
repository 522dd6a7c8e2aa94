#include "keycache.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>

#define SLOTS 1024

typedef struct {
    unsigned char hash[CM_KEY_HASH_LEN];
    uint64_t expires_ms; /* 0: empty slot */
    bool found;          /* false: a remembered "no such key" */
    cm_ident who;
} slot;

struct cm_keycache {
    int ttl_ms;
    uint64_t generation;
    slot slots[SLOTS];
};

int cm_keycache_new(int ttl_ms, cm_keycache **out)
{
    cm_keycache *c = calloc(1, sizeof *c);
    if (!c) return CM_ENOMEM;
    c->ttl_ms = ttl_ms;
    *out = c;
    return CM_OK;
}

void cm_keycache_free(cm_keycache *c)
{
    free(c);
}

/* Hashes are SHA-256 of random keys: their first bytes spread evenly. */
static unsigned slot_index(const unsigned char *hash)
{
    return ((unsigned)hash[0] | (unsigned)hash[1] << 8) % SLOTS;
}

cm_keycache_hit cm_keycache_get(const cm_keycache *c, const unsigned char hash[CM_KEY_HASH_LEN],
                                uint64_t now_ms, cm_ident *who)
{
    const slot *s = &c->slots[slot_index(hash)];
    if (s->expires_ms <= now_ms || !cm_auth_equal(s->hash, hash, CM_KEY_HASH_LEN)) return CM_KEYCACHE_MISS;
    if (!s->found) return CM_KEYCACHE_UNKNOWN;
    *who = s->who;
    return CM_KEYCACHE_FOUND;
}

void cm_keycache_put(cm_keycache *c, const unsigned char hash[CM_KEY_HASH_LEN], uint64_t now_ms,
                     const cm_ident *who)
{
    if (!c->ttl_ms) return;
    slot *s = &c->slots[slot_index(hash)];
    memcpy(s->hash, hash, CM_KEY_HASH_LEN);
    s->expires_ms = now_ms + (uint64_t)c->ttl_ms;
    s->found = who != NULL;
    if (who) s->who = *who;
    else memset(&s->who, 0, sizeof s->who);
}

void cm_keycache_forget(cm_keycache *c, const char *id)
{
    c->generation++;
    for (int i = 0; i < SLOTS; i++)
        if (c->slots[i].found && strcmp(c->slots[i].who.id, id) == 0) c->slots[i].expires_ms = 0;
}

void cm_keycache_clear(cm_keycache *c)
{
    c->generation++;
    for (int i = 0; i < SLOTS; i++) c->slots[i].expires_ms = 0;
}

uint64_t cm_keycache_generation(const cm_keycache *c)
{
    return c->generation;
}
