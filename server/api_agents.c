/* api_agents.c - reading agents: the list, one agent, an agent's or an
 * intent's spend, the events. */
#include "api_routes.h"
#include "error.h"
#include "forecast.h"
#include "policy_row.h"
#include "rollup.h"
#include "health.h"
#include "money.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void agent_not_found(cm_job *j)
{
    cm_api_error(j, 404, "agent_not_found", NULL, "no such agent: it registers with its first heartbeat");
}

/* Appends ,"next_cursor": the value of column col of the last row when the
 * page is full (there may be more), else null. */
static void next_cursor(cm_buf *b, const cm_pgres *res, int limit, int col)
{
    int rows = cm_pgres_rows(res);
    cm_buf_adds(b, ",\"next_cursor\":");
    if (rows > 0 && rows >= limit) cm_buf_add_jstr(b, cm_pgres_get(res, rows - 1, col));
    else cm_buf_adds(b, "null");
}

/* ---- the agent view, shared by the list and one agent ---- */

/* The agent view (api_routes.h). */
#define AGENT_VIEW_SQL                                                                             \
    "SELECT a.address, " \
    CM_HEALTH_CASE_SQL("a.killed", "a.last_heartbeat", "($2::bigint - extract(epoch FROM a.last_heartbeat))") \
    " AS health," \
    " " CM_PG_EPOCH("a.last_heartbeat") "," \
    " CASE WHEN a.killed THEN 'killed' WHEN c.action_on_breach = 'block' AND (" \
    "  ih.n >= c.max_intents_per_hour OR idy.n >= c.max_intents_per_day" \
    "  OR coalesce(h.cost_nanos, 0) >= c.max_cost_per_hour OR coalesce(d.cost_nanos, 0) >= c.max_cost_per_day" \
    "  OR coalesce(m.cost_nanos, 0) >= c.max_cost_per_month) THEN 'blocked' ELSE 'active' END," \
    " coalesce(h.cost_nanos, 0), coalesce(d.cost_nanos, 0), coalesce(m.cost_nanos, 0), ih.n, idy.n," \
    " c.address IS NOT NULL, c.max_intents_per_hour, c.max_intents_per_day, c.max_cost_per_hour," \
    " c.max_cost_per_day, c.max_cost_per_month, c.action_on_breach, c.alert_thresholds, c.max_cost_per_intent_tree," \
    " CASE WHEN $6::text IS NULL THEN '[]' ELSE (SELECT coalesce(json_agg(json_build_object('id', e.id," \
    "  'event_type', e.event_type, 'ts', to_char(e.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')," \
    "  'details', e.details) ORDER BY e.id DESC), '[]')::text FROM (SELECT * FROM events" \
    "  WHERE address = a.address ORDER BY id DESC LIMIT 10) e) END," \
    " coalesce(ph.cost_nanos, 0)" \
    " FROM agents a LEFT JOIN cost_policies c ON c.address = a.address" \
    " LEFT JOIN rollup_agent h ON h.address = a.address AND h.grain = 'h' AND h.bucket = to_timestamp($3::bigint)" \
    " LEFT JOIN rollup_agent ph ON ph.address = a.address AND ph.grain = 'h'" \
    "  AND ph.bucket = to_timestamp($3::bigint - 3600)" \
    " LEFT JOIN rollup_agent d ON d.address = a.address AND d.grain = 'd' AND d.bucket = to_timestamp($4::bigint)" \
    " LEFT JOIN rollup_agent m ON m.address = a.address AND m.grain = 'm' AND m.bucket = to_timestamp($5::bigint)" \
    " CROSS JOIN LATERAL (SELECT count(*) AS n FROM intents i WHERE i.address = a.address" \
    "  AND i.admitted_at >= to_timestamp($3::bigint)) ih" \
    " CROSS JOIN LATERAL (SELECT count(*) AS n FROM intents i WHERE i.address = a.address" \
    "  AND i.admitted_at >= to_timestamp($4::bigint)) idy" \
    " WHERE a.org = $1 AND ($6::text IS NULL OR a.address = $6)"

const char cm_api_agent_view_sql[] = AGENT_VIEW_SQL;

