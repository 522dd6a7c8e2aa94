/* reply.c - reads the server's JSON answers. The only file that uses json-c.
 * Money in replies is read from the number's text (json-c keeps it), never
 * through a double. */
#include <json-c/json.h>
#include <string.h>

#include "internal.h"

static json_object *parse(const char *body, size_t n)
{
    if (!body || n == 0 || n > (1u << 20)) return NULL;
    json_tokener *tok = json_tokener_new();
    if (!tok) return NULL;
    json_object *o = json_tokener_parse_ex(tok, body, (int)n);
    if (json_tokener_get_error(tok) != json_tokener_success) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

static int state_of(const char *s)
{
    if (!s) return CM_STATE_UNKNOWN;
    if (strcmp(s, "active") == 0) return CM_STATE_ACTIVE;
    if (strcmp(s, "blocked") == 0) return CM_STATE_BLOCKED;
    if (strcmp(s, "killed") == 0) return CM_STATE_KILLED;
    return CM_STATE_UNKNOWN;
}

static bool is_number(json_object *v)
{
    return v && (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double));
}

static int money_of(json_object *v, int64_t *nanos)
{
    if (!is_number(v)) return CM_EPROTO;
    const char *t = json_object_get_string(v);
    return cm__money_parse(t, strlen(t), nanos) == CM_OK ? CM_OK : CM_EPROTO;
}

static int64_t int_of(json_object *o, const char *name, int64_t dflt)
{
    json_object *v;
    if (!json_object_object_get_ex(o, name, &v) || !v || !json_object_is_type(v, json_type_int)) return dflt;
    return json_object_get_int64(v);
}

static void copy_str(json_object *o, const char *name, char *dst, size_t dstsz)
{
    json_object *v;
    dst[0] = 0;
    if (!json_object_object_get_ex(o, name, &v) || !v || !json_object_is_type(v, json_type_string)) return;
    size_t n = (size_t)json_object_get_string_len(v);
    if (n >= dstsz) n = dstsz - 1;
    memcpy(dst, json_object_get_string(v), n);
    dst[n] = 0;
}

int cm__parse_hb_reply(const char *body, size_t n, const char *agent, cm__hb_reply *out)
{
    out->accepted = out->duplicates = 0;
    out->state = CM_STATE_UNKNOWN;
    out->cost_today_nanos = -1;
    json_object *root = parse(body, n);
    if (!root || !json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return CM_EPROTO;
    }
    out->accepted = int_of(root, "accepted", 0);
    out->duplicates = int_of(root, "duplicates", 0);
    json_object *agents, *a = NULL;
    if (json_object_object_get_ex(root, "agents", &agents) && agents &&
        json_object_is_type(agents, json_type_object)) {
        if (agent) {
            json_object_object_get_ex(agents, agent, &a);
        } else if (json_object_object_length(agents) == 1) {
            json_object_object_foreach(agents, k, v) {
                (void)k;
                a = v;
            }
        }
    }
    if (a && json_object_is_type(a, json_type_object)) {
        json_object *st, *cost;
        if (json_object_object_get_ex(a, "state", &st) && st && json_object_is_type(st, json_type_string))
            out->state = state_of(json_object_get_string(st));
        if (json_object_object_get_ex(a, "cost_today_usd", &cost) && money_of(cost, &out->cost_today_nanos) != CM_OK)
            out->cost_today_nanos = -1;
    }
    json_object_put(root);
    return CM_OK;
}

/* A limit's value: nano-dollars for cost limits, a count for intent limits. */
static void limit_value(json_object *err, const char *name, bool cost, int64_t *exact, double *approx)
{
    json_object *v;
    *exact = 0;
    *approx = 0;
    if (!json_object_object_get_ex(err, name, &v) || !is_number(v)) return;
    *approx = json_object_get_double(v);
    if (cost) {
        if (money_of(v, exact) != CM_OK) *exact = 0;
    } else {
        *exact = json_object_get_int64(v);
    }
}

int cm__parse_intent_reply(int status, const char *body, size_t n, cm_decision *d)
{
    json_object *root = parse(body, n);
    json_object *err = NULL;
    if (root && json_object_is_type(root, json_type_object)) {
        if (json_object_object_get_ex(root, "error", &err) && err && json_object_is_type(err, json_type_object))
            copy_str(err, "code", d->error_code, sizeof d->error_code);
        else
            err = NULL;
    }
    int rc;
    if (status == 201 || status == 200) {
        if (root && json_object_is_type(root, json_type_object)) {
            copy_str(root, "intent_id", d->intent_id, sizeof d->intent_id);
            rc = CM_OK;
        } else {
            rc = CM_EPROTO;
        }
    } else if (status == 429 && strcmp(d->error_code, "cost_policy_breached") == 0) {
        copy_str(err, "limit", d->limit, sizeof d->limit);
        bool cost = strstr(d->limit, "cost") != NULL;
        limit_value(err, "limit_value", cost, &d->limit_value_exact, &d->limit_value);
        limit_value(err, "current", cost, &d->current_exact, &d->current);
        int64_t ra = int_of(err, "retry_after_s", -1);
        if (ra >= 0) d->retry_after_s = ra;
        rc = CM_EBUDGET;
    } else if (status == 403 && strcmp(d->error_code, "agent_killed") == 0) {
        rc = CM_EKILLED;
    } else if (status == 401 || status == 403) {
        rc = CM_EAUTH;
    } else if (status == 400 || status == 404) {
        rc = CM_EINVAL;
    } else {
        rc = CM_EHTTP;
    }
    json_object_put(root);
    return rc;
}
