/* api_routes.h - the handler of every operation, one route family per file:
 *   api_heartbeats.c  heartbeats into the group commit
 *   api_keys.c        API keys
 *   api_agents.c      agent reads: list, one agent, spend, events
 *   api_units.c       spend by run, session, workflow, customer; top
 *   api_control.c     cost policies, kill/resume, webhook
 *   api_intents.c     intent admission
 *   api_interop.c     OTLP traces and CloudEvents, as heartbeats
 *   api_pricing.c     rate cards, and pricing heartbeats by them
 *   api_budgets.c     every policy of the org with its usage (the Budgets page)
 * Each is a cm_api_handler (api.h); svc.c maps operations to them. */
#ifndef CM_API_ROUTES_H
#define CM_API_ROUTES_H

#include "api.h"

int cm_api_heartbeat(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);

int cm_api_key_create(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
int cm_api_key_list(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
int cm_api_key_revoke(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);

/* One agent's view, shared by the list, one agent and the kill switch's
 * answer. Parameters: $1 org, $2 now, $3/$4/$5 hour/day/month start, $6 one address
 * or NULL. Columns: 0 address, 1 health, 2 last heartbeat, 3 state, 4..6
 * cost of hour/day/month, 7..8 intents of hour/day, 9 has a policy, 10..16
 * the policy (CM_POLICY_ROW_COLS), 17 its ten latest events as JSON, 18 the
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
int cm_api_spend_intent(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
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

/* What pricing did, for /metrics; any thread. */
typedef enum {
    CM_PRICING_PRICED = 0, /* heartbeats rated by a card */
    CM_PRICING_UNPRICED,   /* heartbeats with a model, no cost_usd and no card in force: cost 0 */
    CM_PRICING_DISCREPANT, /* client costs off the card's by more than the tolerance */
    CM_PRICING_KINDS
} cm_pricing_count;
unsigned long long cm_api_pricing_count(cm_pricing_count kind);

#endif
