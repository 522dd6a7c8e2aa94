/* cmd_pricing.c - `costmeshctl pricing set|list`: the org's rate cards. */
#include "args.h"
#include "call.h"
#include "ctl.h"
#include "sbuf.h"
#include "table.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const char usage[] =
    "usage: costmeshctl pricing list [MODEL] [--json]\n"
    "       costmeshctl pricing set MODEL --input USD --output USD [--cached-input USD]\n"
    "                               [--cache-write USD] [--from RFC3339] [--json]\n"
    "       costmeshctl pricing set --file FILE\n"
    "\n"
    "The org's rate cards: USD per million tokens, by model, in versions. A heartbeat that\n"
    "names a model and sends no cost_usd is priced by the version in force at its ts.\n"
    "set adds a version and needs an admin key; versions are never changed.\n"
    "  --cached-input, --cache-write  input read from and written to the provider's cache\n"
    "           (default: the --input price)\n"
    "  --from   when the version takes effect, past or future (default: now)\n"
    "  --file   a JSON file {\"cards\":[{\"model\":...,\"effective_from\":...,\n"
    "           \"input_per_million_usd\":...,...}]} such as pricing/starter.json: each card\n"
    "           is sent as a version; one already there is reported unchanged\n"
    "Prices are sent exactly as written.\n"
    "  --json   print the server's JSON as it was sent\n";

static int card_path(const char *model, cmctl_buf *path)
{
    cmctl_buf_init(path);
    cmctl_buf_adds(path, "/v1/mesh/pricing/models");
    if (model) {
        cmctl_buf_adds(path, "/");
        cmctl_buf_add_pct(path, model);
    }
    return cmctl_buf_str(path) ? CMCTL_OK : cmctl_fail(CMCTL_ENOMEM, cmctl_strerror(CMCTL_ENOMEM));
}

/* Adds one model's versions to the table. */
static int add_model(cmctl_table *t, json_object *card)
{
    static const char *const fields[] = {"effective_from", "input_per_million_usd", "output_per_million_usd",
                                         "cached_input_per_million_usd", "cache_write_per_million_usd"};
    json_object *vs = cmctl_jget(card, "versions", json_type_array);
    if (!vs) return CMCTL_EREPLY;
    int rc = CMCTL_OK;
    for (size_t i = 0; rc == CMCTL_OK && i < json_object_array_length(vs); i++) {
        json_object *v = json_object_array_get_idx(vs, i);
        const char *row[7];
        row[0] = cmctl_jtext(card, "model", "-");
        for (size_t k = 0; k < 5; k++) row[1 + k] = cmctl_jtext(v, fields[k], "-");
        json_object *now = cmctl_jget(v, "in_force", json_type_boolean);
        row[6] = now && json_object_get_boolean(now) ? "yes" : "";
        rc = cmctl_table_add(t, row);
    }
    return rc;
}

/* The reply of one model ({model, versions}) or of all ({models: [...]}). */
static int show(json_object *reply)
{
    static const char *const heads[] = {"MODEL", "EFFECTIVE_FROM", "INPUT", "OUTPUT", "CACHED_INPUT",
                                        "CACHE_WRITE", "IN_FORCE"};
    cmctl_table *t = cmctl_table_new(7, heads);
    if (!t) return CMCTL_ENOMEM;
    for (size_t c = 2; c <= 5; c++) cmctl_table_right(t, c);
    json_object *models = cmctl_jget(reply, "models", json_type_array);
    int rc = CMCTL_OK;
    if (models)
        for (size_t i = 0; rc == CMCTL_OK && i < json_object_array_length(models); i++)
            rc = add_model(t, json_object_array_get_idx(models, i));
    else
        rc = add_model(t, reply);
    if (rc == CMCTL_OK) rc = cmctl_table_print(t, stdout);
    cmctl_table_free(t);
    return rc;
}

static int list(int argc, char **argv)
{
    int json = 0;
    const cmctl_opt opts[] = {{"json", 0, NULL, &json}};
    const cmctl_spec spec = {"pricing list", usage, opts, 1, 0, 1};
    const char *pos[1];
    size_t npos;
    cmctl_buf path;
    int rc = cmctl_args_parse(&spec, argc, argv, pos, &npos);
    if (rc != CMCTL_OK || (rc = card_path(npos ? pos[0] : NULL, &path)) != CMCTL_OK) return rc;
    return cmctl_get_show(&path, json, show);
}

