#include "decode.h"
#include "address.h"
#include "auth.h"
#include "buf.h"
#include "error.h"
#include "inflate.h"
#include "timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A query argument, percent-decoded into out. Returns 0 when absent, 1 when
 * present, -1 when malformed. */
static int query_arg(const cm_decode_req *r, const char *name, char *out, size_t outsz)
{
    const char *v = r->lookup(r->lookup_ctx, CM_DECODE_QUERY, name);
    if (!v) return 0;
    size_t n;
    if (cm_pct_decode(v, strlen(v), out, outsz, &n) != CM_OK || cm_utf8_valid_prefix(out, n) != n) return -1;
    return 1;
}

int cm_decode_key(cm_decode_lookup lookup, void *ctx, unsigned char hash[CM_KEY_HASH_LEN], cm_apierr *e)
{
    const char *k = lookup(ctx, CM_DECODE_HEADER, "x-api-key");
    if (!k) {
        const char *a = lookup(ctx, CM_DECODE_HEADER, "Authorization");
        if (a && strncasecmp(a, "Bearer ", 7) == 0) k = a + 7;
    }
    if (k && *k && strlen(k) <= 256 && cm_auth_hash(k, strlen(k), hash) == CM_OK) return CM_OK;
    cm_decode_unauthorized(e);
    return CM_EAUTH;
}

const cm_apierr *cm_decode_unauthorized(cm_apierr *e)
{
    cm_apierr_set(e, 401, "unauthorized", NULL, "a valid API key is required (x-api-key or Authorization: Bearer)");
    return e;
}

/* ?limit=: 1..1000, default 100. */
static int limit_arg(const cm_decode_req *r, int *limit, cm_apierr *e)
{
    char tmp[16], *end;
    *limit = 100;
    int q = query_arg(r, "limit", tmp, sizeof tmp);
    if (q == 0) return CM_OK;
    long v = q > 0 ? strtol(tmp, &end, 10) : 0;
    if (q < 0 || *end || end == tmp || v < 1 || v > 1000)
        return cm_apierr_set(e, 400, "invalid_field", "limit", "limit must be an integer from 1 to 1000");
    *limit = (int)v;
    return CM_OK;
}

/* The {address_id} of the path into address. */
static int address_param(const cm_decode_req *r, char address[CM_ADDR_MAX], cm_apierr *e)
{
    if (cm_addr_parse(r->route->param, strlen(r->route->param), NULL) != CM_OK)
        return cm_apierr_set(e, 400, "invalid_field", "address_id",
                             "the path must name a percent-encoded address agent://ORG/ENV/NAME");
    memcpy(address, r->route->param, strlen(r->route->param) + 1);
    return CM_OK;
}

/* ?name=, when present, an agent's address into out ("" when absent). */
static int address_arg(const cm_decode_req *r, const char *name, char address[CM_ADDR_MAX], cm_apierr *e)
{
    int q = query_arg(r, name, address, CM_ADDR_MAX);
    if (q < 0 || (q > 0 && cm_addr_parse(address, strlen(address), NULL) != CM_OK))
        return cm_apierr_set(e, 400, "invalid_field", name, "%s must be an address agent://ORG/ENV/NAME", name);
    return CM_OK;
}

/* ?name=, when present, into out: one of the NULL-terminated `names`, which
 * the refusal lists ("name must be a, b or c"). out is "" when absent. */
static int choice_arg(const cm_decode_req *r, const char *name, const char *const *names, char *out,
                      size_t outsz, cm_apierr *e)
{
    int q = query_arg(r, name, out, outsz);
    if (q == 0) return CM_OK;
    for (const char *const *n = names; q > 0 && *n; n++)
        if (strcmp(out, *n) == 0) return CM_OK;
    char list[256];
    size_t k = 0;
    list[0] = '\0';
    for (size_t i = 0; names[i] && k < sizeof list; i++)
        k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i == 0 ? "" : names[i + 1] ? ", " : " or ", names[i]);
    return cm_apierr_set(e, 400, "invalid_field", name, "%s must be %s", name, list);
}

