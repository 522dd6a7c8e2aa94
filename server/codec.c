#include "codec.h"
#include "error.h"
#include "money.h"
#include "timeutil.h"

#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Replaces bytes that are not UTF-8 with '?' in place, also a character
 * cut by snprintf at the end: messages echo client input. */
static void utf8_scrub(char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t ok = cm_utf8_valid_prefix(s + i, n - i);
        i += ok;
        if (i < n) s[i++] = '?';
    }
}

int cm_apierr_set(cm_apierr *e, int status, const char *code, const char *field,
                  const char *fmt, ...)
{
    e->status = status;
    e->code = code;
    snprintf(e->field, sizeof e->field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    utf8_scrub(e->field);
    utf8_scrub(e->message);
    return status == 413 ? CM_ETOOBIG : CM_EINVAL;
}

/* json-c accepts more than RFC 8259 even in strict mode (NaN, Infinity,
 * single quotes, raw control bytes in strings), so one pass over the bytes
 * refuses those first: outside strings only JSON punctuation, number
 * characters and the words true, false and null; inside strings no byte
 * below 0x20. */
static bool is_strict_json(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') {
            for (i++; i < len && s[i] != '"'; i++) {
                if ((unsigned char)s[i] < 0x20) return false;
                if (s[i] == '\\') i++;
            }
            if (i >= len) return false;
            continue;
        }
        if (c >= 'a' && c <= 'z') {
            static const char *const words[] = {"true", "false", "null"};
            bool ok = false;
            for (int w = 0; w < 3 && !ok; w++) {
                size_t n = strlen(words[w]);
                if (len - i >= n && memcmp(s + i, words[w], n) == 0 &&
                    (i + n == len || !((s[i + n] >= 'a' && s[i + n] <= 'z') || (s[i + n] >= 'A' && s[i + n] <= 'Z')))) {
                    ok = true;
                    i += n - 1;
                }
            }
            if (!ok && c != 'e') return false;
            continue;
        }
        if (strchr("{}[]:,-+.0123456789eE \t\r\n", c) == NULL || c == 0) return false;
    }
    return true;
}

/* Parses a whole body strictly: one JSON value, nothing after it but
 * whitespace. Returns the root (caller puts it) or NULL with e filled. */
static json_object *parse_root(const char *body, size_t len, cm_apierr *e)
{
    if (len > INT32_MAX) {
        cm_apierr_set(e, 413, "payload_too_large", NULL, "request body is too large");
        return NULL;
    }
    if (!is_strict_json(body, len)) {
        cm_apierr_set(e, 400, "invalid_json", NULL, "body is not valid JSON (RFC 8259)");
        return NULL;
    }
    json_tokener *tok = json_tokener_new_ex(32);
    if (!tok) {
        cm_apierr_set(e, 500, "internal", NULL, "out of memory");
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *root = json_tokener_parse_ex(tok, body, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (jerr != json_tokener_success || !root) {
        json_object_put(root);
        cm_apierr_set(e, 400, "invalid_json", NULL, "body is not valid JSON: %s",
                      jerr == json_tokener_continue ? "unexpected end of input"
                                                     : json_tokener_error_desc(jerr));
        return NULL;
    }
    for (size_t i = used; i < len; i++) {
        char c = body[i];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
            json_object_put(root);
            cm_apierr_set(e, 400, "invalid_json", NULL, "body has data after the JSON value");
            return NULL;
        }
    }
    return root;
}

json_object *cm_codec_parse(const char *body, size_t len, cm_apierr *e)
{
    return parse_root(body, len, e);
}

/* parse_root for bodies that must be one JSON object. */
static json_object *parse_object(const char *body, size_t len, cm_apierr *e)
{
    json_object *root = parse_root(body, len, e);
    if (root && !json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        cm_apierr_set(e, 400, "invalid_json", NULL, "body must be a JSON object");
        return NULL;
    }
    return root;
}

static bool is_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return false;
    return true;
}

/* Field path "prefix.name" into out. */
static void path(char *out, size_t outsz, const char *prefix, const char *name)
{
    snprintf(out, outsz, "%s%s%s", prefix, *prefix ? "." : "", name);
}

/* Refuses a field of obj that is not among the NULL-terminated `names`: a
 * misspelled field must not silently mean "absent" (a cost recorded as $0,
 * a limit read as unlimited). `what` names the kind of field in the
 * message. */
