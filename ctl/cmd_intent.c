/* cmd_intent.c - `costmeshctl intent ADDR`: ask to start a task; and
 * `costmeshctl intent-end INTENT_ID`: release what is left of its
 * reservation. */
#include "args.h"
#include "call.h"
#include "ctl.h"
#include "sbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: costmeshctl intent ADDR [--intent-id ID] [--idempotency-key K] [--customer ID]\n"
    "                         [--workflow ID] [--run ID] [--estimate USD] [--json]\n"
    "\n"
    "Open an intent for agent ADDR (agent://ORG/ENV/NAME), as an agent does before a task.\n"
    "Admitted: prints the intent id. Refused by a cost policy (429): prints its scope, the\n"
    "limit, the current value and the seconds to wait, and exits 3. A killed agent gets 403.\n"
    "  --customer, --workflow, --run  the budgets (policy set customer:ID ...) it counts in\n"
    "  --estimate         reserve USD against every budget in scope until the intent spends\n"
    "                     it or ends (costmeshctl intent-end)\n"
    "  --intent-id        the id to use (default: the server makes one)\n"
    "  --idempotency-key  a repeat with the same key answers the first answer again\n"
    "  --json             print the server's JSON as it was sent\n";

int cmctl_cmd_intent(int argc, char **argv)
{
    const char *intent_id = NULL, *idem = NULL, *customer = NULL, *workflow = NULL, *run = NULL, *est = NULL;
    int json = 0;
    const cmctl_opt opts[] = {{"intent-id", 1, &intent_id, NULL}, {"idempotency-key", 1, &idem, NULL},
                              {"customer", 1, &customer, NULL},   {"workflow", 1, &workflow, NULL},
                              {"run", 1, &run, NULL},             {"estimate", 1, &est, NULL},
                              {"json", 0, NULL, &json}};
    const cmctl_spec spec = {"intent", usage, opts, sizeof opts / sizeof opts[0], 1, 1};
    const char *pos[1];
    size_t npos;
    char *header = NULL;
    int rc = cmctl_args_parse(&spec, argc - 1, argv + 1, pos, &npos);
    if (rc != CMCTL_OK) return rc;
    if (est && (rc = cmctl_arg_number(spec.cmd, "estimate", est)) != CMCTL_OK) return rc;
    if (idem) {
        if (strpbrk(idem, "\r\n")) return cmctl_usage_error(spec.cmd, "--idempotency-key contains a line break");
        size_t n = strlen("Idempotency-Key: ") + strlen(idem) + 1;
        if (!(header = malloc(n))) return cmctl_fail(CMCTL_ENOMEM, cmctl_strerror(CMCTL_ENOMEM));
        snprintf(header, n, "Idempotency-Key: %s", idem);
    }

    json_object *body = json_object_new_object();
    rc = body ? cmctl_jadd_str(body, "agent", pos[0]) : CMCTL_ENOMEM;
    if (rc == CMCTL_OK) rc = cmctl_jadd_str(body, "intent_id", intent_id);
    if (rc == CMCTL_OK) rc = cmctl_jadd_str(body, "customer", customer);
    if (rc == CMCTL_OK) rc = cmctl_jadd_str(body, "workflow", workflow);
    if (rc == CMCTL_OK) rc = cmctl_jadd_str(body, "run_id", run);
    if (rc == CMCTL_OK && est) rc = cmctl_jadd_number(body, "estimated_cost_usd", est);
    cmctl_reply r = {0, NULL, NULL};
    if (rc == CMCTL_OK) rc = cmctl_call("POST", "/v1/mesh/intents", body, header, &r);
    else cmctl_fail(rc, cmctl_strerror(rc));
    json_object_put(body);
    free(header);
    /* The error line with the limit and the wait is already printed; the
     * distinct exit status lets scripts tell "wait" from "broken". */
    if (rc == CMCTL_EHTTP && r.status == 429) rc = CMCTL_EREFUSED;
    else if (rc == CMCTL_OK && json) rc = cmctl_print_raw(&r);
    else if (rc == CMCTL_OK)
        printf("admitted intent %s for %s\n", cmctl_jtext(r.json, "intent_id", "?"), cmctl_jtext(r.json, "agent", pos[0]));
    cmctl_reply_free(&r);
    return rc;
}

static const char end_usage[] =
    "usage: costmeshctl intent-end INTENT_ID [--agent ADDR] [--json]\n"
    "\n"
    "End an intent opened with --estimate: what is left of its reservation is released.\n"
    "  --agent  the intent's agent (needed with a key of another agent's: refused)\n"
    "  --json   print the server's JSON as it was sent\n";

int cmctl_cmd_intent_end(int argc, char **argv)
{
    const char *agent = NULL;
    int json = 0;
    const cmctl_opt opts[] = {{"agent", 1, &agent, NULL}, {"json", 0, NULL, &json}};
    const cmctl_spec spec = {"intent-end", end_usage, opts, sizeof opts / sizeof opts[0], 1, 1};
    const char *pos[1];
    size_t npos;
    int rc = cmctl_args_parse(&spec, argc - 1, argv + 1, pos, &npos);
    if (rc != CMCTL_OK) return rc;
    cmctl_buf path;
    cmctl_buf_init(&path);
    cmctl_buf_adds(&path, "/v1/mesh/intents/");
    cmctl_buf_add_pct(&path, pos[0]);
    cmctl_buf_adds(&path, "/end");
    if (agent) cmctl_buf_add_query(&path, "agent", agent);
    if (!cmctl_buf_str(&path)) {
        cmctl_buf_free(&path);
        return cmctl_fail(CMCTL_ENOMEM, cmctl_strerror(CMCTL_ENOMEM));
    }
    cmctl_reply r = {0, NULL, NULL};
    rc = cmctl_call("POST", cmctl_buf_str(&path), NULL, NULL, &r);
    cmctl_buf_free(&path);
    if (rc == CMCTL_OK && json) rc = cmctl_print_raw(&r);
    else if (rc == CMCTL_OK)
        printf("ended intent %s: released %s USD\n", cmctl_jtext(r.json, "intent_id", pos[0]),
               cmctl_jtext(r.json, "released_usd", "?"));
    cmctl_reply_free(&r);
    return rc;
}