/* PUTs body (without "model") as a version of model; prints what became of it. */
static int put(const char *model, json_object *body, int json)
{
    cmctl_buf path;
    cmctl_reply r;
    int rc = card_path(model, &path);
    if (rc != CMCTL_OK) return rc;
    rc = cmctl_call("PUT", cmctl_buf_str(&path), body, NULL, &r);
    cmctl_buf_free(&path);
    if (rc == CMCTL_OK && json) {
        rc = cmctl_print_raw(&r);
    } else if (rc == CMCTL_OK) {
        json_object *v = cmctl_jget(r.json, "version", json_type_object);
        printf("%s  from %s  %s\n", model, cmctl_jtext(v, "effective_from", "?"),
               r.status == 201 ? "added" : "unchanged (this version was there)");
    }
    cmctl_reply_free(&r);
    return rc;
}

/* Every card of a --file, in order; stops at the first the server refuses. */
static int put_file(const char *cmd, const char *file, int json)
{
    json_object *root = json_object_from_file(file);
    json_object *cards = cmctl_jget(root, "cards", json_type_array);
    if (!cards) {
        json_object_put(root);
        char what[CMCTL_ERRLEN];
        snprintf(what, sizeof what, "%s is not JSON with a \"cards\" array", file);
        return cmctl_usage_error(cmd, what);
    }
    int rc = CMCTL_OK;
    for (size_t i = 0; rc == CMCTL_OK && i < json_object_array_length(cards); i++) {
        json_object *card = json_object_array_get_idx(cards, i);
        json_object *m = cmctl_jget(card, "model", json_type_string);
        if (!m) {
            rc = cmctl_fail(CMCTL_EUSAGE, "a card of the file has no \"model\" string");
            break;
        }
        char model[256];
        snprintf(model, sizeof model, "%s", json_object_get_string(m));
        json_object_object_del(card, "model"); /* the path names it; the server refuses it in the body */
        rc = put(model, card, json);
    }
    json_object_put(root);
    return rc;
}

static int set(int argc, char **argv)
{
    const char *input = NULL, *output = NULL, *cached = NULL, *write = NULL, *from = NULL, *file = NULL;
    int json = 0;
    const cmctl_opt opts[] = {{"input", 1, &input, NULL},  {"output", 1, &output, NULL},
                              {"cached-input", 1, &cached, NULL}, {"cache-write", 1, &write, NULL},
                              {"from", 1, &from, NULL},   {"file", 1, &file, NULL},
                              {"json", 0, NULL, &json}};
    const cmctl_spec spec = {"pricing set", usage, opts, sizeof opts / sizeof opts[0], 0, 1};
    const char *pos[1];
    size_t npos;
    int rc = cmctl_args_parse(&spec, argc, argv, pos, &npos);
    if (rc != CMCTL_OK) return rc;
    if (file) {
        if (npos || input || output || cached || write || from)
            return cmctl_usage_error(spec.cmd, "--file takes no MODEL and no prices: the file has them");
        return put_file(spec.cmd, file, json);
    }
    if (!npos) return cmctl_usage_error(spec.cmd, "missing MODEL (or --file)");
    if (!input || !output) return cmctl_usage_error(spec.cmd, "--input and --output are required");
    if ((rc = cmctl_arg_number(spec.cmd, "input", input)) != CMCTL_OK ||
        (rc = cmctl_arg_number(spec.cmd, "output", output)) != CMCTL_OK ||
        (cached && (rc = cmctl_arg_number(spec.cmd, "cached-input", cached)) != CMCTL_OK) ||
        (write && (rc = cmctl_arg_number(spec.cmd, "cache-write", write)) != CMCTL_OK))
        return rc;
    char now[32];
    if (!from) {
        time_t t = time(NULL);
        struct tm tm;
        strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
        from = now;
    }
    json_object *body = json_object_new_object();
    rc = body ? cmctl_jadd_str(body, "effective_from", from) : CMCTL_ENOMEM;
    if (rc == CMCTL_OK) rc = cmctl_jadd_number(body, "input_per_million_usd", input);
    if (rc == CMCTL_OK) rc = cmctl_jadd_number(body, "output_per_million_usd", output);
    if (rc == CMCTL_OK) rc = cmctl_jadd_number(body, "cached_input_per_million_usd", cached);
    if (rc == CMCTL_OK) rc = cmctl_jadd_number(body, "cache_write_per_million_usd", write);
    if (rc == CMCTL_OK) rc = put(pos[0], body, json);
    else cmctl_fail(rc, cmctl_strerror(rc));
    json_object_put(body);
    return rc;
}

int cmctl_cmd_pricing(int argc, char **argv)
{
    const char *action = argc > 1 ? argv[1] : "";
    if (strcmp(action, "list") == 0) return list(argc - 2, argv + 2);
    if (strcmp(action, "set") == 0) return set(argc - 2, argv + 2);
    if (strcmp(action, "--help") == 0 || strcmp(action, "-h") == 0) {
        fputs(usage, stdout);
        return CMCTL_DONE;
    }
    return cmctl_usage_error("pricing", *action ? "unknown action: use list or set" : "missing action: list or set");
}
