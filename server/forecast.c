#include "forecast.h"
#include "timeutil.h"

int64_t cm_forecast_burn(int64_t this_hour, int64_t prev_hour, int64_t now)
{
    int64_t into = now % 3600;
    if (into < 0) into += 3600;
    __int128 b = (__int128)this_hour + (__int128)prev_hour * (3600 - into) / 3600;
    return b > INT64_MAX ? INT64_MAX : b < 0 ? 0 : (int64_t)b;
}

bool cm_forecast_exhaustion(int64_t current, int64_t limit, int64_t burn, int64_t now, int64_t window_end,
                            int64_t *at)
{
    if (current >= limit) {
        *at = now;
        return true;
    }
    if (burn <= 0) return false;
    __int128 left = (__int128)(limit - current) * 3600;
    __int128 t = (__int128)now + (left + burn - 1) / burn;
    if (t >= window_end) return false;
    *at = (int64_t)t;
    return true;
}

void cm_forecast_json(const cm_forecast *f, int64_t now, cm_buf *b)
{
    cm_buf_adds(b, "{\"burn_rate_usd_per_hour\":");
    cm_buf_add_money(b, f->burn);
    cm_buf_adds(b, ",\"exhaustion\":{");
    int first = 1;
    for (int i = 0; i < CM_LIM_COUNT; i++) {
        if (!cm_limit_is_cost(i) || !f->has[i]) continue;
        int64_t from, to, at;
        cm_window_bounds(cm_limit_window(i), now, &from, &to);
        cm_buf_addf(b, "%s\"%s\":", first ? "" : ",", cm_limit_name(i));
        first = 0;
        if (cm_forecast_exhaustion(f->current[i], f->limit[i], f->burn, now, to, &at)) cm_buf_add_jtime(b, at);
        else cm_buf_adds(b, "null");
    }
    cm_buf_adds(b, "}}");
}
