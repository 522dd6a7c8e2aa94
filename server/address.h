/* address.h - agent addresses "agent://ORG/ENV/NAME" and the percent-encoded
 * form they take in URL paths.
 *
 * Pure functions, no allocation, thread-safe. */
#ifndef CM_ADDRESS_H
#define CM_ADDRESS_H

#include <stddef.h>

#define CM_ADDR_SEG_MAX 64   /* bytes in one of ORG, ENV, NAME */
#define CM_ADDR_MAX 256      /* bytes in a whole address, NUL included */

/* A parsed address. Spans point into the caller's string (borrowed). */
typedef struct {
    const char *org;  size_t org_len;
    const char *env;  size_t env_len;
    const char *name; size_t name_len;
} cm_addr;

/* Validates `s` (exactly `len` bytes, need not be NUL-terminated) as
 * "agent://ORG/ENV/NAME": the scheme in lowercase, three non-empty segments of
 * at most CM_ADDR_SEG_MAX bytes each from [A-Za-z0-9._-], not "." or "..",
 * nothing after NAME. Returns CM_OK (and fills *out when non-NULL) or
 * CM_EINVAL. */
int cm_addr_parse(const char *s, size_t len, cm_addr *out);

/* The ORG segment of an address into org (CM_ADDR_SEG_MAX + 1 bytes,
 * NUL-terminated). CM_OK, or CM_EINVAL when `address` is not one. */
int cm_addr_org(const char *address, char *org);

/* Same rule for an org name alone (one segment). CM_OK or CM_EINVAL. */
int cm_addr_check_org(const char *s, size_t len);

/* Percent-decodes `in` (`len` bytes) into `out`, NUL-terminated, '+' kept
 * as is. Rejects malformed escapes, a decoded NUL byte and output that does
 * not fit in outsz. On CM_OK *outlen (when non-NULL) is the decoded length.
 * Returns CM_OK, CM_EINVAL or CM_ETOOBIG. */
int cm_pct_decode(const char *in, size_t len, char *out, size_t outsz, size_t *outlen);

#endif
