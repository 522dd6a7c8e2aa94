/* api_heartbeats.c - heartbeats: each one's agent is checked against the
 * key, those naming a model are priced (api_pricing.c), then the batch
 * goes to the group commit (ingest.h), which answers. */
#include "api_routes.h"
#include "error.h"

#include <stdio.h>

int cm_api_heartbeat(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    cm_req_heartbeat *q = &j->req.heartbeat;
    for (size_t i = 0; i < q->n; i++) {
        char field[48];
        if (q->n > 1) snprintf(field, sizeof field, "heartbeats[%zu].agent", i);
        else snprintf(field, sizeof field, "agent");
        if (cm_api_resolve_agent(who, q->hbs[i].agent, field, e) != CM_OK) return CM_EFORBIDDEN;
    }
    cm_api_price(api, j, who);
    return CM_OK;
}