void cm_api_agent_view_params(const cm_job *j, const cm_ident *who, const char *address,
                              char space[4][24], const char *params[6])
{
    int64_t starts[CM_WIN3];
    cm_policy_window_starts(j->now, starts);
    snprintf(space[0], 24, "%lld", (long long)j->now);
    for (int w = 0; w < CM_WIN3; w++) snprintf(space[1 + w], 24, "%lld", (long long)starts[w]);
    params[0] = who->org;
    for (int i = 0; i < 4; i++) params[1 + i] = space[i];
    params[5] = address;
}

static void on_agent_list(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = cm_api_take(arg, rc);
    if (!j) return;
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{\"agents\":[");
    for (int i = 0; i < cm_pgres_rows(res); i++) {
        if (i) cm_buf_add(&b, ",", 1);
        cm_buf_adds(&b, "{");
        cm_api_jfield(&b, "address", cm_pgres_get(res, i, 0), 1);
        cm_api_jfield(&b, "health", cm_pgres_get(res, i, 1), 0);
        cm_buf_adds(&b, ",\"last_heartbeat\":");
        if (cm_pgres_isnull(res, i, 2)) cm_buf_adds(&b, "null");
        else cm_buf_add_jtime(&b, strtoll(cm_pgres_get(res, i, 2), NULL, 10));
        cm_buf_addf(&b, ",\"intents_today\":%s,\"cost_today_usd\":", cm_pgres_get(res, i, 8));
        cm_buf_add_money(&b, strtoll(cm_pgres_get(res, i, 5), NULL, 10));
        cm_api_jfield(&b, "state", cm_pgres_get(res, i, 3), 0);
        cm_buf_adds(&b, "}");
    }
    cm_buf_adds(&b, "]");
    next_cursor(&b, res, j->req.agent_list.limit, 0);
    cm_buf_adds(&b, "}");
    cm_api_reply(j, 200, &b);
}

int cm_api_agent_list(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    const cm_req_agent_list *q = &j->req.agent_list;
    cm_api_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    char space[4][24], limit[16];
    const char *params[9];
    cm_api_agent_view_params(j, who, cm_api_bound_agent(who), space, params);
    snprintf(limit, sizeof limit, "%d", q->limit);
    params[6] = q->health[0] ? q->health : NULL;
    params[7] = limit;
    params[8] = q->after[0] ? q->after : NULL;
    return cm_api_query(c,
                        "SELECT * FROM (" AGENT_VIEW_SQL " AND ($9::text IS NULL OR a.address > $9)) v"
                        " WHERE $7::text IS NULL OR v.health = $7 ORDER BY 1 LIMIT $8::int",
                        9, params, on_agent_list, e);
}

