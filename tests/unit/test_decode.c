/* test_decode.c - a matched request into a job: the API key, each route's
 * operation and request, and the 4xx of malformed parameters, headers and
 * bodies. Headers and query arguments come from a table, not a socket. */
#include "unit.h"

#include "auth.h"
#include "decode.h"
#include "error.h"

#include <stdlib.h>
#include <strings.h>

#define KEY "cm_test_key_0123456789"
#define ADDR "agent://myorg/prod/a"
#define ADDR_PATH "agent%3A%2F%2Fmyorg%2Fprod%2Fa"

/* The request's headers and query arguments: NULL-terminated
 * {kind, name, value} rows. */
typedef struct {
    cm_decode_kind kind;
    const char *name;
    const char *value;
} arg;

static const char *table_lookup(void *ctx, cm_decode_kind kind, const char *name)
{
    for (const arg *a = ctx; a->name; a++)
        if (a->kind == kind && (kind == CM_DECODE_HEADER ? strcasecmp(a->name, name) : strcmp(a->name, name)) == 0)
            return a->value;
    return NULL;
}

#define WITH_KEY {CM_DECODE_HEADER, "X-Api-Key", KEY}
#define H(n, v) {CM_DECODE_HEADER, (n), (v)}
#define Q(n, v) {CM_DECODE_QUERY, (n), (v)}
#define END {CM_DECODE_HEADER, NULL, NULL}

static const arg key_only[] = {WITH_KEY, END};

/* Matches method and path, then decodes into a fresh job (*out, freed by
 * the caller with cm_job_free). Returns cm_decode_job's result. */
static int decode(const char *method, const char *path, const char *body, const arg *args, cm_job **out,
                  cm_apierr *e)
{
    cm_route route;
    CHECK_EQ_I64(cm_route_match(method, path, &route), 200);
    cm_decode_req r = {&route, method, body, body ? strlen(body) : 0, 1700000000, table_lookup, (void *)args, NULL};
    *out = calloc(1, sizeof **out);
    memset(e, 0, sizeof *e);
    return cm_decode_job(&r, *out, e);
}

/* Decodes a request expected to be accepted; the job is the caller's. */
static cm_job *accepted(const char *method, const char *path, const char *body, const arg *args)
{
    cm_job *j;
    cm_apierr e;
    int rc = decode(method, path, body, args, &j, &e);
    CHECK_EQ_I64(rc, CM_OK);
    if (rc != CM_OK) fprintf(stderr, "  %s %s: %d %s (%s)\n", method, path, e.status, e.message, e.field);
    return j;
}

/* Expects a refusal with status, code and field. */
#define CHECK_REFUSED(m, p, body, args, st, cd, fld)                         \
    do {                                                                     \
        cm_job *j_;                                                          \
        cm_apierr e_;                                                        \
        CHECK(decode((m), (p), (body), (args), &j_, &e_) != CM_OK);          \
        CHECK_EQ_I64(e_.status, (st));                                       \
        CHECK_STR(e_.code, (cd));                                            \
        CHECK_STR(e_.field, (fld));                                          \
        cm_job_free(j_);                                                     \
    } while (0)

