#include "policy.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[CM_LIM_COUNT] = {
    "max_intents_per_hour", "max_intents_per_day", "max_cost_per_hour_usd",
    "max_cost_per_day_usd", "max_cost_per_month_usd",
};

static const cm_window windows[CM_LIM_COUNT] = {
    CM_WIN_HOUR, CM_WIN_DAY, CM_WIN_HOUR, CM_WIN_DAY, CM_WIN_MONTH,
};

void cm_policy_init(cm_policy *p)
{
    memset(p, 0, sizeof *p);
    p->block = true;
    static const int64_t defaults[] = {500000000, 750000000, 900000000, 1000000000};
    p->nthresh = 4;
    memcpy(p->thresh, defaults, sizeof defaults);
}

void cm_policy_window_starts(int64_t now, int64_t starts[CM_WIN3])
{
    static const cm_window w[CM_WIN3] = {CM_WIN_HOUR, CM_WIN_DAY, CM_WIN_MONTH};
    for (int i = 0; i < CM_WIN3; i++) {
        int64_t to;
        cm_window_bounds(w[i], now, &starts[i], &to);
    }
}

const char *cm_limit_name(int lim)
{
    return lim >= 0 && lim < CM_LIM_COUNT ? names[lim] : "unknown";
}

bool cm_limit_is_cost(int lim)
{
    return lim >= CM_LIM_COST_HOUR && lim < CM_LIM_COUNT;
}

bool cm_policy_has_limit(const cm_policy *p)
{
    for (int lim = 0; lim < CM_LIM_COUNT; lim++)
        if (p->has[lim]) return true;
    return false;
}

cm_window cm_limit_window(int lim)
{
    return lim >= 0 && lim < CM_LIM_COUNT ? windows[lim] : CM_WIN_HOUR;
}

int cm_policy_binding(unsigned mask, int64_t now, int64_t *retry_after)
{
    int best = -1;
    int64_t best_end = 0;
    for (int i = 0; i < CM_LIM_COUNT; i++) {
        if (!(mask & (1u << i))) continue;
        int64_t from, to;
        cm_window_bounds(windows[i], now, &from, &to);
        if (best < 0 || to > best_end) {
            best = i;
            best_end = to;
        }
    }
    if (best >= 0 && retry_after) *retry_after = best_end - now > 0 ? best_end - now : 1;
    return best;
}

int64_t cm_policy_threshold(int64_t limit, int64_t fraction)
{
    __int128 prod = (__int128)limit * fraction;
    __int128 q = prod / CM_FRACTION_ONE;
    if (prod % CM_FRACTION_ONE) q++;
    return q > INT64_MAX ? INT64_MAX : (int64_t)q;
}

void cm_policy_value_json(int lim, int64_t v, cm_buf *b)
{
    if (cm_limit_is_cost(lim)) cm_buf_add_money(b, v);
    else cm_buf_addf(b, "%lld", (long long)v);
}

void cm_policy_mark_json(int lim, int64_t limit_value, int64_t current, int64_t fraction, cm_buf *b)
{
    cm_buf_addf(b, "{\"limit\":\"%s\",\"limit_value\":", cm_limit_name(lim));
    cm_policy_value_json(lim, limit_value, b);
    cm_buf_adds(b, ",\"current\":");
    cm_policy_value_json(lim, current, b);
    if (fraction > 0) {
        cm_buf_adds(b, ",\"threshold\":");
        cm_buf_add_money(b, fraction);
    }
    cm_buf_adds(b, "}");
}

void cm_policy_json(const cm_policy *p, cm_buf *b)
{
    cm_buf_add(b, "{", 1);
    for (int i = 0; i < CM_LIM_COUNT; i++) {
        cm_buf_adds(b, "\"");
        cm_buf_adds(b, names[i]);
        cm_buf_adds(b, "\":");
        if (p->has[i]) cm_policy_value_json(i, p->limit[i], b);
        else cm_buf_adds(b, "null");
        cm_buf_add(b, ",", 1);
    }
    cm_buf_adds(b, "\"" CM_POLICY_TREE_NAME "\":");
    if (p->has_tree_cap) cm_buf_add_money(b, p->tree_cap);
    else cm_buf_adds(b, "null");
    cm_buf_adds(b, ",\"action_on_breach\":");
    cm_buf_adds(b, p->block ? "\"block\"" : "\"alert\"");
    cm_buf_adds(b, ",\"alert_thresholds\":[");
    for (int i = 0; i < p->nthresh; i++) {
        if (i) cm_buf_add(b, ",", 1);
        /* A fraction is printed like money: both are 1e-9 fixed point. */
        cm_buf_add_money(b, p->thresh[i]);
    }
    cm_buf_adds(b, "]}");
}

void cm_policy_thresh_text(const cm_policy *p, char out[CM_POLICY_THRESH_TEXT])
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < p->nthresh; i++)
        used += (size_t)snprintf(out + used, CM_POLICY_THRESH_TEXT - used, "%s%lld", i ? "," : "",
                                 (long long)p->thresh[i]);
}

int cm_policy_thresh_parse(const char *text, cm_policy *p)
{
    p->nthresh = 0;
    const char *s = text;
    while (*s && p->nthresh < CM_THRESH_MAX) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v <= 0 || v > CM_FRACTION_ONE) return CM_EINVAL;
        p->thresh[p->nthresh++] = v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return CM_EINVAL;
    }
    return *s ? CM_EINVAL : CM_OK;
}
