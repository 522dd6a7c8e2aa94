/* fuzz_heartbeats.c - cm_codec_heartbeats on arbitrary bodies.
 *
 * Besides memory safety (ASan/UBSan), checks the decoder's contract: on
 * CM_OK 1..CM_BATCH_MAX items, every string NUL-terminated inside its
 * field, every agent a valid address or "", counts and money in range; on
 * failure no output and a 4xx with a code. */
#include "codec.h"
#include "error.h"
#include "fuzz.h"
#include "money.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* 2026-11-22T10:15:00Z: a fixed arrival time keeps runs reproducible. */
#define FUZZ_NOW 1795342500LL

static void check_str(const char *s, size_t cap)
{
    FUZZ_CHECK(memchr(s, '\0', cap) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private copy without a terminating NUL: the decoder must read
     * exactly `size` bytes, and ASan reports any byte past them. */
    char *body = malloc(size ? size : 1);
    if (!body) return 0;
    if (size) memcpy(body, data, size);

    cm_hb *hbs = (cm_hb *)1;
    size_t n = 12345;
    cm_apierr e;
    memset(&e, 0, sizeof e);
    cm_ignored ig = {0};
    int rc = cm_codec_heartbeats(body, size, FUZZ_NOW, &hbs, &n, &ig, &e);
    cm_buf_free(&ig.listed);
    if (rc == CM_OK) {
        FUZZ_CHECK(hbs != NULL);
        FUZZ_CHECK(n >= 1 && n <= CM_BATCH_MAX);
        for (size_t i = 0; i < n; i++) {
            const cm_hb *hb = &hbs[i];
            check_str(hb->agent, sizeof hb->agent);
            check_str(hb->id, sizeof hb->id);
            check_str(hb->intent_id, sizeof hb->intent_id);
            check_str(hb->run_id, sizeof hb->run_id);
            check_str(hb->session_id, sizeof hb->session_id);
            check_str(hb->workflow, sizeof hb->workflow);
            check_str(hb->parent_intent_id, sizeof hb->parent_intent_id);
            check_str(hb->status, sizeof hb->status);
            FUZZ_CHECK(hb->agent[0] == '\0' || cm_addr_parse(hb->agent, strlen(hb->agent), NULL) == CM_OK);
            FUZZ_CHECK(hb->ts >= FUZZ_NOW - CM_TS_PAST_S && hb->ts <= FUZZ_NOW + CM_TS_FUTURE_S);
            FUZZ_CHECK(hb->cost_nanos >= 0 && hb->cost_nanos <= CM_MONEY_MAX);
            const int64_t counts[] = {hb->tokens_in, hb->tokens_out, hb->tokens_cached,
                                      hb->llm_calls, hb->tool_calls, hb->intents_total,
                                      hb->intents_succeeded, hb->intents_failed};
            for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++)
                FUZZ_CHECK(counts[k] >= 0 && counts[k] <= CM_COUNT_MAX);
            FUZZ_CHECK(!hb->has_latency || (hb->avg_latency_ms >= 0 && hb->avg_latency_ms <= 1e12));
        }
        free(hbs);
    } else {
        FUZZ_CHECK(hbs == NULL && n == 0);
        FUZZ_CHECK(e.status == 400 || e.status == 413);
        FUZZ_CHECK(e.code != NULL && e.code[0] != '\0');
        check_str(e.message, sizeof e.message);
        check_str(e.field, sizeof e.field);
        /* Both go into the JSON error body. */
        FUZZ_CHECK(fuzz_utf8_valid(e.message));
        FUZZ_CHECK(fuzz_utf8_valid(e.field));
    }
    free(body);
    return 0;
}
