/* test_routes.c - method and raw path to route, 404/405/400, and the
 * percent-decoded path parameter. */
#include "unit.h"

#include "routes.h"

static int rm(const char *method, const char *path, cm_route *r)
{
    return cm_route_match(method, path, r);
}

/* Expects a 200 match of method and path to id with param. */
#define CHECK_ROUTE(m, p, rid, prm)                                          \
    do {                                                                     \
        cm_route r_;                                                         \
        CHECK_EQ_I64(rm((m), (p), &r_), 200);                                \
        CHECK_EQ_I64(r_.id, (rid));                                          \
        CHECK_STR(r_.param, (prm));                                          \
        CHECK_STR(r_.allow, "");                                             \
    } while (0)

#define CHECK_405(m, p, allowed)                                             \
    do {                                                                     \
        cm_route r_;                                                         \
        CHECK_EQ_I64(rm((m), (p), &r_), 405);                                \
        CHECK_STR(r_.allow, (allowed));                                      \
    } while (0)

#define CHECK_STATUS(m, p, st)                                               \
    do {                                                                     \
        cm_route r_;                                                         \
        CHECK_EQ_I64(rm((m), (p), &r_), (st));                               \
    } while (0)

static void every_route(void)
{
    CHECK_ROUTE("GET", "/healthz", CM_R_HEALTHZ, "");
    CHECK_ROUTE("GET", "/readyz", CM_R_READYZ, "");
    CHECK_ROUTE("GET", "/metrics", CM_R_METRICS, "");
    CHECK_ROUTE("GET", "/v1/keys", CM_R_KEYS, "");
    CHECK_ROUTE("POST", "/v1/keys", CM_R_KEYS, "");
    CHECK_ROUTE("DELETE", "/v1/keys/key_0123abcd", CM_R_KEY, "key_0123abcd");
    CHECK_ROUTE("POST", "/v1/mesh/heartbeat", CM_R_HEARTBEAT, "");
    CHECK_ROUTE("GET", "/v1/mesh/agents", CM_R_AGENTS, "");
    CHECK_ROUTE("GET", "/v1/mesh/agents/agent%3A%2F%2Fmyorg%2Fproduction%2Fresearch-agent/spend",
                CM_R_AGENT_SPEND, "agent://myorg/production/research-agent");
    CHECK_ROUTE("GET", "/v1/mesh/agents/agent%3a%2f%2fmyorg%2fproduction%2fresearch-agent/spend",
                CM_R_AGENT_SPEND, "agent://myorg/production/research-agent");
    CHECK_ROUTE("GET", "/v1/mesh/intents/int_abc123/spend", CM_R_INTENT_SPEND, "int_abc123");
    CHECK_ROUTE("GET", "/v1/mesh/intents/int%20a%2Bb+c/spend", CM_R_INTENT_SPEND, "int a+b+c");
    CHECK_ROUTE("DELETE", "/v1/keys/a%2Fb", CM_R_KEY, "a/b");
    CHECK_ROUTE("PUT", "/v1/mesh/webhook", CM_R_WEBHOOK, "");
    CHECK_ROUTE("GET", "/v1/mesh/webhook", CM_R_WEBHOOK, "");
    CHECK_ROUTE("DELETE", "/v1/mesh/webhook", CM_R_WEBHOOK, "");
    CHECK_ROUTE("GET", "/openapi.yaml", CM_R_OPENAPI, "");
    /* The parameter is decoded, not validated: the handler checks it. */
    CHECK_ROUTE("GET", "/v1/mesh/agents/research-agent/spend", CM_R_AGENT_SPEND, "research-agent");
}

static void names(void)
{
    CHECK_STR(cm_route_name(CM_R_HEALTHZ), "healthz");
    CHECK_STR(cm_route_name(CM_R_HEARTBEAT), "heartbeat");
    CHECK_STR(cm_route_name(CM_R_AGENT_SPEND), "agent_spend");
    CHECK_STR(cm_route_name(CM_R_INTENT_SPEND), "intent_spend");
    for (int i = 0; i < CM_R_COUNT; i++) {
        const char *n = cm_route_name((cm_route_id)i);
        CHECK(n != NULL && strcmp(n, "unknown") != 0);
    }
    CHECK_STR(cm_route_name(CM_R_COUNT), "unknown");
}

