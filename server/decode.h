/* decode.h - one API request into a job: the matched route, the method, the
 * body, the headers and the query arguments become a cm_job ready for the
 * loop thread, or the error that answers the request.
 *
 * No HTTP library: headers and query arguments come through a lookup the
 * transport provides, so every route's decoding is unit-tested without
 * sockets. Stateless and thread-safe; runs on the HTTP threads. */
#ifndef CM_DECODE_H
#define CM_DECODE_H

#include "codec.h"
#include "job.h"
#include "routes.h"

#include <stddef.h>
#include <stdint.h>

typedef enum { CM_DECODE_HEADER, CM_DECODE_QUERY } cm_decode_kind;

/* The value of header `name` (matched case-insensitively) or of query
 * argument `name`, as received: query values still percent-encoded. NULL
 * when absent. Borrowed; must stay valid until cm_decode_job returns. */
typedef const char *(*cm_decode_lookup)(void *ctx, cm_decode_kind kind, const char *name);

/* One request as the transport received it; all borrowed. */
typedef struct {
    const cm_route *route; /* matched by cm_route_match with status 200 */
    const char *method;    /* the method route was matched with */
    const char *body;      /* NULL when there is none */
    size_t body_len;
    int64_t now;           /* arrival, Unix seconds */
    cm_decode_lookup lookup;
    void *lookup_ctx;
    /* The key's hash when the transport already took it with
     * cm_decode_key (it asks before reading the body), so SHA-256 runs
     * once per request; NULL: the decoder takes it. */
    const unsigned char *key_hash;
} cm_decode_req;

/* The API key of a request's headers (x-api-key, else Authorization:
 * Bearer), hashed into hash. CM_OK, or CM_EAUTH with e a 401 when there is
 * none or it is malformed. The HTTP front asks this first, with the
 * headers in and before it reads a body. */
int cm_decode_key(cm_decode_lookup lookup, void *ctx, unsigned char hash[CM_KEY_HASH_LEN], cm_apierr *e);
/* Fills e with the 401 of a key that is missing, malformed or unknown;
 * returns e. */
const cm_apierr *cm_decode_unauthorized(cm_apierr *e);

/* Fills j (zeroed by the caller): arrival time, API key hash, operation and
 * that operation's request. CM_OK when j is ready for the loop thread; else
 * e says what to answer (401 without an API key, 400 for a malformed
 * parameter or body, ...). Either way the caller frees j with cm_job_free,
 * which also frees what the request owns. */
int cm_decode_job(const cm_decode_req *r, cm_job *j, cm_apierr *e);

#endif
