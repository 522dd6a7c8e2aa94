/* api_pricing.c - rate cards: their routes (PUT a version, GET the
 * versions), and the pricing of heartbeats by them on their way to the
 * group commit, from the org's cards in memory (ratecards.h). */
#include "api_routes.h"
#include "error.h"
#include "money.h"

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

/* The NOTIFY of put_sql reaches this replica too, but maybe after the
 * answer: a heartbeat sent right after it must already see the new
 * version. */
static void forget(cm_api *api, const char *org)
{
    cm_ratecards_forget(api->cards, org);
}

static const cm_card_kind rate_cards = {
    .what = "rate card",
    .key = "model",
    .list = "models",
    .fields = cm_price_fields,
    .put_sql = "WITH ins AS (INSERT INTO price_cards (org, model, effective_from, input_nanos, output_nanos,"
               " cached_input_nanos, cache_write_nanos) VALUES ($1, $2, to_timestamp($3), $4, $5, $6, $7)"
               " ON CONFLICT (org, model, effective_from) DO NOTHING RETURNING 1),"
               " sent AS (SELECT pg_notify('" CM_PRICING_CHANNEL "', $1) FROM ins)"
               " SELECT (SELECT count(*) FROM ins), EXISTS (SELECT 1 FROM price_cards"
               " WHERE org = $1 AND model = $2 AND effective_from = to_timestamp($3) AND input_nanos = $4"
               " AND output_nanos = $5 AND cached_input_nanos = $6 AND cache_write_nanos = $7),"
               " (SELECT count(*) FROM sent)",
    .list_sql = "SELECT model, " CM_PG_EPOCH("effective_from") ", input_nanos, output_nanos,"
                " cached_input_nanos, cache_write_nanos FROM price_cards"
                " WHERE org = $1 AND ($2::text IS NULL OR model = $2) ORDER BY model, effective_from",
    .changed = forget,
};
_Static_assert(CM_PRICE_KINDS == CM_CARD_PRICES, "a rate card's prices are a card's");

int cm_api_price_put(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    const cm_req_price *q = &j->req.price;
    return cm_api_card_put(api, j, who, &rate_cards, q->model, q->price.from, q->price.per_million, e);
}

int cm_api_price_list(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    return cm_api_card_list(api, j, who, &rate_cards, j->req.price.model, e);
}
