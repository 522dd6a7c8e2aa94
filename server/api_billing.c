/* api_billing.c - billing cards (PUT a version of a plan's card, GET the
 * versions) and a customer's rated usage by line item, as JSON or as CSV
 * (RFC 4180) for a use-then-invoice true-up.
 *
 * Usage sums rollup_billing and the raw rows past the watermark in one
 * statement (schema/019_billing.sql), on the API pool, so it is exact
 * right after a 202. Amounts are PostgreSQL's, in numeric: quantity times
 * unit price, compute-seconds divided by 1000 once and rounded half-even
 * to a nano-dollar (cm_div_half_even). */
#include "api_routes.h"
#include "error.h"
#include "money.h"
#include "rollup.h"
#include "timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the cards ---- */

static const cm_card_kind billing_cards = {
    .what = "billing card",
    .key = "plan",
    .list = "plans",
    .fields = cm_bill_fields,
    .put_sql = "WITH ins AS (INSERT INTO billing_cards (org, plan, effective_from, per_run_nanos, per_step_nanos,"
               " per_compute_second_nanos, per_outcome_nanos) VALUES ($1, $2, to_timestamp($3), $4, $5, $6, $7)"
               " ON CONFLICT (org, plan, effective_from) DO NOTHING RETURNING 1)"
               " SELECT (SELECT count(*) FROM ins), EXISTS (SELECT 1 FROM billing_cards WHERE org = $1 AND plan = $2"
               " AND effective_from = to_timestamp($3) AND per_run_nanos = $4 AND per_step_nanos = $5"
               " AND per_compute_second_nanos = $6 AND per_outcome_nanos = $7)",
    .list_sql = "SELECT plan, " CM_PG_EPOCH("effective_from") ", per_run_nanos, per_step_nanos,"
                " per_compute_second_nanos, per_outcome_nanos FROM billing_cards"
                " WHERE org = $1 AND ($2::text IS NULL OR plan = $2) ORDER BY plan, effective_from",
};
_Static_assert(CM_BILL_ITEMS == CM_CARD_PRICES, "a billing card's prices are a card's");

int cm_api_bill_put(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    const cm_req_bill *q = &j->req.bill;
    return cm_api_card_put(api, j, who, &billing_cards, q->plan, q->card.from, q->card.unit_price, e);
}

int cm_api_bill_list(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    return cm_api_card_list(api, j, who, &billing_cards, j->req.bill.plan, e);
}

/* ---- usage ---- */

/* The customer's quantities per hour, rated by the version of its plan in
 * force in that hour: the card named after the customer when the org has
 * one, else 'default'. A run counts in the hour of its first heartbeat (of
 * any time, so a run that crosses a bill's end is billed once); a
 * successful outcome, an intent of the customer (one of its heartbeats
 * counts for the customer, schema/018) that ended succeeded, in the hour it
 * ended. Hours no version covers give a line without a price (amount 0).
 * Parameters: $1 org, $2 customer, $3 from, $4 to (Unix seconds). The
 * first row is the reply's own: item -1, 1 the plan, 8 the total in
 * nano-dollars. Then one row per line: 0 item (cm_bill_item), 2 line from,
 * 3 line to, 4 the version's effective_from (NULL: none), 5 quantity
 * (decimal text), 6 unit price in nano-dollars (NULL: none), 7 amount in
 * nano-dollars. */
