#include "auth.h"
#include "error.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>

int cm_auth_hash(const char *key, size_t len, unsigned char out[CM_KEY_HASH_LEN])
{
    unsigned int n = 0;
    if (!EVP_Digest(key, len, out, &n, EVP_sha256(), NULL) || n != CM_KEY_HASH_LEN) return CM_EIO;
    return CM_OK;
}

void cm_auth_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int cm_auth_hb_key(const char *address, const char *id, char out[CM_HB_KEY_HEX_LEN])
{
    size_t alen = strlen(address), ilen = strlen(id);
    char head[24];
    int hlen = snprintf(head, sizeof head, "%zu:", alen);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) && EVP_DigestUpdate(ctx, head, (size_t)hlen) &&
             EVP_DigestUpdate(ctx, address, alen) && EVP_DigestUpdate(ctx, id, ilen) &&
             EVP_DigestFinal_ex(ctx, md, &n) && n >= CM_HB_KEY_LEN;
    EVP_MD_CTX_free(ctx);
    if (!ok) return CM_EIO;
    cm_auth_hex(md, CM_HB_KEY_LEN, out);
    return CM_OK;
}

void cm_auth_bytea(const unsigned char hash[CM_KEY_HASH_LEN], char out[CM_KEY_BYTEA_LEN])
{
    out[0] = '\\';
    out[1] = 'x';
    cm_auth_hex(hash, CM_KEY_HASH_LEN, out + 2);
}

int cm_auth_random_hex(char *out, size_t nbytes)
{
    unsigned char raw[64];
    if (nbytes > sizeof raw || RAND_bytes(raw, (int)nbytes) != 1) return CM_EIO;
    cm_auth_hex(raw, nbytes, out);
    return CM_OK;
}

int cm_auth_new_key(char *out, size_t outsz)
{
    if (outsz < CM_KEY_LEN + 1) return CM_EINVAL;
    memcpy(out, "cmk_", 4);
    return cm_auth_random_hex(out + 4, 24);
}

int cm_auth_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

int cm_auth_hmac(const char *key, size_t keylen, const char *msg, size_t msglen,
                 unsigned char out[CM_KEY_HASH_LEN])
{
    unsigned int n = 0;
    if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, msglen, out, &n) ||
        n != CM_KEY_HASH_LEN)
        return CM_EIO;
    return CM_OK;
}
