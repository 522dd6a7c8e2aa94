/* cmd_policy.c - `costmeshctl policy get|set|delete TARGET`: an agent's
 * cost policy, or a scope's (org, env:ENV, customer:ID, workflow:ID,
 * run:ID). */
#include "args.h"
#include "call.h"
#include "ctl.h"
#include "sbuf.h"
#include "table.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: costmeshctl policy get TARGET [--json]\n"
    "       costmeshctl policy set TARGET [--max-cost-per-hour USD|none] [--max-cost-per-day USD|none]\n"
    "                              [--max-cost-per-month USD|none] [--max-intents-per-hour N|none]\n"
    "                              [--max-intents-per-day N|none] [--max-cost-per-intent-tree USD|none]\n"
    "                              [--action block|alert]\n"
    "                              [--thresholds 0.5,0.9] [--json]\n"
    "       costmeshctl policy delete TARGET\n"
    "\n"
    "A cost policy. TARGET is an agent, agent://ORG/ENV/NAME, or a budget every intent in the\n"
    "  scope counts in beside its agent's: org (the key's org), env:ENV (the agents\n"
    "  agent://ORG/ENV/...), customer:ID, workflow:ID or run:ID (the intents naming it).\n"
    "  A scope's policy needs an admin key; an agent's set and delete do.\n"
    "  set changes only what it names (PATCH): other limits keep their values; a limit\n"
    "  given as none becomes unlimited. A new policy starts from the defaults (unlimited,\n"
    "  block). Costs are sent exactly as written. --action block refuses new intents (429)\n"
    "  while a limit is reached;\n"
    "  alert only records and notifies. --thresholds are fractions of each cost limit\n"
    "  that record a threshold_crossed event (default 0.5,0.75,0.9,1).\n"
    "  --max-cost-per-intent-tree caps a whole delegation tree: once the tree under a root\n"
    "  intent has cost that much, this agent's new intents under that root get 429.\n"
    "  --json   print the server's JSON as it was sent\n";

#define POLICY_SUFFIX "/policies/cost"

/* The policy as "name  value" lines; a null limit reads "unlimited". */
static int show(json_object *policy)
{
    if (!policy || !json_object_is_type(policy, json_type_object))
        return cmctl_fail(CMCTL_EREPLY, "the policy is not a JSON object");
    cmctl_table *t = cmctl_table_new(2, NULL);
    int rc = t ? CMCTL_OK : CMCTL_ENOMEM;
    json_object_object_foreach(policy, key, val)
    {
        (void)val;
        if (rc != CMCTL_OK) break;
        const char *dflt = strncmp(key, "max_", 4) == 0 ? "unlimited" : "-";
        const char *row[] = {key, cmctl_jtext(policy, key, dflt)};
        rc = cmctl_table_add(t, row);
    }
    if (rc == CMCTL_OK) rc = cmctl_table_print(t, stdout);
    else cmctl_fail(rc, cmctl_strerror(rc));
    cmctl_table_free(t);
    return rc;
}

/* The path of TARGET's policy: an agent's, "org", or KIND:ID of a scope. */
static int policy_path(const char *target, cmctl_buf *path)
{
    static const struct {
        const char *prefix, *dir;
    } scopes[] = {{"env:", "envs"}, {"customer:", "customers"}, {"workflow:", "workflows"}, {"run:", "runs"}};
    cmctl_buf_init(path);
    if (strcmp(target, "org") == 0) {
        cmctl_buf_adds(path, "/v1/mesh/org" POLICY_SUFFIX);
    } else if (strncmp(target, "agent://", 8) == 0) {
        cmctl_buf_agent_path(path, target, POLICY_SUFFIX);
    } else {
        size_t i = 0, n = sizeof scopes / sizeof scopes[0];
        while (i < n && strncmp(target, scopes[i].prefix, strlen(scopes[i].prefix)) != 0) i++;
        if (i == n || !target[strlen(scopes[i].prefix)]) {
            cmctl_buf_free(path);
            return cmctl_usage_error("policy", "TARGET must be agent://ORG/ENV/NAME, org, env:ENV, customer:ID,"
                                               " workflow:ID or run:ID");
        }
        cmctl_buf_adds(path, "/v1/mesh/");
        cmctl_buf_adds(path, scopes[i].dir);
        cmctl_buf_adds(path, "/");
        cmctl_buf_add_pct(path, target + strlen(scopes[i].prefix));
        cmctl_buf_adds(path, POLICY_SUFFIX);
    }
    return cmctl_buf_str(path) ? CMCTL_OK : cmctl_fail(CMCTL_ENOMEM, cmctl_strerror(CMCTL_ENOMEM));
}

