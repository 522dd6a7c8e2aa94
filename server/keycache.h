/* keycache.h - who an API key is, remembered for a short while so that most
 * requests need no PostgreSQL lookup; "no such key" is remembered too.
 *
 * A fixed table indexed by the key's hash; a newer entry evicts an older
 * one in its slot. No I/O. Every function is thread-safe (a read-write
 * lock): the HTTP threads read it to refuse an unknown key before they read
 * a body, the loop thread reads and writes it. */
#ifndef CM_KEYCACHE_H
#define CM_KEYCACHE_H

#include "address.h"
#include "auth.h"

#include <stdbool.h>
#include <stdint.h>

/* Who a key is. */
typedef struct {
    char id[CM_KEY_ID_MAX + 1];
    char org[CM_ADDR_SEG_MAX + 1];
    bool admin;
    char agent[CM_ADDR_MAX]; /* bound address or "" */
    char interop_env[CM_ADDR_SEG_MAX + 1]; /* ENV of the agents its spans and events name; "" the server's */
} cm_ident;

/* The PostgreSQL NOTIFY channel of revocations; the payload is the key id. */
#define CM_KEY_REVOKED_CHANNEL "cm_key_revoked"

typedef struct cm_keycache cm_keycache;

/* ttl_ms 0 disables caching. */
int cm_keycache_new(int ttl_ms, cm_keycache **out);
void cm_keycache_free(cm_keycache *c);

typedef enum { CM_KEYCACHE_MISS = 0, CM_KEYCACHE_FOUND, CM_KEYCACHE_UNKNOWN, CM_KEYCACHE_AGED } cm_keycache_hit;

/* Looks hash up at time now_ms (CLOCK_MONOTONIC milliseconds, as libuv's
 * uv_now): FOUND fills who unless it is NULL; UNKNOWN is a remembered
 * "no such key"; AGED is a key found whose entry is older than the ttl and
 * was not forgotten since: who is filled as FOUND does, and PostgreSQL is
 * to be asked again (a key can only be revoked through PostgreSQL, and a
 * revocation heard is forgotten); MISS means ask PostgreSQL. */
cm_keycache_hit cm_keycache_get(const cm_keycache *c, const unsigned char hash[CM_KEY_HASH_LEN],
                                uint64_t now_ms, cm_ident *who);
/* Remembers what PostgreSQL said: who, or NULL for no such key. */
void cm_keycache_put(cm_keycache *c, const unsigned char hash[CM_KEY_HASH_LEN], uint64_t now_ms,
                     const cm_ident *who);
/* Forgets the key with this id at once: it was revoked (here, or on
 * another replica, which says so through PostgreSQL). */
void cm_keycache_forget(cm_keycache *c, const char *id);
/* Forgets every key: revocations may have been missed. */
void cm_keycache_clear(cm_keycache *c);
/* Changes whenever a key is forgotten: a lookup that started under an
 * older generation must not put its answer, which may predate the
 * revocation. */
uint64_t cm_keycache_generation(const cm_keycache *c);

#endif
