/* cmd_agents.c - `costmeshctl agents`: the org's agents as a table. */
#include "args.h"
#include "call.h"
#include "ctl.h"
#include "sbuf.h"

#include <stdio.h>

static const char usage[] =
    "usage: costmeshctl agents [--health healthy|degraded|unreachable|unknown|killed] [--limit N] [--json]\n"
    "\n"
    "The org's agents: health (from the age of the last heartbeat: healthy under 90 s,\n"
    "degraded to 300 s, then unreachable; unknown before the first; or killed), last heartbeat,\n"
    "intents and cost today\n"
    "(UTC), and state (active, blocked by its policy, or killed).\n"
    "  --limit  at most N agents (1 to 1000)\n"
    "  --json   print the server's JSON as it was sent\n";

static int table(json_object *j)
{
    static const cmctl_col cols[] = {
        {"ADDRESS", "address", NULL, 0},          {"HEALTH", "health", NULL, 0},
        {"LAST_HEARTBEAT", "last_heartbeat", "never", 0}, {"INTENTS_TODAY", "intents_today", NULL, 1},
        {"COST_TODAY_USD", "cost_today_usd", NULL, 1}, {"STATE", "state", NULL, 0},
    };
    return cmctl_print_rows(j, "agents", cols, sizeof cols / sizeof cols[0]);
}

int cmctl_cmd_agents(int argc, char **argv)
{
    const char *health = NULL, *limit = NULL;
    int json = 0;
    const cmctl_opt opts[] = {{"health", 1, &health, NULL}, {"limit", 1, &limit, NULL}, {"json", 0, NULL, &json}};
    const cmctl_spec spec = {"agents", usage, opts, sizeof opts / sizeof opts[0], 0, 0};
    static const char *const healths[] = {"healthy", "degraded", "unreachable", "unknown", "killed", NULL};
    const char *pos[1];
    size_t npos;
    long long n;
    int rc = cmctl_args_parse(&spec, argc - 1, argv + 1, pos, &npos);
    if (rc != CMCTL_OK) return rc;
    if (health && (rc = cmctl_arg_choice(spec.cmd, "health", health, healths)) != CMCTL_OK) return rc;
    if (limit && (rc = cmctl_arg_count(spec.cmd, "limit", limit, 1000, &n)) != CMCTL_OK) return rc;

    cmctl_buf path;
    cmctl_buf_init(&path);
    cmctl_buf_adds(&path, "/v1/mesh/agents");
    cmctl_buf_add_query(&path, "health", health);
    cmctl_buf_add_query(&path, "limit", limit);
    return cmctl_get_show(&path, json, table);
}
