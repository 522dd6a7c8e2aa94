/* fuzz_cloudevents.c - cm_ce_decode on arbitrary bodies, then each event
 * under a meter with every path.
 *
 * Besides memory safety, checks the contract: on CM_OK 1..CM_BATCH_MAX
 * events with their required fields, times in the heartbeat window; a
 * heartbeat made of one has an agent NAME that is an address segment and
 * money and counts in range; on failure nothing and a 4xx. */
#include "address.h"
#include "cloudevents.h"
#include "error.h"
#include "fuzz.h"
#include "money.h"

#include <stdlib.h>
#include <string.h>

#define FUZZ_NOW 1795342500LL

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = malloc(size ? size : 1);
    if (!body) return 0;
    if (size) memcpy(body, data, size);
    static const cm_meter m = {"t", "$.cost", "$.usage.in", "$.usage.out", "$.agent"};
    static const cm_meter subject_is_agent = {"t", "$.cost", "", "", ""};
    cm_ce_event *evs = NULL;
    size_t n = 0;
    cm_apierr e;
    memset(&e, 0, sizeof e);
    if (cm_ce_decode("application/json", body, size, FUZZ_NOW, &evs, &n, &e) == CM_OK) {
        FUZZ_CHECK(n >= 1 && n <= CM_BATCH_MAX);
        for (size_t i = 0; i < n; i++) {
            FUZZ_CHECK(evs[i].id[0] && evs[i].source[0] && evs[i].type[0] && evs[i].subject[0]);
            FUZZ_CHECK(evs[i].ts >= FUZZ_NOW - CM_TS_PAST_S && evs[i].ts <= FUZZ_NOW + CM_TS_FUTURE_S);
            for (int k = 0; k < 2; k++) {
                cm_hb hb;
                if (cm_ce_apply(&evs[i], i, k ? &subject_is_agent : &m, &hb, &e) != CM_OK) continue;
                FUZZ_CHECK(cm_addr_check_org(hb.agent, strlen(hb.agent)) == CM_OK);
                FUZZ_CHECK(hb.cost_nanos >= 0 && hb.cost_nanos <= CM_MONEY_MAX);
                FUZZ_CHECK(hb.tokens_in >= 0 && hb.tokens_in <= CM_COUNT_MAX && hb.tokens_out >= 0 &&
                           hb.tokens_out <= CM_COUNT_MAX);
            }
        }
        cm_ce_free(evs, n);
    } else {
        FUZZ_CHECK(evs == NULL && n == 0 && e.status >= 400 && e.status < 500);
    }
    free(body);
    return 0;
}
