/* fuzz_policy.c - cm_codec_policy on arbitrary bodies, then everything a
 * decoded policy feeds: its JSON, its Redis hash fields and its stored
 * threshold text.
 *
 * Checks: on CM_OK limits are >= 0 (money ones <= CM_MONEY_MAX),
 * 1..CM_THRESH_MAX thresholds ascending in (0, 1e9]; the threshold text
 * parses back to the same thresholds; the Redis hash fields fit. On failure a
 * 4xx with a code. */
#include "buf.h"
#include "codec.h"
#include "error.h"
#include "fuzz.h"
#include "hot_layout.h"
#include "money.h"
#include "policy.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = malloc(size ? size : 1);
    if (!body) return 0;
    if (size) memcpy(body, data, size);
    cm_policy p;
    cm_apierr e;
    memset(&e, 0, sizeof e);
    unsigned present;
    int rc = cm_codec_policy(body, size, &p, &present, &e);
    free(body);
    if (rc != CM_OK) {
        FUZZ_CHECK(e.status == 400 || e.status == 413);
        FUZZ_CHECK(e.code != NULL && e.code[0] != '\0');
        FUZZ_CHECK(memchr(e.field, '\0', sizeof e.field) != NULL);
        FUZZ_CHECK(memchr(e.message, '\0', sizeof e.message) != NULL);
        /* Both go into the JSON error body, which must be UTF-8. */
        FUZZ_CHECK(fuzz_utf8_valid(e.message));
        FUZZ_CHECK(fuzz_utf8_valid(e.field));
        return 0;
    }
    for (int i = 0; i < CM_LIM_COUNT; i++) {
        if (!p.has[i]) continue;
        FUZZ_CHECK(p.limit[i] >= 0);
        if (cm_limit_is_cost(i)) FUZZ_CHECK(p.limit[i] <= CM_MONEY_MAX);
        else FUZZ_CHECK(p.limit[i] <= CM_COUNT_MAX);
    }
    FUZZ_CHECK(p.nthresh >= 1 && p.nthresh <= CM_THRESH_MAX);
    for (int i = 0; i < p.nthresh; i++) {
        FUZZ_CHECK(p.thresh[i] > 0 && p.thresh[i] <= CM_FRACTION_ONE);
        if (i) FUZZ_CHECK(p.thresh[i - 1] <= p.thresh[i]);
    }

    cm_buf b;
    cm_buf_init(&b);
    cm_policy_json(&p, &b);
    char *json = cm_buf_take(&b, NULL);
    free(json);

    char text[CM_POLICY_THRESH_TEXT];
    cm_policy_thresh_text(&p, text);
    cm_policy back;
    cm_policy_init(&back);
    FUZZ_CHECK(cm_policy_thresh_parse(text, &back) == CM_OK);
    FUZZ_CHECK(back.nthresh == p.nthresh);
    FUZZ_CHECK(memcmp(back.thresh, p.thresh, (size_t)p.nthresh * sizeof p.thresh[0]) == 0);

    char space[CM_HOT_POLICY_SPACE];
    const char *argv[CM_HOT_POLICY_ARGV_MAX];
    int argc = cm_hot_policy_fields(&p, space, argv);
    FUZZ_CHECK(argc >= 1 && argc <= CM_HOT_POLICY_ARGV_MAX);
    for (int i = 0; i < argc; i++) FUZZ_CHECK(argv[i] != NULL);
    return 0;
}