static int only_fields(json_object *obj, const char *prefix, const char *const *names, const char *what,
                       cm_apierr *e)
{
    json_object_object_foreach(obj, key, val) {
        (void)val;
        const char *const *n = names;
        while (*n && strcmp(*n, key) != 0) n++;
        if (*n) continue;
        char p[128];
        path(p, sizeof p, prefix, key);
        return cm_apierr_set(e, 400, "invalid_field", p, "unknown %s field %s", what, p);
    }
    return CM_OK;
}

/* Optional string field into dst (max bytes). Absent or null leaves dst "". */
static int get_str(json_object *obj, const char *prefix, const char *name, char *dst,
                   size_t max, cm_apierr *e)
{
    json_object *v;
    char p[128];
    dst[0] = '\0';
    if (!json_object_object_get_ex(obj, name, &v) || !v) return CM_OK;
    path(p, sizeof p, prefix, name);
    if (!json_object_is_type(v, json_type_string))
        return cm_apierr_set(e, 400, "invalid_field", p, "%s must be a string", p);
    const char *s = json_object_get_string(v);
    size_t n = (size_t)json_object_get_string_len(v);
    if (strlen(s) != n)
        return cm_apierr_set(e, 400, "invalid_field", p, "%s must not contain NUL bytes", p);
    if (n > max)
        return cm_apierr_set(e, 400, "invalid_field", p, "%s is longer than %zu bytes", p, max);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return cm_apierr_set(e, 400, "invalid_field", p, "%s must not contain control characters", p);
    /* PostgreSQL refuses anything but UTF-8, and one bad string must not
     * fail a whole group commit. */
    if (cm_utf8_valid_prefix(s, n) != n)
        return cm_apierr_set(e, 400, "invalid_field", p, "%s must be valid UTF-8", p);
    memcpy(dst, s, n + 1);
    return CM_OK;
}

/* Optional address field: get_str, then the address rule. */
static int get_addr(json_object *obj, const char *prefix, const char *name, char *dst, cm_apierr *e)
{
    int rc = get_str(obj, prefix, name, dst, CM_ADDR_MAX - 1, e);
    if (rc != CM_OK || !dst[0] || cm_addr_parse(dst, strlen(dst), NULL) == CM_OK) return rc;
    char p[128];
    path(p, sizeof p, prefix, name);
    return cm_apierr_set(e, 400, "invalid_field", p, "%s must be an address agent://ORG/ENV/NAME", p);
}

/* Optional "model" field: get_str, then the model name rule. */
static int get_model(json_object *obj, const char *prefix, char dst[CM_MODEL_MAX + 1], cm_apierr *e)
{
    int rc = get_str(obj, prefix, "model", dst, CM_MODEL_MAX, e);
    if (rc != CM_OK || !dst[0] || cm_model_valid(dst, strlen(dst))) return rc;
    char p[128];
    path(p, sizeof p, prefix, "model");
    return cm_apierr_set(e, 400, "invalid_field", p, "%s must be 1 to %d of A-Z a-z 0-9 . _ - : / @ +", p,
                         CM_MODEL_MAX);
}

static int get_count(json_object *m, const char *prefix, const char *name, int64_t *dst,
                     cm_apierr *e)
{
    json_object *v;
    char p[128];
    *dst = 0;
    if (!json_object_object_get_ex(m, name, &v) || !v) return CM_OK;
    path(p, sizeof p, prefix, name);
    if (!json_object_is_type(v, json_type_int))
        return cm_apierr_set(e, 400, "invalid_field", p, "%s must be a non-negative integer", p);
    int64_t x = json_object_get_int64(v);
    /* json-c saturates out-of-range integers, so they land above the cap. */
    if (x < 0 || x > CM_COUNT_MAX)
        return cm_apierr_set(e, 400, "invalid_field", p, "%s must be between 0 and %lld", p,
                             (long long)CM_COUNT_MAX);
    *dst = x;
    return CM_OK;
}

static int get_money(json_object *m, const char *prefix, const char *name, int64_t *dst,
                     cm_apierr *e)
{
    json_object *v;
    char p[128];
    *dst = 0;
    if (!json_object_object_get_ex(m, name, &v) || !v) return CM_OK;
    path(p, sizeof p, prefix, name);
    if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
        return cm_apierr_set(e, 400, "invalid_field", p, "%s must be a number", p);
    /* json-c keeps the number's original text: parse that, not the double. */
    if (cm_codec_money(json_object_get_string(v), dst) != CM_OK)
        return cm_apierr_set(e, 400, "invalid_field", p, "%s must be a number between 0 and 1000000", p);
    return CM_OK;
}

