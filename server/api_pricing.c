/* api_pricing.c - rate cards: their routes (PUT a version, GET the
 * versions), and the pricing of heartbeats by them on their way to the
 * group commit, from the org's cards in memory (ratecards.h). */
#include "api_routes.h"
#include "error.h"
#include "money.h"
#include "timeutil.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic unsigned long long counts[CM_PRICING_KINDS];

unsigned long long cm_api_pricing_count(cm_pricing_count kind)
{
    return (unsigned)kind < CM_PRICING_KINDS ? atomic_load(&counts[kind]) : 0;
}

/* ---- pricing heartbeats ---- */

/* The request is priced: on to the group commit, as its route would. */
static void commit(cm_api *api, cm_job *j)
{
    if (j->op == CM_OP_OTLP_TRACES) cm_api_interop_commit(api, j);
    else cm_ingest_submit(api->ingest, j);
}

/* The JSON path of heartbeat i's field in the request. */
static void field_of(const cm_job *j, size_t i, const char *name, char *out, size_t outsz)
{
    if (j->op == CM_OP_HEARTBEAT && j->req.heartbeat.n > 1) snprintf(out, outsz, "heartbeats[%zu].%s", i, name);
    else snprintf(out, outsz, "%s", name);
}

/* Records the request's discrepancies as one event: the first of them and
 * how many there were, so a client that always disagrees costs one event
 * per request, not one per heartbeat. */
static void discrepancy_event(cm_api *api, const char *org, const cm_hb *first, size_t n)
{
    char client[CM_MONEY_BUFSZ], server[CM_MONEY_BUFSZ], tol[CM_MONEY_BUFSZ];
    cm_money_format(first->cost_nanos, client, sizeof client);
    cm_money_format(first->priced_nanos, server, sizeof server);
    cm_money_format(api->price_tolerance, tol, sizeof tol);
    cm_buf d;
    cm_buf_init(&d);
    cm_buf_adds(&d, "{\"model\":");
    cm_buf_add_jstr(&d, first->model);
    cm_buf_adds(&d, ",\"heartbeat_id\":");
    if (first->id[0]) cm_buf_add_jstr(&d, first->id);
    else cm_buf_adds(&d, "null");
    cm_buf_addf(&d, ",\"client_cost_usd\":%s,\"rated_cost_usd\":%s,\"tolerance_pct\":%s,\"heartbeats\":%zu}", client,
                server, tol, n);
    if (!d.failed) cm_notify_event(api->notify, org, first->agent, "price_discrepancy", d.data, false, NULL, NULL);
    cm_buf_free(&d);
}

/* Prices each heartbeat of j that names a model by the card in force at
 * its ts: its priced_nanos, and its cost when the client sent none. */
static int price(cm_api *api, cm_job *j, const cm_ratecard_set *cards, const char *org, cm_apierr *e)
{
    cm_req_heartbeat *q = &j->req.heartbeat;
    size_t priced = 0, unpriced = 0, discrepant = 0;
    const cm_hb *first = NULL;
    for (size_t i = 0; i < q->n; i++) {
        cm_hb *h = &q->hbs[i];
        if (!h->model[0]) continue;
        const cm_price *p = cm_ratecards_price(cards, h->model, h->ts);
        if (!p) {
            unpriced += !h->has_cost;
            continue;
        }
        cm_tokens t = {h->tokens_in, h->tokens_out, h->tokens_cached, h->tokens_cache_write};
        int rc = cm_price_rate(p, &t, &h->priced_nanos);
        if (rc != CM_OK) {
            char f[64];
            field_of(j, i, rc == CM_ERANGE ? "model" : "metrics.tokens_in", f, sizeof f);
            return rc == CM_ERANGE
                       ? cm_apierr_set(e, 422, "price_out_of_range", f,
                                       "%s's rate card prices these tokens above 1000000 USD", f)
                       : cm_apierr_set(e, 400, "invalid_field", f,
                                       "%s must include the cached and cache-write tokens", f);
        }
        h->priced = true;
        priced++;
        if (!h->has_cost) {
            h->cost_nanos = h->priced_nanos;
        } else if (cm_price_discrepant(h->cost_nanos, h->priced_nanos, api->price_tolerance)) {
            if (!discrepant++) first = h;
        }
    }
    atomic_fetch_add(&counts[CM_PRICING_PRICED], priced);
    atomic_fetch_add(&counts[CM_PRICING_UNPRICED], unpriced);
    atomic_fetch_add(&counts[CM_PRICING_DISCREPANT], discrepant);
    if (first) discrepancy_event(api, org, first, discrepant);
    return CM_OK;
}

void cm_api_priced(void *arg, const char *org, cm_job *j, int rc, const cm_ratecard_set *cards)
{
    cm_api *api = arg;
    cm_apierr e;
    if (rc != CM_OK) cm_api_store_error(&e);
    if (rc != CM_OK || price(api, j, cards, org, &e) != CM_OK) {
        cm_api_fail(j, &e);
        return;
    }
    commit(api, j);
}

void cm_api_price(cm_api *api, cm_job *j, const cm_ident *who)
{
    const cm_req_heartbeat *q = &j->req.heartbeat;
    for (size_t i = 0; i < q->n; i++)
        if (q->hbs[i].model[0]) {
            cm_ratecards_get(api->cards, who->org, j);
            return;
        }
    commit(api, j);
}

/* ---- the routes ---- */

