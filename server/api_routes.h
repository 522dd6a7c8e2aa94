/* api_routes.h - the handler of every operation, one route family per file:
 *   api_heartbeats.c  heartbeats into the group commit
 *   api_keys.c        API keys
 *   api_agents.c      agent reads: list, one agent, spend, events
 *   api_control.c     cost policies, kill/resume, webhook
 *   api_intents.c     intent admission
 *   api_interop.c     OTLP traces and CloudEvents, as heartbeats
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

int cm_api_policy_put(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
int cm_api_policy_get(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e);
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

#endif