bool cm_codec_media_is(const char *header, const char *type)
{
    size_t n = strlen(type);
    return header && strncasecmp(header, type, n) == 0 && (header[n] == '\0' || header[n] == ';' || header[n] == ' ');
}

int cm_codec_money(const char *text, int64_t *nanos)
{
    int rc = cm_money_parse(text, strlen(text), nanos);
    /* Below zero is refused even when it rounds to zero nano-dollars; only
     * a negative zero ("-0", "-0.0") is zero. */
    if (rc == CM_OK && text[0] == '-' && strcspn(text, "123456789") < strcspn(text, "eE")) rc = CM_ERANGE;
    return rc;
}

/* Adds the fields of obj that are not among `names` to ig. */
static void note_unknown(json_object *obj, const char *prefix, const char *const *names, cm_ignored *ig)
{
    json_object_object_foreach(obj, key, val) {
        (void)val;
        const char *const *n = names;
        while (*n && strcmp(*n, key) != 0) n++;
        if (*n) continue;
        if (ig->count++ >= CM_IGNORED_LISTED) continue;
        char p[128];
        path(p, sizeof p, prefix, key);
        if (ig->listed.len) cm_buf_add(&ig->listed, ",", 1);
        cm_buf_add_jstr(&ig->listed, p);
    }
}

