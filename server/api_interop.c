/* api_interop.c - what other protocols report: OTLP trace exports (otlp.h)
 * become heartbeats of agents named for the key, go through the group
 * commit like any heartbeat request (ingest.h: durable before the answer, a
 * span id seen again is a duplicate), and are answered in the protocol's
 * own terms once committed. */
#include "api_routes.h"
#include "error.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(offsetof(cm_req_interop, hb) == 0, "the group commit reads req.interop.hb as req.heartbeat");

/* Makes the agent NAME in agent an address for the key: its bound agent,
 * whatever the spans say (the key speaks for that agent only), else
 * agent://ORG/ENV/NAME with the key's org and the server's interop ENV. */
static int address_for(const cm_api *api, const cm_ident *who, char agent[CM_ADDR_MAX], cm_apierr *e)
{
    char name[CM_ADDR_SEG_MAX + 1];
    snprintf(name, sizeof name, "%s", agent);
    if (who->agent[0]) agent[0] = '\0';
    else snprintf(agent, CM_ADDR_MAX, "agent://%s/%s/%s", who->org, api->interop_env, name);
    return cm_api_resolve_agent(who, agent, "agent", e);
}

/* The next status of the test hook, 0 when none is left. */
static int next_fault(cm_api *api)
{
    char *f = api->interop_faults;
    if (!*f) return 0;
    int status = atoi(f);
    size_t skip = strcspn(f, ",");
    memmove(f, f + skip + (f[skip] == ','), strlen(f + skip + (f[skip] == ',')) + 1);
    return status == 429 || status == 503 ? status : 0;
}

/* The success answer of a committed request, in its protocol's terms; or,
 * while the test hook has statuses left, the next of them. */
static void set_success(cm_api *api, cm_job *j)
{
    int fault = next_fault(api);
    if (fault) {
        cm_log(CM_LOG_WARN, "event=interop_test_fault status=%d", fault);
        cm_job_fail(j, fault, fault == 429 ? "rate_limited" : "store_unavailable", NULL,
                    "refused by COSTMESH_TEST_INTEROP_FAULTS after the commit; retry");
        /* http.c gives every 503 its Retry-After of 1 s. */
        j->retry_after = fault == 429 ? 2 : 0;
        return;
    }
    cm_buf b;
    cm_buf_init(&b);
    j->content_type = cm_otlp_reply(&j->req.interop.otlp, &b);
    cm_job_reply(j, 200, &b);
}

/* The group commit's answer: its 202 becomes the protocol's success, its
 * refusals (503, 422) stand. */
static void on_committed(cm_job *j)
{
    cm_req_interop *q = &j->req.interop;
    j->done = q->done;
    j->done_arg = q->done_arg;
    if (j->status == 202) set_success(q->api, j);
    cm_api_answer(j);
}

int cm_api_otlp_traces(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    cm_req_interop *q = &j->req.interop;
    cm_otlp_count_ignored(q->otlp.ignored);
    for (size_t i = 0; i < q->hb.n; i++)
        if (address_for(api, who, q->hb.hbs[i].agent, e) != CM_OK) return CM_EFORBIDDEN;
    if (q->hb.n == 0) {
        set_success(api, j);
        cm_api_answer(j);
        return CM_OK;
    }
    q->done = j->done;
    q->done_arg = j->done_arg;
    q->api = api;
    j->done = on_committed;
    cm_ingest_submit(api->ingest, j);
    return CM_OK;
}