/* The scope of a .../policies/cost route: an agent's address, the org, an
 * ENV (an address segment), or a customer, workflow or run id (at most
 * CM_ID_MAX bytes, no control characters; the route decoded it as UTF-8). */
static int policy_scope(const cm_decode_req *r, cm_req_policy *q, cm_apierr *e)
{
    static const struct {
        cm_route_id route;
        cm_scope_kind kind;
        const char *field;
    } kinds[] = {{CM_R_POLICY, CM_SCOPE_AGENT, "address_id"},    {CM_R_ORG_POLICY, CM_SCOPE_ORG, NULL},
                 {CM_R_ENV_POLICY, CM_SCOPE_ENV, "env"},         {CM_R_CUSTOMER_POLICY, CM_SCOPE_CUSTOMER, "customer"},
                 {CM_R_WORKFLOW_POLICY, CM_SCOPE_WORKFLOW, "workflow"}, {CM_R_RUN_POLICY, CM_SCOPE_RUN, "run_id"}};
    size_t k = 0;
    while (kinds[k].route != r->route->id) k++;
    q->kind = kinds[k].kind;
    const char *id = r->route->param;
    size_t n = strlen(id);
    switch (q->kind) {
    case CM_SCOPE_AGENT: return address_param(r, q->address, e);
    case CM_SCOPE_ORG: q->address[0] = '\0'; return CM_OK;
    case CM_SCOPE_ENV:
        if (cm_addr_check_org(id, n) != CM_OK)
            return cm_apierr_set(e, 400, "invalid_field", "env",
                                 "env must be the ENV of agent://ORG/ENV/NAME: 1 to 64 of A-Z a-z 0-9 . _ -");
        break;
    default:
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f) n = CM_ID_MAX + 1;
        if (n > CM_ID_MAX)
            return cm_apierr_set(e, 400, "invalid_field", kinds[k].field,
                                 "%s must be 1 to %d bytes without control characters", kinds[k].field, CM_ID_MAX);
    }
    memcpy(q->address, id, strlen(id) + 1);
    return CM_OK;
}

/* ?window= (default day) and ?at= (default now): the window a spend read
 * covers. */
static int window_args(const cm_decode_req *r, int64_t now, cm_window *window, int64_t *at, cm_apierr *e)
{
    char tmp[64];
    *window = CM_WIN_DAY;
    *at = now;
    int q = query_arg(r, "window", tmp, sizeof tmp);
    if (q < 0 || (q > 0 && cm_window_parse(tmp, window) != CM_OK))
        return cm_apierr_set(e, 400, "invalid_field", "window", "window must be hour, day, week or month");
    q = query_arg(r, "at", tmp, sizeof tmp);
    /* Kept well inside 1970..9999 so every window around it prints. */
    if (q < 0 || (q > 0 && (cm_time_parse(tmp, strlen(tmp), at) != CM_OK || *at < 946684800 ||
                            *at >= 253370764800LL)))
        return cm_apierr_set(e, 400, "invalid_field", "at", "at must be an RFC 3339 time from 2000 to 9998");
    return CM_OK;
}

/* The unit kind of a /v1/mesh/{kind}s/{id}/spend route. */
static const char *unit_of_route(cm_route_id id)
{
    switch (id) {
    case CM_R_RUN_SPEND: return "run";
    case CM_R_SESSION_SPEND: return "session";
    case CM_R_WORKFLOW_SPEND: return "workflow";
    default: return "customer";
    }
}