static int decode_one(json_object *o, const char *prefix, int64_t now, cm_hb *hb, cm_ignored *ig,
                      cm_apierr *e)
{
    char p[128];
    memset(hb, 0, sizeof *hb);
    hb->ts = now;
    if (!json_object_is_type(o, json_type_object))
        return cm_apierr_set(e, 400, "invalid_field", *prefix ? prefix : NULL,
                             "%s must be a JSON object", *prefix ? prefix : "body");
    static const char *const fields[] = {"agent", "id", "intent_id", "run_id", "session_id", "workflow",
                                         "parent_intent_id", "customer", "status", "ts", "model", "metrics", NULL};
    int rc;
    if ((rc = only_fields(o, prefix, fields, "heartbeat", e)) != CM_OK ||
        (rc = get_addr(o, prefix, "agent", hb->agent, e)) != CM_OK)
        return rc;
    json_object *idv;
    if (json_object_object_get_ex(o, "id", &idv) && idv && json_object_is_type(idv, json_type_string) &&
        json_object_get_string_len(idv) == 0) {
        path(p, sizeof p, prefix, "id");
        return cm_apierr_set(e, 400, "invalid_field", p, "%s must not be empty (leave it out instead)", p);
    }
    if ((rc = get_str(o, prefix, "id", hb->id, CM_ID_MAX, e)) != CM_OK ||
        (rc = get_str(o, prefix, "intent_id", hb->intent_id, CM_ID_MAX, e)) != CM_OK ||
        (rc = get_str(o, prefix, "run_id", hb->run_id, CM_ID_MAX, e)) != CM_OK ||
        (rc = get_str(o, prefix, "session_id", hb->session_id, CM_ID_MAX, e)) != CM_OK ||
        (rc = get_str(o, prefix, "workflow", hb->workflow, CM_ID_MAX, e)) != CM_OK ||
        (rc = get_str(o, prefix, "parent_intent_id", hb->parent_intent_id, CM_ID_MAX, e)) != CM_OK ||
        (rc = get_str(o, prefix, "customer", hb->customer, CM_ID_MAX, e)) != CM_OK ||
        (rc = get_str(o, prefix, "status", hb->status, CM_STATUS_MAX, e)) != CM_OK ||
        (rc = get_model(o, prefix, hb->model, e)) != CM_OK)
        return rc;

    char ts[64];
    json_object *tsv;
    if ((rc = get_str(o, prefix, "ts", ts, sizeof ts - 1, e)) != CM_OK) return rc;
    if (json_object_object_get_ex(o, "ts", &tsv) && tsv) {
        path(p, sizeof p, prefix, "ts");
        if (cm_time_parse(ts, strlen(ts), &hb->ts) != CM_OK)
            return cm_apierr_set(e, 400, "invalid_field", p, "%s must be an RFC 3339 time", p);
        if (hb->ts < now - CM_TS_PAST_S || hb->ts > now + CM_TS_FUTURE_S)
            return cm_apierr_set(e, 400, "invalid_field", p,
                                 "%s must be within the last 7 days and at most 5 minutes ahead", p);
    }

    json_object *m;
    if (!json_object_object_get_ex(o, "metrics", &m) || !m) return CM_OK;
    char mp[128];
    path(mp, sizeof mp, prefix, "metrics");
    if (!json_object_is_type(m, json_type_object))
        return cm_apierr_set(e, 400, "invalid_field", mp, "%s must be a JSON object", mp);
    static const char *const metrics[] = {"cost_usd", "tokens_in", "tokens_out", "tokens_cached",
                                          "tokens_cache_write", "llm_calls", "tool_calls", "intents_total",
                                          "intents_succeeded", "intents_failed", "avg_latency_ms", "revenue_usd",
                                          "refund_usd", "external_spend_usd", "fees_usd", "compute_ms", NULL};
    note_unknown(m, mp, metrics, ig);
    if ((rc = get_money(m, mp, "cost_usd", &hb->cost_nanos, e)) != CM_OK ||
        (rc = get_money(m, mp, "revenue_usd", &hb->revenue_nanos, e)) != CM_OK ||
        (rc = get_money(m, mp, "refund_usd", &hb->refund_nanos, e)) != CM_OK ||
        (rc = get_money(m, mp, "external_spend_usd", &hb->external_nanos, e)) != CM_OK ||
        (rc = get_money(m, mp, "fees_usd", &hb->fees_nanos, e)) != CM_OK ||
        (rc = get_count(m, mp, "tokens_in", &hb->tokens_in, e)) != CM_OK ||
        (rc = get_count(m, mp, "tokens_out", &hb->tokens_out, e)) != CM_OK ||
        (rc = get_count(m, mp, "tokens_cached", &hb->tokens_cached, e)) != CM_OK ||
        (rc = get_count(m, mp, "tokens_cache_write", &hb->tokens_cache_write, e)) != CM_OK ||
        (rc = get_count(m, mp, "llm_calls", &hb->llm_calls, e)) != CM_OK ||
        (rc = get_count(m, mp, "tool_calls", &hb->tool_calls, e)) != CM_OK ||
        (rc = get_count(m, mp, "compute_ms", &hb->compute_ms, e)) != CM_OK ||
        (rc = get_count(m, mp, "intents_total", &hb->intents_total, e)) != CM_OK ||
        (rc = get_count(m, mp, "intents_succeeded", &hb->intents_succeeded, e)) != CM_OK ||
        (rc = get_count(m, mp, "intents_failed", &hb->intents_failed, e)) != CM_OK)
        return rc;
    json_object *cost;
    hb->has_cost = json_object_object_get_ex(m, "cost_usd", &cost) && cost;
    /* What a card rates must add up: the cached and cache-write tokens are
     * part of the input (heartbeats without a model are left as they were). */
    if (hb->model[0] && hb->tokens_cached + hb->tokens_cache_write > hb->tokens_in) {
        path(p, sizeof p, mp, "tokens_in");
        return cm_apierr_set(e, 400, "invalid_field", p,
                             "%s must include tokens_cached and tokens_cache_write (they are part of the input)", p);
    }
    json_object *lat;
    if (json_object_object_get_ex(m, "avg_latency_ms", &lat) && lat) {
        path(p, sizeof p, mp, "avg_latency_ms");
        if (!json_object_is_type(lat, json_type_int) && !json_object_is_type(lat, json_type_double))
            return cm_apierr_set(e, 400, "invalid_field", p, "%s must be a number", p);
        /* A latency, not money: a double is the right type here. */
        double d = json_object_get_double(lat);
        if (!isfinite(d) || d < 0 || d > 1e12)
            return cm_apierr_set(e, 400, "invalid_field", p, "%s must be a number between 0 and 1e12", p);
        hb->avg_latency_ms = d;
        hb->has_latency = true;
    }
    return CM_OK;
}

