#include "routes.h"
#include "buf.h"
#include "error.h"

#include <string.h>

typedef struct {
    cm_route_id id;
    const char *method;
    const char *pattern; /* '*' is one path parameter segment */
    const char *name;
} route_def;

static const route_def defs[] = {
    {CM_R_UI, "GET", "/", "ui"},
    {CM_R_UI, "GET", "/ui/*", "ui"},
    {CM_R_OPENAPI, "GET", "/openapi.yaml", "openapi"},
    {CM_R_HEALTHZ, "GET", "/healthz", "healthz"},
    {CM_R_READYZ, "GET", "/readyz", "readyz"},
    {CM_R_METRICS, "GET", "/metrics", "metrics"},
    {CM_R_KEYS, "GET", "/v1/keys", "keys"},
    {CM_R_KEYS, "POST", "/v1/keys", "keys"},
    {CM_R_KEY, "DELETE", "/v1/keys/*", "key"},
    {CM_R_HEARTBEAT, "POST", "/v1/mesh/heartbeat", "heartbeat"},
    {CM_R_AGENTS, "GET", "/v1/mesh/agents", "agents"},
    {CM_R_AGENT_SPEND, "GET", "/v1/mesh/agents/*/spend", "agent_spend"},
    {CM_R_INTENT_SPEND, "GET", "/v1/mesh/intents/*/spend", "intent_spend"},
    {CM_R_POLICY, "PUT", "/v1/mesh/agents/*/policies/cost", "policy"},
    {CM_R_POLICY, "GET", "/v1/mesh/agents/*/policies/cost", "policy"},
    {CM_R_POLICY, "DELETE", "/v1/mesh/agents/*/policies/cost", "policy"},
    {CM_R_POLICY, "PATCH", "/v1/mesh/agents/*/policies/cost", "policy"},
    {CM_R_INTENTS, "POST", "/v1/mesh/intents", "intents"},
    {CM_R_INTENT_END, "POST", "/v1/mesh/intents/*/end", "intent_end"},
    {CM_R_AXME_INTENTS, "POST", "/v1/intents", "axme_intents"},
    {CM_R_KILL, "POST", "/v1/mesh/agents/*/kill", "kill"},
    {CM_R_RESUME, "POST", "/v1/mesh/agents/*/resume", "resume"},
    {CM_R_AGENT, "GET", "/v1/mesh/agents/*", "agent"},
    {CM_R_EVENTS, "GET", "/v1/mesh/events", "events"},
    {CM_R_WEBHOOK, "PUT", "/v1/mesh/webhook", "webhook"},
    {CM_R_WEBHOOK, "GET", "/v1/mesh/webhook", "webhook"},
    {CM_R_WEBHOOK, "DELETE", "/v1/mesh/webhook", "webhook"},
    {CM_R_OTLP_TRACES, "POST", "/v1/traces", "otlp_traces"},
    {CM_R_CE_EVENTS, "POST", "/api/v1/events", "ce_events"},
    {CM_R_METERS, "GET", "/v1/mesh/meters", "meters"},
    {CM_R_METER, "PUT", "/v1/mesh/meters/*", "meter"},
    {CM_R_METER, "DELETE", "/v1/mesh/meters/*", "meter"},
    {CM_R_ORG_POLICY, "PUT", "/v1/mesh/org/policies/cost", "org_policy"},
    {CM_R_ORG_POLICY, "GET", "/v1/mesh/org/policies/cost", "org_policy"},
    {CM_R_ORG_POLICY, "DELETE", "/v1/mesh/org/policies/cost", "org_policy"},
    {CM_R_ORG_POLICY, "PATCH", "/v1/mesh/org/policies/cost", "org_policy"},
    {CM_R_ENV_POLICY, "PUT", "/v1/mesh/envs/*/policies/cost", "env_policy"},
    {CM_R_ENV_POLICY, "GET", "/v1/mesh/envs/*/policies/cost", "env_policy"},
    {CM_R_ENV_POLICY, "DELETE", "/v1/mesh/envs/*/policies/cost", "env_policy"},
    {CM_R_ENV_POLICY, "PATCH", "/v1/mesh/envs/*/policies/cost", "env_policy"},
    {CM_R_CUSTOMER_POLICY, "PUT", "/v1/mesh/customers/*/policies/cost", "customer_policy"},
    {CM_R_CUSTOMER_POLICY, "GET", "/v1/mesh/customers/*/policies/cost", "customer_policy"},
    {CM_R_CUSTOMER_POLICY, "DELETE", "/v1/mesh/customers/*/policies/cost", "customer_policy"},
    {CM_R_CUSTOMER_POLICY, "PATCH", "/v1/mesh/customers/*/policies/cost", "customer_policy"},
    {CM_R_WORKFLOW_POLICY, "PUT", "/v1/mesh/workflows/*/policies/cost", "workflow_policy"},
    {CM_R_WORKFLOW_POLICY, "GET", "/v1/mesh/workflows/*/policies/cost", "workflow_policy"},
    {CM_R_WORKFLOW_POLICY, "DELETE", "/v1/mesh/workflows/*/policies/cost", "workflow_policy"},
    {CM_R_WORKFLOW_POLICY, "PATCH", "/v1/mesh/workflows/*/policies/cost", "workflow_policy"},
    {CM_R_RUN_POLICY, "PUT", "/v1/mesh/runs/*/policies/cost", "run_policy"},
    {CM_R_RUN_POLICY, "GET", "/v1/mesh/runs/*/policies/cost", "run_policy"},
    {CM_R_RUN_POLICY, "DELETE", "/v1/mesh/runs/*/policies/cost", "run_policy"},
    {CM_R_RUN_POLICY, "PATCH", "/v1/mesh/runs/*/policies/cost", "run_policy"},
    {CM_R_PRICES, "GET", "/v1/mesh/pricing/models", "pricing"},
    {CM_R_PRICE, "PUT", "/v1/mesh/pricing/models/*", "price"},
    {CM_R_PRICE, "GET", "/v1/mesh/pricing/models/*", "price"},
    {CM_R_RUN_SPEND, "GET", "/v1/mesh/runs/*/spend", "run_spend"},
    {CM_R_SESSION_SPEND, "GET", "/v1/mesh/sessions/*/spend", "session_spend"},
    {CM_R_WORKFLOW_SPEND, "GET", "/v1/mesh/workflows/*/spend", "workflow_spend"},
    {CM_R_CUSTOMER_SPEND, "GET", "/v1/mesh/customers/*/spend", "customer_spend"},
    {CM_R_TOP, "GET", "/v1/mesh/top", "top"},
    {CM_R_POLICIES, "GET", "/v1/mesh/policies", "policies"},
};
enum { NDEFS = sizeof defs / sizeof defs[0] };

