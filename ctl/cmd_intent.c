/* cmd_intent.c - `costmeshctl intent ADDR`: ask to start a task; `intent
 * end ID`: say how it ended; `intent tree ID`: its delegation tree; and
 * `costmeshctl intent-end INTENT_ID`: release what is left of its
 * reservation. Both ends are one route, POST /v1/mesh/intents/{id}/end. */
#include "args.h"
#include "call.h"
#include "ctl.h"
#include "sbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: costmeshctl intent ADDR [--intent-id ID] [--parent ID] [--idempotency-key K] [--customer ID]\n"
    "                         [--workflow ID] [--run ID] [--estimate USD] [--json]\n"
    "       costmeshctl intent end ID --status succeeded|failed|cancelled [--quality Q] [--agent ADDR] [--json]\n"
    "       costmeshctl intent tree ID [--json]\n"
    "\n"
    "Open an intent for agent ADDR (agent://ORG/ENV/NAME), as an agent does before a task.\n"
    "Admitted: prints the intent id. Refused by a cost policy (429): prints its scope, the\n"
    "limit, the current value and the seconds to wait, and exits 3. A killed agent gets 403.\n"
    "  --customer, --workflow, --run  the budgets (policy set customer:ID ...) it counts in\n"
    "  --estimate         reserve USD against every budget in scope until the intent spends\n"
    "                     it or ends (costmeshctl intent-end)\n"
    "  --intent-id        the id to use (default: the server makes one)\n"
    "  --parent           its parent intent in a delegation tree\n"
    "  --idempotency-key  a repeat with the same key answers the first answer again\n"
    "  --json             print the server's JSON as it was sent\n"
    "end records how intent ID ended (the first outcome is kept; --quality from 0 to 1) and\n"
    "releases what is left of its reservation, as intent-end does without an outcome.\n"
    "tree lists intent ID and its descendants, depth first, with each one's cost and its\n"
    "subtree's.\n";

/* /v1/mesh/intents/{id}SUFFIX into path (initialised here), the id
 * percent-encoded. */
static void intent_path(cmctl_buf *path, const char *id, const char *suffix)
{
    cmctl_buf_init(path);
    cmctl_buf_adds(path, "/v1/mesh/intents/");
    cmctl_buf_add_pct(path, id);
    cmctl_buf_adds(path, suffix);
}

/* POST /v1/mesh/intents/{id}/end: with a status, the outcome (and the
 * reservation's release); without, the release alone. */
static int post_end(const char *id, const char *agent, const char *status, const char *quality, int json)
{
    cmctl_buf path;
    intent_path(&path, id, "/end");
    if (agent) cmctl_buf_add_query(&path, "agent", agent);
    json_object *body = NULL;
    int rc = CMCTL_OK;
    if (status) {
        body = json_object_new_object();
        rc = body ? cmctl_jadd_str(body, "status", status) : CMCTL_ENOMEM;
        if (rc == CMCTL_OK) rc = cmctl_jadd_number(body, "quality", quality);
    }
    cmctl_reply r = {0, NULL, NULL};
    if (rc == CMCTL_OK && !cmctl_buf_str(&path)) rc = CMCTL_ENOMEM;
    if (rc == CMCTL_OK) rc = cmctl_call("POST", cmctl_buf_str(&path), body, NULL, &r);
    else cmctl_fail(rc, cmctl_strerror(rc));
    json_object_put(body);
    cmctl_buf_free(&path);
    if (rc == CMCTL_OK && json) rc = cmctl_print_raw(&r);
    else if (rc == CMCTL_OK && status)
        printf("intent %s ended %s (quality %s)\n", id, cmctl_jtext(r.json, "status", "?"),
               cmctl_jtext(r.json, "quality", "-"));
    else if (rc == CMCTL_OK)
        printf("ended intent %s: released %s USD\n", cmctl_jtext(r.json, "intent_id", id),
               cmctl_jtext(r.json, "released_usd", "?"));
    cmctl_reply_free(&r);
    return rc;
}

static int end(int argc, char **argv)
{
    const char *status = NULL, *quality = NULL, *agent = NULL;
    int json = 0;
    const cmctl_opt opts[] = {{"status", 1, &status, NULL},
                              {"quality", 1, &quality, NULL},
                              {"agent", 1, &agent, NULL},
                              {"json", 0, NULL, &json}};
    const cmctl_spec spec = {"intent end", usage, opts, sizeof opts / sizeof opts[0], 1, 1};
    static const char *const statuses[] = {"succeeded", "failed", "cancelled", NULL};
    const char *pos[1];
    size_t npos;
    int rc = cmctl_args_parse(&spec, argc - 1, argv + 1, pos, &npos);
    if (rc != CMCTL_OK) return rc;
    if (!status) return cmctl_usage_error(spec.cmd, "--status is required");
    if ((rc = cmctl_arg_choice(spec.cmd, "status", status, statuses)) != CMCTL_OK ||
        (quality && (rc = cmctl_arg_number(spec.cmd, "quality", quality)) != CMCTL_OK))
        return rc;
    return post_end(pos[0], agent, status, quality, json);
}

static int show_tree(json_object *reply)
{
    static const cmctl_col cols[] = {
        {"INTENT_ID", "intent_id", NULL, 0}, {"PARENT", "parent_intent_id", NULL, 0}, {"DEPTH", "depth", NULL, 1},
        {"COST_USD", "cost_usd", NULL, 1},   {"TREE_COST_USD", "tree_cost_usd", NULL, 1}, {"STATUS", "status", NULL, 0},
    };
    if (!json_object_is_type(reply, json_type_object)) return CMCTL_EREPLY;
    return cmctl_print_rows(reply, "nodes", cols, sizeof cols / sizeof cols[0]);
}

static int tree(int argc, char **argv)
{
    int json = 0;
    const cmctl_opt opts[] = {{"json", 0, NULL, &json}};
    const cmctl_spec spec = {"intent tree", usage, opts, 1, 1, 1};
    const char *pos[1];
    size_t npos;
    int rc = cmctl_args_parse(&spec, argc - 1, argv + 1, pos, &npos);
    if (rc != CMCTL_OK) return rc;
    cmctl_buf path;
    intent_path(&path, pos[0], "/tree");
    return cmctl_get_show(&path, json, show_tree);
}

int cmctl_cmd_intent(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "end") == 0) return end(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "tree") == 0) return tree(argc - 1, argv + 1);
    const char *intent_id = NULL, *parent = NULL, *idem = NULL, *customer = NULL, *workflow = NULL, *run = NULL,
               *est = NULL;
    int json = 0;
    const cmctl_opt opts[] = {{"intent-id", 1, &intent_id, NULL}, {"parent", 1, &parent, NULL},
                              {"idempotency-key", 1, &idem, NULL}, {"customer", 1, &customer, NULL},
                              {"workflow", 1, &workflow, NULL},   {"run", 1, &run, NULL},
                              {"estimate", 1, &est, NULL},
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
    if (rc == CMCTL_OK) rc = cmctl_jadd_str(body, "parent_intent_id", parent);
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
    "End an intent opened with --estimate: what is left of its reservation is released\n"
    "(intent end ID --status S also records how it ended).\n"
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
    return post_end(pos[0], agent, NULL, NULL, json);
}