static void not_found(void)
{
    CHECK_STATUS("GET", "/", 200);    /* the dashboard */
    CHECK_STATUS("POST", "/", 405);
    CHECK_STATUS("GET", "/ui/app.js", 200);
    CHECK_STATUS("GET", "/ui/a/b", 404);
    CHECK_STATUS("GET", "", 404);
    CHECK_STATUS("GET", "/nope", 404);
    CHECK_STATUS("GET", "/v1", 404);
    CHECK_STATUS("GET", "/v1/mesh", 404);
    CHECK_STATUS("GET", "/healthzz", 404);
    CHECK_STATUS("GET", "/HEALTHZ", 404);
    CHECK_STATUS("GET", "/v2/keys", 404);
    CHECK_STATUS("POST", "/v1/mesh/heartbeats", 404);
    /* One agent; its unknown sub-paths are 404. */
    CHECK_STATUS("GET", "/v1/mesh/agents/agent%3A%2F%2Fa%2Fb%2Fc", 200);
    CHECK_STATUS("GET", "/v1/mesh/agents/agent%3A%2F%2Fa%2Fb%2Fc/policies", 404);
    CHECK_STATUS("GET", "/v1/mesh/agents/agent%3A%2F%2Fa%2Fb%2Fc/spend/x", 404);
    /* An unencoded address spans several segments. */
    CHECK_STATUS("GET", "/v1/mesh/agents/agent://a/b/c/spend", 404);
    CHECK_STATUS("DELETE", "/v1/keys/a/b", 404);
    /* Percent-encoding in fixed segments is not decoded. */
    CHECK_STATUS("GET", "/%68ealthz", 404);
    CHECK_STATUS("GET", "/v1/mesh%2Fagents", 404);

    /* Trailing slash. */
    CHECK_STATUS("GET", "/healthz/", 404);
    CHECK_STATUS("GET", "/v1/keys/", 404);
    CHECK_STATUS("DELETE", "/v1/keys/", 404);
    CHECK_STATUS("POST", "/v1/mesh/heartbeat/", 404);
    CHECK_STATUS("GET", "/v1/mesh/agents/", 404);
    CHECK_STATUS("GET", "/v1/mesh/agents/x/spend/", 404);
    CHECK_STATUS("GET", "/v1/mesh/intents/i/spend/", 404);

    /* Empty segments. */
    CHECK_STATUS("GET", "/v1/mesh/agents//spend", 404);
    CHECK_STATUS("GET", "/v1/mesh/intents//spend", 404);
    CHECK_STATUS("GET", "//healthz", 404);
    CHECK_STATUS("GET", "/v1//keys", 404);
    CHECK_STATUS("GET", "/v1/mesh//agents", 404);
}

static void wrong_method(void)
{
    CHECK_405("POST", "/healthz", "GET, HEAD");
    CHECK_405("DELETE", "/metrics", "GET, HEAD");
    CHECK_405("DELETE", "/v1/keys", "GET, HEAD, POST");
    CHECK_405("PUT", "/v1/keys", "GET, HEAD, POST");
    CHECK_405("GET", "/v1/keys/key_1", "DELETE");
    CHECK_405("POST", "/v1/keys/key_1", "DELETE");
    CHECK_405("GET", "/v1/mesh/heartbeat", "POST");
    CHECK_405("PUT", "/v1/mesh/heartbeat", "POST");
    CHECK_405("POST", "/v1/mesh/webhook", "PUT, GET, HEAD, DELETE");
    CHECK_405("POST", "/v1/mesh/agents", "GET, HEAD");
    CHECK_405("POST", "/v1/mesh/agents/agent%3A%2F%2Fa%2Fb%2Fc/spend", "GET, HEAD");
    CHECK_405("DELETE", "/v1/mesh/intents/i/spend", "GET, HEAD");
    /* HEAD goes only where GET goes. */
    CHECK_405("HEAD", "/v1/mesh/heartbeat", "POST");
    CHECK_405("HEAD", "/v1/keys/key_1", "DELETE");
    /* Methods are case-sensitive (RFC 9110). */
    CHECK_405("get", "/healthz", "GET, HEAD");
    CHECK_405("head", "/healthz", "GET, HEAD");
    /* A wrong method on a path whose parameter is malformed: still 405. */
    CHECK_405("POST", "/v1/mesh/agents/%zz/spend", "GET, HEAD");
    /* A 200 match leaves allow empty even after passing other methods. */
    {
        cm_route r;
        CHECK_EQ_I64(rm("POST", "/v1/keys", &r), 200);
        CHECK_STR(r.allow, "");
    }
}