int cm_codec_heartbeats(const char *body, size_t len, int64_t now, cm_hb **out, size_t *n,
                        cm_ignored *ignored, cm_apierr *e)
{
    *out = NULL;
    *n = 0;
    if (is_blank(body, len)) {
        cm_hb *hb = calloc(1, sizeof *hb);
        if (!hb) return cm_apierr_set(e, 500, "internal", NULL, "out of memory");
        hb->ts = now;
        *out = hb;
        *n = 1;
        return CM_OK;
    }
    json_object *root = parse_root(body, len, e);
    if (!root) return CM_EINVAL;
    int rc = CM_OK;
    json_object *arr;
    if (json_object_is_type(root, json_type_object) &&
        json_object_object_get_ex(root, "heartbeats", &arr)) {
        if (!json_object_is_type(arr, json_type_array)) {
            rc = cm_apierr_set(e, 400, "invalid_field", "heartbeats", "heartbeats must be an array");
            goto done;
        }
        static const char *const batch_fields[] = {"heartbeats", NULL};
        if ((rc = only_fields(root, "", batch_fields, "batch", e)) != CM_OK) goto done;
        size_t cnt = json_object_array_length(arr);
        if (cnt == 0) {
            rc = cm_apierr_set(e, 400, "invalid_field", "heartbeats", "heartbeats must not be empty");
            goto done;
        }
        if (cnt > CM_BATCH_MAX) {
            rc = cm_apierr_set(e, 413, "batch_too_large", "heartbeats",
                               "a batch holds at most %d heartbeats, got %zu", CM_BATCH_MAX, cnt);
            goto done;
        }
        cm_hb *hbs = malloc(cnt * sizeof *hbs);
        if (!hbs) {
            rc = cm_apierr_set(e, 500, "internal", NULL, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < cnt; i++) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "heartbeats[%zu]", i);
            rc = decode_one(json_object_array_get_idx(arr, i), prefix, now, &hbs[i], ignored, e);
            if (rc != CM_OK) {
                free(hbs);
                goto done;
            }
        }
        *out = hbs;
        *n = cnt;
    } else {
        cm_hb *hb = malloc(sizeof *hb);
        if (!hb) {
            rc = cm_apierr_set(e, 500, "internal", NULL, "out of memory");
            goto done;
        }
        rc = decode_one(root, "", now, hb, ignored, e);
        if (rc != CM_OK) {
            free(hb);
            goto done;
        }
        *out = hb;
        *n = 1;
    }
done:
    json_object_put(root);
    return rc;
}

int cm_codec_keyreq(const char *body, size_t len, cm_keyreq *out, cm_apierr *e)
{
    memset(out, 0, sizeof *out);
    json_object *root = parse_object(body, len, e);
    if (!root) return CM_EINVAL;
    int rc = CM_OK;
    char role[16];
    if ((rc = get_str(root, "", "role", role, sizeof role - 1, e)) != CM_OK ||
        (rc = get_str(root, "", "name", out->name, CM_ID_MAX, e)) != CM_OK ||
        (rc = get_addr(root, "", "agent", out->agent, e)) != CM_OK ||
        (rc = get_str(root, "", "interop_env", out->interop_env, CM_ADDR_SEG_MAX, e)) != CM_OK)
        goto done;
    if (strcmp(role, "admin") == 0) {
        out->admin = true;
    } else if (strcmp(role, "agent") != 0) {
        rc = cm_apierr_set(e, 400, "invalid_field", "role", "role must be \"admin\" or \"agent\"");
        goto done;
    }
    /* The name is how a person tells keys apart in the list. */
    if (!out->name[0])
        rc = cm_apierr_set(e, 400, "invalid_field", "name", "name is required: a label for the key");
    else if (out->agent[0] && out->admin)
        rc = cm_apierr_set(e, 400, "invalid_field", "agent", "only agent keys are bound to an agent");
    else if (out->interop_env[0] && cm_addr_check_org(out->interop_env, strlen(out->interop_env)) != CM_OK)
        rc = cm_apierr_set(e, 400, "invalid_field", "interop_env",
                           "interop_env must be an address segment: 1 to 64 of A-Z a-z 0-9 . _ -");
    /* A bound key records every span as its agent: an ENV would mean nothing. */
    else if (out->interop_env[0] && out->agent[0])
        rc = cm_apierr_set(e, 400, "invalid_field", "interop_env",
                           "interop_env is for keys not bound to an agent: a bound key's spans are its agent's");
done:
    json_object_put(root);
    return rc;
}

