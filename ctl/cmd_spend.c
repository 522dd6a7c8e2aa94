/* cmd_spend.c - `costmeshctl spend ADDR` (or --run ID, --session ID,
 * --workflow ID, --customer ID): totals, money in and out, and the series of
 * a window. */
#include "args.h"
#include "call.h"
#include "ctl.h"
#include "sbuf.h"
#include "table.h"

#include <stdio.h>

static const char usage[] =
    "usage: costmeshctl spend ADDR [--window hour|day|week|month] [--at RFC3339] [--json]\n"
    "       costmeshctl spend --run ID|--session ID|--workflow ID|--customer ID [--window ...] [--at ...] [--json]\n"
    "\n"
    "What agent ADDR (agent://ORG/ENV/NAME), or one run, session, workflow or customer\n"
    "over all its agents, spent in the UTC window containing --at (default now; window\n"
    "default day): totals with money in and out and the margin, then one row per hour\n"
    "(hour, day) or per day (week, month). Amounts are printed exactly as the server sent them.\n"
    "  --json   print the server's JSON as it was sent\n";

static int totals(json_object *j)
{
    static const char *const keys[] = {"agent",      "by",           "id",          "window",
                                       "from",       "to",           "cost_usd",    "revenue_usd",
                                       "refund_usd", "external_spend_usd", "fees_usd", "margin_usd",
                                       "tokens_in",  "tokens_out",   "tokens_cached", "llm_calls",
                                       "tool_calls", "heartbeats",   "intents",     "agents"};
    cmctl_table *t = cmctl_table_new(2, NULL);
    int rc = t ? CMCTL_OK : CMCTL_ENOMEM;
    for (size_t i = 0; rc == CMCTL_OK && i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = cmctl_jtext(j, keys[i], NULL);
        /* Fields a server may not send yet are left out, not printed as "-". */
        if (!v) continue;
        const char *row[] = {keys[i], v};
        rc = cmctl_table_add(t, row);
    }
    if (rc == CMCTL_OK) rc = cmctl_table_print(t, stdout);
    cmctl_table_free(t);
    return rc;
}

static int series(json_object *j)
{
    static const cmctl_col cols[] = {
        {"FROM", "from", NULL, 0},          {"COST_USD", "cost_usd", NULL, 1}, {"TOKENS_IN", "tokens_in", NULL, 1},
        {"TOKENS_OUT", "tokens_out", NULL, 1}, {"LLM_CALLS", "llm_calls", NULL, 1}, {"MARGIN_USD", "margin_usd", NULL, 1},
    };
    if (!cmctl_jget(j, "series", json_type_array)) return CMCTL_OK;
    fputc('\n', stdout);
    return cmctl_print_rows(j, "series", cols, sizeof cols / sizeof cols[0]);
}

static int show(json_object *reply)
{
    if (!json_object_is_type(reply, json_type_object)) return CMCTL_EREPLY;
    int rc = totals(reply);
    return rc == CMCTL_OK ? series(reply) : rc;
}

int cmctl_cmd_spend(int argc, char **argv)
{
    static const char *const kinds[] = {"run", "session", "workflow", "customer"};
    static const char *const routes[] = {"/v1/mesh/runs/", "/v1/mesh/sessions/", "/v1/mesh/workflows/",
                                         "/v1/mesh/customers/"};
    const char *window = NULL, *at = NULL, *unit[4] = {NULL, NULL, NULL, NULL};
    int json = 0;
    const cmctl_opt opts[] = {{"window", 1, &window, NULL}, {"at", 1, &at, NULL},         {"json", 0, NULL, &json},
                              {kinds[0], 1, &unit[0], NULL}, {kinds[1], 1, &unit[1], NULL}, {kinds[2], 1, &unit[2], NULL},
                              {kinds[3], 1, &unit[3], NULL}};
    const cmctl_spec spec = {"spend", usage, opts, sizeof opts / sizeof opts[0], 0, 1};
    static const char *const windows[] = {"hour", "day", "week", "month", NULL};
    const char *pos[1];
    size_t npos;
    int rc = cmctl_args_parse(&spec, argc - 1, argv + 1, pos, &npos);
    if (rc != CMCTL_OK) return rc;
    if (window && (rc = cmctl_arg_choice(spec.cmd, "window", window, windows)) != CMCTL_OK) return rc;
    int which = -1, named = (int)npos;
    for (int i = 0; i < 4; i++)
        if (unit[i]) {
            which = i;
            named++;
        }
    if (named == 0) return cmctl_usage_error(spec.cmd, "missing argument ADDR (or --run, --session, --workflow, --customer ID)");
    if (named > 1) return cmctl_usage_error(spec.cmd, "name one agent ADDR, or one of --run, --session, --workflow, --customer");

    cmctl_buf path;
    cmctl_buf_init(&path);
    if (which < 0) {
        cmctl_buf_agent_path(&path, pos[0], "/spend");
    } else {
        cmctl_buf_adds(&path, routes[which]);
        cmctl_buf_add_pct(&path, unit[which]);
        cmctl_buf_adds(&path, "/spend");
    }
    cmctl_buf_add_query(&path, "window", window);
    /* --at is checked by the server, whose error names the accepted form. */
    cmctl_buf_add_query(&path, "at", at);
    return cmctl_get_show(&path, json, show);
}
