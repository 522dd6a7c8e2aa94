/* test_backoff.c - the reconnect delays: the first, the doubling, the cap,
 * and the start again after a success. */
#include "unit.h"

#include "backoff.h"

void test_backoff(void)
{
    cm_backoff b = {0};
    static const uint64_t want[] = {100, 200, 400, 800, 1600, 3200, 5000, 5000};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) CHECK_EQ_I64(cm_backoff_next(&b), want[i]);

    /* A long outage stays at the cap. */
    for (int i = 0; i < 100; i++) cm_backoff_next(&b);
    CHECK_EQ_I64(cm_backoff_next(&b), CM_BACKOFF_MAX_MS);

    cm_backoff_reset(&b);
    CHECK_EQ_I64(cm_backoff_next(&b), CM_BACKOFF_FIRST_MS);
    CHECK_EQ_I64(cm_backoff_next(&b), 2 * CM_BACKOFF_FIRST_MS);

    /* A reset before any failure changes nothing. */
    cm_backoff fresh = {0};
    cm_backoff_reset(&fresh);
    CHECK_EQ_I64(cm_backoff_next(&fresh), CM_BACKOFF_FIRST_MS);
}
