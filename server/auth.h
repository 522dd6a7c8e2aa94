/* auth.h - API key material: generation and hashing.
 *
 * The only module that includes OpenSSL. Keys are shown to their owner once
 * and stored as SHA-256 only. Thread-safe. */
#ifndef CM_AUTH_H
#define CM_AUTH_H

#include <stddef.h>

#define CM_KEY_HASH_LEN 32
#define CM_KEY_LEN 52 /* "cmk_" + 48 hex, without the NUL */
/* Bytes in a key id ("key_" + 12 hex today), without the NUL: a longer
 * path parameter names no key. */
#define CM_KEY_ID_MAX 47

/* SHA-256 of key[0..len). CM_OK or CM_EIO. */
int cm_auth_hash(const char *key, size_t len, unsigned char out[CM_KEY_HASH_LEN]);

/* A new random key into out (at least CM_KEY_LEN + 1 bytes). CM_OK or CM_EIO. */
int cm_auth_new_key(char *out, size_t outsz);

/* nbytes random bytes as 2*nbytes hex chars plus NUL into out. CM_OK or CM_EIO. */
int cm_auth_random_hex(char *out, size_t nbytes);

/* Lowercase hex of in[0..n) into out (2n + 1 bytes). */
void cm_auth_hex(const unsigned char *in, size_t n, char *out);

/* HMAC-SHA256 of msg under key into out. CM_OK or CM_EIO. */
int cm_auth_hmac(const char *key, size_t keylen, const char *msg, size_t msglen,
                 unsigned char out[CM_KEY_HASH_LEN]);

/* A key hash as PostgreSQL's bytea text: "\\x" and 64 hex digits. */
#define CM_KEY_BYTEA_LEN (2 + 2 * CM_KEY_HASH_LEN + 1)
void cm_auth_bytea(const unsigned char hash[CM_KEY_HASH_LEN], char out[CM_KEY_BYTEA_LEN]);

/* A heartbeat's 7-day dedupe key, the same bytes as PostgreSQL's
 * cm_hb_key(address, id) of schema/012_partitions.sql (the first 16 bytes of
 * SHA-256 over "<length of address>:<address><id>"; addresses are ASCII, so
 * their length in characters is their length in bytes), as PostgreSQL's
 * hex text into out. Here, not in SQL, because hashing in the statement a
 * 202 waits for cost its PostgreSQL a tenth of its time (BENCHMARKS.md).
 * CM_OK or CM_EIO. */
#define CM_HB_KEY_LEN 16
#define CM_HB_KEY_HEX_LEN (2 * CM_HB_KEY_LEN + 1)
int cm_auth_hb_key(const char *address, const char *id, char out[CM_HB_KEY_HEX_LEN]);

/* Constant-time equality of two n-byte buffers: 1 when equal. */
int cm_auth_equal(const void *a, const void *b, size_t n);

#endif
