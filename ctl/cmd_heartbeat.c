/* cmd_heartbeat.c - `costmeshctl heartbeat ADDR`: one heartbeat by hand. */
#include "args.h"
#include "call.h"
#include "ctl.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/random.h>

static const char usage[] =
    "usage: costmeshctl heartbeat ADDR [--cost USD] [--model M] [--tokens-in N] [--tokens-out N]\n"
    "                                  [--tokens-cached N] [--tokens-cache-write N]\n"
    "                                  [--llm-calls N] [--intent ID] [--id ID] [--ts RFC3339]\n"
    "                                  [--json]\n"
    "\n"
    "Send one heartbeat for agent ADDR (agent://ORG/ENV/NAME); the first one registers it.\n"
    "The metrics are what was spent since the previous heartbeat; none makes a liveness beat.\n"
    "  --cost   dollars, sent exactly as written (e.g. 0.03); without it, a heartbeat with\n"
    "           --model is priced by the org's rate card (costmeshctl pricing)\n"
    "  --tokens-cached, --tokens-cache-write  input tokens read from and written to the\n"
    "           provider's cache: part of --tokens-in\n"
    "  --id     idempotency id: the server counts an (agent, id) once. Default: a new\n"
    "           random id, printed so the same heartbeat can be resent with --id.\n"
    "  --ts     when the metrics were spent (default now; at most 7 days ago)\n"
    "  --json   print the server's JSON as it was sent\n";

/* "ctl-" and 16 random hex digits: unique enough per agent for 7 days. */
static int new_id(char *out, size_t outsz)
{
    unsigned char r[8];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) return CMCTL_EIO;
    snprintf(out, outsz, "ctl-%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
    return CMCTL_OK;
}

typedef struct counts {
    const char *name; /* metric name in the body */
    const char *opt;  /* option name */
    const char *text; /* value given, or NULL */
    long long value;  /* its value, once checked */
} counts;

static int build(json_object *body, const char *addr, const char *id, const char *intent, const char *ts,
                 const char *model, const char *cost, counts *c, size_t nc)
{
    int rc = cmctl_jadd_str(body, "agent", addr);
    if (rc == CMCTL_OK) rc = cmctl_jadd_str(body, "model", model);
    if (rc == CMCTL_OK) rc = cmctl_jadd_str(body, "id", id);
    if (rc == CMCTL_OK) rc = cmctl_jadd_str(body, "intent_id", intent);
    if (rc == CMCTL_OK) rc = cmctl_jadd_str(body, "ts", ts);
    int any = cost != NULL;
    for (size_t i = 0; i < nc; i++) any |= c[i].text != NULL;
    if (rc != CMCTL_OK || !any) return rc;
    json_object *m = json_object_new_object();
    if (!m) return CMCTL_ENOMEM;
    rc = cmctl_jadd_number(m, "cost_usd", cost);
    for (size_t i = 0; rc == CMCTL_OK && i < nc; i++) {
        if (c[i].text) rc = cmctl_jadd_int(m, c[i].name, c[i].value);
    }
    if (rc == CMCTL_OK && json_object_object_add(body, "metrics", m) == 0) return CMCTL_OK;
    json_object_put(m);
    return rc == CMCTL_OK ? CMCTL_ENOMEM : rc;
}

static void show(json_object *j, const char *id)
{
    printf("accepted %s, duplicates %s (id %s)\n", cmctl_jtext(j, "accepted", "?"), cmctl_jtext(j, "duplicates", "?"),
           id);
    json_object *agents = cmctl_jget(j, "agents", json_type_object);
    if (!agents) return;
    json_object_object_foreach(agents, addr, a)
    {
        printf("%s  state %s  cost today %s\n", addr, cmctl_jtext(a, "state", "-"),
               cmctl_jtext(a, "cost_today_usd", "-"));
    }
}

int cmctl_cmd_heartbeat(int argc, char **argv)
{
    const char *cost = NULL, *intent = NULL, *id = NULL, *ts = NULL, *model = NULL;
    int json = 0;
    counts c[] = {{"tokens_in", "tokens-in", NULL, 0},         {"tokens_out", "tokens-out", NULL, 0},
                  {"llm_calls", "llm-calls", NULL, 0},         {"tokens_cached", "tokens-cached", NULL, 0},
                  {"tokens_cache_write", "tokens-cache-write", NULL, 0}};
    const cmctl_opt opts[] = {{"cost", 1, &cost, NULL},         {"tokens-in", 1, &c[0].text, NULL},
                              {"tokens-out", 1, &c[1].text, NULL}, {"llm-calls", 1, &c[2].text, NULL},
                              {"tokens-cached", 1, &c[3].text, NULL}, {"tokens-cache-write", 1, &c[4].text, NULL},
                              {"model", 1, &model, NULL},
                              {"intent", 1, &intent, NULL},     {"id", 1, &id, NULL},
                              {"ts", 1, &ts, NULL},             {"json", 0, NULL, &json}};
    const cmctl_spec spec = {"heartbeat", usage, opts, sizeof opts / sizeof opts[0], 1, 1};
    const char *pos[1];
    size_t npos;
    char idbuf[32];
    int rc = cmctl_args_parse(&spec, argc - 1, argv + 1, pos, &npos);
    if (rc != CMCTL_OK) return rc;
    if (cost && (rc = cmctl_arg_number(spec.cmd, "cost", cost)) != CMCTL_OK) return rc;
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        if (c[i].text && (rc = cmctl_arg_count(spec.cmd, c[i].opt, c[i].text, INT64_MAX, &c[i].value)) != CMCTL_OK)
            return rc;
    if (!id) {
        if ((rc = new_id(idbuf, sizeof idbuf)) != CMCTL_OK) return cmctl_fail(rc, "could not make a random id");
        id = idbuf;
    }

    json_object *body = json_object_new_object();
    rc = body ? build(body, pos[0], id, intent, ts, model, cost, c, sizeof c / sizeof c[0]) : CMCTL_ENOMEM;
    if (rc != CMCTL_OK) {
        json_object_put(body);
        return cmctl_fail(rc, cmctl_strerror(rc));
    }
    cmctl_reply r;
    rc = cmctl_call("POST", "/v1/mesh/heartbeat", body, NULL, &r);
    json_object_put(body);
    if (rc == CMCTL_OK && json) rc = cmctl_print_raw(&r);
    else if (rc == CMCTL_OK) show(r.json, id);
    cmctl_reply_free(&r);
    return rc;
}
