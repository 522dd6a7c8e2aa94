/* cmd_events.c - `costmeshctl events`: the org's recent events. */
#include "args.h"
#include "call.h"
#include "ctl.h"
#include "sbuf.h"

#include <stdio.h>

static const char usage[] =
    "usage: costmeshctl events [--type T] [--limit N] [--json]\n"
    "\n"
    "The org's recent events, newest first (default 100, at most 1000).\n"
    "  --type   only events of type T: policy_breached, threshold_crossed, agent_killed,\n"
    "           agent_resumed, health_changed or policy_changed\n"
    "  --json   print the server's JSON as it was sent\n";

static int table(json_object *j)
{
    /* details stay compact JSON: their numbers keep the server's text. */
    static const cmctl_col cols[] = {
        {"ID", "id", NULL, 1},           {"TS", "ts", NULL, 0},         {"TYPE", "event_type", NULL, 0},
        {"AGENT", "agent", NULL, 0},     {"DETAILS", "details", NULL, 0},
    };
    return cmctl_print_rows(j, "events", cols, sizeof cols / sizeof cols[0]);
}

int cmctl_cmd_events(int argc, char **argv)
{
    const char *type = NULL, *limit = NULL;
    int json = 0;
    const cmctl_opt opts[] = {{"type", 1, &type, NULL}, {"limit", 1, &limit, NULL}, {"json", 0, NULL, &json}};
    const cmctl_spec spec = {"events", usage, opts, sizeof opts / sizeof opts[0], 0, 0};
    const char *pos[1];
    size_t npos;
    long long n;
    int rc = cmctl_args_parse(&spec, argc - 1, argv + 1, pos, &npos);
    if (rc != CMCTL_OK) return rc;
    if (limit && (rc = cmctl_arg_count(spec.cmd, "limit", limit, 1000, &n)) != CMCTL_OK) return rc;

    cmctl_buf path;
    cmctl_buf_init(&path);
    cmctl_buf_adds(&path, "/v1/mesh/events");
    cmctl_buf_add_query(&path, "event_type", type);
    cmctl_buf_add_query(&path, "limit", limit);
    return cmctl_get_show(&path, json, table);
}
