#include "keycache.h"
#include "error.h"

#include <pthread.h>
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
    pthread_rwlock_t lock; /* over generation and slots */
    int ttl_ms;
    uint64_t generation;
    slot slots[SLOTS];
};

int cm_keycache_new(int ttl_ms, cm_keycache **out)
{
    cm_keycache *c = calloc(1, sizeof *c);
    if (!c) return CM_ENOMEM;
    if (pthread_rwlock_init(&c->lock, NULL) != 0) {
        free(c);
        return CM_ENOMEM;
    }
    c->ttl_ms = ttl_ms;
    *out = c;
    return CM_OK;
}

void cm_keycache_free(cm_keycache *c)
{
    if (!c) return;
    pthread_rwlock_destroy(&c->lock);
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
    cm_keycache *w = (cm_keycache *)c; /* the lock only */
    const slot *s = &c->slots[slot_index(hash)];
    cm_keycache_hit hit = CM_KEYCACHE_MISS;
    pthread_rwlock_rdlock(&w->lock);
    if (cm_auth_equal(s->hash, hash, CM_KEY_HASH_LEN)) {
        bool fresh = s->expires_ms > now_ms;
        hit = s->found ? (fresh ? CM_KEYCACHE_FOUND : CM_KEYCACHE_AGED)
                       : (fresh ? CM_KEYCACHE_UNKNOWN : CM_KEYCACHE_MISS);
        if (s->found && who) *who = s->who;
    }
    pthread_rwlock_unlock(&w->lock);
    return hit;
}

void cm_keycache_put(cm_keycache *c, const unsigned char hash[CM_KEY_HASH_LEN], uint64_t now_ms,
                     const cm_ident *who)
{
    if (!c->ttl_ms) return;
    slot *s = &c->slots[slot_index(hash)];
    pthread_rwlock_wrlock(&c->lock);
    memcpy(s->hash, hash, CM_KEY_HASH_LEN);
    s->expires_ms = now_ms + (uint64_t)c->ttl_ms;
    s->found = who != NULL;
    if (who) s->who = *who;
    else memset(&s->who, 0, sizeof s->who);
    pthread_rwlock_unlock(&c->lock);
}

/* Forgets the keys with this id, or every key when id is NULL. */
static void forget(cm_keycache *c, const char *id)
{
    pthread_rwlock_wrlock(&c->lock);
    c->generation++;
    for (int i = 0; i < SLOTS; i++)
        if (!id || (c->slots[i].found && strcmp(c->slots[i].who.id, id) == 0)) {
            /* Not even an aged answer is left: MISS, never AGED. */
            c->slots[i].expires_ms = 0;
            c->slots[i].found = false;
        }
    pthread_rwlock_unlock(&c->lock);
}

void cm_keycache_forget(cm_keycache *c, const char *id)
{
    forget(c, id);
}

void cm_keycache_clear(cm_keycache *c)
{
    forget(c, NULL);
}

uint64_t cm_keycache_generation(const cm_keycache *c)
{
    cm_keycache *w = (cm_keycache *)c; /* the lock only */
    pthread_rwlock_rdlock(&w->lock);
    uint64_t g = c->generation;
    pthread_rwlock_unlock(&w->lock);
    return g;
}
