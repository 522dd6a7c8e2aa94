/* fuzz_hbrow.c - cm_hbrow_decode on arbitrary bytes: a Redis queue entry
 * as the persister reads it.
 *
 * Besides memory safety, checks the contract: on CM_OK every string
 * NUL-terminated inside its field, encode then decode gives the same
 * heartbeat back, and its column arrays can be made; on failure the
 * output is all zero. */
#include "error.h"
#include "fuzz.h"
#include "hbrow.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void check_str(const char *s, size_t cap)
{
    FUZZ_CHECK(memchr(s, '\0', cap) != NULL);
}

/* Byte for byte (decode zeroes its output first, padding included),
 * except that a NaN latency equals any other: "%.17g" writes no payload. */
static bool same(const cm_hb *a, const cm_hb *b)
{
    cm_hb x, y;
    memcpy(&x, a, sizeof x);
    memcpy(&y, b, sizeof y);
    if (isnan(x.avg_latency_ms) && isnan(y.avg_latency_ms)) x.avg_latency_ms = y.avg_latency_ms = 0;
    return memcmp(&x, &y, sizeof x) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private copy without a terminating NUL: the decoder must read
     * exactly `size` bytes, and ASan reports any byte past them. */
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    if (size) memcpy(text, data, size);

    static const cm_hb zero;
    cm_hb h;
    memset(&h, 0xab, sizeof h);
    int rc = cm_hbrow_decode(text, size, &h);
    free(text);
    if (rc != CM_OK) {
        FUZZ_CHECK(rc == CM_EINVAL);
        FUZZ_CHECK(memcmp(&h, &zero, sizeof h) == 0);
        return 0;
    }
    check_str(h.agent, sizeof h.agent);
    check_str(h.id, sizeof h.id);
    check_str(h.intent_id, sizeof h.intent_id);
    check_str(h.run_id, sizeof h.run_id);
    check_str(h.session_id, sizeof h.session_id);
    check_str(h.workflow, sizeof h.workflow);
    check_str(h.parent_intent_id, sizeof h.parent_intent_id);
    check_str(h.customer, sizeof h.customer);
    check_str(h.status, sizeof h.status);
    check_str(h.model, sizeof h.model);

    cm_buf entry;
    cm_buf_init(&entry);
    cm_hbrow_encode(&h, &entry);
    FUZZ_CHECK(!entry.failed);
    cm_hb back;
    rc = cm_hbrow_decode(entry.data, entry.len, &back);
    if (rc != CM_OK || !same(&h, &back)) fprintf(stderr, "re-encoded: %s\n", entry.data);
    FUZZ_CHECK(rc == CM_OK);
    FUZZ_CHECK(same(&h, &back));
    cm_buf_free(&entry);

    const cm_hb *rows[1] = {&h};
    cm_buf cols[CM_HBROW_COLS];
    FUZZ_CHECK(cm_hbrow_columns(rows, NULL, 1, cols) == CM_OK);
    for (int c = 0; c < CM_HBROW_COLS; c++) cm_buf_free(&cols[c]);
    return 0;
}
