/* cmd_top.c - `costmeshctl top`: the most expensive runs, sessions,
 * workflows, customers or agents of a window, or one agent's spend broken
 * down by any of them. */
#include "args.h"
#include "call.h"
#include "ctl.h"
#include "sbuf.h"

#include <stdio.h>

static const char usage[] =
    "usage: costmeshctl top [--by run|session|workflow|customer|agent] [--window hour|day|week|month]\n"
    "                       [--at RFC3339] [--agent ADDR] [--limit N] [--json]\n"
    "\n"
    "The units of kind --by (default run) that spent in the UTC window containing --at\n"
    "(default now; window default day), the most expensive first, with their margin.\n"
    "  --agent  only that agent's spend, broken down by --by\n"
    "  --limit  at most N rows (1..1000, default 100)\n"
    "  --json   print the server's JSON as it was sent\n";

static int show(json_object *reply)
{
    static const cmctl_col cols[] = {
        {"ID", "id", NULL, 0},           {"COST_USD", "cost_usd", NULL, 1},     {"REVENUE_USD", "revenue_usd", NULL, 1},
        {"MARGIN_USD", "margin_usd", NULL, 1}, {"HEARTBEATS", "heartbeats", NULL, 1}, {"AGENTS", "agents", NULL, 1},
    };
    if (!json_object_is_type(reply, json_type_object)) return CMCTL_EREPLY;
    return cmctl_print_rows(reply, "top", cols, sizeof cols / sizeof cols[0]);
}

int cmctl_cmd_top(int argc, char **argv)
{
    const char *by = NULL, *window = NULL, *at = NULL, *agent = NULL, *limit = NULL;
    int json = 0;
    const cmctl_opt opts[] = {{"by", 1, &by, NULL},         {"window", 1, &window, NULL}, {"at", 1, &at, NULL},
                              {"agent", 1, &agent, NULL},   {"limit", 1, &limit, NULL},   {"json", 0, NULL, &json}};
    const cmctl_spec spec = {"top", usage, opts, sizeof opts / sizeof opts[0], 0, 0};
    static const char *const bys[] = {"run", "session", "workflow", "customer", "agent", NULL};
    static const char *const windows[] = {"hour", "day", "week", "month", NULL};
    long long n;
    size_t npos;
    int rc = cmctl_args_parse(&spec, argc - 1, argv + 1, NULL, &npos);
    if (rc != CMCTL_OK) return rc;
    if ((by && (rc = cmctl_arg_choice(spec.cmd, "by", by, bys)) != CMCTL_OK) ||
        (window && (rc = cmctl_arg_choice(spec.cmd, "window", window, windows)) != CMCTL_OK) ||
        (limit && (rc = cmctl_arg_count(spec.cmd, "limit", limit, 1000, &n)) != CMCTL_OK))
        return rc;

    cmctl_buf path;
    cmctl_buf_init(&path);
    cmctl_buf_adds(&path, "/v1/mesh/top");
    cmctl_buf_add_query(&path, "by", by);
    cmctl_buf_add_query(&path, "window", window);
    cmctl_buf_add_query(&path, "at", at);
    cmctl_buf_add_query(&path, "agent", agent);
    cmctl_buf_add_query(&path, "limit", limit);
    return cmctl_get_show(&path, json, show);
}
