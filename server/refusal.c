#include "refusal.h"
#include "money.h"

#include <stdio.h>
#include <string.h>

bool cm_refusal_of(const char *sqlstate, const char *constraint, cm_apierr *e)
{
    if (strncmp(sqlstate, "22", 2) != 0 && strncmp(sqlstate, "23", 2) != 0) return false;
    if (strcmp(sqlstate, "23514") == 0 && strncmp(constraint, "cap_", 4) == 0) {
        /* schema/007_caps.sql names each cap after its metric. A month is
         * the sum of its days and hours, so it is the window that binds. */
        char field[64], cap[CM_MONEY_BUFSZ];
        snprintf(field, sizeof field, "metrics.%s", constraint + 4);
        if (strcmp(constraint, "cap_cost_usd") == 0) cm_money_format(CM_TOTAL_MAX, cap, sizeof cap);
        else snprintf(cap, sizeof cap, "%lld", CM_TOTAL_MAX);
        cm_apierr_set(e, 422, "total_limit_exceeded", field,
                      "this request would take an agent's total of %s in a calendar month (UTC) past its cap of %s;"
                      " nothing of it was recorded",
                      field, cap);
    } else if (strcmp(sqlstate, "23514") == 0 && strcmp(constraint, "quota_agents_per_org") == 0) {
        /* schema/008_agent_quota.sql: a new agent past its org's quota. */
        cm_apierr_set(e, 422, "agent_quota_exceeded", "agent",
                      "this org has registered as many agents as its quota allows; nothing of this request"
                      " was recorded");
    } else if (strcmp(sqlstate, "22003") == 0) {
        cm_apierr_set(e, 422, "total_limit_exceeded", NULL,
                      "this request would take an agent's total past what PostgreSQL can store;"
                      " nothing of it was recorded");
    } else {
        cm_apierr_set(e, 422, "unprocessable", NULL,
                      "PostgreSQL refused this request (SQLSTATE %s) and would refuse it again;"
                      " nothing of it was recorded",
                      sqlstate);
    }
    return true;
}