/* HEAD is answered as the GET of the same route, never as another method. */
static void head(void)
{
    static const char *const paths[] = {"/healthz", "/readyz", "/metrics", "/", "/ui/app.js", "/v1/keys",
                                        "/v1/mesh/agents", "/v1/mesh/agents/a/spend", "/v1/mesh/events",
                                        "/v1/mesh/webhook", "/v1/mesh/agents/a/policies/cost"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        cm_route g, h;
        CHECK_EQ_I64(rm("GET", paths[i], &g), 200);
        CHECK_EQ_I64(rm("HEAD", paths[i], &h), 200);
        CHECK_EQ_I64(h.id, g.id);
        CHECK_STR(h.method, "GET");
        CHECK_STR(h.param, g.param);
    }
    cm_route r;
    CHECK_EQ_I64(rm("POST", "/v1/keys", &r), 200);
    CHECK_STR(r.method, "POST");
    CHECK_EQ_I64(rm("HEAD", "/v1/mesh/agents/%zz/spend", &r), 400);
}

/* Every line of the list is a route: its method matches its path, a
 * parameter filled in. */
static void listed(void)
{
    cm_buf b;
    cm_buf_init(&b);
    cm_route_list(&b);
    int n = 0;
    for (char *line = b.data; line && *line; n++) {
        char *nl = strchr(line, '\n'), method[16], path[128];
        size_t k = 0;
        CHECK(nl != NULL);
        if (!nl) break;
        *nl = '\0';
        CHECK(sscanf(line, "%15s", method) == 1);
        for (const char *p = strchr(line, ' ') + 1; *p && k + 2 < sizeof path; p++)
            path[k++] = *p == '*' ? 'x' : *p;
        path[k] = '\0';
        cm_route r;
        CHECK_EQ_I64(rm(method, path, &r), 200);
        CHECK_STR(r.method, method);
        line = nl + 1;
    }
    CHECK(n > 20);
    cm_buf_free(&b);
}

static void bad_param(void)
{
    CHECK_STATUS("GET", "/v1/mesh/agents/%zz/spend", 400);
    CHECK_STATUS("GET", "/v1/mesh/agents/agent%3/spend", 400);
    CHECK_STATUS("GET", "/v1/mesh/agents/agent%/spend", 400);
    CHECK_STATUS("GET", "/v1/mesh/agents/%G0/spend", 400);
    CHECK_STATUS("GET", "/v1/mesh/agents/a%00b/spend", 400);
    CHECK_STATUS("GET", "/v1/mesh/intents/%00/spend", 400);
    CHECK_STATUS("DELETE", "/v1/keys/%00", 400);
    CHECK_STATUS("DELETE", "/v1/keys/%", 400);
    CHECK_STATUS("DELETE", "/v1/keys/%2", 400);
    /* Too long once decoded: 400 too. */
    {
        char path[1200];
        int k = snprintf(path, sizeof path, "/v1/mesh/intents/");
        for (int i = 0; i < CM_ADDR_MAX; i++) path[k++] = 'x';
        snprintf(path + k, sizeof path - (size_t)k, "/spend");
        CHECK_STATUS("GET", path, 400);
        /* 255 bytes fit. */
        k = snprintf(path, sizeof path, "/v1/mesh/intents/");
        for (int i = 0; i < CM_ADDR_MAX - 1; i++) path[k++] = 'x';
        snprintf(path + k, sizeof path - (size_t)k, "/spend");
        CHECK_STATUS("GET", path, 200);
        /* 255 bytes spelled as escapes fit as well. */
        k = snprintf(path, sizeof path, "/v1/mesh/intents/");
        for (int i = 0; i < CM_ADDR_MAX - 1; i++) k += snprintf(path + k, sizeof path - (size_t)k, "%%41");
        snprintf(path + k, sizeof path - (size_t)k, "/spend");
        CHECK_STATUS("GET", path, 200);
    }
}

void test_routes(void)
{
    every_route();
    names();
    not_found();
    wrong_method();
    head();
    listed();
    bad_param();
}
