/* Forecasts: the burn rate of the last hour from two hour windows, and
 * when a limit runs out at that pace, by hand. */
#include "unit.h"

#include "forecast.h"
#include "timeutil.h"

static void burn(void)
{
    int64_t hour = cm_time_days_from_civil(2026, 11, 30) * 86400 + 10 * 3600;
    /* At the hour's start the whole previous hour is the last 60 minutes. */
    CHECK_EQ_I64(cm_forecast_burn(0, 3600000000LL, hour), 3600000000LL);
    /* 15 minutes in: this hour's $1, and 45/60 of the previous hour's $2. */
    CHECK_EQ_I64(cm_forecast_burn(1000000000LL, 2000000000LL, hour + 900), 2500000000LL);
    /* 59:59 in: 1/3600 of the previous hour's. */
    CHECK_EQ_I64(cm_forecast_burn(5, 3600, hour + 3599), 6);
    CHECK_EQ_I64(cm_forecast_burn(0, 0, hour + 10), 0);
    /* Totals near the caps do not overflow. */
    CHECK_EQ_I64(cm_forecast_burn(INT64_MAX, INT64_MAX, hour), INT64_MAX);
}

static void exhaustion(void)
{
    int64_t now = cm_time_days_from_civil(2026, 11, 30) * 86400 + 10 * 3600, at = 0;
    /* $2 left at $4 an hour: half an hour. */
    CHECK(cm_forecast_exhaustion(8000000000LL, 10000000000LL, 4000000000LL, now, now + 86400, &at));
    CHECK_EQ_I64(at, now + 1800);
    /* Rounded up to the second: 1 nano left at 3 nanos an hour is 1200 s. */
    CHECK(cm_forecast_exhaustion(9, 10, 3, now, now + 86400, &at));
    CHECK_EQ_I64(at, now + 1200);
    CHECK(cm_forecast_exhaustion(9, 10, 7, now, now + 86400, &at));
    CHECK_EQ_I64(at, now + 515); /* 3600 / 7 = 514.29 */
    /* The window ends first: no exhaustion in it. */
    CHECK(!cm_forecast_exhaustion(0, 10000000000LL, 1000000000LL, now, now + 3600, &at));
    /* Nothing burning: never. */
    CHECK(!cm_forecast_exhaustion(0, 1, 0, now, now + 3600, &at));
    /* Already reached: now. */
    CHECK(cm_forecast_exhaustion(10, 10, 0, now, now + 3600, &at));
    CHECK_EQ_I64(at, now);
}

static void json(void)
{
    int64_t now = cm_time_days_from_civil(2026, 11, 30) * 86400 + 10 * 3600; /* 2026-11-30T10:00:00Z */
    cm_forecast f = {.burn = 4000000000LL};
    f.has[CM_LIM_COST_DAY] = true;
    f.current[CM_LIM_COST_DAY] = 8000000000LL;
    f.limit[CM_LIM_COST_DAY] = 10000000000LL;
    f.has[CM_LIM_COST_HOUR] = true;
    f.current[CM_LIM_COST_HOUR] = 1;
    f.limit[CM_LIM_COST_HOUR] = 100000000000LL;
    cm_buf b;
    cm_buf_init(&b);
    cm_forecast_json(&f, now, &b);
    CHECK_STR(b.data, "{\"burn_rate_usd_per_hour\":4,\"exhaustion\":{\"max_cost_per_hour_usd\":null,"
                      "\"max_cost_per_day_usd\":\"2026-11-30T10:30:00Z\"}}");
    cm_buf_free(&b);
}

void test_forecast(void)
{
    burn();
    exhaustion();
    json();
}