static const char *const policy_fields[] = {
    "max_intents_per_hour", "max_intents_per_day", "max_cost_per_hour_usd",
    "max_cost_per_day_usd", "max_cost_per_month_usd", "action_on_breach", "alert_thresholds",
    "max_cost_per_intent_tree_usd", NULL,
};

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int cm_codec_policy(const char *body, size_t len, cm_policy *out, unsigned *present, cm_apierr *e)
{
    cm_policy_init(out);
    *present = 0;
    json_object *root = parse_object(body, len, e);
    if (!root) return CM_EINVAL;
    int rc = only_fields(root, "", policy_fields, "policy", e);
    if (rc != CM_OK) goto done;
    for (int i = 0; policy_fields[i]; i++)
        if (json_object_object_get_ex(root, policy_fields[i], NULL)) *present |= 1u << i;
    for (int i = 0; i < CM_LIM_COUNT; i++) {
        json_object *v;
        if (!json_object_object_get_ex(root, cm_limit_name(i), &v) || !v) continue;
        rc = cm_limit_is_cost(i) ? get_money(root, "", cm_limit_name(i), &out->limit[i], e)
                                 : get_count(root, "", cm_limit_name(i), &out->limit[i], e);
        if (rc != CM_OK) goto done;
        out->has[i] = true;
    }
    json_object *tree;
    if (json_object_object_get_ex(root, CM_POLICY_TREE_NAME, &tree) && tree) {
        if ((rc = get_money(root, "", CM_POLICY_TREE_NAME, &out->tree_cap, e)) != CM_OK) goto done;
        out->has_tree_cap = true;
    }
    char action[16];
    if ((rc = get_str(root, "", "action_on_breach", action, sizeof action - 1, e)) != CM_OK) goto done;
    if (action[0] && strcmp(action, "block") != 0 && strcmp(action, "alert") != 0) {
        rc = cm_apierr_set(e, 400, "invalid_field", "action_on_breach",
                           "action_on_breach must be \"block\" or \"alert\"");
        goto done;
    }
    out->block = strcmp(action, "alert") != 0;
    json_object *th;
    if (json_object_object_get_ex(root, "alert_thresholds", &th) && th) {
        if (!json_object_is_type(th, json_type_array) || json_object_array_length(th) == 0 ||
            json_object_array_length(th) > CM_THRESH_MAX) {
            rc = cm_apierr_set(e, 400, "invalid_field", "alert_thresholds",
                               "alert_thresholds must be an array of 1 to %d numbers", CM_THRESH_MAX);
            goto done;
        }
        out->nthresh = (int)json_object_array_length(th);
        for (int i = 0; i < out->nthresh; i++) {
            json_object *v = json_object_array_get_idx(th, (size_t)i);
            char f[40];
            snprintf(f, sizeof f, "alert_thresholds[%d]", i);
            const char *text = v ? json_object_get_string(v) : "";
            /* A fraction has the same 1e-9 fixed point as money. */
            if (!v || (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double)) ||
                cm_money_parse(text, strlen(text), &out->thresh[i]) != CM_OK || out->thresh[i] <= 0 ||
                out->thresh[i] > CM_FRACTION_ONE) {
                rc = cm_apierr_set(e, 400, "invalid_field", f, "%s must be a number in (0, 1]", f);
                goto done;
            }
        }
        qsort(out->thresh, (size_t)out->nthresh, sizeof out->thresh[0], cmp_i64);
    }
done:
    json_object_put(root);
    return rc;
}

int cm_codec_intent(const char *body, size_t len, bool axme, cm_intentreq *out, cm_apierr *e)
{
    memset(out, 0, sizeof *out);
    if (!axme && is_blank(body, len)) return CM_OK;
    json_object *root = parse_object(body, len, e);
    if (!root) return CM_EINVAL;
    int rc = CM_OK;
    const char *agent_field = axme ? "to_agent" : "agent";
    if ((rc = get_addr(root, "", agent_field, out->agent, e)) != CM_OK ||
        (rc = get_str(root, "", axme ? "correlation_id" : "intent_id", out->intent_id, CM_ID_MAX, e)) != CM_OK ||
        (rc = get_str(root, "", "intent_type", out->intent_type, CM_ID_MAX, e)) != CM_OK ||
        (rc = get_str(root, "", "run_id", out->run_id, CM_ID_MAX, e)) != CM_OK ||
        (rc = get_str(root, "", "session_id", out->session_id, CM_ID_MAX, e)) != CM_OK ||
        (rc = get_str(root, "", "workflow", out->workflow, CM_ID_MAX, e)) != CM_OK ||
        (rc = get_str(root, "", "customer", out->customer, CM_ID_MAX, e)) != CM_OK ||
        (rc = get_str(root, "", "parent_intent_id", out->parent_intent_id, CM_ID_MAX, e)) != CM_OK ||
        (rc = get_money(root, "", "estimated_cost_usd", &out->estimated_cost, e)) != CM_OK)
        goto done;
    if (out->parent_intent_id[0] && strcmp(out->parent_intent_id, out->intent_id) == 0) {
        rc = cm_apierr_set(e, 400, "invalid_field", "parent_intent_id", "an intent cannot be its own parent");
        goto done;
    }
    if (axme && !out->agent[0]) {
        rc = cm_apierr_set(e, 400, "invalid_field", "to_agent", "to_agent is required");
        goto done;
    }
    json_object *payload;
    if (axme && json_object_object_get_ex(root, "payload", &payload) && payload &&
        !json_object_is_type(payload, json_type_object)) {
        rc = cm_apierr_set(e, 400, "invalid_field", "payload", "payload must be a JSON object");
        goto done;
    }
done:
    json_object_put(root);
    return rc;
}

