/* api_units.c - spend by run, session, workflow and customer, and the most
 * expensive units of an org or of one agent (GET /v1/mesh/top).
 *
 * Every read sums rollup_unit and the raw rows past the watermark in one
 * statement (CM_ROLLUP_UNITS_SQL), so it is exact right after a 202. A unit
 * spans agents: a key bound to an agent sees that agent's part only. */
#include "api_routes.h"
#include "error.h"
#include "rollup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cm_api_spend_totals(cm_buf *b, const cm_pgres *res, int row, int col)
{
    /* Every sum is PostgreSQL's, in numeric, printed from its text: a
     * week spans two months, and rows written before the caps
     * (schema/007_caps.sql) may hold anything up to bigint's maximum. */
    static const char *const money[] = {"revenue_usd", "refund_usd", "external_spend_usd", "fees_usd",
                                        "margin_usd"};
    cm_buf_adds(b, ",\"cost_usd\":");
    cm_buf_add_money_text(b, cm_pgres_get(res, row, col));
    cm_buf_addf(b,
                ",\"tokens_in\":%s,\"tokens_out\":%s,\"tokens_cached\":%s,\"llm_calls\":%s,\"tool_calls\":%s,"
                "\"heartbeats\":%s",
                cm_pgres_get(res, row, col + 1), cm_pgres_get(res, row, col + 2), cm_pgres_get(res, row, col + 3),
                cm_pgres_get(res, row, col + 4), cm_pgres_get(res, row, col + 5), cm_pgres_get(res, row, col + 6));
    for (int i = 0; i < 5; i++) {
        cm_buf_addf(b, ",\"%s\":", money[i]);
        cm_buf_add_money_text(b, cm_pgres_get(res, row, col + 7 + i));
    }
}

void cm_api_spend_series(cm_buf *b, const cm_pgres *res, int col)
{
    cm_buf_adds(b, ",\"series\":[");
    for (int i = 0; i < cm_pgres_rows(res); i++) {
        if (i) cm_buf_add(b, ",", 1);
        cm_buf_adds(b, "{\"from\":");
        cm_buf_add_jtime(b, strtoll(cm_pgres_get(res, i, col), NULL, 10));
        cm_buf_adds(b, ",\"cost_usd\":");
        cm_buf_add_money_text(b, cm_pgres_get(res, i, col + 1));
        cm_buf_addf(b, ",\"tokens_in\":%s,\"tokens_out\":%s,\"llm_calls\":%s,\"margin_usd\":",
                    cm_pgres_get(res, i, col + 2), cm_pgres_get(res, i, col + 3), cm_pgres_get(res, i, col + 4));
        cm_buf_add_money_text(b, cm_pgres_get(res, i, col + 5));
        cm_buf_adds(b, "}");
    }
    cm_buf_adds(b, "]");
}

void cm_api_spend_models(cm_buf *b, const char *text)
{
    /* The fields of CM_API_MODELS_SQL after the model: money or a count. */
    static const struct {
        const char *name;
        bool money;
    } fields[] = {{"cost_usd", true},           {"heartbeats", false},         {"tokens_in", false},
                  {"tokens_fresh", false},      {"tokens_cached", false},      {"tokens_cache_write", false},
                  {"tokens_out", false},        {"rated_heartbeats", false},   {"fresh_input_cost_usd", true},
                  {"cached_input_cost_usd", true}, {"cache_write_cost_usd", true}, {"output_cost_usd", true},
                  {"cache_savings_usd", true}};
    enum { NFIELDS = sizeof fields / sizeof fields[0] };
    cm_buf_adds(b, ",\"models\":[");
    char *copy = text ? strdup(text) : NULL;
    if (text && !copy) b->failed = 1;
    char *save = NULL;
    int n = 0;
    for (char *m = copy ? strtok_r(copy, ";", &save) : NULL; m; m = strtok_r(NULL, ";", &save)) {
        char *fsave = NULL, *f = strtok_r(m, " ", &fsave);
        cm_buf_adds(b, n++ ? ",{" : "{");
        cm_api_jfield(b, "model", f, 1);
        for (int i = 0; i < NFIELDS && (f = strtok_r(NULL, " ", &fsave)); i++) {
            cm_buf_addf(b, ",\"%s\":", fields[i].name);
            if (fields[i].money) cm_buf_add_money_text(b, f);
            else cm_buf_adds(b, f);
        }
        cm_buf_adds(b, "}");
    }
    free(copy);
    cm_buf_adds(b, "]");
}

void cm_api_outcome_params_of(const cm_api *api, const cm_job *j, cm_api_outcome_params *out)
{
    snprintf(out->abandon, sizeof out->abandon, "%d", api->intent_abandon_s);
    snprintf(out->now, sizeof out->now, "%lld", (long long)j->now);
}

