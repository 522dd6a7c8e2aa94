/* inflate.h - request bodies sent with Content-Encoding: gzip, unpacked with
 * zlib before they are decoded (OTLP exporters compress by default in some
 * SDKs, and OTEL_EXPORTER_OTLP_COMPRESSION=gzip turns it on in the others).
 *
 * Pure, thread-safe; runs on the HTTP threads. */
#ifndef CM_INFLATE_H
#define CM_INFLATE_H

#include "codec.h"

#include <stddef.h>

/* At most this many bytes come out of one body: the 1 MiB the door lets in
 * is compressed, and a small gzip bomb unpacks to gigabytes. */
#define CM_INFLATE_MAX (8u * 1024 * 1024)

/* The body as the decoders read it, given the request's Content-Encoding
 * header (NULL or "identity": the body itself; "gzip": unpacked). On CM_OK
 * *out and *outlen are the bytes to decode; *owned is what the caller
 * free()s afterwards (NULL when *out is the body itself). Else e is the
 * answer: 415 for another encoding, 400 for a corrupt or truncated gzip
 * stream, 413 past CM_INFLATE_MAX. */
int cm_inflate_body(const char *encoding, const char *body, size_t len, char **owned, const char **out,
                    size_t *outlen, cm_apierr *e);

#endif
