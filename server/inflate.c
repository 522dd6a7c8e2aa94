#include "inflate.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

/* Unpacks one or more concatenated gzip members (RFC 1952 allows several,
 * and gzip -c a b makes them) into a buffer that grows up to the cap. */
static int gunzip(const char *in, size_t len, char **out, size_t *outlen, cm_apierr *e)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return cm_apierr_set(e, 500, "internal", NULL, "out of memory");
    size_t cap = len < CM_INFLATE_MAX / 4 ? len * 4 + 4096 : CM_INFLATE_MAX, n = 0;
    char *buf = malloc(cap + 1);
    int rc = buf ? Z_OK : Z_MEM_ERROR, too_big = 0;
    z.next_in = (unsigned char *)in;
    z.avail_in = (uInt)len;
    while (buf) {
        z.next_out = (unsigned char *)buf + n;
        z.avail_out = (uInt)(cap - n);
        rc = inflate(&z, Z_NO_FLUSH);
        n = cap - z.avail_out;
        if (rc == Z_STREAM_END) {
            /* The end of one member with input left: the next one follows. */
            if (z.avail_in == 0 || (rc = inflateReset(&z)) != Z_OK) break;
            continue;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) break;
        if (n < cap) { /* room left, so the input ended before the stream */
            rc = Z_DATA_ERROR;
            break;
        }
        if (cap == CM_INFLATE_MAX) {
            too_big = 1;
            break;
        }
        cap = cap * 2 < CM_INFLATE_MAX ? cap * 2 : CM_INFLATE_MAX;
        char *bigger = realloc(buf, cap + 1);
        if (!bigger) rc = Z_MEM_ERROR;
        else buf = bigger;
        if (!bigger) break;
    }
    inflateEnd(&z);
    if (rc != Z_STREAM_END || too_big) {
        free(buf);
        if (too_big)
            return cm_apierr_set(e, 413, "payload_too_large", NULL, "the body unpacks to more than %u bytes",
                                 CM_INFLATE_MAX);
        if (rc == Z_MEM_ERROR) return cm_apierr_set(e, 500, "internal", NULL, "out of memory");
        return cm_apierr_set(e, 400, "invalid_body", NULL, "the gzip body is corrupt or truncated");
    }
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    return CM_OK;
}

int cm_inflate_body(const char *encoding, const char *body, size_t len, char **owned, const char **out,
                    size_t *outlen, cm_apierr *e)
{
    *owned = NULL;
    if (!encoding || !*encoding || strcasecmp(encoding, "identity") == 0) {
        *out = body;
        *outlen = len;
        return CM_OK;
    }
    if (strcasecmp(encoding, "gzip") != 0)
        return cm_apierr_set(e, 415, "unsupported_encoding", "Content-Encoding",
                             "Content-Encoding must be gzip or identity");
    if (gunzip(body, len, owned, outlen, e) != CM_OK) return CM_EINVAL;
    *out = *owned;
    return CM_OK;
}
