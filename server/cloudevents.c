#include "cloudevents.h"
#include "buf.h"
#include "address.h"
#include "error.h"
#include "timeutil.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A string member of at most max bytes into dst ("" when absent and not
 * required). */
static int ce_str(json_object *o, size_t i, const char *name, bool required, char *dst, size_t max, cm_apierr *e)
{
    json_object *v = NULL;
    dst[0] = '\0';
    if (!json_object_object_get_ex(o, name, &v) || !v) {
        if (!required) return CM_OK;
        return cm_apierr_set(e, 400, "invalid_field", NULL, "event [%zu] has no %s", i, name);
    }
    size_t n = json_object_is_type(v, json_type_string) ? (size_t)json_object_get_string_len(v) : 0;
    /* Valid UTF-8, as every heartbeat string (codec.c): PostgreSQL takes
     * nothing else, and the Redis queue's text must read back the same. */
    if (n == 0 || n > max || memchr(json_object_get_string(v), '\0', n) ||
        cm_utf8_valid_prefix(json_object_get_string(v), n) != n) {
        cm_apierr_set(e, 400, "invalid_field", NULL, "event [%zu]: %s must be a UTF-8 string of 1 to %zu bytes", i,
                      name, max);
        snprintf(e->field, sizeof e->field, "[%zu].%s", i, name);
        return CM_EINVAL;
    }
    memcpy(dst, json_object_get_string(v), n + 1);
    return CM_OK;
}

static int decode_event(json_object *o, size_t i, int64_t now, cm_ce_event *ev, cm_apierr *e)
{
    char spec[8], time[64];
    if (!json_object_is_type(o, json_type_object))
        return cm_apierr_set(e, 400, "invalid_field", NULL, "event [%zu] is not an object", i);
    int rc;
    if ((rc = ce_str(o, i, "specversion", true, spec, sizeof spec - 1, e)) != CM_OK ||
        (rc = ce_str(o, i, "id", true, ev->id, CM_ID_MAX, e)) != CM_OK ||
        (rc = ce_str(o, i, "source", true, ev->source, CM_ID_MAX, e)) != CM_OK ||
        (rc = ce_str(o, i, "type", true, ev->type, CM_ID_MAX, e)) != CM_OK ||
        (rc = ce_str(o, i, "subject", true, ev->subject, CM_ID_MAX, e)) != CM_OK ||
        (rc = ce_str(o, i, "time", false, time, sizeof time - 1, e)) != CM_OK)
        return rc;
    if (strcmp(spec, "1.0") != 0) return cm_apierr_set(e, 400, "invalid_field", NULL, "event [%zu]: specversion must be 1.0", i);
    ev->ts = now;
    if (time[0] && cm_time_parse(time, strlen(time), &ev->ts) != CM_OK)
        return cm_apierr_set(e, 400, "invalid_field", NULL, "event [%zu]: time must be RFC 3339", i);
    if (ev->ts < now - CM_TS_PAST_S || ev->ts > now + CM_TS_FUTURE_S)
        return cm_apierr_set(e, 400, "invalid_field", NULL, "event [%zu]: time must be within the last 7 days", i);
    json_object *data = NULL;
    if (json_object_object_get_ex(o, "data", &data) && data) {
        ev->data = strdup(json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN));
        if (!ev->data) return cm_apierr_set(e, 500, "internal", NULL, "out of memory");
    }
    return CM_OK;
}

void cm_ce_free(cm_ce_event *evs, size_t n)
{
    for (size_t i = 0; evs && i < n; i++) free(evs[i].data);
    free(evs);
}

int cm_ce_decode(const char *content_type, const char *body, size_t len, int64_t now, cm_ce_event **evs, size_t *n,
                 cm_apierr *e)
{
    *evs = NULL;
    *n = 0;
    bool one = cm_codec_media_is(content_type, "application/cloudevents+json");
    bool many = cm_codec_media_is(content_type, "application/cloudevents-batch+json");
    if (!one && !many && !cm_codec_media_is(content_type, "application/json"))
        return cm_apierr_set(e, 415, "unsupported_media_type", "Content-Type",
                             "Content-Type must be application/cloudevents+json or application/cloudevents-batch+json");
    json_object *root = cm_codec_parse(body, len, e);
    if (!root) return CM_EINVAL;
    bool array = json_object_is_type(root, json_type_array);
    size_t count = array ? json_object_array_length(root) : 1;
    int rc = CM_OK;
    if ((one && array) || (many && !array) || count == 0)
        rc = cm_apierr_set(e, 400, "invalid_body", NULL, "%s", many || array ? "the body must be a non-empty JSON array of events"
                                                                           : "the body must be one event object");
    else if (count > CM_BATCH_MAX)
        rc = cm_apierr_set(e, 413, "payload_too_large", NULL, "a batch may carry at most %d events", CM_BATCH_MAX);
    cm_ce_event *out = rc == CM_OK ? calloc(count, sizeof *out) : NULL;
    if (rc == CM_OK && !out) rc = cm_apierr_set(e, 500, "internal", NULL, "out of memory");
    for (size_t i = 0; rc == CM_OK && i < count; i++)
        rc = decode_event(array ? json_object_array_get_idx(root, i) : root, i, now, &out[i], e);
    json_object_put(root);
    if (rc != CM_OK) {
        cm_ce_free(out, count);
        return rc;
    }
    *evs = out;
    *n = count;
    return CM_OK;
}