const char *const cm_codec_intent_ends[] = {"succeeded", "failed", "cancelled", NULL};

int cm_codec_intent_end(const char *body, size_t len, cm_intent_end *out, cm_apierr *e)
{
    static const char *const fields[] = {"status", "quality", NULL};
    memset(out, 0, sizeof *out);
    if (len == 0) return CM_OK;
    json_object *root = parse_object(body, len, e);
    if (!root) return CM_EINVAL;
    char status[CM_STATUS_MAX + 1];
    int rc;
    if ((rc = only_fields(root, "", fields, "intent end", e)) != CM_OK ||
        (rc = get_str(root, "", "status", status, CM_STATUS_MAX, e)) != CM_OK)
        goto done;
    for (const char *const *s = cm_codec_intent_ends; *s && !out->status; s++)
        if (strcmp(status, *s) == 0) out->status = *s;
    if (!out->status) {
        rc = cm_apierr_set(e, 400, "invalid_field", "status", "status must be succeeded, failed or cancelled");
        goto done;
    }
    json_object *q;
    if (json_object_object_get_ex(root, "quality", &q) && q) {
        /* A fraction, in the 1e-9 fixed point of money (as thresholds). */
        const char *text = json_object_get_string(q);
        if ((!json_object_is_type(q, json_type_int) && !json_object_is_type(q, json_type_double)) ||
            cm_codec_money(text, &out->quality) != CM_OK || out->quality > CM_FRACTION_ONE) {
            rc = cm_apierr_set(e, 400, "invalid_field", "quality", "quality must be a number from 0 to 1");
            goto done;
        }
        out->has_quality = true;
    }
done:
    json_object_put(root);
    return rc;
}

int cm_codec_webhook(const char *body, size_t len, cm_webhookreq *out, cm_apierr *e)
{
    memset(out, 0, sizeof *out);
    json_object *root = parse_object(body, len, e);
    if (!root) return CM_EINVAL;
    int rc = CM_OK;
    if ((rc = get_str(root, "", "url", out->url, sizeof out->url - 1, e)) != CM_OK ||
        (rc = get_str(root, "", "secret", out->secret, CM_ID_MAX, e)) != CM_OK)
        goto done;
    if (strncmp(out->url, "http://", 7) != 0 && strncmp(out->url, "https://", 8) != 0) {
        rc = cm_apierr_set(e, 400, "invalid_field", "url", "url must be an http:// or https:// URL");
        goto done;
    }
    if (!out->secret[0]) {
        rc = cm_apierr_set(e, 400, "invalid_field", "secret", "secret is required");
        goto done;
    }
done:
    json_object_put(root);
    return rc;
}

/* A price per million tokens: a number, refused when negative, above
 * CM_MONEY_MAX or finer than a nano-dollar. Absent leaves *dst and *found
 * false. */
static int get_price(json_object *root, const char *name, int64_t *dst, bool *found, cm_apierr *e)
{
    json_object *v;
    *found = json_object_object_get_ex(root, name, &v) && v;
    if (!*found) return CM_OK;
    const char *text = json_object_get_string(v);
    bool number = json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double);
    if (number && text[0] == '-' && cm_codec_money(text, dst) == CM_ERANGE)
        return cm_apierr_set(e, 400, "invalid_field", name, "%s must not be negative", name);
    if (!number || cm_codec_money(text, dst) != CM_OK)
        return cm_apierr_set(e, 400, "invalid_field", name, "%s must be a number between 0 and 1000000", name);
    if (cm_money_parse_exact(text, strlen(text), dst) != CM_OK)
        return cm_apierr_set(e, 400, "invalid_field", name,
                             "%s has more than 9 decimals: prices are whole nano-dollars", name);
    return CM_OK;
}

