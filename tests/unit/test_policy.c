/* The policy engine's pure arithmetic: binding limit and Retry-After at
 * window edges, threshold amounts, stored thresholds. */
#include "unit.h"

#include <stdlib.h>

#include "error.h"
#include "policy.h"
#include "timeutil.h"

static int64_t at(int64_t y, unsigned m, unsigned d, int hh, int mm, int ss)
{
    return cm_time_days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss;
}

static void binding(void)
{
    int64_t ra = -1;
    CHECK_EQ_I64(cm_policy_binding(0, at(2026, 11, 22, 10, 0, 0), &ra), -1);
    CHECK_EQ_I64(ra, -1);

    /* One second before the hour ends. */
    int64_t t = at(2026, 11, 22, 23, 59, 59);
    CHECK_EQ_I64(cm_policy_binding(1u << CM_LIM_INTENTS_HOUR, t, &ra), CM_LIM_INTENTS_HOUR);
    CHECK_EQ_I64(ra, 1);
    /* Hour and day breached together at 23:59:59: both end at midnight;
     * the tie goes to the lower index. */
    CHECK_EQ_I64(cm_policy_binding((1u << CM_LIM_INTENTS_HOUR) | (1u << CM_LIM_COST_DAY), t, &ra),
                 CM_LIM_INTENTS_HOUR);
    CHECK_EQ_I64(ra, 1);
    /* Earlier in the day the day window ends last and binds. */
    t = at(2026, 11, 22, 10, 15, 0);
    CHECK_EQ_I64(cm_policy_binding((1u << CM_LIM_COST_HOUR) | (1u << CM_LIM_COST_DAY), t, &ra), CM_LIM_COST_DAY);
    CHECK_EQ_I64(ra, 13 * 3600 + 45 * 60);
    CHECK_EQ_I64(cm_policy_binding(1u << CM_LIM_COST_HOUR, t, &ra), CM_LIM_COST_HOUR);
    CHECK_EQ_I64(ra, 45 * 60);
    /* Month ends: December rolls into the next year; a leap February. */
    t = at(2026, 12, 31, 23, 0, 0);
    CHECK_EQ_I64(cm_policy_binding((1u << CM_LIM_COST_MONTH) | (1u << CM_LIM_COST_DAY), t, &ra),
                 CM_LIM_COST_DAY); /* both end at 2027-01-01T00:00Z: tie */
    CHECK_EQ_I64(ra, 3600);
    t = at(2028, 2, 28, 12, 0, 0);
    CHECK_EQ_I64(cm_policy_binding(1u << CM_LIM_COST_MONTH, t, &ra), CM_LIM_COST_MONTH);
    CHECK_EQ_I64(ra, 12 * 3600 + 86400); /* 2028-02-29 exists */
    t = at(2027, 2, 28, 12, 0, 0);
    CHECK_EQ_I64(cm_policy_binding(1u << CM_LIM_COST_MONTH, t, &ra), CM_LIM_COST_MONTH);
    CHECK_EQ_I64(ra, 12 * 3600);
    /* Exactly at a window start the whole window is left. */
    t = at(2026, 11, 1, 0, 0, 0);
    CHECK_EQ_I64(cm_policy_binding(1u << CM_LIM_COST_MONTH, t, &ra), CM_LIM_COST_MONTH);
    CHECK_EQ_I64(ra, 30 * 86400);
}

static void thresholds(void)
{
    CHECK_EQ_I64(cm_policy_threshold(50000000000LL, 500000000), 25000000000LL);
    CHECK_EQ_I64(cm_policy_threshold(50000000000LL, CM_FRACTION_ONE), 50000000000LL);
    /* Rounds up: cost >= fraction * limit exactly when cost >= the amount. */
    CHECK_EQ_I64(cm_policy_threshold(1, 500000000), 1);
    CHECK_EQ_I64(cm_policy_threshold(3, 333333333), 1);
    CHECK_EQ_I64(cm_policy_threshold(10, 750000000), 8);
    CHECK_EQ_I64(cm_policy_threshold(0, 750000000), 0);
    CHECK_EQ_I64(cm_policy_threshold(INT64_MAX, CM_FRACTION_ONE), INT64_MAX);
}