/* "$.a.b" or "a.b": object keys of at most 64 bytes each. */
static bool path_ok(const char *p)
{
    if (strncmp(p, "$.", 2) == 0) p += 2;
    if (!*p) return false;
    for (const char *seg = p; *seg;) {
        size_t k = strcspn(seg, ".");
        if (k == 0 || k > 64) return false;
        seg += k + (seg[k] == '.');
        if (seg[-1] == '.' && !*seg) return false;
    }
    return true;
}

int cm_ce_meter_decode(const char *body, size_t len, cm_meter *m, cm_apierr *e)
{
    static const char *const names[] = {"cost_usd", "tokens_in", "tokens_out", "agent"};
    char *dst[] = {m->cost_usd, m->tokens_in, m->tokens_out, m->agent};
    json_object *root = cm_codec_parse(body, len, e);
    if (!root) return CM_EINVAL;
    int rc = json_object_is_type(root, json_type_object)
                 ? CM_OK
                 : cm_apierr_set(e, 400, "invalid_json", NULL, "body must be a JSON object");
    json_object_object_foreach(rc == CM_OK ? root : NULL, key, val)
    {
        size_t i = 0;
        while (i < 4 && strcmp(key, names[i]) != 0) i++;
        if (i == 4) {
            rc = cm_apierr_set(e, 400, "unknown_field", key, "unknown field %s", key);
            break;
        }
        const char *p = json_object_is_type(val, json_type_string) ? json_object_get_string(val) : "";
        if (strlen(p) > CM_CE_PATH_MAX || !path_ok(p)) {
            rc = cm_apierr_set(e, 400, "invalid_field", names[i], "%s must be a path like $.usage.cost", names[i]);
            break;
        }
        snprintf(dst[i], CM_CE_PATH_MAX + 1, "%s", p);
    }
    json_object_put(root);
    if (rc == CM_OK && !m->cost_usd[0] && !m->tokens_in[0] && !m->tokens_out[0])
        rc = cm_apierr_set(e, 400, "invalid_field", NULL, "a meter needs a path for cost_usd, tokens_in or tokens_out");
    return rc;
}

/* The value at path in data (NULL when absent), as text. */
static const char *at_path(json_object *data, const char *path, json_type *type)
{
    if (strncmp(path, "$.", 2) == 0) path += 2;
    json_object *v = data;
    char key[65];
    while (*path && v) {
        size_t k = strcspn(path, ".");
        snprintf(key, sizeof key, "%.*s", (int)k, path);
        json_object *next = NULL;
        if (!json_object_is_type(v, json_type_object) || !json_object_object_get_ex(v, key, &next)) return NULL;
        v = next;
        path += k + (path[k] == '.');
    }
    if (!v) return NULL;
    *type = json_object_get_type(v);
    return json_object_get_string(v);
}

int cm_ce_apply(const cm_ce_event *ev, size_t index, const cm_meter *m, cm_hb *hb, cm_apierr *e)
{
    memset(hb, 0, sizeof *hb);
    json_object *data = ev->data ? json_tokener_parse(ev->data) : NULL;
    const char *paths[] = {m->cost_usd, m->tokens_in, m->tokens_out, m->agent};
    int64_t *counts[] = {NULL, &hb->tokens_in, &hb->tokens_out};
    int rc = CM_OK;
    for (int i = 0; i < 4 && rc == CM_OK; i++) {
        if (!paths[i][0]) continue;
        json_type t = json_type_null;
        const char *v = at_path(data, paths[i], &t);
        bool num = t == json_type_int || t == json_type_double || t == json_type_string;
        char *end = NULL;
        long long x = 0;
        if (v && i > 0 && i < 3) x = strtoll(v, &end, 10);
        if (!v || (i < 3 && !num) || (i == 3 && t != json_type_string) ||
            (i == 0 && cm_codec_money(v, &hb->cost_nanos) != CM_OK) ||
            (i > 0 && i < 3 && (*end || end == v || x < 0 || x > CM_COUNT_MAX)) ||
            (i == 3 && (strlen(v) > CM_ADDR_SEG_MAX || cm_addr_check_org(v, strlen(v)) != CM_OK))) {
            rc = cm_apierr_set(e, 400, "invalid_field", NULL, "event [%zu] (type %s): data at %s is missing or not %s",
                               index, ev->type, paths[i], i == 0 ? "an amount" : i < 3 ? "a count" : "an agent name");
            break;
        }
        if (i > 0 && i < 3) *counts[i] = x;
        if (i == 3) snprintf(hb->agent, sizeof hb->agent, "%s", v);
    }
    json_object_put(data);
    if (rc != CM_OK) return rc;
    if (!m->agent[0]) {
        if (cm_addr_check_org(ev->subject, strlen(ev->subject)) != CM_OK)
            return cm_apierr_set(e, 400, "invalid_field", NULL,
                                 "event [%zu]: the subject is the agent's name (A-Z a-z 0-9 . _ -, at most 64 bytes)"
                                 " unless the meter has an agent path", index);
        snprintf(hb->agent, sizeof hb->agent, "%s", ev->subject);
    }
    snprintf(hb->session_id, sizeof hb->session_id, "%s", ev->subject);
    hb->ts = ev->ts;
    return CM_OK;
}