const char *cm_route_name(cm_route_id id)
{
    for (int i = 0; i < NDEFS; i++)
        if (defs[i].id == id) return defs[i].name;
    return "unknown";
}

/* Matches path against pattern; the '*' segment's raw span goes to
 * *seg and *seglen. */
static int match(const char *pattern, const char *path, const char **seg, size_t *seglen)
{
    const char *p = pattern, *s = path;
    while (*p) {
        if (*p == '*') {
            const char *end = strchr(s, '/');
            size_t n = end ? (size_t)(end - s) : strlen(s);
            if (n == 0) return 0;
            *seg = s;
            *seglen = n;
            s += n;
            p++;
            continue;
        }
        if (*p != *s) return 0;
        p++;
        s++;
    }
    return *s == '\0';
}

/* HEAD is GET without the body, which libmicrohttpd leaves out by itself:
 * every GET route takes HEAD, and answers it as a GET. */
static int takes(const char *def_method, const char *method)
{
    return strcmp(def_method, method) == 0 || (strcmp(method, "HEAD") == 0 && strcmp(def_method, "GET") == 0);
}

/* Appends method to the comma-separated allow list. */
static void allow_add(char allow[CM_ROUTE_ALLOW_MAX], const char *method)
{
    size_t n = strlen(allow), m = strlen(method);
    if (n + m + 3 > CM_ROUTE_ALLOW_MAX) return;
    if (n) memcpy(allow + n, ", ", 2), n += 2;
    memcpy(allow + n, method, m + 1);
}

int cm_route_match(const char *method, const char *path, cm_route *out)
{
    memset(out, 0, sizeof *out);
    int path_found = 0;
    for (int i = 0; i < NDEFS; i++) {
        const char *seg = NULL;
        size_t seglen = 0;
        if (!match(defs[i].pattern, path, &seg, &seglen)) continue;
        if (!takes(defs[i].method, method)) {
            allow_add(out->allow, defs[i].method);
            if (strcmp(defs[i].method, "GET") == 0) allow_add(out->allow, "HEAD");
            path_found = 1;
            continue;
        }
        out->id = defs[i].id;
        out->method = defs[i].method;
        out->allow[0] = '\0';
        size_t n = 0;
        if (seg && (cm_pct_decode(seg, seglen, out->param, sizeof out->param, &n) != CM_OK ||
                    cm_utf8_valid_prefix(out->param, n) != n))
            return 400;
        return 200;
    }
    return path_found ? 405 : 404;
}

void cm_route_list(cm_buf *out)
{
    for (int i = 0; i < NDEFS; i++) cm_buf_addf(out, "%s %s\n", defs[i].method, defs[i].pattern);
}
