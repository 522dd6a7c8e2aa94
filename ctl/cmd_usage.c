/* cmd_usage.c - `costmeshctl usage --customer ID [--from T] [--to T]
 * [--csv|--json]`: a customer's rated usage by line item, for an invoice. */
#include "args.h"
#include "call.h"
#include "ctl.h"
#include "sbuf.h"
#include "table.h"

#include <stdio.h>

static const char usage[] =
    "usage: costmeshctl usage --customer ID [--from RFC3339] [--to RFC3339] [--csv|--json]\n"
    "\n"
    "Customer ID's usage from --from to --to (whole UTC hours; default this month up to\n"
    "the end of the current hour), rated by its billing card (the plan named after the\n"
    "customer, else 'default'): one line per item (runs, steps, compute_seconds, outcomes) and card\n"
    "version, with quantity, unit price and exact amount, then the total. Admin keys only.\n"
    "  --csv    print the CSV export (RFC 4180, a header row) as the server sent it\n"
    "  --json   print the server's JSON as it was sent\n";

static int show(json_object *reply)
{
    static const cmctl_col cols[] = {
        {"ITEM", "item", NULL, 0},          {"FROM", "from", NULL, 0},
        {"TO", "to", NULL, 0},              {"QUANTITY", "quantity", NULL, 1},
        {"UNIT", "unit", NULL, 0},          {"UNIT_PRICE_USD", "unit_price_usd", "-", 1},
        {"AMOUNT_USD", "amount_usd", NULL, 1},
    };
    if (!json_object_is_type(reply, json_type_object)) return CMCTL_EREPLY;
    int rc = cmctl_print_rows(reply, "lines", cols, sizeof cols / sizeof cols[0]);
    if (rc != CMCTL_OK) return rc;
    printf("\ncustomer %s  plan %s  from %s  to %s  total_usd %s\n", cmctl_jtext(reply, "customer", "-"),
           cmctl_jtext(reply, "plan", "-"), cmctl_jtext(reply, "from", "-"), cmctl_jtext(reply, "to", "-"),
           cmctl_jtext(reply, "total_usd", "-"));
    return CMCTL_OK;
}

int cmctl_cmd_usage(int argc, char **argv)
{
    const char *customer = NULL, *from = NULL, *to = NULL;
    int csv = 0, json = 0;
    const cmctl_opt opts[] = {{"customer", 1, &customer, NULL}, {"from", 1, &from, NULL}, {"to", 1, &to, NULL},
                              {"csv", 0, NULL, &csv},           {"json", 0, NULL, &json}};
    const cmctl_spec spec = {"usage", usage, opts, sizeof opts / sizeof opts[0], 0, 0};
    const char *pos[1];
    size_t npos;
    int rc = cmctl_args_parse(&spec, argc - 1, argv + 1, pos, &npos);
    if (rc != CMCTL_OK) return rc;
    if (!customer) return cmctl_usage_error(spec.cmd, "missing --customer ID");
    if (csv && json) return cmctl_usage_error(spec.cmd, "give --csv or --json, not both");
    cmctl_buf path;
    cmctl_buf_init(&path);
    cmctl_buf_adds(&path, "/v1/mesh/customers/");
    cmctl_buf_add_pct(&path, customer);
    cmctl_buf_adds(&path, csv ? "/usage.csv" : "/usage");
    /* --from and --to are checked by the server, whose errors name them. */
    cmctl_buf_add_query(&path, "from", from);
    cmctl_buf_add_query(&path, "to", to);
    return cmctl_get_show(&path, json, csv ? NULL : show);
}
