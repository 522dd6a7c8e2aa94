/* fuzz_address.c - the path side: cm_addr_parse, cm_addr_check_org,
 * cm_pct_decode and cm_route_match on arbitrary bytes.
 *
 * Checks: a parsed address's segments lie inside the input and re-validate;
 * a decode fits its buffer, is NUL-terminated and reports its length, and
 * fails the same way whatever the buffer size when the input is malformed;
 * a route match answers one of 200/400/404/405 with a NUL-terminated param
 * and an Allow list on 405. */
#include "address.h"
#include "error.h"
#include "fuzz.h"
#include "routes.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void fuzz_addr(const char *s, size_t len)
{
    cm_addr a;
    if (cm_addr_parse(s, len, &a) != CM_OK) return;
    FUZZ_CHECK(len < CM_ADDR_MAX);
    FUZZ_CHECK(a.org >= s && a.org + a.org_len <= s + len);
    FUZZ_CHECK(a.env >= s && a.env + a.env_len <= s + len);
    FUZZ_CHECK(a.name >= s && a.name + a.name_len <= s + len);
    FUZZ_CHECK(cm_addr_check_org(a.org, a.org_len) == CM_OK);
    FUZZ_CHECK(cm_addr_check_org(a.env, a.env_len) == CM_OK);
    FUZZ_CHECK(cm_addr_check_org(a.name, a.name_len) == CM_OK);
}

static void fuzz_pct(const char *s, size_t len)
{
    /* A small buffer (exercises CM_ETOOBIG) and a big one. */
    static const size_t sizes[] = {1, 8, CM_ADDR_MAX};
    int first = 1, rc_big = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t outsz = sizes[k];
        char *out = malloc(outsz);
        if (!out) return;
        size_t outlen = (size_t)-1;
        int rc = cm_pct_decode(s, len, out, outsz, &outlen);
        FUZZ_CHECK(rc == CM_OK || rc == CM_EINVAL || rc == CM_ETOOBIG);
        if (rc == CM_OK) {
            FUZZ_CHECK(outlen < outsz);
            FUZZ_CHECK(out[outlen] == '\0' && strlen(out) == outlen);
            FUZZ_CHECK(outlen <= len);
        } else {
            FUZZ_CHECK(out[0] == '\0');
        }
        /* Malformed input is CM_EINVAL whatever the buffer size. */
        if (!first) FUZZ_CHECK((rc == CM_EINVAL) == (rc_big == CM_EINVAL));
        first = 0;
        rc_big = rc;
        free(out);
    }
    /* A NULL out never writes. */
    int rc = cm_pct_decode(s, len, NULL, 0, NULL);
    FUZZ_CHECK(rc == CM_EINVAL || rc == CM_ETOOBIG);
}

static void fuzz_route(const char *path)
{
    static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", ""};
    for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
        cm_route r;
        int st = cm_route_match(methods[m], path, &r);
        FUZZ_CHECK(st == 200 || st == 400 || st == 404 || st == 405);
        FUZZ_CHECK(memchr(r.param, '\0', sizeof r.param) != NULL);
        FUZZ_CHECK(memchr(r.allow, '\0', sizeof r.allow) != NULL);
        if (st == 405) FUZZ_CHECK(r.allow[0] != '\0');
        if (st == 200) FUZZ_CHECK((int)r.id >= 0 && r.id < CM_R_COUNT && r.method != NULL);
        FUZZ_CHECK(cm_route_name(r.id) != NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Exactly `size` bytes for the length-taking parsers... */
    char *s = malloc(size ? size : 1);
    if (!s) return 0;
    if (size) memcpy(s, data, size);
    fuzz_addr(s, size);
    (void)cm_addr_check_org(s, size);
    fuzz_pct(s, size);
    free(s);

    /* ...and a C string (cut at the first NUL, as an HTTP path is) for
     * the router. */
    char *path = malloc(size + 1);
    if (!path) return 0;
    if (size) memcpy(path, data, size);
    path[size] = '\0';
    fuzz_route(path);
    free(path);
    return 0;
}
