/* test_ingest.c - which group-commit failures a retry cannot fix, the answer
 * for the request at fault, and that the caps of schema/007_caps.sql are
 * CM_TOTAL_MAX and named after the metrics that answer names. */
#include "unit.h"

#include "refusal.h"
#include "money.h"

#include <stdlib.h>

extern const char *const cm_schema_names[];
extern const char *const cm_schema_sql[];

static const char *caps_sql(void)
{
    for (int i = 0; cm_schema_names[i]; i++)
        if (strcmp(cm_schema_names[i], "007_caps.sql") == 0) return cm_schema_sql[i];
    return "";
}

static void caps(void)
{
    static const char *const metrics[] = {"cost_usd",      "tokens_in",     "tokens_out",
                                          "tokens_cached", "llm_calls",     "tool_calls",
                                          "intents_total", "intents_succeeded", "intents_failed"};
    const char *sql = caps_sql();
    int n = 0;
    for (const char *p = sql; (p = strstr(p, "ADD CONSTRAINT cap_")) != NULL; p++) n++;
    CHECK_EQ_I64(n, sizeof metrics / sizeof metrics[0]);
    for (size_t i = 0; i < sizeof metrics / sizeof metrics[0]; i++) {
        const char *m = metrics[i];
        int cost = strcmp(m, "cost_usd") == 0;
        char constraint[48], want[160];
        snprintf(constraint, sizeof constraint, "cap_%s", m);
        snprintf(want, sizeof want, "ADD CONSTRAINT %s CHECK (%s <= %lld) NOT VALID", constraint,
                 cost ? "cost_nanos" : m, CM_TOTAL_MAX);
        CHECK(strstr(sql, want) != NULL);

        cm_apierr e;
        memset(&e, 0, sizeof e);
        CHECK(cm_refusal_of("23514", constraint, &e));
        CHECK_EQ_I64(e.status, 422);
        CHECK_STR(e.code, "total_limit_exceeded");
        snprintf(want, sizeof want, "metrics.%s", m);
        CHECK_STR(e.field, want);
        CHECK(strstr(e.message, want) != NULL);
        snprintf(want, sizeof want, "cap of %s;", cost ? "1000000000" : "1000000000000000000");
        CHECK(strstr(e.message, want) != NULL);
    }
}

static void refusals(void)
{
    cm_apierr e;
    /* An overflow without a cap: a total written before the caps. */
    CHECK(cm_refusal_of("22003", "", &e));
    CHECK_EQ_I64(e.status, 422);
    CHECK_STR(e.code, "total_limit_exceeded");
    CHECK_STR(e.field, "");
    /* Any other data exception or integrity violation, named. */
    CHECK(cm_refusal_of("22021", "", &e));
    CHECK_EQ_I64(e.status, 422);
    CHECK_STR(e.code, "unprocessable");
    CHECK(strstr(e.message, "22021") != NULL);
    CHECK(cm_refusal_of("23514", "rollup_agent_grain_check", &e));
    CHECK_STR(e.code, "unprocessable");
    CHECK(cm_refusal_of("23505", "heartbeats_dedupe", &e));
    CHECK_STR(e.code, "unprocessable");
    /* Worth a retry: a dropped connection (""), deadlock, serialization,
     * shutdown, a full disk, too many connections. */
    static const char *const transient[] = {"", "40P01", "40001", "57P01", "53100", "53300", "08006", "XX000"};
    for (size_t i = 0; i < sizeof transient / sizeof transient[0]; i++)
        CHECK(!cm_refusal_of(transient[i], "", &e));
}

void test_ingest(void)
{
    caps();
    refusals();
}