static const char put_sql[] =
    "WITH ins AS (INSERT INTO price_cards (org, model, effective_from, input_nanos, output_nanos,"
    " cached_input_nanos, cache_write_nanos) VALUES ($1, $2, to_timestamp($3), $4, $5, $6, $7)"
    " ON CONFLICT (org, model, effective_from) DO NOTHING RETURNING 1),"
    " sent AS (SELECT pg_notify('" CM_PRICING_CHANNEL "', $1) FROM ins)"
    " SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM sent), EXISTS (SELECT 1 FROM price_cards"
    " WHERE org = $1 AND model = $2 AND effective_from = to_timestamp($3) AND input_nanos = $4"
    " AND output_nanos = $5 AND cached_input_nanos = $6 AND cache_write_nanos = $7)";

/* A version as JSON. in_force: the version that prices heartbeats now. */
static void add_version(cm_buf *b, const cm_price *p, bool in_force)
{
    char from[32];
    cm_time_format(p->from, from, sizeof from);
    cm_buf_adds(b, "{\"effective_from\":");
    cm_buf_add_jstr(b, from);
    for (int k = 0; k < CM_PRICE_KINDS; k++) {
        cm_buf_addf(b, ",\"%s\":", cm_price_field(k));
        cm_buf_add_money(b, p->per_million[k]);
    }
    cm_buf_addf(b, ",\"in_force\":%s}", in_force ? "true" : "false");
}

typedef struct {
    cm_api_call base;
    char org[CM_ADDR_SEG_MAX + 1];
} put_call;

static void on_put(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    put_call *c = arg;
    cm_api *api = c->base.api;
    char org[CM_ADDR_SEG_MAX + 1];
    snprintf(org, sizeof org, "%s", c->org);
    cm_job *j = cm_api_take(c, rc);
    if (!j) return;
    bool inserted = strcmp(cm_pgres_get(res, 0, 0), "1") == 0;
    bool same = strcmp(cm_pgres_get(res, 0, 2), "t") == 0;
    if (!inserted && !same) {
        cm_api_error(j, 409, "version_exists", "effective_from",
                     "a version of this model's card with other prices starts at this effective_from; versions are"
                     " never changed: give the new prices another effective_from");
        return;
    }
    /* The NOTIFY reaches this replica too, but maybe after the answer: a
     * heartbeat sent right after it must already see the new version. */
    if (inserted) cm_ratecards_forget(api->cards, org);
    const cm_req_price *q = &j->req.price;
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{\"model\":");
    cm_buf_add_jstr(&b, q->model);
    cm_buf_adds(&b, ",\"version\":");
    add_version(&b, &q->price, false);
    cm_buf_adds(&b, "}");
    cm_api_reply(j, inserted ? 201 : 200, &b);
}

int cm_api_price_put(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    if (cm_api_need_admin(who, e) != CM_OK) return CM_EFORBIDDEN;
    put_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    snprintf(c->org, sizeof c->org, "%s", who->org);
    const cm_req_price *q = &j->req.price;
    char v[5][24];
    snprintf(v[0], sizeof v[0], "%lld", (long long)q->price.from);
    for (int k = 0; k < CM_PRICE_KINDS; k++) snprintf(v[1 + k], sizeof v[1 + k], "%lld", (long long)q->price.per_million[k]);
    const char *params[] = {who->org, q->model, v[0], v[1], v[2], v[3], v[4]};
    return cm_api_query(c, put_sql, 7, params, on_put, e);
}

static void on_list(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = cm_api_take(arg, rc);
    if (!j) return;
    const char *one = j->req.price.model;
    int rows = cm_pgres_rows(res);
    if (one[0] && rows == 0) {
        cm_api_error(j, 404, "not_found", "model", "this org has no rate card for this model");
        return;
    }
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, one[0] ? "" : "{\"models\":[");
    for (int r = 0; r < rows; r++) {
        const char *model = cm_pgres_get(res, r, 0);
        bool starts = r == 0 || strcmp(model, cm_pgres_get(res, r - 1, 0)) != 0;
        bool ends = r == rows - 1 || strcmp(model, cm_pgres_get(res, r + 1, 0)) != 0;
        cm_price p;
        p.from = strtoll(cm_pgres_get(res, r, 1), NULL, 10);
        for (int k = 0; k < CM_PRICE_KINDS; k++) p.per_million[k] = strtoll(cm_pgres_get(res, r, 2 + k), NULL, 10);
        /* Versions come oldest first: the one in force now is the last
         * that has begun. */
        bool next_begun = !ends && strtoll(cm_pgres_get(res, r + 1, 1), NULL, 10) <= j->now;
        if (starts) {
            if (r) cm_buf_adds(&b, "]},");
            cm_buf_adds(&b, "{\"model\":");
            cm_buf_add_jstr(&b, model);
            cm_buf_adds(&b, ",\"versions\":[");
        } else {
            cm_buf_adds(&b, ",");
        }
        add_version(&b, &p, p.from <= j->now && !next_begun);
    }
    if (rows) cm_buf_adds(&b, "]}");
    cm_buf_adds(&b, one[0] ? "" : "]}");
    cm_api_reply(j, 200, &b);
}

int cm_api_price_list(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    cm_api_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    const char *params[] = {who->org, j->req.price.model[0] ? j->req.price.model : NULL};
    return cm_api_query(c,
                        "SELECT model, " CM_PG_EPOCH("effective_from") ", input_nanos, output_nanos,"
                        " cached_input_nanos, cache_write_nanos FROM price_cards"
                        " WHERE org = $1 AND ($2::text IS NULL OR model = $2) ORDER BY model, effective_from",
                        2, params, on_list, e);
}