static const char usage_sql[] =
    "WITH plan AS (SELECT CASE WHEN EXISTS (SELECT 1 FROM billing_cards WHERE org = $1 AND plan = $2)"
    " THEN $2 ELSE 'default' END AS plan),"
    " src AS (SELECT run, bucket, steps, compute_ms FROM rollup_billing WHERE org = $1 AND customer = $2"
    " UNION ALL SELECT u.run, date_trunc('hour', h.ts, 'UTC'), h.llm_calls + h.tool_calls, h.compute_ms"
    " FROM cm_org_tail($1) h CROSS JOIN LATERAL cm_hb_billed(h.address, h.intent_id, h.run_id,"
    " h.session_id, h.workflow, h.customer) u WHERE u.customer = $2),"
    " w AS (SELECT * FROM src WHERE bucket >= to_timestamp($3::bigint) AND bucket < to_timestamp($4::bigint)),"
    " runs AS (SELECT min(bucket) AS bucket FROM src WHERE run <> '' GROUP BY run),"
    " q AS (SELECT 0 AS item, bucket, count(*)::numeric AS qty FROM runs WHERE bucket >= to_timestamp($3::bigint)"
    " AND bucket < to_timestamp($4::bigint) GROUP BY bucket"
    " UNION ALL SELECT 1, bucket, sum(steps) FROM w GROUP BY bucket"
    " UNION ALL SELECT 2, bucket, sum(compute_ms) FROM w GROUP BY bucket"
    " UNION ALL SELECT 3, date_trunc('hour', o.ended_at, 'UTC'), count(*) FROM (SELECT DISTINCT intent_id FROM "
    CM_ROLLUP_UNIT_INTENTS_SQL("$1") " WHERE org = $1 AND kind = 'customer' AND unit = $2) i"
    " CROSS JOIN LATERAL cm_intent_outcome($1, i.intent_id) o WHERE o.status = 'succeeded'"
    " AND o.ended_at >= to_timestamp($3::bigint) AND o.ended_at < to_timestamp($4::bigint) GROUP BY 2),"
    " v AS (SELECT c.*, lead(effective_from) OVER (ORDER BY effective_from) AS until"
    " FROM billing_cards c, plan WHERE c.org = $1 AND c.plan = plan.plan),"
    " lines AS (SELECT q.item, v.effective_from, v.until, sum(q.qty) AS qty,"
    " CASE q.item WHEN 0 THEN v.per_run_nanos WHEN 1 THEN v.per_step_nanos WHEN 2 THEN v.per_compute_second_nanos"
    " ELSE v.per_outcome_nanos END AS price"
    " FROM q LEFT JOIN v ON q.bucket >= v.effective_from AND (v.until IS NULL OR q.bucket < v.until)"
    " GROUP BY 1, 2, 3, 5 HAVING sum(q.qty) > 0),"
    " rated AS (SELECT *, cm_div_half_even(qty * coalesce(price, 0), CASE item WHEN 2 THEN 1000 ELSE 1 END) AS amount"
    " FROM lines)"
    " SELECT '-1', (SELECT plan FROM plan), NULL, NULL, NULL, NULL, NULL, NULL,"
    " (SELECT coalesce(sum(amount), 0) FROM rated)::text"
    " UNION ALL (SELECT item::text, NULL,"
    " extract(epoch FROM coalesce(greatest(effective_from, to_timestamp($3::bigint)), to_timestamp($3::bigint)))"
    "::bigint::text,"
    " extract(epoch FROM least(coalesce(CASE WHEN effective_from IS NULL THEN (SELECT min(effective_from) FROM v)"
    " ELSE until END, 'infinity'), to_timestamp($4::bigint)))::bigint::text,"
    " " CM_PG_EPOCH("effective_from") "::text,"
    " CASE item WHEN 2 THEN trim_scale((div(qty, 1000)::text || '.' || lpad(mod(qty, 1000)::text, 3, '0'))::numeric)"
    " ELSE qty END::text, price::text, amount::text, NULL"
    " FROM rated ORDER BY item, effective_from NULLS FIRST)";

/* Appends one CSV field (RFC 4180): quoted when it holds a comma, a quote
 * or a line break, its quotes doubled. */
static void csv_field(cm_buf *b, const char *s, bool first)
{
    if (!first) cm_buf_add(b, ",", 1);
    if (!strpbrk(s, ",\"\r\n")) {
        cm_buf_adds(b, s);
        return;
    }
    cm_buf_add(b, "\"", 1);
    for (const char *p = s; *p; p++) cm_buf_add(b, *p == '"' ? "\"\"" : p, *p == '"' ? 2 : 1);
    cm_buf_add(b, "\"", 1);
}

/* A nano-dollar amount given as text, as a dollar figure (NULL: ""). */
static void money_text(const char *nanos, char *out, size_t outsz)
{
    if (!nanos || cm_money_format_text(nanos, out, outsz) == 0) out[0] = '\0';
}