static void on_agent_get(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = cm_api_take(arg, rc);
    if (!j) return;
    if (cm_pgres_rows(res) == 0) {
        agent_not_found(j);
        return;
    }
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{");
    cm_api_jfield(&b, "address", cm_pgres_get(res, 0, 0), 1);
    cm_api_jfield(&b, "health", cm_pgres_get(res, 0, 1), 0);
    cm_buf_adds(&b, ",\"last_heartbeat\":");
    if (cm_pgres_isnull(res, 0, 2)) cm_buf_adds(&b, "null");
    else cm_buf_add_jtime(&b, strtoll(cm_pgres_get(res, 0, 2), NULL, 10));
    cm_api_jfield(&b, "state", cm_pgres_get(res, 0, 3), 0);
    cm_buf_adds(&b, ",\"hour\":{\"cost_usd\":");
    cm_buf_add_money(&b, strtoll(cm_pgres_get(res, 0, 4), NULL, 10));
    cm_buf_addf(&b, ",\"intents\":%s},\"today\":{\"cost_usd\":", cm_pgres_get(res, 0, 7));
    cm_buf_add_money(&b, strtoll(cm_pgres_get(res, 0, 5), NULL, 10));
    cm_buf_addf(&b, ",\"intents\":%s},\"month\":{\"cost_usd\":", cm_pgres_get(res, 0, 8));
    cm_buf_add_money(&b, strtoll(cm_pgres_get(res, 0, 6), NULL, 10));
    cm_buf_adds(&b, "},\"policy\":");
    cm_policy pol;
    bool has_policy = strcmp(cm_pgres_get(res, 0, 9), "t") == 0;
    if (has_policy) {
        cm_policy_row_read(res, 0, 10, &pol);
        cm_policy_json(&pol, &b);
    } else {
        cm_buf_adds(&b, "null");
    }
    /* The forecast of an agent with a cost limit (forecast.h): the burn of
     * the last hour and when each cost limit runs out at that pace. */
    if (has_policy && (pol.has[CM_LIM_COST_HOUR] || pol.has[CM_LIM_COST_DAY] || pol.has[CM_LIM_COST_MONTH])) {
        cm_forecast f = {.burn = cm_forecast_burn(strtoll(cm_pgres_get(res, 0, 4), NULL, 10),
                                                  strtoll(cm_pgres_get(res, 0, 11 + CM_POLICY_ROW_NCOLS), NULL, 10), j->now)};
        for (int i = CM_LIM_COST_HOUR; i < CM_LIM_COUNT; i++) {
            f.has[i] = pol.has[i];
            f.limit[i] = pol.limit[i];
            f.current[i] = strtoll(cm_pgres_get(res, 0, 4 + i - CM_LIM_COST_HOUR), NULL, 10);
        }
        cm_buf_adds(&b, ",\"forecast\":");
        cm_forecast_json(&f, j->now, &b);
    }
    cm_buf_adds(&b, ",\"recent_events\":");
    cm_buf_adds(&b, cm_pgres_get(res, 0, 10 + CM_POLICY_ROW_NCOLS));
    cm_buf_adds(&b, "}");
    cm_api_reply(j, 200, &b);
}

int cm_api_agent_get(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    const char *address = j->req.agent.address;
    if (cm_api_may_act_for(who, address, "address_id", e) != CM_OK) return CM_EFORBIDDEN;
    cm_api_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    char space[4][24];
    const char *params[6];
    cm_api_agent_view_params(j, who, address, space, params);
    return cm_api_query(c, cm_api_agent_view_sql, 6, params, on_agent_get, e);
}

/* ---- spend ---- */

static void on_spend(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_api_spend_call *c = arg;
    int64_t from = c->from, to = c->to, step = c->step;
    cm_job *j = cm_api_take(c, rc);
    if (!j) return;
    const cm_req_spend_agent *q = &j->req.spend_agent;
    int rows = cm_pgres_rows(res);
    if (rows == 0 || strcmp(cm_pgres_get(res, 0, 6), "0") == 0) {
        agent_not_found(j);
        return;
    }
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{");
    cm_api_jfield(&b, "agent", q->address, 1);
    cm_api_window_json(&b, q->window, from, to, step);
    cm_api_spend_totals(&b, res, 0, 8);
    cm_buf_addf(&b, ",\"intents\":%s", cm_pgres_get(res, 0, 7));
    cm_api_outcomes(&b, res, 0, 27);
    cm_api_spend_models(&b, cm_pgres_get(res, 0, 34));
    cm_api_spend_series(&b, res, 0);
    /* An agent with a cost limit: its burn over the last hour and when each
     * limit runs out at that pace, as of now (forecast.h). */
    cm_forecast f = {.burn = cm_forecast_burn(strtoll(cm_pgres_get(res, 0, 23), NULL, 10),
                                              strtoll(cm_pgres_get(res, 0, 24), NULL, 10), j->now)};
    bool any = false;
    for (int i = CM_LIM_COST_HOUR; i < CM_LIM_COUNT; i++) {
        int k = i - CM_LIM_COST_HOUR;
        f.has[i] = !cm_pgres_isnull(res, 0, 20 + k);
        f.limit[i] = strtoll(cm_pgres_get(res, 0, 20 + k), NULL, 10);
        f.current[i] = strtoll(cm_pgres_get(res, 0, k == 0 ? 23 : 24 + k), NULL, 10);
        any |= f.has[i];
    }
    if (any) {
        cm_buf_adds(&b, ",\"forecast\":");
        cm_forecast_json(&f, j->now, &b);
    }
    cm_buf_adds(&b, "}");
    cm_api_reply(j, 200, &b);
}

/* Buckets as Unix seconds: UTC days are always 86400 s, whatever the
 * session's time zone. One range scan of the agent's hours (cost and counts:
 * its own rollup, the one Redis mirrors) and one of its 'agent' unit (money
 * in and out, rollup + tail; the unit's tail is the agent's own raw rows, so
 * it is read without cm_hb_units, whose intent lookup per row of the whole
 * tail made this polled read costly), each summed per bucket, then joined to the
 * series so that empty buckets show. A window past the hours kept reads the
 * agent's day rows ($11), which outlive its hours (fold.h). Columns: 0..5 the series
 * (cm_api_spend_series), 6 the agent is known, 7 intents, 8..19 the totals
 * (cm_api_spend_totals), 20..26 the forecast's (below), 27..33 the outcomes
 * (cm_api_outcomes). The agent's raw rows past the watermark are read once
 * (CM_TAIL_CTE_SQL) for its money, its models and its outcomes: each read
 * of the tail checks every agent's rows there. A polled statement, so
 * prepared. */
static const char spend_sql[] =
    "WITH " CM_TAIL_CTE_SQL("cm_agent_tail($1) h") ","
    " r AS (SELECT (extract(epoch FROM bucket)::bigint - $2::bigint) / $4::bigint AS k,"
    " sum(cost_nanos) AS cost, sum(tokens_in) AS tin, sum(tokens_out) AS tout, sum(llm_calls) AS calls,"
    " sum(tool_calls) AS tools, sum(heartbeats) AS hb, sum(tokens_cached) AS tcached"
    " FROM rollup_agent WHERE address = $1 AND grain = $11"
    " AND bucket >= to_timestamp($2::bigint) AND bucket < to_timestamp($3::bigint) GROUP BY 1),"
    " m AS (SELECT (extract(epoch FROM bucket)::bigint - $2::bigint) / $4::bigint AS k,"
    " sum(revenue_nanos) AS rev, sum(refund_nanos) AS refund, sum(external_nanos) AS ext, sum(fees_nanos) AS fees"
    " FROM (SELECT bucket, revenue_nanos, refund_nanos, external_nanos, fees_nanos FROM rollup_unit"
    " WHERE org = $5 AND kind = 'agent' AND unit = $1 UNION ALL SELECT date_trunc('hour', ts, 'UTC'),"
    " revenue_nanos, refund_nanos, external_nanos, fees_nanos FROM " CM_TAIL_ROWS_SQL " AS heartbeats"
    ") AS units"
    " WHERE bucket >= to_timestamp($2::bigint) AND bucket < to_timestamp($3::bigint) GROUP BY 1),"
    " b AS (SELECT s, coalesce(r.cost, 0) AS cost_nanos, coalesce(r.tin, 0) AS tokens_in,"
    " coalesce(r.tout, 0) AS tokens_out, coalesce(r.calls, 0) AS llm_calls, coalesce(r.tools, 0) AS tool_calls,"
    " coalesce(r.hb, 0) AS heartbeats, coalesce(r.tcached, 0) AS tokens_cached,"
    " coalesce(m.rev, 0) AS revenue_nanos, coalesce(m.refund, 0) AS refund_nanos,"
    " coalesce(m.ext, 0) AS external_nanos, coalesce(m.fees, 0) AS fees_nanos"
    " FROM generate_series($2::bigint, $3::bigint - 1, $4::bigint) s"
    " LEFT JOIN r ON r.k = (s - $2::bigint) / $4::bigint LEFT JOIN m ON m.k = (s - $2::bigint) / $4::bigint),"
    " t AS (SELECT " CM_API_SPEND_SUMS_SQL " FROM b)"
    " SELECT s::text, cost_nanos::text, tokens_in::text, tokens_out::text, llm_calls::text,"
    " (revenue_nanos - refund_nanos - cost_nanos - external_nanos - fees_nanos)::text,"
    " (SELECT count(*) FROM agents WHERE address = $1)::text,"
    " (SELECT count(*) FROM intents WHERE address = $1 AND admitted_at >= to_timestamp($2::bigint)"
    " AND admitted_at < to_timestamp($3::bigint))::text, t.*,"
    /* 20..22 the cost limits of its policy; 23..26 the cost of the hour,
     * the hour before, the day and the month containing now ($6..$8): its
     * forecast. */
    " (SELECT max_cost_per_hour FROM cost_policies WHERE address = $1)::text,"
    " (SELECT max_cost_per_day FROM cost_policies WHERE address = $1)::text,"
    " (SELECT max_cost_per_month FROM cost_policies WHERE address = $1)::text,"
    " (SELECT cost_nanos FROM rollup_agent WHERE address = $1 AND grain = 'h' AND bucket = to_timestamp($6::bigint))::text,"
    " (SELECT cost_nanos FROM rollup_agent WHERE address = $1 AND grain = 'h'"
    "  AND bucket = to_timestamp($6::bigint - 3600))::text,"
    " (SELECT cost_nanos FROM rollup_agent WHERE address = $1 AND grain = 'd' AND bucket = to_timestamp($7::bigint))::text,"
    " (SELECT cost_nanos FROM rollup_agent WHERE address = $1 AND grain = 'm' AND bucket = to_timestamp($8::bigint))::text"
    /* 27..33 the outcomes, 34 the window's models. */
    ", oc.*, " CM_API_MODELS_SQL(CM_ROLLUP_MODELS_SQL(CM_HB_AGENT_UNIT, CM_TAIL_ROWS_SQL), "org = $5 AND kind = 'agent'"
                                 " AND unit = $1 AND bucket >= to_timestamp($2::bigint) AND bucket < to_timestamp($3::bigint)")
    " FROM b CROSS JOIN t CROSS JOIN "
    CM_API_OUTCOMES_SQL("$5", "'agent'", "$1", "NULL", "$2", "$3", "$9", "$10", "(SELECT sum(cost_nanos) FROM b)")
    " oc ORDER BY s";

int cm_api_spend_agent(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    const cm_req_spend_agent *q = &j->req.spend_agent;
    if (cm_api_may_act_for(who, q->address, NULL, e) != CM_OK) return CM_EFORBIDDEN;
    cm_api_spend_call *c = cm_api_spend_call_new(api, j, who, q->window, q->at, e);
    if (!c) return CM_ENOMEM;
    int64_t starts[CM_WIN3];
    cm_policy_window_starts(j->now, starts);
    char win[CM_WIN3][24];
    for (int w = 0; w < CM_WIN3; w++) snprintf(win[w], sizeof win[w], "%lld", (long long)starts[w]);
    cm_api_outcome_params op;
    cm_api_outcome_params_of(api, j, &op);
    const char *params[] = {q->address, c->from_s, c->to_s, c->step_s, who->org, win[0], win[1], win[2],
                            op.abandon, op.now, c->grain};
    /* Buckets as Unix seconds: UTC days are always 86400 s, whatever the
     * session's time zone. The most polled statement: prepared and planned
     * once per connection (its plan rests on equalities on the address). */
    return cm_api_read_one_plan(c, spend_sql, 11, params, on_spend, e);
}

/* ---- events ---- */

static void on_events(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = cm_api_take(arg, rc);
    if (!j) return;
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{\"events\":[");
    for (int i = 0; i < cm_pgres_rows(res); i++) {
        if (i) cm_buf_add(&b, ",", 1);
        cm_buf_addf(&b, "{\"id\":%s,", cm_pgres_get(res, i, 0));
        cm_api_jfield(&b, "event_type", cm_pgres_get(res, i, 1), 1);
        cm_buf_adds(&b, ",\"agent\":");
        if (cm_pgres_isnull(res, i, 2)) cm_buf_adds(&b, "null");
        else cm_buf_add_jstr(&b, cm_pgres_get(res, i, 2));
        cm_buf_adds(&b, ",\"ts\":");
        cm_buf_add_jtime(&b, strtoll(cm_pgres_get(res, i, 3), NULL, 10));
        cm_buf_adds(&b, ",\"details\":");
        cm_buf_adds(&b, cm_pgres_get(res, i, 4));
        cm_buf_adds(&b, "}");
    }
    cm_buf_adds(&b, "]");
    next_cursor(&b, res, j->req.events.limit, 0);
    cm_buf_adds(&b, "}");
    cm_api_reply(j, 200, &b);
}

int cm_api_events(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    const cm_req_events *q = &j->req.events;
    /* A key bound to an agent sees that agent's events only. */
    const char *agent = q->agent[0] ? q->agent : cm_api_bound_agent(who);
    if (q->agent[0] && cm_api_may_act_for(who, q->agent, "agent", e) != CM_OK) return CM_EFORBIDDEN;
    cm_api_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    char limit[16], before[24];
    snprintf(limit, sizeof limit, "%d", q->limit);
    snprintf(before, sizeof before, "%lld", (long long)q->before);
    const char *params[] = {who->org, q->event_type[0] ? q->event_type : NULL, limit, agent,
                            q->before ? before : NULL};
    return cm_api_read(c,
                        "SELECT id::text, event_type, address, " CM_PG_EPOCH("ts") ", details::text"
                        " FROM events WHERE org = $1 AND ($2::text IS NULL OR event_type = $2)"
                        " AND ($4::text IS NULL OR address = $4) AND ($5::bigint IS NULL OR id < $5)"
                        " ORDER BY events.id DESC LIMIT $3::int",
                        5, params, on_events, e);
}