static void api_key(void)
{
    unsigned char want[CM_KEY_HASH_LEN];
    CHECK_EQ_I64(cm_auth_hash(KEY, strlen(KEY), want), CM_OK);
    cm_job *j;

    j = accepted("GET", "/v1/keys", NULL, key_only);
    CHECK(memcmp(j->key_hash, want, sizeof want) == 0);
    CHECK_EQ_I64(j->now, 1700000000);
    cm_job_free(j);

    static const arg bearer[] = {H("authorization", "bearer " KEY), END};
    j = accepted("GET", "/v1/keys", NULL, bearer);
    CHECK(memcmp(j->key_hash, want, sizeof want) == 0);
    cm_job_free(j);

    static const arg none[] = {END};
    static const arg basic[] = {H("Authorization", "Basic " KEY), END};
    static const arg empty_bearer[] = {H("Authorization", "Bearer "), END};
    static const arg empty_key[] = {H("x-api-key", ""), H("Authorization", "Bearer " KEY), END};
    CHECK_REFUSED("GET", "/v1/keys", NULL, none, 401, "unauthorized", "");
    CHECK_REFUSED("GET", "/v1/keys", NULL, basic, 401, "unauthorized", "");
    CHECK_REFUSED("GET", "/v1/keys", NULL, empty_bearer, 401, "unauthorized", "");
    /* x-api-key wins even when empty: no falling back to the other header. */
    CHECK_REFUSED("GET", "/v1/keys", NULL, empty_key, 401, "unauthorized", "");
    {
        char longkey[300];
        memset(longkey, 'k', 257);
        longkey[257] = '\0';
        const arg too_long[] = {H("x-api-key", longkey), END};
        CHECK_REFUSED("GET", "/v1/keys", NULL, too_long, 401, "unauthorized", "");
        longkey[256] = '\0';
        const arg longest[] = {H("x-api-key", longkey), END};
        j = accepted("GET", "/v1/keys", NULL, longest);
        cm_job_free(j);
    }
    /* The key is checked before the request: a bad body without a key is
     * a 401, not a 400. */
    CHECK_REFUSED("POST", "/v1/keys", "{", none, 401, "unauthorized", "");

    /* The HTTP front's question before any body: the same key, the same
     * refusal. */
    unsigned char got[CM_KEY_HASH_LEN];
    cm_apierr e;
    CHECK_EQ_I64(cm_decode_key(table_lookup, (void *)bearer, got, &e), CM_OK);
    CHECK(memcmp(got, want, sizeof want) == 0);
    CHECK_EQ_I64(cm_decode_key(table_lookup, (void *)basic, got, &e), CM_EAUTH);
    CHECK_EQ_I64(e.status, 401);
    CHECK_STR(e.code, "unauthorized");
}

static void keys(void)
{
    cm_job *j = accepted("GET", "/v1/keys", NULL, key_only);
    CHECK_EQ_I64(j->op, CM_OP_KEY_LIST);
    cm_job_free(j);

    j = accepted("POST", "/v1/keys", "{\"role\":\"agent\",\"name\":\"bot\",\"agent\":\"" ADDR "\"}", key_only);
    CHECK_EQ_I64(j->op, CM_OP_KEY_CREATE);
    CHECK_STR(j->req.key_create.name, "bot");
    CHECK_STR(j->req.key_create.agent, ADDR);
    cm_job_free(j);
    CHECK_REFUSED("POST", "/v1/keys", "{\"role\":\"other\"}", key_only, 400, "invalid_field", "role");

    j = accepted("DELETE", "/v1/keys/key_0123abcd", NULL, key_only);
    CHECK_EQ_I64(j->op, CM_OP_KEY_REVOKE);
    CHECK_STR(j->req.key_revoke.id, "key_0123abcd");
    cm_job_free(j);
    {
        /* An id no key can have is simply not found. */
        char path[400];
        int k = snprintf(path, sizeof path, "/v1/keys/");
        for (int i = 0; i <= CM_KEY_ID_MAX; i++) path[k++] = 'k';
        path[k] = '\0';
        CHECK_REFUSED("DELETE", path, NULL, key_only, 404, "not_found", "");
    }
}

static void heartbeat(void)
{
    /* An empty body is one liveness beat. */
    cm_job *j = accepted("POST", "/v1/mesh/heartbeat", NULL, key_only);
    CHECK_EQ_I64(j->op, CM_OP_HEARTBEAT);
    CHECK_EQ_I64(j->req.heartbeat.n, 1);
    cm_job_free(j);

    j = accepted("POST", "/v1/mesh/heartbeat", "{\"agent\":\"" ADDR "\"}", key_only);
    CHECK_EQ_I64(j->req.heartbeat.n, 1);
    if (j->req.heartbeat.n == 1) {
        CHECK_STR(j->req.heartbeat.hbs[0].agent, ADDR);
        CHECK_EQ_I64(j->req.heartbeat.hbs[0].ts, 1700000000);
    }
    cm_job_free(j);
    CHECK_REFUSED("POST", "/v1/mesh/heartbeat", "{\"agent\":\"nope\"}", key_only, 400, "invalid_field", "agent");
}

