/* address.c - agent addresses and the percent-decoding that carries them in
 * URL paths. Validation is a whitelist: a segment becomes a Redis key part
 * and a log field, so anything outside [A-Za-z0-9._-] is refused. */
#include "address.h"

#include "error.h"

#include <stdbool.h>
#include <string.h>

static const char scheme[] = "agent://";
#define SCHEME_LEN (sizeof scheme - 1)

static bool seg_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

static bool seg_valid(const char *s, size_t len)
{
    if (len == 0 || len > CM_ADDR_SEG_MAX)
        return false;
    /* "." and ".." would read as path steps wherever a segment lands. */
    if (s[0] == '.' && (len == 1 || (len == 2 && s[1] == '.')))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!seg_char(s[i]))
            return false;
    }
    return true;
}

/* Length of the segment at s[i..len): up to the next '/' or the end. */
static size_t seg_len(const char *s, size_t len, size_t i)
{
    size_t j = i;

    while (j < len && s[j] != '/')
        j++;
    return j - i;
}

int cm_addr_parse(const char *s, size_t len, cm_addr *out)
{
    const char *seg[3];
    size_t seglen[3];
    size_t i;

    if (s == NULL || len >= CM_ADDR_MAX || len < SCHEME_LEN)
        return CM_EINVAL;
    for (i = 0; i < SCHEME_LEN; i++) {
        if (s[i] != scheme[i])
            return CM_EINVAL;
    }
    for (int k = 0; k < 3; k++) {
        if (k > 0) {
            if (i >= len || s[i] != '/')
                return CM_EINVAL;
            i++;
        }
        seg[k] = s + i;
        seglen[k] = seg_len(s, len, i);
        if (!seg_valid(seg[k], seglen[k]))
            return CM_EINVAL;
        i += seglen[k];
    }
    if (i != len)
        return CM_EINVAL;
    if (out != NULL) {
        out->org = seg[0];
        out->org_len = seglen[0];
        out->env = seg[1];
        out->env_len = seglen[1];
        out->name = seg[2];
        out->name_len = seglen[2];
    }
    return CM_OK;
}

int cm_addr_check_org(const char *s, size_t len)
{
    if (s == NULL || !seg_valid(s, len))
        return CM_EINVAL;
    return CM_OK;
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int cm_pct_decode(const char *in, size_t len, char *out, size_t outsz, size_t *outlen)
{
    size_t n = 0;

    if (out != NULL && outsz > 0)
        out[0] = '\0';
    if (in == NULL && len > 0)
        return CM_EINVAL;
    /* Validate everything first so malformed input is CM_EINVAL whatever
     * its size, and out is never left holding half a result. */
    for (size_t i = 0; i < len; i++, n++) {
        if (in[i] == '%') {
            int hi, lo;

            if (len - i < 3)
                return CM_EINVAL;
            hi = hex_val(in[i + 1]);
            lo = hex_val(in[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return CM_EINVAL;
            i += 2;
        } else if (in[i] == '\0') {
            /* A raw NUL would cut the C string as surely as %00. */
            return CM_EINVAL;
        }
    }
    if (out == NULL || n >= outsz)
        return CM_ETOOBIG;

    n = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '%') {
            out[n++] = (char)(hex_val(in[i + 1]) * 16 + hex_val(in[i + 2]));
            i += 2;
        } else {
            out[n++] = in[i];
        }
    }
    out[n] = '\0';
    if (outlen != NULL)
        *outlen = n;
    return CM_OK;
}

int cm_addr_org(const char *address, char *org)
{
    cm_addr a;
    if (cm_addr_parse(address, strlen(address), &a) != CM_OK) return CM_EINVAL;
    memcpy(org, a.org, a.org_len);
    org[a.org_len] = '\0';
    return CM_OK;
}
