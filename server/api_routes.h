/* api_routes.h - the handler of every operation, one route family per file:
 *   api_heartbeats.c  heartbeats into the group commit
 *   api_keys.c        API keys
 *   api_agents.c      agent reads: list, one agent, spend, events
 *   api_units.c       spend by run, session, workflow, customer; top
 *   api_billing.c     billing cards, customers' rated usage (JSON, CSV)
 *   api_control.c     cost policies, kill/resume, webhook
 *   api_intents.c     intent admission
 *   api_tree.c        one intent: its spend, its delegation tree, its end
 *   api_interop.c     OTLP traces and CloudEvents, as heartbeats
 *   api_pricing.c     rate cards, and pricing heartbeats by them
 *   api_cards.c       what rate cards and billing cards share: versions
 *   api_budgets.c     every policy of the org with its usage (the Budgets page)
 * Each is a cm_api_handler (api.h); svc.c maps operations to them. */
#ifndef CM_API_ROUTES_H
#define CM_API_ROUTES_H

#include "api.h"
#include "rollup.h"

int cm_api_heartbeat(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);

int cm_api_key_create(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
int cm_api_key_list(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
int cm_api_key_revoke(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);

/* One agent's view, shared by the list, one agent and the kill switch's
 * answer. Parameters: $1 org, $2 now, $3/$4/$5 hour/day/month start, $6 one address
 * or NULL. Columns: 0 address, 1 health, 2 last heartbeat, 3 state, 4..6
 * cost of hour/day/month, 7..8 intents of hour/day, 9 has a policy, 10..17
 * the policy (CM_POLICY_ROW_COLS), 18 its ten latest events as JSON, 19 the
 * cost of the hour before (for the forecast). Health
 * comes from the last heartbeat's age (health.h). */
extern const char cm_api_agent_view_sql[];
/* Fills params[0..6) for cm_api_agent_view_sql; the strings live in
 * `space`. address NULL: every agent of who's org. */
void cm_api_agent_view_params(const cm_job *j, const cm_ident *who, const char *address,
                              char space[4][24], const char *params[6]);

int cm_api_agent_list(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
int cm_api_agent_get(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
int cm_api_spend_agent(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
int cm_api_events(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);

/* Writes ,"cost_usd":...,"margin_usd":... from the 12 text columns of row
 * `row` starting at `col`: cost, tokens in/out/cached, llm calls, tool
 * calls, heartbeats, revenue, refunds, external spend, fees, margin (the
 * money as nano-dollar integers, numeric sums included). Every spend reply
 * writes its totals with it, so they all have the same members. */
void cm_api_spend_totals(cm_buf *b, const cm_pgres *res, int row, int col);
/* Writes ,"series":[...] from every row of res: the bucket's start (Unix
 * seconds) at `col`, then its cost, tokens in, tokens out, llm calls and
 * margin. */
void cm_api_spend_series(cm_buf *b, const cm_pgres *res, int col);
/* The same twelve, as SQL sums of a row source whose columns have the
 * names of rollup_unit's (coalesced to 0, each as text). */
#define CM_API_SPEND_SUMS_SQL                                                                      \
    "coalesce(sum(cost_nanos), 0)::text, coalesce(sum(tokens_in), 0)::text,"                       \
    " coalesce(sum(tokens_out), 0)::text, coalesce(sum(tokens_cached), 0)::text,"                  \
    " coalesce(sum(llm_calls), 0)::text, coalesce(sum(tool_calls), 0)::text,"                      \
    " coalesce(sum(heartbeats), 0)::text, coalesce(sum(revenue_nanos), 0)::text,"                  \
    " coalesce(sum(refund_nanos), 0)::text, coalesce(sum(external_nanos), 0)::text,"               \
    " coalesce(sum(fees_nanos), 0)::text, coalesce(sum(revenue_nanos - refund_nanos - cost_nanos"  \
    " - external_nanos - fees_nanos), 0)::text"

/* The spend by model of rows of source (a CM_ROLLUP_MODELS_SQL) that
 * match where, as one text column: per model, most expensive first,
 * "model cost heartbeats tokens_in tokens_fresh tokens_cached
 * tokens_cache_write tokens_out rated fresh cached cache_write output
 * savings", the last five the rate card's rating of the rated heartbeats
 * in nano-dollars (each divided by a million once and rounded half-even;
 * savings: the cached tokens at the fresh input price, less their cost),
 * models separated by ';' (a model name has neither, cm_model_valid).
 * cm_api_spend_models writes it as the reply's "models". */
#define CM_API_MODELS_SQL(source, where)                                                           \
    "(SELECT string_agg(concat_ws(' ', model, cost, hb, tin, tin - tcached - tcwrite, tcached, tcwrite, tout,"\
    " rated, cm_div_half_even(fresh, 1000000), cm_div_half_even(cached, 1000000),"                 \
    " cm_div_half_even(cwrite, 1000000), cm_div_half_even(outp, 1000000),"                         \
    " cm_div_half_even(asfresh, 1000000) - cm_div_half_even(cached, 1000000)), ';' ORDER BY cost DESC, model)"\
    " FROM (SELECT model, sum(cost_nanos) AS cost, sum(heartbeats) AS hb, sum(tokens_in) AS tin,"  \
    " sum(tokens_cached) AS tcached, sum(tokens_cache_write) AS tcwrite, sum(tokens_out) AS tout," \
    " sum(rated) AS rated, sum(fresh_e) AS fresh, sum(cached_e) AS cached, sum(cache_write_e) AS cwrite,"\
    " sum(output_e) AS outp, sum(cached_as_fresh_e) AS asfresh FROM " source " WHERE " where       \
    " GROUP BY model) m)"
/* ,"models":[...] from a CM_API_MODELS_SQL column (NULL or "": none). */
void cm_api_spend_models(cm_buf *b, const char *text);
/* Writes ,"outcomes":{...} from the columns of cm_unit_outcomes()
 * (schema/018_intent_tree.sql) at `col` of row `row`: intents ended in the
 * window by status, those that became abandoned, the cost per successful
 * intent, and the shares of the window's spend on failed and unfinished
 * intents. */
void cm_api_outcomes(cm_buf *b, const cm_pgres *res, int row, int col);
/* Its abandon and now parameters as text: COSTMESH_INTENT_ABANDON_S, and
 * j's time. */
typedef struct {
    char abandon[16], now[24];
} cm_api_outcome_params;
void cm_api_outcome_params_of(const cm_api *api, const cm_job *j, cm_api_outcome_params *out);
/* Its SQL, as a row source for a spend statement: $-numbers of org, kind,
 * unit, one agent (NULL: all), the window's start and end (Unix seconds),
 * the abandonment setting (seconds) and now; spend is an SQL expression of
 * the window's cost. The statement has read the unit's raw rows past the
 * watermark (the given agent's only) into its CTE tail (rollup.h's
 * CM_TAIL_CTE_SQL), which the outcomes take instead of reading them again. */
#define CM_API_OUTCOMES_SQL(org, kind, unit, agent, from, to, abandon, now, spend)                 \
    "cm_unit_outcomes(" org ", " kind ", " unit ", " agent ", to_timestamp(" from "::bigint),"       \
    " to_timestamp(" to "::bigint), make_interval(secs => " abandon "::int), to_timestamp(" now     \
    "::bigint), " spend ", " CM_TAIL_ARRAY_SQL ")"

int cm_api_spend_unit(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
int cm_api_top(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);

int cm_api_policy_put(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
int cm_api_policy_get(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
/* api_budgets.c: GET /v1/mesh/policies (admin keys). */
int cm_api_policy_list(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
int cm_api_policy_delete(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
/* CM_OP_KILL and CM_OP_RESUME. */
int cm_api_kill(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
int cm_api_webhook_put(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
/* GET also shows the org's newest deliveries (webhook.h). */
int cm_api_webhook_get(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
/* Removes the webhook and its deliveries, pending ones too. */
int cm_api_webhook_delete(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);

int cm_api_intent(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
/* Releases what is left of an intent's reservation (estimated_cost_usd). */
int cm_api_intent_end(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);

int cm_api_spend_intent(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
int cm_api_intent_tree(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
int cm_api_intent_end(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);

/* api_interop.c: OpenTelemetry traces (otlp.h) and CloudEvents
 * (cloudevents.h) into the group commit; the org's meters (admin keys). */
int cm_api_otlp_traces(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
int cm_api_ce_events(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
int cm_api_meter_put(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
int cm_api_meter_list(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
int cm_api_meter_delete(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
/* Hands an OTLP job whose spans are resolved and priced to the group
 * commit, which answers it in OTLP's terms. */
void cm_api_interop_commit(cm_api *api, cm_job *j);

/* api_cards.c: cards with versions, each version in force from its
 * effective_from with four prices in nano-dollars: rate cards and billing
 * cards. */
#define CM_CARD_PRICES 4
#define CM_CARD_NAME_MAX CM_MODEL_MAX /* a model's name, or a plan's (a customer id) */
_Static_assert(CM_ID_MAX <= CM_CARD_NAME_MAX, "a plan named after a customer fits a card's name");
typedef struct {
    const char *what;                          /* "rate card", for messages */
    const char *key;                           /* "model": a card's name in replies and errors */
    const char *list;                          /* "models": the list of every card */
    const char *const *fields;                 /* the prices' API fields, in the columns' order */
    /* PUT: $1 org, $2 name, $3 effective_from (Unix seconds), $4..$7 the
     * prices; inserts the version unless one starts then, and answers the
     * rows inserted (0 or 1) and whether the version stored at $3 has these
     * prices. */
    const char *put_sql;
    /* GET: $1 org, $2 the name or NULL for every card; answers name,
     * effective_from (Unix seconds) and the four prices, by name, oldest
     * version first. */
    const char *list_sql;
    void (*changed)(cm_api *api, const char *org); /* a version was written; NULL: nothing to do */
} cm_card_kind;
/* PUT a version (admin keys): 201, 200 for a repeat of the same version,
 * 409 for other prices at its effective_from. */
int cm_api_card_put(cm_api *api, cm_job *j, const cm_ident *who, const cm_card_kind *kind, const char *name,
                    int64_t from, const int64_t prices[CM_CARD_PRICES], cm_apierr *e);
/* GET one card's versions (name; 404 when none) or every card's (""). */
int cm_api_card_list(cm_api *api, cm_job *j, const cm_ident *who, const cm_card_kind *kind, const char *name,
                     cm_apierr *e);

/* api_pricing.c: PUT a version of a model's card (admin keys; 201, 200 for
 * a repeat of the same version, 409 for another at the same
 * effective_from), GET one model's versions or every model's. */
int cm_api_price_put(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
int cm_api_price_list(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
/* Prices the heartbeats of j (a heartbeat or OTLP job, its agents resolved
 * for who) that name a model, by who's org's cards in force at each one's
 * ts, then hands j to the group commit as its route would. Answers j itself
 * when the cards cannot be loaded (503) or a rating is out of range. */
void cm_api_price(cm_api *api, cm_job *j, const cm_ident *who);
/* The cm_ratecards_cb of the service's cache (arg: the cm_api). */
void cm_api_priced(void *arg, const char *org, cm_job *j, int rc, const cm_ratecard_set *cards);

/* api_billing.c: PUT a version of a plan's billing card (admin keys; 201,
 * 200 for a repeat, 409 for other prices at its effective_from), GET one
 * plan's versions or every plan's; a customer's rated usage by line item,
 * as JSON or CSV (admin keys: an invoice is the org's). */
int cm_api_bill_put(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
int cm_api_bill_list(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
int cm_api_usage(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);

/* What pricing did, for /metrics; any thread. */
typedef enum {
    CM_PRICING_PRICED = 0, /* heartbeats rated by a card */
    CM_PRICING_UNPRICED,   /* heartbeats with a model, no cost_usd and no card in force: cost 0 */
    CM_PRICING_DISCREPANT, /* client costs off the card's by more than the tolerance */
    CM_PRICING_KINDS
} cm_pricing_count;
unsigned long long cm_api_pricing_count(cm_pricing_count kind);

#endif