static void agent_list(void)
{
    cm_job *j = accepted("GET", "/v1/mesh/agents", NULL, key_only);
    CHECK_EQ_I64(j->op, CM_OP_AGENT_LIST);
    CHECK_STR(j->req.agent_list.health, "");
    CHECK_EQ_I64(j->req.agent_list.limit, 100);
    cm_job_free(j);

    static const arg filtered[] = {WITH_KEY, Q("health", "degraded"), Q("limit", "1000"), END};
    j = accepted("GET", "/v1/mesh/agents", NULL, filtered);
    CHECK_STR(j->req.agent_list.health, "degraded");
    CHECK_EQ_I64(j->req.agent_list.limit, 1000);
    cm_job_free(j);

    static const arg bad_health[] = {WITH_KEY, Q("health", "sick"), END};
    static const arg bad_escape[] = {WITH_KEY, Q("health", "%zz"), END};
    static const arg limit0[] = {WITH_KEY, Q("limit", "0"), END};
    static const arg limit_big[] = {WITH_KEY, Q("limit", "1001"), END};
    static const arg limit_text[] = {WITH_KEY, Q("limit", "10x"), END};
    static const arg limit_empty[] = {WITH_KEY, Q("limit", ""), END};
    CHECK_REFUSED("GET", "/v1/mesh/agents", NULL, bad_health, 400, "invalid_field", "health");
    CHECK_REFUSED("GET", "/v1/mesh/agents", NULL, bad_escape, 400, "invalid_field", "health");
    CHECK_REFUSED("GET", "/v1/mesh/agents", NULL, limit0, 400, "invalid_field", "limit");
    CHECK_REFUSED("GET", "/v1/mesh/agents", NULL, limit_big, 400, "invalid_field", "limit");
    CHECK_REFUSED("GET", "/v1/mesh/agents", NULL, limit_text, 400, "invalid_field", "limit");
    CHECK_REFUSED("GET", "/v1/mesh/agents", NULL, limit_empty, 400, "invalid_field", "limit");

    static const arg bad_type[] = {WITH_KEY, Q("event_type", "agent_deleted"), END};
    CHECK_REFUSED("GET", "/v1/mesh/events", NULL, bad_type, 400, "invalid_field", "event_type");
    /* The refusals list the accepted values. */
    cm_apierr e;
    CHECK(decode("GET", "/v1/mesh/agents", NULL, bad_health, &j, &e) != CM_OK);
    CHECK_STR(e.message, "health must be healthy, degraded, unreachable, unknown or killed");
    cm_job_free(j);
    CHECK(decode("GET", "/v1/mesh/events", NULL, bad_type, &j, &e) != CM_OK);
    CHECK_STR(e.message, "event_type must be policy_breached, threshold_crossed, agent_killed, agent_resumed, "
                         "health_changed, policy_changed, reservation_expired, exhaustion_predicted, "
                         "price_discrepancy or margin_negative");
    cm_job_free(j);
    static const arg type[] = {WITH_KEY, Q("event_type", "agent_killed"), Q("limit", "7"), END};
    j = accepted("GET", "/v1/mesh/events", NULL, type);
    CHECK_EQ_I64(j->op, CM_OP_EVENTS);
    CHECK_STR(j->req.events.event_type, "agent_killed");
    CHECK_EQ_I64(j->req.events.limit, 7);
    cm_job_free(j);
}