static void usage_csv(cm_job *j, const cm_pgres *res)
{
    static const char *const header[] = {"customer", "plan", "item", "unit", "from", "to", "effective_from",
                                         "quantity", "unit_price_usd", "amount_usd", "amount_nanos"};
    cm_buf b;
    cm_buf_init(&b);
    for (size_t i = 0; i < sizeof header / sizeof header[0]; i++) csv_field(&b, header[i], i == 0);
    cm_buf_adds(&b, "\r\n");
    for (int r = 1; r < cm_pgres_rows(res); r++) {
        int item = (int)strtol(cm_pgres_get(res, r, 0), NULL, 10);
        char from[CM_TIME_BUFSZ], to[CM_TIME_BUFSZ], eff[CM_TIME_BUFSZ] = "", price[64], amount[64];
        cm_time_format(strtoll(cm_pgres_get(res, r, 2), NULL, 10), from, sizeof from);
        cm_time_format(strtoll(cm_pgres_get(res, r, 3), NULL, 10), to, sizeof to);
        if (!cm_pgres_isnull(res, r, 4)) cm_time_format(strtoll(cm_pgres_get(res, r, 4), NULL, 10), eff, sizeof eff);
        money_text(cm_pgres_isnull(res, r, 6) ? NULL : cm_pgres_get(res, r, 6), price, sizeof price);
        money_text(cm_pgres_get(res, r, 7), amount, sizeof amount);
        const char *row[] = {j->req.usage.customer, cm_pgres_get(res, 0, 1), cm_bill_item_name(item),
                             cm_bill_unit(item), from, to, eff, cm_pgres_get(res, r, 5), price, amount,
                             cm_pgres_get(res, r, 7)};
        for (size_t i = 0; i < sizeof row / sizeof row[0]; i++) csv_field(&b, row[i], i == 0);
        cm_buf_adds(&b, "\r\n");
    }
    j->content_type = "text/csv; charset=utf-8; header=present";
    cm_api_reply(j, 200, &b);
}

static void usage_json(cm_job *j, const cm_pgres *res)
{
    const cm_req_usage *q = &j->req.usage;
    int rows = cm_pgres_rows(res);
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{");
    cm_api_jfield(&b, "customer", q->customer, 1);
    cm_api_jfield(&b, "plan", cm_pgres_get(res, 0, 1), 0);
    cm_buf_adds(&b, ",\"from\":");
    cm_buf_add_jtime(&b, q->from);
    cm_buf_adds(&b, ",\"to\":");
    cm_buf_add_jtime(&b, q->to);
    cm_buf_adds(&b, ",\"lines\":[");
    for (int r = 1; r < rows; r++) {
        int item = (int)strtol(cm_pgres_get(res, r, 0), NULL, 10);
        cm_buf_adds(&b, r > 1 ? ",{" : "{");
        cm_api_jfield(&b, "item", cm_bill_item_name(item), 1);
        cm_api_jfield(&b, "unit", cm_bill_unit(item), 0);
        cm_buf_adds(&b, ",\"from\":");
        cm_buf_add_jtime(&b, strtoll(cm_pgres_get(res, r, 2), NULL, 10));
        cm_buf_adds(&b, ",\"to\":");
        cm_buf_add_jtime(&b, strtoll(cm_pgres_get(res, r, 3), NULL, 10));
        cm_buf_adds(&b, ",\"effective_from\":");
        if (cm_pgres_isnull(res, r, 4)) cm_buf_adds(&b, "null");
        else cm_buf_add_jtime(&b, strtoll(cm_pgres_get(res, r, 4), NULL, 10));
        cm_buf_addf(&b, ",\"quantity\":%s,\"unit_price_usd\":", cm_pgres_get(res, r, 5));
        if (cm_pgres_isnull(res, r, 6)) cm_buf_adds(&b, "null");
        else cm_buf_add_money_text(&b, cm_pgres_get(res, r, 6));
        cm_buf_adds(&b, ",\"amount_usd\":");
        cm_buf_add_money_text(&b, cm_pgres_get(res, r, 7));
        cm_api_jfield(&b, "amount_nanos", cm_pgres_get(res, r, 7), 0);
        cm_buf_adds(&b, "}");
    }
    const char *total = cm_pgres_get(res, 0, 8);
    cm_buf_adds(&b, "],\"total_usd\":");
    cm_buf_add_money_text(&b, total);
    cm_api_jfield(&b, "total_nanos", total, 0);
    cm_buf_adds(&b, "}");
    cm_api_reply(j, 200, &b);
}

static void on_usage(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = cm_api_take(arg, rc);
    if (!j) return;
    if (j->req.usage.csv) usage_csv(j, res);
    else usage_json(j, res);
}

int cm_api_usage(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    if (cm_api_need_admin(who, e) != CM_OK) return CM_EFORBIDDEN;
    cm_api_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    const cm_req_usage *q = &j->req.usage;
    char from[24], to[24];
    snprintf(from, sizeof from, "%lld", (long long)q->from);
    snprintf(to, sizeof to, "%lld", (long long)q->to);
    const char *params[] = {who->org, q->customer, from, to};
    return cm_api_query(c, usage_sql, 4, params, on_usage, e);
}
