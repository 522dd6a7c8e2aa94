/* api_budgets.c - GET /v1/mesh/policies: every cost policy of the key's org
 * (the org's, each environment's, customer's, workflow's, run's and
 * agent's), each with what its windows hold and its forecast: the Budgets
 * page of the dashboard in one read. Admin keys only, as the scopes'
 * policies are. */
#include "api_routes.h"
#include "budget.h"
#include "error.h"
#include "forecast.h"
#include "policy_row.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Widest scope first, then by id; the cursor is the last row's "kind:id".
 * The figures, as the admission counts them: cost per window (an agent's
 * from its rollup, exact at commit; a scope's from rollup_scope plus the
 * raw rows the worker has not summed yet, cm_scope_batch over the whole
 * tail), admitted intents of the hour and day (through the org's agents,
 * each an index range of intents_window), and what open reservations still
 * hold. Parameters: $1 org, $2/$3/$4 hour/day/month start, $5 limit, $6/$7
 * the cursor's kind and id (NULL from the start). Columns: 0 kind, 1 id,
 * 2..9 the policy (CM_POLICY_ROW_COLS), 10..13 cost of the hour, the hour
 * before, the day, the month; 14..15 intents of the hour and day; 16
 * reserved. A polled statement, so prepared. */
#define RANK(kind) "array_position(ARRAY['org', 'env', 'customer', 'workflow', 'run', 'agent'], " kind ")"
#define AT(grain, start) "grain = '" grain "' AND bucket = to_timestamp(" start ")"
#define COST(grain, start)                                                                                   \
    "least(coalesce(sum(cost_nanos) FILTER (WHERE " AT(grain, start) "), 0), 9223372036854775807)::text"
static const char list_sql[] =
    "WITH p AS (SELECT * FROM (SELECT kind, scope, " RANK("kind") " AS rk, " CM_POLICY_ROW_COLS
    " FROM scope_policies WHERE org = $1 UNION ALL SELECT 'agent', address, 6, " CM_POLICY_ROW_COLS
    " FROM cost_policies WHERE org = $1) all_p WHERE $6::text IS NULL OR (rk, scope) > (" RANK("$6::text")
    ", $7::text) ORDER BY rk, scope LIMIT $5::int),"
    " w AS (SELECT p.kind, p.scope, c.grain, c.bucket, c.cost_nanos::numeric FROM p JOIN rollup_agent c"
    " ON p.kind = 'agent' AND c.address = p.scope"
    " UNION ALL SELECT p.kind, p.scope, c.grain, c.bucket, c.cost_nanos FROM p JOIN rollup_scope c"
    " ON c.org = $1 AND c.kind = p.kind AND c.scope = p.scope"
    " UNION ALL SELECT p.kind, p.scope, t.grain, t.bucket, t.cost_nanos FROM p"
    " JOIN cm_scope_batch(0, 9223372036854775807) t ON t.org = $1 AND t.kind = p.kind AND t.scope = p.scope),"
    " cs AS (SELECT kind, scope, " COST("h", "$2::bigint") " AS ch, " COST("h", "$2::bigint - 3600") " AS cp,"
    " " COST("d", "$3::bigint") " AS cd, " COST("m", "$4::bigint") " AS cm FROM w"
    " WHERE bucket >= to_timestamp(least($2::bigint - 3600, $4::bigint)) GROUP BY 1, 2),"
    " mine AS (SELECT i.* FROM agents a JOIN intents i ON i.address = a.address WHERE a.org = $1),"
    " ti AS (SELECT u.kind, u.scope, count(*) FILTER (WHERE i.admitted_at >= to_timestamp($2::bigint)) AS ih,"
    " count(*) AS id FROM mine i CROSS JOIN LATERAL (SELECT 'agent', i.address UNION ALL SELECT *"
    " FROM cm_hb_scopes(i.address, NULL, i.run_id, i.workflow, i.customer)) u(kind, scope)"
    " WHERE i.admitted_at >= to_timestamp($3::bigint) GROUP BY 1, 2),"
    " rv AS (SELECT u.kind, u.scope, least(sum(o.held), 9223372036854775807) AS held"
    " FROM " CM_BUDGET_OPEN_SQL("cm_org_tail($1)") " o CROSS JOIN LATERAL (SELECT 'agent', o.address"
    " UNION ALL SELECT * FROM cm_hb_scopes(o.address, NULL, o.run_id, o.workflow, o.customer)) u(kind, scope)"
    " WHERE o.org = $1 GROUP BY 1, 2)"
    " SELECT p.kind, p.scope, " CM_POLICY_ROW_COLS ", cs.ch, cs.cp, cs.cd, cs.cm, coalesce(ti.ih, 0)::text,"
    " coalesce(ti.id, 0)::text, coalesce(rv.held, 0)::text FROM p"
    " LEFT JOIN cs ON cs.kind = p.kind AND cs.scope = p.scope LEFT JOIN ti ON ti.kind = p.kind AND ti.scope = p.scope"
    " LEFT JOIN rv ON rv.kind = p.kind AND rv.scope = p.scope ORDER BY p.rk, p.scope";