static void one_agent(void)
{
    static const struct {
        const char *method, *path;
        cm_op op;
    } routes[] = {
        {"GET", "/v1/mesh/agents/" ADDR_PATH, CM_OP_AGENT_GET},
        {"POST", "/v1/mesh/agents/" ADDR_PATH "/kill", CM_OP_KILL},
        {"POST", "/v1/mesh/agents/" ADDR_PATH "/resume", CM_OP_RESUME},
    };
    cm_job *j;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        j = accepted(routes[i].method, routes[i].path, NULL, key_only);
        CHECK_EQ_I64(j->op, routes[i].op);
        CHECK_STR(j->req.agent.address, ADDR);
        cm_job_free(j);
    }
    CHECK_REFUSED("POST", "/v1/mesh/agents/research-agent/kill", NULL, key_only, 400, "invalid_field", "address_id");
    CHECK_REFUSED("GET", "/v1/mesh/agents/agent%3A%2F%2Fa%2F..%2Fc", NULL, key_only, 400, "invalid_field",
                  "address_id");

    j = accepted("GET", "/v1/mesh/agents/" ADDR_PATH "/policies/cost", NULL, key_only);
    CHECK_EQ_I64(j->op, CM_OP_POLICY_GET);
    CHECK_STR(j->req.policy.address, ADDR);
    cm_job_free(j);
    j = accepted("DELETE", "/v1/mesh/agents/" ADDR_PATH "/policies/cost", NULL, key_only);
    CHECK_EQ_I64(j->op, CM_OP_POLICY_DELETE);
    cm_job_free(j);
    j = accepted("PUT", "/v1/mesh/agents/" ADDR_PATH "/policies/cost", "{}", key_only);
    CHECK_EQ_I64(j->op, CM_OP_POLICY_PUT);
    cm_job_free(j);
    CHECK_REFUSED("PUT", "/v1/mesh/agents/" ADDR_PATH "/policies/cost", "{\"limit\":1}", key_only, 400,
                  "invalid_field", "limit");
}

/* The scopes' policy routes: the kind from the path, the id decoded and
 * checked; a refusal leaves a job cm_job_free can free. */