/* A card version's effective_from: required, an RFC 3339 time from 2000 to
 * 9998. */
static int get_effective_from(json_object *root, int64_t *from, cm_apierr *e)
{
    char ts[64];
    json_object *tsv;
    if (!json_object_object_get_ex(root, "effective_from", &tsv) || !tsv)
        return cm_apierr_set(e, 400, "invalid_field", "effective_from", "effective_from is required");
    int rc = get_str(root, "", "effective_from", ts, sizeof ts - 1, e);
    if (rc != CM_OK) return rc;
    if (cm_time_parse(ts, strlen(ts), from) != CM_OK || *from < 946684800 || *from >= 253370764800LL)
        return cm_apierr_set(e, 400, "invalid_field", "effective_from",
                             "effective_from must be an RFC 3339 time from 2000 to 9998");
    return CM_OK;
}

/* A card's body: an object of fields[] only (NULL-terminated; what names
 * the card in the error), whose first n fields are prices, read into prices[] (found[]
 * says which were given). Returns the root, which the caller puts, with
 * *rc CM_OK or a price's error (e filled); NULL with *rc when the body is
 * no object. */
static json_object *card_prices(const char *body, size_t len, const char *const *fields, const char *what, int n,
                                int64_t *prices, bool *found, int *rc, cm_apierr *e)
{
    json_object *root = parse_object(body, len, e);
    *rc = CM_EINVAL;
    if (!root) return NULL;
    *rc = only_fields(root, "", fields, what, e);
    for (int k = 0; k < n; k++) found[k] = false;
    for (int k = 0; k < n && *rc == CM_OK; k++) *rc = get_price(root, fields[k], &prices[k], &found[k], e);
    return root;
}

int cm_codec_price(const char *body, size_t len, cm_price *out, cm_apierr *e)
{
    memset(out, 0, sizeof *out);
    bool found[CM_PRICE_KINDS];
    int rc;
    json_object *root = card_prices(body, len, cm_price_fields, "rate card", CM_PRICE_KINDS, out->per_million, found, &rc, e);
    if (!root) return rc;
    for (int k = CM_PRICE_INPUT; k <= CM_PRICE_OUTPUT && rc == CM_OK; k++)
        if (!found[k]) rc = cm_apierr_set(e, 400, "invalid_field", cm_price_field(k), "%s is required", cm_price_field(k));
    if (rc != CM_OK) goto done;
    /* A model without cache prices charges cached input as input. */
    for (int k = CM_PRICE_CACHED; k <= CM_PRICE_CACHE_WRITE; k++)
        if (!found[k]) out->per_million[k] = out->per_million[CM_PRICE_INPUT];
    rc = get_effective_from(root, &out->from, e);
done:
    json_object_put(root);
    return rc;
}

int cm_codec_bill_card(const char *body, size_t len, cm_bill_card *out, cm_apierr *e)
{
    memset(out, 0, sizeof *out);
    bool found[CM_BILL_ITEMS], any = false;
    int rc;
    json_object *root = card_prices(body, len, cm_bill_fields, "billing card", CM_BILL_ITEMS, out->unit_price, found, &rc, e);
    if (!root) return rc;
    for (int k = 0; k < CM_BILL_ITEMS; k++) any |= found[k];
    if (rc == CM_OK && !any)
        rc = cm_apierr_set(e, 400, "invalid_field", "per_run_usd",
                           "a billing card needs at least one of per_run_usd, per_step_usd, per_compute_second_usd"
                           " and per_outcome_usd");
    if (rc == CM_OK) rc = get_effective_from(root, &out->from, e);
    /* Quantities are summed per UTC hour: a version can split them exactly
     * only on an hour. */
    if (rc == CM_OK && out->from % 3600 != 0)
        rc = cm_apierr_set(e, 400, "invalid_field", "effective_from",
                           "effective_from must be a whole UTC hour (usage is summed per hour)");
    json_object_put(root);
    return rc;
}
