/* cmd_events.c - `costmeshctl events`: the org's recent events. */
#include "args.h"
#include "call.h"
#include "ctl.h"
#include "sbuf.h"
#include "table.h"

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
    static const char *const head[] = {"ID", "TS", "TYPE", "AGENT", "DETAILS"};
    json_object *events = cmctl_jget(j, "events", json_type_array);
    if (!events) return CMCTL_EREPLY;
    cmctl_table *t = cmctl_table_new(5, head);
    if (!t) return CMCTL_ENOMEM;
    cmctl_table_right(t, 0);
    int rc = CMCTL_OK;
    for (size_t i = 0; rc == CMCTL_OK && i < json_object_array_length(events); i++) {
        json_object *e = json_object_array_get_idx(events, i);
        /* details stay compact JSON: their numbers keep the server's text. */
        const char *row[] = {cmctl_jtext(e, "id", NULL), cmctl_jtext(e, "ts", NULL),
                             cmctl_jtext(e, "event_type", NULL), cmctl_jtext(e, "agent", NULL),
                             cmctl_jtext(e, "details", NULL)};
        rc = cmctl_table_add(t, row);
    }
    if (rc == CMCTL_OK) rc = cmctl_table_print(t, stdout);
    cmctl_table_free(t);
    return rc;
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