static void scope_policies(void)
{
    static const struct {
        const char *path;
        cm_scope_kind kind;
        const char *id;
    } ok[] = {
        {"/v1/mesh/org/policies/cost", CM_SCOPE_ORG, ""},
        {"/v1/mesh/envs/staging/policies/cost", CM_SCOPE_ENV, "staging"},
        {"/v1/mesh/customers/acme%20corp/policies/cost", CM_SCOPE_CUSTOMER, "acme corp"},
        {"/v1/mesh/workflows/wf%3A1/policies/cost", CM_SCOPE_WORKFLOW, "wf:1"},
        {"/v1/mesh/runs/run-7/policies/cost", CM_SCOPE_RUN, "run-7"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        cm_job *j = accepted("PATCH", ok[i].path, "{\"max_intents_per_day\":3}", key_only);
        CHECK_EQ_I64(j->op, CM_OP_POLICY_PATCH);
        CHECK_EQ_I64(j->req.policy.kind, ok[i].kind);
        CHECK_STR(j->req.policy.address, ok[i].id);
        CHECK(j->req.policy.policy.has[CM_LIM_INTENTS_DAY] && j->req.policy.policy.limit[CM_LIM_INTENTS_DAY] == 3);
        cm_job_free(j);
    }
    CHECK_REFUSED("GET", "/v1/mesh/envs/a%20b/policies/cost", NULL, key_only, 400, "invalid_field", "env");
    CHECK_REFUSED("DELETE", "/v1/mesh/customers/a%01b/policies/cost", NULL, key_only, 400, "invalid_field",
                  "customer");
    char longid[200] = "/v1/mesh/runs/";
    memset(longid + strlen(longid), 'r', 129);
    strcat(longid, "/policies/cost");
    CHECK_REFUSED("GET", longid, NULL, key_only, 400, "invalid_field", "run_id");
    CHECK_REFUSED("PUT", "/v1/mesh/workflows/w/policies/cost", "{\"max_cost_per_day_usd\":-1}", key_only, 400,
                  "invalid_field", "max_cost_per_day_usd");
}

/* An intent's scopes and estimate; ending one. */
/* GET /v1/mesh/policies: the cursor is "kind:id", the id may hold ':'. */
static void policy_list(void)
{
    cm_job *j = accepted("GET", "/v1/mesh/policies", NULL, key_only);
    CHECK_EQ_I64(j->op, CM_OP_POLICY_LIST);
    CHECK(!j->req.policy_list.after_set);
    CHECK_EQ_I64(j->req.policy_list.limit, 100);
    cm_job_free(j);
    static const arg page[] = {WITH_KEY, Q("cursor", "customer%3Aacme%3Aeu"), Q("limit", "2"), END};
    j = accepted("GET", "/v1/mesh/policies", NULL, page);
    CHECK(j->req.policy_list.after_set);
    CHECK_EQ_I64(j->req.policy_list.after_kind, CM_SCOPE_CUSTOMER);
    CHECK_STR(j->req.policy_list.after, "acme:eu");
    CHECK_EQ_I64(j->req.policy_list.limit, 2);
    cm_job_free(j);
    static const arg org[] = {WITH_KEY, Q("cursor", "org%3A"), END};
    j = accepted("GET", "/v1/mesh/policies", NULL, org);
    CHECK_EQ_I64(j->req.policy_list.after_kind, CM_SCOPE_ORG);
    CHECK_STR(j->req.policy_list.after, "");
    cm_job_free(j);
    static const arg no_kind[] = {WITH_KEY, Q("cursor", "acme"), END};
    static const arg bad_kind[] = {WITH_KEY, Q("cursor", "team%3Aa"), END};
    static const arg bad_limit[] = {WITH_KEY, Q("limit", "1001"), END};
    CHECK_REFUSED("GET", "/v1/mesh/policies", NULL, no_kind, 400, "invalid_field", "cursor");
    CHECK_REFUSED("GET", "/v1/mesh/policies", NULL, bad_kind, 400, "invalid_field", "cursor");
    CHECK_REFUSED("GET", "/v1/mesh/policies", NULL, bad_limit, 400, "invalid_field", "limit");
}

static void intent_fields(void)
{
    cm_job *j = accepted("POST", "/v1/mesh/intents",
                         "{\"agent\":\"" ADDR "\",\"customer\":\"acme\",\"workflow\":\"w\",\"run_id\":\"r\","
                         "\"estimated_cost_usd\":2.5}",
                         key_only);
    CHECK_STR(j->req.intent.body.customer, "acme");
    CHECK_STR(j->req.intent.body.workflow, "w");
    CHECK_STR(j->req.intent.body.run_id, "r");
    CHECK_EQ_I64(j->req.intent.body.estimated_cost, 2500000000LL);
    cm_job_free(j);
    CHECK_REFUSED("POST", "/v1/mesh/intents", "{\"estimated_cost_usd\":-0.1}", key_only, 400, "invalid_field",
                  "estimated_cost_usd");
    CHECK_REFUSED("POST", "/v1/mesh/intents", "{\"customer\":1}", key_only, 400, "invalid_field", "customer");
    j = accepted("POST", "/v1/mesh/intents/int_1/end", NULL, key_only);
    CHECK_EQ_I64(j->op, CM_OP_INTENT_END);
    CHECK_STR(j->req.intent_end.intent_id, "int_1");
    CHECK_STR(j->req.intent_end.agent, "");
    cm_job_free(j);
}

static void spend(void)
{
    cm_job *j;
    const char *path = "/v1/mesh/agents/" ADDR_PATH "/spend";
    j = accepted("GET", path, NULL, key_only);
    CHECK_EQ_I64(j->op, CM_OP_SPEND_AGENT);
    CHECK_STR(j->req.spend_agent.address, ADDR);
    CHECK_EQ_I64(j->req.spend_agent.window, CM_WIN_DAY);
    CHECK_EQ_I64(j->req.spend_agent.at, 1700000000);
    cm_job_free(j);

    static const arg when[] = {WITH_KEY, Q("window", "week"), Q("at", "2024-03-01T12%3A00%3A00Z"), END};
    j = accepted("GET", path, NULL, when);
    CHECK_EQ_I64(j->req.spend_agent.window, CM_WIN_WEEK);
    CHECK_EQ_I64(j->req.spend_agent.at, 1709294400);
    cm_job_free(j);

    static const arg bad_window[] = {WITH_KEY, Q("window", "year"), END};
    static const arg bad_at[] = {WITH_KEY, Q("at", "yesterday"), END};
    static const arg early_at[] = {WITH_KEY, Q("at", "1999-12-31T23:59:59Z"), END};
    CHECK_REFUSED("GET", path, NULL, bad_window, 400, "invalid_field", "window");
    CHECK_REFUSED("GET", path, NULL, bad_at, 400, "invalid_field", "at");
    CHECK_REFUSED("GET", path, NULL, early_at, 400, "invalid_field", "at");

    static const arg for_agent[] = {WITH_KEY, Q("agent", "agent%3A%2F%2Fmyorg%2Fprod%2Fa"), END};
    j = accepted("GET", "/v1/mesh/intents/int_1/spend", NULL, for_agent);
    CHECK_EQ_I64(j->op, CM_OP_SPEND_INTENT);
    CHECK_STR(j->req.spend_intent.intent_id, "int_1");
    CHECK_STR(j->req.spend_intent.agent, ADDR);
    cm_job_free(j);
    static const arg bad_agent[] = {WITH_KEY, Q("agent", "a"), END};
    CHECK_REFUSED("GET", "/v1/mesh/intents/int_1/spend", NULL, bad_agent, 400, "invalid_field", "agent");
    {
        char long_path[400];
        int k = snprintf(long_path, sizeof long_path, "/v1/mesh/intents/");
        for (int i = 0; i <= CM_ID_MAX; i++) long_path[k++] = 'i';
        snprintf(long_path + k, sizeof long_path - (size_t)k, "/spend");
        CHECK_REFUSED("GET", long_path, NULL, key_only, 400, "invalid_field", "intent_id");
    }
}

static void spend_units(void)
{
    static const struct {
        const char *path, *by;
    } routes[] = {{"/v1/mesh/runs/r%201/spend", "run"},
                  {"/v1/mesh/sessions/r%201/spend", "session"},
                  {"/v1/mesh/workflows/r%201/spend", "workflow"},
                  {"/v1/mesh/customers/r%201/spend", "customer"}};
    static const arg when[] = {WITH_KEY, Q("window", "month"), Q("at", "2024-03-01T12%3A00%3A00Z"), END};
    static const arg bad_window[] = {WITH_KEY, Q("window", "year"), END};
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        cm_job *j = accepted("GET", routes[i].path, NULL, when);
        CHECK_EQ_I64(j->op, CM_OP_SPEND_UNIT);
        CHECK_STR(j->req.spend_unit.by, routes[i].by);
        CHECK_STR(j->req.spend_unit.id, "r 1");
        CHECK_EQ_I64(j->req.spend_unit.window, CM_WIN_MONTH);
        CHECK_EQ_I64(j->req.spend_unit.at, 1709294400);
        cm_job_free(j);
        CHECK_REFUSED("GET", routes[i].path, NULL, bad_window, 400, "invalid_field", "window");
    }
    char long_path[400];
    int k = snprintf(long_path, sizeof long_path, "/v1/mesh/runs/");
    for (int i = 0; i <= CM_ID_MAX; i++) long_path[k++] = 'r';
    snprintf(long_path + k, sizeof long_path - (size_t)k, "/spend");
    CHECK_REFUSED("GET", long_path, NULL, key_only, 400, "invalid_field", "id");

    cm_job *j = accepted("GET", "/v1/mesh/top", NULL, key_only);
    CHECK_EQ_I64(j->op, CM_OP_TOP);
    CHECK_STR(j->req.spend_unit.by, "run");
    CHECK_EQ_I64(j->req.spend_unit.limit, 100);
    CHECK_STR(j->req.spend_unit.agent, "");
    cm_job_free(j);
    static const arg by_customer[] = {WITH_KEY, Q("by", "customer"), Q("limit", "3"),
                                      Q("agent", "agent%3A%2F%2Fmyorg%2Fprod%2Fa"), END};
    j = accepted("GET", "/v1/mesh/top", NULL, by_customer);
    CHECK_STR(j->req.spend_unit.by, "customer");
    CHECK_EQ_I64(j->req.spend_unit.limit, 3);
    CHECK_STR(j->req.spend_unit.agent, ADDR);
    cm_job_free(j);
    static const arg bad_by[] = {WITH_KEY, Q("by", "model"), END};
    static const arg bad_agent[] = {WITH_KEY, Q("agent", "a"), END};
    static const arg bad_limit[] = {WITH_KEY, Q("limit", "0"), END};
    CHECK_REFUSED("GET", "/v1/mesh/top", NULL, bad_by, 400, "invalid_field", "by");
    CHECK_REFUSED("GET", "/v1/mesh/top", NULL, bad_agent, 400, "invalid_field", "agent");
    CHECK_REFUSED("GET", "/v1/mesh/top", NULL, bad_limit, 400, "invalid_field", "limit");
    CHECK_REFUSED("GET", "/v1/mesh/top", NULL, bad_window, 400, "invalid_field", "window");
}