/* Sends method to the policy of addr; prints the answer unless it is empty. */
static int exchange(const char *method, const char *addr, json_object *body, int json)
{
    cmctl_buf path;
    cmctl_reply r;
    int rc = policy_path(addr, &path);
    if (rc != CMCTL_OK) return rc;
    rc = cmctl_call(method, cmctl_buf_str(&path), body, NULL, &r);
    cmctl_buf_free(&path);
    if (rc == CMCTL_OK && strcmp(method, "DELETE") == 0) printf("deleted the policy of %s\n", addr);
    else if (rc == CMCTL_OK && json) rc = cmctl_print_raw(&r);
    else if (rc == CMCTL_OK) rc = show(r.json);
    cmctl_reply_free(&r);
    return rc;
}

static int get(int argc, char **argv)
{
    int json = 0;
    const cmctl_opt opts[] = {{"json", 0, NULL, &json}};
    const cmctl_spec spec = {"policy get", usage, opts, 1, 1, 1};
    const char *pos[1];
    size_t npos;
    int rc = cmctl_args_parse(&spec, argc, argv, pos, &npos);
    return rc != CMCTL_OK ? rc : exchange("GET", pos[0], NULL, json);
}

static int del(int argc, char **argv)
{
    const cmctl_spec spec = {"policy delete", usage, NULL, 0, 1, 1};
    const char *pos[1];
    size_t npos;
    int rc = cmctl_args_parse(&spec, argc, argv, pos, &npos);
    return rc != CMCTL_OK ? rc : exchange("DELETE", pos[0], NULL, 0);
}

/* "0.5,0.9" as a JSON array of the numbers as written. */
static int thresholds(const char *cmd, const char *list, json_object *body)
{
    char item[80];
    json_object *arr = json_object_new_array();
    int rc = arr ? CMCTL_OK : CMCTL_ENOMEM;
    const char *p = list;
    while (rc == CMCTL_OK) {
        size_t n = strcspn(p, ",");
        if (n >= sizeof item) n = sizeof item - 1; /* too long to be a number: the check says so */
        memcpy(item, p, n);
        item[n] = '\0';
        rc = cmctl_arg_number(cmd, "thresholds", item);
        if (rc == CMCTL_OK) rc = cmctl_jpush_number(arr, item);
        p += strcspn(p, ",");
        if (*p != ',') break;
        p++;
    }
    if (rc == CMCTL_OK && json_object_object_add(body, "alert_thresholds", arr) == 0) return CMCTL_OK;
    json_object_put(arr);
    return rc == CMCTL_OK ? CMCTL_ENOMEM : rc;
}

/* A limit option: absent, "none" (unlimited), or a money amount / count. */
static int limit(const char *cmd, const char *name, const char *v, int count, long long *n)
{
    if (!v || strcmp(v, "none") == 0) return CMCTL_OK;
    return count ? cmctl_arg_count(cmd, name, v, INT64_MAX, n) : cmctl_arg_number(cmd, name, v);
}

/* Adds a checked limit option to the body: null for "none". */
static int add_limit(json_object *body, const char *key, const char *v, int count, long long n)
{
    if (!v) return CMCTL_OK;
    if (strcmp(v, "none") == 0) return json_object_object_add(body, key, NULL) == 0 ? CMCTL_OK : CMCTL_ENOMEM;
    return count ? cmctl_jadd_int(body, key, n) : cmctl_jadd_number(body, key, v);
}