static int64_t num(const cm_pgres *res, int row, int col)
{
    return cm_pgres_isnull(res, row, col) ? 0 : strtoll(cm_pgres_get(res, row, col), NULL, 10);
}

/* One row as {"scope":…,"scope_id":…,"policy":…,"hour":…,"today":…,
 * "month":…,"reserved_usd":…[,"forecast":…]}. */
static void item_json(const cm_pgres *res, int row, int64_t now, cm_buf *b)
{
    cm_scope s;
    if (cm_scope_parse(cm_pgres_get(res, row, 0), &s.kind) != CM_OK) s.kind = CM_SCOPE_ORG;
    snprintf(s.id, sizeof s.id, "%s", cm_pgres_get(res, row, 1));
    cm_policy pol;
    cm_policy_row_read(res, row, 2, &pol);
    enum { COST = 2 + CM_POLICY_ROW_NCOLS };
    int64_t hour = num(res, row, COST), prev = num(res, row, COST + 1);
    int64_t cost[CM_WIN3] = {hour, num(res, row, COST + 2), num(res, row, COST + 3)};
    cm_buf_adds(b, "{");
    cm_budget_scope_json(&s, b);
    cm_buf_adds(b, ",\"policy\":");
    cm_policy_json(&pol, b);
    cm_buf_adds(b, ",\"hour\":{\"cost_usd\":");
    cm_buf_add_money(b, cost[CM_WIN3_HOUR]);
    cm_buf_addf(b, ",\"intents\":%s},\"today\":{\"cost_usd\":", cm_pgres_get(res, row, COST + 4));
    cm_buf_add_money(b, cost[CM_WIN3_DAY]);
    cm_buf_addf(b, ",\"intents\":%s},\"month\":{\"cost_usd\":", cm_pgres_get(res, row, COST + 5));
    cm_buf_add_money(b, cost[CM_WIN3_MONTH]);
    cm_buf_adds(b, "},\"reserved_usd\":");
    cm_buf_add_money(b, num(res, row, COST + 6));
    /* As an agent's view has it: with a cost limit, the burn of the last
     * hour and when each cost limit runs out at that pace. */
    cm_forecast f = {.burn = cm_forecast_burn(hour, prev, now)};
    bool any = false;
    for (int i = CM_LIM_COST_HOUR; i < CM_LIM_COUNT; i++) {
        f.has[i] = pol.has[i];
        f.limit[i] = pol.limit[i];
        f.current[i] = cost[i - CM_LIM_COST_HOUR];
        any |= pol.has[i];
    }
    if (any) {
        cm_buf_adds(b, ",\"forecast\":");
        cm_forecast_json(&f, now, b);
    }
    cm_buf_adds(b, "}");
}

static void on_list(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = cm_api_take(arg, rc);
    if (!j) return;
    int rows = cm_pgres_rows(res);
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{\"policies\":[");
    for (int i = 0; i < rows; i++) {
        if (i) cm_buf_add(&b, ",", 1);
        item_json(res, i, j->now, &b);
    }
    cm_buf_adds(&b, "],\"next_cursor\":");
    if (rows > 0 && rows >= j->req.policy_list.limit) {
        char cursor[CM_ADDR_MAX + 16];
        snprintf(cursor, sizeof cursor, "%s:%s", cm_pgres_get(res, rows - 1, 0), cm_pgres_get(res, rows - 1, 1));
        cm_buf_add_jstr(&b, cursor);
    } else {
        cm_buf_adds(&b, "null");
    }
    cm_buf_adds(&b, "}");
    cm_api_reply(j, 200, &b);
}

int cm_api_policy_list(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    const cm_req_policy_list *q = &j->req.policy_list;
    if (cm_api_need_admin(who, e) != CM_OK) return CM_EFORBIDDEN;
    cm_api_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    int64_t starts[CM_WIN3];
    cm_policy_window_starts(j->now, starts);
    char win[CM_WIN3][24], limit[16];
    for (int w = 0; w < CM_WIN3; w++) snprintf(win[w], sizeof win[w], "%lld", (long long)starts[w]);
    snprintf(limit, sizeof limit, "%d", q->limit);
    const char *params[] = {who->org, win[0], win[1], win[2], limit,
                            q->after_set ? cm_scope_name(q->after_kind) : NULL, q->after_set ? q->after : NULL};
    return cm_api_read(c, list_sql, 7, params, on_list, e);
}
