/* routes.h - the API's paths: which route a method and raw path name, and
 * the decoded path parameter.
 *
 * Pure, no allocation, thread-safe; unit-tested without sockets. */
#ifndef CM_ROUTES_H
#define CM_ROUTES_H

#include "address.h"
#include "buf.h"

#define CM_ROUTE_ALLOW_MAX 48 /* "PUT, GET, HEAD, DELETE, PATCH" and room to spare */

typedef enum {
    CM_R_HEALTHZ = 0,
    CM_R_READYZ,
    CM_R_METRICS,
    CM_R_KEYS,          /* GET, POST /v1/keys */
    CM_R_KEY,           /* DELETE /v1/keys/{id} */
    CM_R_HEARTBEAT,     /* POST /v1/mesh/heartbeat */
    CM_R_AGENTS,        /* GET /v1/mesh/agents */
    CM_R_AGENT_SPEND,   /* GET /v1/mesh/agents/{address_id}/spend */
    CM_R_INTENT_SPEND,  /* GET /v1/mesh/intents/{intent_id}/spend */
    CM_R_POLICY,        /* PUT, PATCH, GET, DELETE /v1/mesh/agents/{address_id}/policies/cost */
    CM_R_INTENTS,       /* POST /v1/mesh/intents */
    CM_R_AXME_INTENTS,  /* POST /v1/intents */
    CM_R_KILL,          /* POST /v1/mesh/agents/{address_id}/kill */
    CM_R_RESUME,        /* POST /v1/mesh/agents/{address_id}/resume */
    CM_R_AGENT,         /* GET /v1/mesh/agents/{address_id} */
    CM_R_EVENTS,        /* GET /v1/mesh/events */
    CM_R_WEBHOOK,       /* PUT, GET, DELETE /v1/mesh/webhook */
    CM_R_UI,            /* GET / and GET /ui/{file}: the dashboard */
    CM_R_OPENAPI,       /* GET /openapi.yaml */
    CM_R_OTLP_TRACES,   /* POST /v1/traces (OTLP/HTTP) */
    CM_R_CE_EVENTS,     /* POST /api/v1/events (CloudEvents, OpenMeter's shape) */
    CM_R_METERS,        /* GET /v1/mesh/meters */
    CM_R_METER,         /* PUT, DELETE /v1/mesh/meters/{event_type} */
    /* PUT, PATCH, GET, DELETE .../policies/cost of a scope (budget.h) */
    CM_R_ORG_POLICY,      /* /v1/mesh/org/policies/cost */
    CM_R_ENV_POLICY,      /* /v1/mesh/envs/{env}/policies/cost */
    CM_R_CUSTOMER_POLICY, /* /v1/mesh/customers/{id}/policies/cost */
    CM_R_WORKFLOW_POLICY, /* /v1/mesh/workflows/{id}/policies/cost */
    CM_R_RUN_POLICY,      /* /v1/mesh/runs/{id}/policies/cost */
    CM_R_INTENT_END,      /* POST /v1/mesh/intents/{intent_id}/end */
    CM_R_PRICES,        /* GET /v1/mesh/pricing/models */
    CM_R_PRICE,         /* PUT, GET /v1/mesh/pricing/models/{model} */
    CM_R_RUN_SPEND,     /* GET /v1/mesh/runs/{id}/spend */
    CM_R_SESSION_SPEND, /* GET /v1/mesh/sessions/{id}/spend */
    CM_R_WORKFLOW_SPEND, /* GET /v1/mesh/workflows/{id}/spend */
    CM_R_CUSTOMER_SPEND, /* GET /v1/mesh/customers/{id}/spend */
    CM_R_TOP,           /* GET /v1/mesh/top */
    CM_R_POLICIES,      /* GET /v1/mesh/policies: every policy of the org */
    CM_R_COUNT,
} cm_route_id;

typedef struct {
    cm_route_id id;
    const char *method;      /* the method the route answers: "GET" for a HEAD */
    char param[CM_ADDR_MAX]; /* the decoded {...} segment, "" when none */
    char allow[CM_ROUTE_ALLOW_MAX]; /* on 405: the methods the path takes */
} cm_route;

/* Matches `method` and the raw (still percent-encoded) path, without the
 * query string. Returns 200 on a match, 404 for an unknown path, 405 when
 * the path exists but not for this method (allow is set), 400 when the
 * path parameter's encoding is malformed, too long or not UTF-8. */
int cm_route_match(const char *method, const char *path, cm_route *out);

/* The route table, one "METHOD PATTERN" line each, '*' standing for the
 * path parameter (costmeshd --routes: the OpenAPI test compares it with
 * docs/openapi.yaml). HEAD is left out: every GET takes it. */
void cm_route_list(cm_buf *out);

/* Static route name for metrics and logs; never NULL. */
const char *cm_route_name(cm_route_id id);

#endif