static int set(int argc, char **argv)
{
    const char *cost_h = NULL, *cost_d = NULL, *cost_m = NULL, *int_h = NULL, *int_d = NULL;
    const char *tree = NULL, *action = NULL, *thr = NULL;
    int json = 0;
    const cmctl_opt opts[] = {
        {"max-cost-per-hour", 1, &cost_h, NULL}, {"max-cost-per-day", 1, &cost_d, NULL},
        {"max-cost-per-month", 1, &cost_m, NULL}, {"max-intents-per-hour", 1, &int_h, NULL},
        {"max-intents-per-day", 1, &int_d, NULL}, {"max-cost-per-intent-tree", 1, &tree, NULL},
        {"action", 1, &action, NULL},
        {"thresholds", 1, &thr, NULL}, {"json", 0, NULL, &json}};
    const cmctl_spec spec = {"policy set", usage, opts, sizeof opts / sizeof opts[0], 1, 1};
    static const char *const actions[] = {"block", "alert", NULL};
    const char *pos[1];
    size_t npos;
    long long ih = 0, id = 0;
    int rc = cmctl_args_parse(&spec, argc, argv, pos, &npos);
    if (rc != CMCTL_OK) return rc;
    /* An empty PATCH would change nothing. */
    if (!cost_h && !cost_d && !cost_m && !int_h && !int_d && !tree && !action && !thr)
        return cmctl_usage_error(spec.cmd, "give at least one limit, --action or --thresholds");
    if ((rc = limit(spec.cmd, "max-cost-per-hour", cost_h, 0, NULL)) != CMCTL_OK ||
        (rc = limit(spec.cmd, "max-cost-per-day", cost_d, 0, NULL)) != CMCTL_OK ||
        (rc = limit(spec.cmd, "max-cost-per-month", cost_m, 0, NULL)) != CMCTL_OK ||
        (rc = limit(spec.cmd, "max-intents-per-hour", int_h, 1, &ih)) != CMCTL_OK ||
        (rc = limit(spec.cmd, "max-intents-per-day", int_d, 1, &id)) != CMCTL_OK ||
        (rc = limit(spec.cmd, "max-cost-per-intent-tree", tree, 0, NULL)) != CMCTL_OK ||
        (action && (rc = cmctl_arg_choice(spec.cmd, "action", action, actions)) != CMCTL_OK))
        return rc;

    json_object *body = json_object_new_object();
    rc = body ? CMCTL_OK : CMCTL_ENOMEM;
    if (rc == CMCTL_OK) rc = add_limit(body, "max_cost_per_hour_usd", cost_h, 0, 0);
    if (rc == CMCTL_OK) rc = add_limit(body, "max_cost_per_day_usd", cost_d, 0, 0);
    if (rc == CMCTL_OK) rc = add_limit(body, "max_cost_per_month_usd", cost_m, 0, 0);
    if (rc == CMCTL_OK) rc = add_limit(body, "max_intents_per_hour", int_h, 1, ih);
    if (rc == CMCTL_OK) rc = add_limit(body, "max_intents_per_day", int_d, 1, id);
    if (rc == CMCTL_OK) rc = add_limit(body, "max_cost_per_intent_tree_usd", tree, 0, 0);
    if (rc == CMCTL_OK) rc = cmctl_jadd_str(body, "action_on_breach", action);
    if (rc == CMCTL_OK && thr) rc = thresholds(spec.cmd, thr, body);
    if (rc == CMCTL_OK) rc = exchange("PATCH", pos[0], body, json);
    else if (rc == CMCTL_ENOMEM) cmctl_fail(rc, cmctl_strerror(rc));
    json_object_put(body);
    return rc;
}

int cmctl_cmd_policy(int argc, char **argv)
{
    const char *action = argc > 1 ? argv[1] : "";
    if (strcmp(action, "get") == 0) return get(argc - 2, argv + 2);
    if (strcmp(action, "set") == 0) return set(argc - 2, argv + 2);
    if (strcmp(action, "delete") == 0) return del(argc - 2, argv + 2);
    if (strcmp(action, "--help") == 0 || strcmp(action, "-h") == 0) {
        fputs(usage, stdout);
        return CMCTL_DONE;
    }
    return cmctl_usage_error("policy", *action ? "unknown action: use get, set or delete"
                                               : "missing action: get, set or delete");
}
