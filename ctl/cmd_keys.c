/* cmd_keys.c - `costmeshctl keys create|list|revoke`. */
#include "args.h"
#include "call.h"
#include "ctl.h"
#include "sbuf.h"
#include "table.h"

#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: costmeshctl keys create --role admin|agent --name NAME [--agent ADDR | --interop-env ENV] [--json]\n"
    "       costmeshctl keys list [--json]\n"
    "       costmeshctl keys revoke ID\n"
    "\n"
    "Manage the org's API keys (needs an admin key).\n"
    "  create   make a key; it is printed only this once (the server keeps a hash).\n"
    "           --agent binds an agent key to one address agent://ORG/ENV/NAME.\n"
    "           --interop-env: the ENV of the agents that OTLP spans and CloudEvents\n"
    "           sent with this key name (default: the server's COSTMESH_INTEROP_ENV).\n"
    "  list     ids, roles, names and bound agents of the keys in use\n"
    "  revoke   refuse key ID from now on\n"
    "  --json   print the server's JSON as it was sent\n";

static int create(int argc, char **argv)
{
    const char *role = NULL, *name = NULL, *agent = NULL, *interop_env = NULL;
    int json = 0;
    const cmctl_opt opts[] = {{"role", 1, &role, NULL},
                              {"name", 1, &name, NULL},
                              {"agent", 1, &agent, NULL},
                              {"interop-env", 1, &interop_env, NULL},
                              {"json", 0, NULL, &json}};
    const cmctl_spec spec = {"keys create", usage, opts, sizeof opts / sizeof opts[0], 0, 0};
    static const char *const roles[] = {"admin", "agent", NULL};
    const char *pos[1];
    size_t npos;
    int rc = cmctl_args_parse(&spec, argc, argv, pos, &npos);
    if (rc != CMCTL_OK) return rc;
    if (!role) return cmctl_usage_error(spec.cmd, "--role is required");
    if (!name) return cmctl_usage_error(spec.cmd, "--name is required");
    if ((rc = cmctl_arg_choice(spec.cmd, "role", role, roles)) != CMCTL_OK) return rc;

    json_object *body = json_object_new_object();
    if (!body || cmctl_jadd_str(body, "role", role) != CMCTL_OK || cmctl_jadd_str(body, "name", name) != CMCTL_OK ||
        cmctl_jadd_str(body, "agent", agent) != CMCTL_OK || cmctl_jadd_str(body, "interop_env", interop_env) != CMCTL_OK) {
        json_object_put(body);
        return cmctl_fail(CMCTL_ENOMEM, cmctl_strerror(CMCTL_ENOMEM));
    }
    cmctl_reply r;
    rc = cmctl_call("POST", "/v1/keys", body, NULL, &r);
    json_object_put(body);
    if (rc == CMCTL_OK && json) {
        cmctl_print_raw(&r);
    } else if (rc == CMCTL_OK) {
        static const char *const fields[] = {"key", "id", "role", "name", "agent", "interop_env"};
        cmctl_table *t = cmctl_table_new(2, NULL);
        rc = t ? CMCTL_OK : CMCTL_ENOMEM;
        for (size_t i = 0; rc == CMCTL_OK && i < sizeof fields / sizeof fields[0]; i++) {
            const char *row[] = {fields[i], cmctl_jtext(r.json, fields[i], NULL)};
            if (row[1]) rc = cmctl_table_add(t, row);
        }
        if (rc == CMCTL_OK) rc = cmctl_table_print(t, stdout);
        else cmctl_fail(rc, cmctl_strerror(rc));
        cmctl_table_free(t);
        /* On stderr, so `keys create ... | head -1` still yields the key line alone. */
        if (rc == CMCTL_OK) fputs("(the key is shown only this once)\n", stderr);
    }
    cmctl_reply_free(&r);
    return rc;
}

static int key_table(json_object *j)
{
    static const cmctl_col cols[] = {
        {"ID", "id", NULL, 0},       {"ROLE", "role", NULL, 0},          {"NAME", "name", NULL, 0},
        {"AGENT", "agent", NULL, 0}, {"INTEROP_ENV", "interop_env", NULL, 0}, {"CREATED", "created_at", NULL, 0},
    };
    return cmctl_print_rows(j, "keys", cols, sizeof cols / sizeof cols[0]);
}

static int list(int argc, char **argv)
{
    int json = 0;
    const cmctl_opt opts[] = {{"json", 0, NULL, &json}};
    const cmctl_spec spec = {"keys list", usage, opts, 1, 0, 0};
    const char *pos[1];
    size_t npos;
    int rc = cmctl_args_parse(&spec, argc, argv, pos, &npos);
    if (rc != CMCTL_OK) return rc;

    cmctl_buf path;
    cmctl_buf_init(&path);
    cmctl_buf_adds(&path, "/v1/keys");
    return cmctl_get_show(&path, json, key_table);
}

static int revoke(int argc, char **argv)
{
    const cmctl_spec spec = {"keys revoke", usage, NULL, 0, 1, 1};
    const char *pos[1];
    size_t npos;
    int rc = cmctl_args_parse(&spec, argc, argv, pos, &npos);
    if (rc != CMCTL_OK) return rc;

    cmctl_buf path;
    cmctl_buf_init(&path);
    cmctl_buf_adds(&path, "/v1/keys/");
    cmctl_buf_add_pct(&path, pos[0]);
    if (!cmctl_buf_str(&path)) return cmctl_fail(CMCTL_ENOMEM, cmctl_strerror(CMCTL_ENOMEM));
    cmctl_reply r;
    rc = cmctl_call("DELETE", cmctl_buf_str(&path), NULL, NULL, &r);
    cmctl_buf_free(&path);
    if (rc == CMCTL_OK) printf("revoked %s\n", pos[0]);
    cmctl_reply_free(&r);
    return rc;
}

int cmctl_cmd_keys(int argc, char **argv)
{
    const char *action = argc > 1 ? argv[1] : "";
    if (strcmp(action, "create") == 0) return create(argc - 2, argv + 2);
    if (strcmp(action, "list") == 0) return list(argc - 2, argv + 2);
    if (strcmp(action, "revoke") == 0) return revoke(argc - 2, argv + 2);
    if (strcmp(action, "--help") == 0 || strcmp(action, "-h") == 0) {
        fputs(usage, stdout);
        return CMCTL_DONE;
    }
    return cmctl_usage_error("keys", *action ? "unknown action: use create, list or revoke"
                                             : "missing action: create, list or revoke");
}