static void intents(void)
{
    const char *body = "{\"agent\":\"" ADDR "\",\"intent_id\":\"int_1\"}";
    cm_job *j = accepted("POST", "/v1/mesh/intents", body, key_only);
    CHECK_EQ_I64(j->op, CM_OP_INTENT);
    CHECK(!j->req.intent.axme);
    CHECK_STR(j->req.intent.body.agent, ADDR);
    CHECK_STR(j->req.intent.idem_key, "");
    cm_job_free(j);

    static const arg idem[] = {WITH_KEY, H("idempotency-key", "retry-42"), END};
    j = accepted("POST", "/v1/mesh/intents", body, idem);
    CHECK_STR(j->req.intent.idem_key, "retry-42");
    cm_job_free(j);

    j = accepted("POST", "/v1/intents", "{\"to_agent\":\"" ADDR "\",\"intent_type\":\"t\"}", key_only);
    CHECK_EQ_I64(j->op, CM_OP_INTENT);
    CHECK(j->req.intent.axme);
    CHECK_STR(j->req.intent.body.agent, ADDR);
    cm_job_free(j);

    static const arg idem_space[] = {WITH_KEY, H("Idempotency-Key", "two words"), END};
    static const arg idem_empty[] = {WITH_KEY, H("Idempotency-Key", ""), END};
    CHECK_REFUSED("POST", "/v1/mesh/intents", body, idem_space, 400, "invalid_header", "Idempotency-Key");
    CHECK_REFUSED("POST", "/v1/mesh/intents", body, idem_empty, 400, "invalid_header", "Idempotency-Key");
    CHECK_REFUSED("POST", "/v1/mesh/intents", "{\"agent\":\"a\"}", key_only, 400, "invalid_field", "agent");
}

static void the_rest(void)
{
    cm_job *j = accepted("GET", "/v1/mesh/webhook", NULL, key_only);
    CHECK_EQ_I64(j->op, CM_OP_WEBHOOK_GET);
    cm_job_free(j);
    j = accepted("DELETE", "/v1/mesh/webhook", NULL, key_only);
    CHECK_EQ_I64(j->op, CM_OP_WEBHOOK_DELETE);
    cm_job_free(j);
    CHECK_REFUSED("PUT", "/v1/mesh/webhook", "{", key_only, 400, "invalid_json", "");
    /* Routes the HTTP front answers itself never become jobs. */
    CHECK_REFUSED("GET", "/healthz", NULL, key_only, 500, "internal", "");
}

void test_decode(void)
{
    api_key();
    keys();
    heartbeat();
    agent_list();
    one_agent();
    scope_policies();
    policy_list();
    spend();
    spend_units();
    intents();
    intent_fields();
    the_rest();
}
