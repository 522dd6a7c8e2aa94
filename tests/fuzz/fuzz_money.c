/* fuzz_money.c - cm_money_parse on arbitrary text, cm_money_format and
 * cm_money_format_text.
 *
 * Checks: a parsed amount is in [0, CM_MONEY_MAX]; printing it and parsing
 * the print gives it back; the print is at most CM_MONEY_BUFSZ - 1 bytes;
 * any int64 (the first 8 input bytes) formats to text that parses back to
 * itself when it is in range; and the input as decimal text is refused
 * unless it is an integer, and printed as cm_money_format would. */
#include "error.h"
#include "fuzz.h"
#include "money.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void roundtrip(int64_t v)
{
    char buf[CM_MONEY_BUFSZ];
    size_t n = cm_money_format(v, buf, sizeof buf);
    FUZZ_CHECK(n > 0 && n < sizeof buf && strlen(buf) == n);
    int64_t back = -1;
    int rc = cm_money_parse(buf, n, &back);
    if (v >= 0 && v <= CM_MONEY_MAX) {
        FUZZ_CHECK(rc == CM_OK);
        FUZZ_CHECK(back == v);
    } else {
        FUZZ_CHECK(rc == CM_ERANGE);
    }
}

/* The input as the text of a numeric sum: refused unless it is a sign and
 * digits; else printed as digits around a point, exactly as cm_money_format
 * prints it when int64 holds it. */
static void format_text(const char *text)
{
    char buf[128];
    size_t n = cm_money_format_text(text, buf, sizeof buf);
    if (n == 0) return;
    FUZZ_CHECK(n < sizeof buf && strlen(buf) == n);
    FUZZ_CHECK(strspn(text + (text[0] == '-'), "0123456789") == strlen(text + (text[0] == '-')));
    FUZZ_CHECK(strspn(buf + (buf[0] == '-'), "0123456789.") == n - (buf[0] == '-'));
    errno = 0;
    long long v = strtoll(text, NULL, 10);
    if (errno == 0) {
        char want[CM_MONEY_BUFSZ];
        cm_money_format(v, want, sizeof want);
        FUZZ_CHECK(strcmp(buf, want) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Exactly `size` bytes, no NUL after them. */
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    if (size) memcpy(text, data, size);
    /* The same bytes NUL-terminated, for the text formatter. */
    char *z = malloc(size + 1);
    if (z) {
        if (size) memcpy(z, data, size);
        z[size] = '\0';
        format_text(z);
        free(z);
    }
    int64_t v = -12345;
    int rc = cm_money_parse(text, size, &v);
    FUZZ_CHECK(rc == CM_OK || rc == CM_EINVAL || rc == CM_ERANGE);
    if (rc == CM_OK) {
        FUZZ_CHECK(v >= 0 && v <= CM_MONEY_MAX);
        roundtrip(v);
    }
    free(text);

    if (size >= 8) {
        int64_t raw;
        memcpy(&raw, data, sizeof raw);
        roundtrip(raw);
    }
    return 0;
}
