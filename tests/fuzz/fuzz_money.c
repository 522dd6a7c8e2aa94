/* fuzz_money.c - cm_money_parse on arbitrary text, and cm_money_format.
 *
 * Checks: a parsed amount is in [0, CM_MONEY_MAX]; printing it and parsing
 * the print gives it back; the print is at most CM_MONEY_BUFSZ - 1 bytes;
 * and any int64 (the first 8 input bytes) formats to text that parses back
 * to itself when it is in range. */
#include "error.h"
#include "fuzz.h"
#include "money.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Exactly `size` bytes, no NUL after them. */
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    if (size) memcpy(text, data, size);
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