/* The operation of r's route and method, and its request. */
static int fill_request(const cm_decode_req *r, cm_job *j, cm_apierr *e)
{
    static const char *const healths[] = {"healthy", "degraded", "unreachable", "unknown", "killed", NULL};
    static const char *const event_types[] = {"policy_breached", "threshold_crossed", "agent_killed",
                                              "agent_resumed", "health_changed", "policy_changed",
                                              "reservation_expired", "exhaustion_predicted",
                                              "price_discrepancy", "margin_negative", NULL};
    static const char *const units[] = {"run", "session", "workflow", "customer", "agent", NULL};
    const char *body = r->body ? r->body : "";
    size_t len = r->body_len;
    char tmp[CM_ADDR_MAX];
    int q;
    int get = strcmp(r->method, "GET") == 0;
    switch (r->route->id) {
    case CM_R_HEARTBEAT:
        j->op = CM_OP_HEARTBEAT;
        return cm_codec_heartbeats(body, len, j->now, &j->req.heartbeat.hbs, &j->req.heartbeat.n,
                                   &j->req.heartbeat.ignored, e);
    case CM_R_KEYS:
        j->op = get ? CM_OP_KEY_LIST : CM_OP_KEY_CREATE;
        return get ? CM_OK : cm_codec_keyreq(body, len, &j->req.key_create, e);
    case CM_R_KEY:
        j->op = CM_OP_KEY_REVOKE;
        if (strlen(r->route->param) > CM_KEY_ID_MAX)
            return cm_apierr_set(e, 404, "not_found", NULL, "no such key in this org");
        memcpy(j->req.key_revoke.id, r->route->param, strlen(r->route->param) + 1);
        return CM_OK;
    case CM_R_AGENTS:
        j->op = CM_OP_AGENT_LIST;
        if (choice_arg(r, "health", healths, j->req.agent_list.health, sizeof j->req.agent_list.health, e) != CM_OK ||
            address_arg(r, "cursor", j->req.agent_list.after, e) != CM_OK)
            return CM_EINVAL;
        return limit_arg(r, &j->req.agent_list.limit, e);
    case CM_R_AGENT_SPEND: {
        cm_req_spend_agent *sa = &j->req.spend_agent;
        j->op = CM_OP_SPEND_AGENT;
        if (address_param(r, sa->address, e) != CM_OK) return CM_EINVAL;
        return window_args(r, j->now, &sa->window, &sa->at, e);
    }
    case CM_R_RUN_SPEND:
    case CM_R_SESSION_SPEND:
    case CM_R_WORKFLOW_SPEND:
    case CM_R_CUSTOMER_SPEND: {
        cm_req_spend_unit *su = &j->req.spend_unit;
        j->op = CM_OP_SPEND_UNIT;
        su->by = unit_of_route(r->route->id);
        if (strlen(r->route->param) > CM_ID_MAX)
            return cm_apierr_set(e, 400, "invalid_field", "id", "id is longer than %d bytes", CM_ID_MAX);
        memcpy(su->id, r->route->param, strlen(r->route->param) + 1);
        return window_args(r, j->now, &su->window, &su->at, e);
    }
    case CM_R_TOP: {
        cm_req_spend_unit *su = &j->req.spend_unit;
        j->op = CM_OP_TOP;
        if (choice_arg(r, "by", units, tmp, sizeof tmp, e) != CM_OK) return CM_EINVAL;
        su->by = "run";
        for (const char *const *u = units; *u; u++)
            if (strcmp(tmp, *u) == 0) su->by = *u;
        if (window_args(r, j->now, &su->window, &su->at, e) != CM_OK ||
            address_arg(r, "agent", su->agent, e) != CM_OK)
            return CM_EINVAL;
        return limit_arg(r, &su->limit, e);
    }
    case CM_R_POLICIES: {
        cm_req_policy_list *pl = &j->req.policy_list;
        j->op = CM_OP_POLICY_LIST;
        char cur[CM_ADDR_MAX + 16];
        q = query_arg(r, "cursor", cur, sizeof cur);
        if (q != 0) {
            /* "kind:id", as next_cursor writes it: a kind has no ':'. */
            char *colon = q > 0 ? strchr(cur, ':') : NULL;
            if (colon) *colon = '\0';
            if (!colon || cm_scope_parse(cur, &pl->after_kind) != CM_OK || strlen(colon + 1) >= sizeof pl->after)
                return cm_apierr_set(e, 400, "invalid_field", "cursor",
                                     "cursor must be a next_cursor from an earlier page");
            pl->after_set = true;
            memcpy(pl->after, colon + 1, strlen(colon + 1) + 1);
        }
        return limit_arg(r, &pl->limit, e);
    }
    case CM_R_INTENT_SPEND:
        j->op = CM_OP_SPEND_INTENT;
        if (strlen(r->route->param) > CM_ID_MAX)
            return cm_apierr_set(e, 400, "invalid_field", "intent_id", "intent_id is longer than %d bytes", CM_ID_MAX);
        memcpy(j->req.spend_intent.intent_id, r->route->param, strlen(r->route->param) + 1);
        return address_arg(r, "agent", j->req.spend_intent.agent, e);
    case CM_R_INTENT_END:
        j->op = CM_OP_INTENT_END;
        if (strlen(r->route->param) > CM_ID_MAX)
            return cm_apierr_set(e, 400, "invalid_field", "intent_id", "intent_id is longer than %d bytes", CM_ID_MAX);
        memcpy(j->req.intent_end.intent_id, r->route->param, strlen(r->route->param) + 1);
        return address_arg(r, "agent", j->req.intent_end.agent, e);
    case CM_R_KILL:
        j->op = CM_OP_KILL;
        return address_param(r, j->req.agent.address, e);
    case CM_R_RESUME:
        j->op = CM_OP_RESUME;
        return address_param(r, j->req.agent.address, e);
    case CM_R_AGENT:
        j->op = CM_OP_AGENT_GET;
        return address_param(r, j->req.agent.address, e);
    case CM_R_POLICY:
    case CM_R_ORG_POLICY:
    case CM_R_ENV_POLICY:
    case CM_R_CUSTOMER_POLICY:
    case CM_R_WORKFLOW_POLICY:
    case CM_R_RUN_POLICY:
        /* The operation first: it says which member of req cm_job_free
         * finds written when the scope is refused. */
        j->op = get                                  ? CM_OP_POLICY_GET
                : strcmp(r->method, "DELETE") == 0  ? CM_OP_POLICY_DELETE
                : strcmp(r->method, "PATCH") == 0   ? CM_OP_POLICY_PATCH
                                                    : CM_OP_POLICY_PUT;
        if (policy_scope(r, &j->req.policy, e) != CM_OK) return CM_EINVAL;
        if (j->op != CM_OP_POLICY_PUT && j->op != CM_OP_POLICY_PATCH) return CM_OK;
        return cm_codec_policy(body, len, &j->req.policy.policy, &j->req.policy.present, e);
    case CM_R_INTENTS:
    case CM_R_AXME_INTENTS: {
        j->op = CM_OP_INTENT;
        j->req.intent.axme = r->route->id == CM_R_AXME_INTENTS;
        if (cm_codec_intent(body, len, j->req.intent.axme, &j->req.intent.body, e) != CM_OK) return CM_EINVAL;
        const char *k = r->lookup(r->lookup_ctx, CM_DECODE_HEADER, "Idempotency-Key");
        if (!k) return CM_OK;
        size_t n = strlen(k);
        int bad = n == 0 || n > CM_ID_MAX;
        for (size_t i = 0; i < n && !bad; i++) bad = (unsigned char)k[i] <= 0x20 || (unsigned char)k[i] >= 0x7f;
        if (bad)
            return cm_apierr_set(e, 400, "invalid_header", "Idempotency-Key",
                                 "Idempotency-Key must be 1 to %d visible ASCII characters", CM_ID_MAX);
        memcpy(j->req.intent.idem_key, k, n + 1);
        return CM_OK;
    }
    case CM_R_EVENTS:
        j->op = CM_OP_EVENTS;
        if (choice_arg(r, "event_type", event_types, j->req.events.event_type, sizeof j->req.events.event_type,
                       e) != CM_OK ||
            address_arg(r, "agent", j->req.events.agent, e) != CM_OK)
            return CM_EINVAL;
        q = query_arg(r, "cursor", tmp, sizeof tmp);
        if (q != 0) {
            char *end;
            long long v = q > 0 ? strtoll(tmp, &end, 10) : 0;
            if (q < 0 || *end || end == tmp || v < 1)
                return cm_apierr_set(e, 400, "invalid_field", "cursor",
                                     "cursor must be a next_cursor from an earlier page");
            j->req.events.before = v;
        }
        return limit_arg(r, &j->req.events.limit, e);
    case CM_R_WEBHOOK:
        if (strcmp(r->method, "DELETE") == 0) {
            j->op = CM_OP_WEBHOOK_DELETE;
            return CM_OK;
        }
        j->op = get ? CM_OP_WEBHOOK_GET : CM_OP_WEBHOOK_PUT;
        return get ? CM_OK : cm_codec_webhook(body, len, &j->req.webhook_put, e);
    case CM_R_OTLP_TRACES: {
        j->op = CM_OP_OTLP_TRACES;
        char *owned;
        const char *data;
        size_t n;
        if (cm_inflate_body(r->lookup(r->lookup_ctx, CM_DECODE_HEADER, "Content-Encoding"), body, len, &owned,
                            &data, &n, e) != CM_OK)
            return CM_EINVAL;
        cm_req_interop *in = &j->req.interop;
        int rc = cm_otlp_decode(r->lookup(r->lookup_ctx, CM_DECODE_HEADER, "Content-Type"), data, n, j->now,
                                &in->hb.hbs, &in->hb.n, &in->otlp, e);
        free(owned);
        return rc;
    }
    case CM_R_CE_EVENTS:
        j->op = CM_OP_CE_EVENTS;
        return cm_ce_decode(r->lookup(r->lookup_ctx, CM_DECODE_HEADER, "Content-Type"), body, len, j->now,
                            &j->req.interop.events, &j->req.interop.nevents, e);
    case CM_R_METERS:
        j->op = CM_OP_METER_LIST;
        return CM_OK;
    case CM_R_METER:
        j->op = strcmp(r->method, "DELETE") == 0 ? CM_OP_METER_DELETE : CM_OP_METER_PUT;
        if (strlen(r->route->param) > CM_ID_MAX)
            return cm_apierr_set(e, 400, "invalid_field", "event_type", "event_type is longer than %d bytes", CM_ID_MAX);
        if (j->op == CM_OP_METER_PUT && cm_ce_meter_decode(body, len, &j->req.meter, e) != CM_OK) return CM_EINVAL;
        memcpy(j->req.meter.event_type, r->route->param, strlen(r->route->param) + 1);
        return CM_OK;
    case CM_R_PRICES:
        j->op = CM_OP_PRICE_LIST;
        return CM_OK;
    case CM_R_PRICE:
        j->op = get ? CM_OP_PRICE_LIST : CM_OP_PRICE_PUT;
        if (!cm_model_valid(r->route->param, strlen(r->route->param)))
            return cm_apierr_set(e, 400, "invalid_field", "model",
                                 "the path must name a model: 1 to %d of A-Z a-z 0-9 . _ - : / @ + (/ as %%2F)",
                                 CM_MODEL_MAX);
        memcpy(j->req.price.model, r->route->param, strlen(r->route->param) + 1);
        return get ? CM_OK : cm_codec_price(body, len, &j->req.price.price, e);
    default:
        return cm_apierr_set(e, 500, "internal", NULL, "unroutable request");
    }
}

int cm_decode_job(const cm_decode_req *r, cm_job *j, cm_apierr *e)
{
    j->now = r->now;
    if (r->key_hash) memcpy(j->key_hash, r->key_hash, CM_KEY_HASH_LEN);
    else if (cm_decode_key(r->lookup, r->lookup_ctx, j->key_hash, e) != CM_OK) return CM_EAUTH;
    return fill_request(r, j, e);
}