static void defaults_and_json(void)
{
    cm_policy p;
    cm_policy_init(&p);
    CHECK(p.block);
    CHECK_EQ_I64(p.nthresh, 4);
    for (int i = 0; i < CM_LIM_COUNT; i++) CHECK(!p.has[i]);
    p.has[CM_LIM_COST_DAY] = true;
    p.limit[CM_LIM_COST_DAY] = 50000000000LL;
    p.has[CM_LIM_INTENTS_DAY] = true;
    p.limit[CM_LIM_INTENTS_DAY] = 500;
    cm_buf b;
    cm_buf_init(&b);
    cm_policy_json(&p, &b);
    char *s = cm_buf_take(&b, NULL);
    CHECK_STR(s, "{\"max_intents_per_hour\":null,\"max_intents_per_day\":500,\"max_cost_per_hour_usd\":null,"
                 "\"max_cost_per_day_usd\":50,\"max_cost_per_month_usd\":null,\"max_cost_per_intent_tree_usd\":null,"
                 "\"action_on_breach\":\"block\","
                 "\"alert_thresholds\":[0.5,0.75,0.9,1]}");
    free(s);
    CHECK_STR(cm_limit_name(CM_LIM_COST_MONTH), "max_cost_per_month_usd");
    CHECK_STR(cm_limit_name(99), "unknown");
    CHECK(cm_limit_is_cost(CM_LIM_COST_HOUR));
    CHECK(!cm_limit_is_cost(CM_LIM_INTENTS_DAY));
    CHECK_EQ_I64(cm_limit_window(CM_LIM_COST_MONTH), CM_WIN_MONTH);
}

static void stored_thresholds(void)
{
    cm_policy p;
    cm_policy_init(&p);
    CHECK_EQ_I64(cm_policy_thresh_parse("250000000,1000000000", &p), CM_OK);
    CHECK_EQ_I64(p.nthresh, 2);
    CHECK_EQ_I64(p.thresh[1], CM_FRACTION_ONE);
    char text[CM_POLICY_THRESH_TEXT];
    cm_policy_thresh_text(&p, text);
    CHECK_STR(text, "250000000,1000000000");
    p.nthresh = CM_THRESH_MAX;
    for (int i = 0; i < CM_THRESH_MAX; i++) p.thresh[i] = CM_FRACTION_ONE;
    cm_policy_thresh_text(&p, text);
    CHECK_EQ_I64(strlen(text), CM_THRESH_MAX * 11 - 1); /* the longest fits whole */
    CHECK_EQ_I64(cm_policy_thresh_parse("0", &p), CM_EINVAL);
    CHECK_EQ_I64(cm_policy_thresh_parse("2000000000", &p), CM_EINVAL);
    CHECK_EQ_I64(cm_policy_thresh_parse("5x", &p), CM_EINVAL);
}

/* One shape for the events of both paths that record a mark. */
static void mark_details(void)
{
    static const struct {
        int lim;
        int64_t limit_value, current, fraction;
        const char *want;
    } cases[] = {
        {CM_LIM_COST_DAY, 1000000000, 1500000000, 0,
         "{\"limit\":\"max_cost_per_day_usd\",\"limit_value\":1,\"current\":1.5}"},
        {CM_LIM_INTENTS_DAY, 2, 2, 0, "{\"limit\":\"max_intents_per_day\",\"limit_value\":2,\"current\":2}"},
        {CM_LIM_COST_MONTH, 3000000000, 2250000001, 750000000,
         "{\"limit\":\"max_cost_per_month_usd\",\"limit_value\":3,\"current\":2.250000001,\"threshold\":0.75}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cm_buf b;
        cm_buf_init(&b);
        cm_policy_mark_json(cases[i].lim, cases[i].limit_value, cases[i].current, cases[i].fraction, &b);
        char *s = cm_buf_take(&b, NULL);
        CHECK_STR(s, cases[i].want);
        free(s);
    }
}

void test_policy(void)
{
    binding();
    thresholds();
    defaults_and_json();
    stored_thresholds();
    mark_details();
}
