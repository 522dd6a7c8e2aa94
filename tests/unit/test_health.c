/* test_health.c - the health thresholds' SQL text says the same numbers,
 * so an edit that makes them other than plain literals shows up here. */
#include "unit.h"

#include "health.h"

#include <stdlib.h>

void test_health(void)
{
    CHECK_STR(CM_HEALTH_HEALTHY_SQL, "90");
    CHECK_STR(CM_HEALTH_DEGRADED_SQL, "300");
    CHECK_EQ_I64(strtol(CM_HEALTH_HEALTHY_SQL, NULL, 10), CM_HEALTH_HEALTHY_S);
    CHECK_EQ_I64(strtol(CM_HEALTH_DEGRADED_SQL, NULL, 10), CM_HEALTH_DEGRADED_S);
    CHECK(CM_HEALTH_HEALTHY_S < CM_HEALTH_DEGRADED_S);
}
