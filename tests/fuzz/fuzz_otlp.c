/* fuzz_otlp.c - an OTLP trace export through cm_inflate_body and
 * cm_otlp_decode, then its answer, on arbitrary bytes. The first byte
 * chooses the encoding (bit 0: protobuf, else JSON) and whether the rest is
 * gzip'd (bit 1).
 *
 * Besides memory safety, checks the contract: on CM_OK at most
 * CM_BATCH_MAX heartbeats, each with a 16-hex-digit id, an agent NAME that
 * is an address segment, money and counts in range, one LLM call; on
 * failure no heartbeats and a 4xx. */
#include "address.h"
#include "error.h"
#include "fuzz.h"
#include "inflate.h"
#include "money.h"
#include "otlp.h"

#include <stdlib.h>
#include <string.h>

#define FUZZ_NOW 1795342500LL

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    const char *ctype = data[0] & 1 ? "application/x-protobuf" : "application/json";
    const char *encoding = data[0] & 2 ? "gzip" : NULL;
    char *body = malloc(size);
    if (!body) return 0;
    memcpy(body, data + 1, size - 1);
    char *owned;
    const char *in;
    size_t len;
    cm_apierr e;
    memset(&e, 0, sizeof e);
    if (cm_inflate_body(encoding, body, size - 1, &owned, &in, &len, &e) != CM_OK) {
        FUZZ_CHECK(e.status == 400 || e.status == 413);
        free(body);
        return 0;
    }
    FUZZ_CHECK(len <= CM_INFLATE_MAX);
    cm_hb *hbs = NULL;
    size_t n = 0;
    cm_otlp_stats st;
    int rc = cm_otlp_decode(ctype, in, len, FUZZ_NOW, &hbs, &n, &st, &e);
    if (rc == CM_OK) {
        FUZZ_CHECK(n <= CM_BATCH_MAX && (n == 0) == (hbs == NULL));
        for (size_t i = 0; i < n; i++) {
            const cm_hb *h = &hbs[i];
            FUZZ_CHECK(strlen(h->id) == 16 && strspn(h->id, "0123456789abcdef") == 16);
            FUZZ_CHECK(cm_addr_check_org(h->agent, strlen(h->agent)) == CM_OK);
            FUZZ_CHECK(h->cost_nanos >= 0 && h->cost_nanos <= CM_MONEY_MAX && h->llm_calls == 1);
            FUZZ_CHECK(h->tokens_in >= 0 && h->tokens_in <= CM_COUNT_MAX && h->tokens_out >= 0 &&
                       h->tokens_out <= CM_COUNT_MAX && h->tokens_cached >= 0 && h->tokens_cached <= CM_COUNT_MAX);
            FUZZ_CHECK(h->ts >= FUZZ_NOW - CM_TS_PAST_S && h->ts <= FUZZ_NOW + CM_TS_FUTURE_S);
            FUZZ_CHECK(fuzz_utf8_valid(h->session_id));
        }
        FUZZ_CHECK(fuzz_utf8_valid(st.why));
        cm_buf b;
        cm_buf_init(&b);
        cm_otlp_reply(&st, &b);
        cm_buf_free(&b);
    } else {
        FUZZ_CHECK(hbs == NULL && n == 0 && e.status >= 400 && e.status < 500);
    }
    free(hbs);
    free(owned);
    free(body);
    return 0;
}