void cm_api_outcomes(cm_buf *b, const cm_pgres *res, int row, int col)
{
    cm_buf_addf(b, ",\"outcomes\":{\"succeeded\":%s,\"failed\":%s,\"cancelled\":%s,\"abandoned\":%s,"
                   "\"cost_per_successful_intent_usd\":",
                cm_pgres_get(res, row, col), cm_pgres_get(res, row, col + 1), cm_pgres_get(res, row, col + 2),
                cm_pgres_get(res, row, col + 3));
    if (cm_pgres_isnull(res, row, col + 4)) cm_buf_adds(b, "null");
    else cm_buf_add_money_text(b, cm_pgres_get(res, row, col + 4));
    static const char *const shares[] = {"failed_spend_share", "unfinished_spend_share"};
    for (int i = 0; i < 2; i++)
        cm_buf_addf(b, ",\"%s\":%s", shares[i],
                    cm_pgres_isnull(res, row, col + 5 + i) ? "null" : cm_pgres_get(res, row, col + 5 + i));
    cm_buf_adds(b, "}");
}


/* ---- one unit's spend ---- */

static void on_spend_unit(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_api_spend_call *c = arg;
    int64_t from = c->from, to = c->to, step = c->step;
    cm_job *j = cm_api_take(c, rc);
    if (!j) return;
    const cm_req_spend_unit *q = &j->req.spend_unit;
    int rows = cm_pgres_rows(res);
    if (rows == 0 || strcmp(cm_pgres_get(res, 0, 12), "0") == 0) {
        char code[32];
        snprintf(code, sizeof code, "%s_not_found", q->by);
        cm_api_error(j, 404, code, NULL, "no heartbeats of this id in this org");
        return;
    }
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{");
    cm_api_jfield(&b, "by", q->by, 1);
    cm_api_jfield(&b, "id", q->id, 0);
    cm_api_window_json(&b, q->window, from, to, step);
    cm_api_spend_totals(&b, res, 0, 0);
    cm_buf_addf(&b, ",\"agents\":%s", cm_pgres_get(res, 0, 13));
    cm_api_outcomes(&b, res, 0, 20);
    cm_api_spend_models(&b, cm_pgres_get(res, 0, 27));
    cm_api_spend_series(&b, res, 14);
    cm_buf_adds(&b, "}");
    cm_api_reply(j, 200, &b);
}

/* A unit's spend, its agents' or (agent the condition " AND address = $7")
 * the bound agent's part. Parameters: $1 org, $2 kind, $3 unit, $4/$5/$6
 * from, to, step, $7 the bound agent or NULL, $8/$9 the outcomes' abandon
 * time and now. Columns: 0..11 the window's totals (cm_api_spend_totals),
 * 12 rows of the unit at any time (0: unknown here), 13 agents in the
 * window, 14..19 one series bucket per row, 20..26 the outcomes, 27 the
 * window's models. Two statements, not "($7 IS NULL OR address = $7)": each
 * is planned once per connection (cm_api_read_one_plan), and one plan for
 * both would scan every agent's rows for a bound key's read. The org's
 * tail is read and attributed once (the CTE tail: the unit's rows, the
 * bound agent's only) for the money, the models and the outcomes. */
#define UNIT_OWN "(VALUES ($2::text, $3::text))"
#define UNIT_SPEND_SQL(agent)                                                                                      \
    "WITH " CM_TAIL_CTE_SQL("cm_org_tail($1) h CROSS JOIN LATERAL " CM_HB_UNITS " AS u(kind, unit)"                \
                            " WHERE u.kind = $2 AND u.unit = $3" agent) ","                                        \
    " p AS (SELECT * FROM " CM_ROLLUP_UNITS_OF(UNIT_OWN, CM_TAIL_ROWS_SQL) " WHERE org = $1 AND kind = $2 AND unit = $3" \
    agent "),"                                                                                                     \
    " w AS (SELECT * FROM p WHERE bucket >= to_timestamp($4::bigint) AND bucket < to_timestamp($5::bigint)),"      \
    " t AS (SELECT " CM_API_SPEND_SUMS_SQL " FROM w),"                                                             \
    " s AS (SELECT g.s, coalesce(sum(w.cost_nanos), 0) AS cost, coalesce(sum(w.tokens_in), 0) AS tin,"             \
    " coalesce(sum(w.tokens_out), 0) AS tout, coalesce(sum(w.llm_calls), 0) AS calls,"                             \
    " coalesce(sum(w.revenue_nanos - w.refund_nanos - w.cost_nanos - w.external_nanos"                             \
    " - w.fees_nanos), 0) AS margin"                                                                               \
    " FROM generate_series($4::bigint, $5::bigint - 1, $6::bigint) g(s)"                                           \
    " LEFT JOIN w ON w.bucket >= to_timestamp(g.s) AND w.bucket < to_timestamp(g.s + $6::bigint)"                  \
    " GROUP BY g.s)"                                                                                               \
    " SELECT t.*, (SELECT count(*) FROM p)::text, (SELECT count(DISTINCT address) FROM w)::text,"                  \
    " s.s::text, s.cost::text, s.tin::text, s.tout::text, s.calls::text, s.margin::text, oc.*,"                    \
    " " CM_API_MODELS_SQL(CM_ROLLUP_MODELS_SQL(UNIT_OWN, CM_TAIL_ROWS_SQL),                                        \
                          "org = $1 AND kind = $2 AND unit = $3" agent " AND bucket >= to_timestamp($4::bigint)"   \
                          " AND bucket < to_timestamp($5::bigint)")                                                \
    " FROM t CROSS JOIN s CROSS JOIN "                                                                             \
    CM_API_OUTCOMES_SQL("$1", "$2", "$3", "$7::text", "$4", "$5", "$8", "$9", "(SELECT sum(cost_nanos) FROM w)")   \
    " oc ORDER BY s.s"
static const char spend_unit_sql[] = UNIT_SPEND_SQL("");
static const char spend_unit_agent_sql[] = UNIT_SPEND_SQL(" AND address = $7");

int cm_api_spend_unit(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    const cm_req_spend_unit *q = &j->req.spend_unit;
    cm_api_spend_call *c = cm_api_spend_call_new(api, j, who, q->window, q->at, e);
    if (!c) return CM_ENOMEM;
    cm_api_outcome_params op;
    cm_api_outcome_params_of(api, j, &op);
    const char *agent = cm_api_bound_agent(who);
    const char *params[] = {who->org, q->by, q->id, c->from_s, c->to_s, c->step_s, agent, op.abandon, op.now};
    return cm_api_read_one_plan(c, agent ? spend_unit_agent_sql : spend_unit_sql, 9, params, on_spend_unit, e);
}

/* ---- the most expensive units ---- */

static void on_top(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_api_spend_call *c = arg;
    int64_t from = c->from, to = c->to, step = c->step;
    cm_job *j = cm_api_take(c, rc);
    if (!j) return;
    const cm_req_spend_unit *q = &j->req.spend_unit;
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{");
    cm_api_jfield(&b, "by", q->by, 1);
    cm_buf_adds(&b, ",\"agent\":");
    if (q->agent[0]) cm_buf_add_jstr(&b, q->agent);
    else cm_buf_adds(&b, "null");
    cm_api_window_json(&b, q->window, from, to, step);
    cm_buf_adds(&b, ",\"top\":[");
    for (int i = 0; i < cm_pgres_rows(res); i++) {
        if (i) cm_buf_add(&b, ",", 1);
        cm_buf_adds(&b, "{");
        cm_api_jfield(&b, "id", cm_pgres_get(res, i, 0), 1);
        cm_api_spend_totals(&b, res, i, 1);
        cm_buf_addf(&b, ",\"agents\":%s}", cm_pgres_get(res, i, 13));
    }
    cm_buf_adds(&b, "]}");
    cm_api_reply(j, 200, &b);
}

int cm_api_top(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    const cm_req_spend_unit *q = &j->req.spend_unit;
    if (q->agent[0] && cm_api_may_act_for(who, q->agent, "agent", e) != CM_OK) return CM_EFORBIDDEN;
    cm_api_spend_call *c = cm_api_spend_call_new(api, j, who, q->window, q->at, e);
    if (!c) return CM_ENOMEM;
    char limit[16];
    snprintf(limit, sizeof limit, "%d", q->limit);
    const char *params[] = {who->org, q->by, c->from_s, c->to_s, q->agent[0] ? q->agent : cm_api_bound_agent(who), limit};
    /* The most expensive first; equal costs by id, so pages are stable. */
    return cm_api_query(c,
                        "SELECT unit, " CM_API_SPEND_SUMS_SQL ", count(DISTINCT address)::text"
                        " FROM " CM_ROLLUP_UNITS_SQL("$1") " WHERE org = $1 AND kind = $2"
                        " AND bucket >= to_timestamp($3::bigint) AND bucket < to_timestamp($4::bigint)"
                        " AND ($5::text IS NULL OR address = $5)"
                        " GROUP BY unit ORDER BY sum(cost_nanos) DESC, unit LIMIT $6::int",
                        6, params, on_top, e);
}
