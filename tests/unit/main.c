/* main.c - runs every unit suite and prints one summary line. */
#include "unit.h"

#include <stdlib.h>

int unit_passed;
int unit_failed;

int main(void)
{
    test_error();
    test_money();
    test_pricing();
    test_time();
    test_address();
    test_buf();
    test_routes();
    test_codec();
    test_policy();
    test_budget();
    test_forecast();
    test_keycache();
    test_queue();
    test_backoff();
    test_health();
    test_hot_layout();
    test_decode();
    test_egress();
    test_ingest();
    test_seen();
    test_nameset();
    test_config();
    test_fold();
    test_auth();
    test_hbrow();
    printf("%d passed, %d failed\n", unit_passed, unit_failed);
    return unit_failed > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
