/* call.c - requests to the server and error reporting (see call.h). */
#include "call.h"
#include "table.h"

#include "ctl.h"
#include "net.h"
#include "sbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmctl_fail(int rc, const char *what)
{
    fprintf(stderr, "%s: %s\n", CMCTL_PROG, what);
    return rc;
}

/* Appends the base URL without trailing slashes; CMCTL_EUSAGE after
 * printing why it is unusable. */
static int base_url(cmctl_buf *out)
{
    const char *u = getenv("COSTMESH_URL");
    if (!u || !*u) u = CMCTL_DEFAULT_URL;
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
        return cmctl_fail(CMCTL_EUSAGE, "COSTMESH_URL must start with http:// or https://");
    size_t n = strlen(u);
    while (n > 0 && u[n - 1] == '/') n--;
    cmctl_buf_add(out, u, n);
    return CMCTL_OK;
}

static int api_key(const char **out)
{
    const char *k = getenv("COSTMESH_API_KEY");
    if (!k || !*k)
        return cmctl_fail(CMCTL_EUSAGE, "COSTMESH_API_KEY is not set: export an API key "
                                        "(admin, or an agent key for heartbeat, intent and spend)");
    /* A newline would end the header and let the rest inject another. */
    if (strpbrk(k, "\r\n"))
        return cmctl_fail(CMCTL_EUSAGE, "COSTMESH_API_KEY contains a line break");
    *out = k;
    return CMCTL_OK;
}

/* Copies s into out[0..outsz) on one line: control characters become
 * spaces, so a server message cannot break the one-line error format. */
static void one_line(const char *s, char *out, size_t outsz)
{
    size_t i = 0;
    for (; s[i] && i + 1 < outsz; i++) out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? ' ' : s[i];
    out[i] = '\0';
}

/* "costmeshctl: 400 invalid_field (metrics.cost_usd): message", with the
 * limit, current value and wait of a refused intent when the body has them. */
static void print_http_error(const cmctl_reply *r)
{
    json_object *e = r->json ? cmctl_jget(r->json, "error", json_type_object) : NULL;
    char msg[600];
    if (!e) {
        one_line(r->raw, msg, 200);
        fprintf(stderr, "%s: %ld (no JSON error body)%s%s\n", CMCTL_PROG, r->status, msg[0] ? ": " : "", msg);
        return;
    }
    const char *field = cmctl_jtext(e, "field", NULL);
    one_line(cmctl_jtext(e, "message", "(no message)"), msg, sizeof msg);
    fprintf(stderr, "%s: %ld %s", CMCTL_PROG, r->status, cmctl_jtext(e, "code", "error"));
    if (field) fprintf(stderr, " (%s)", field);
    fprintf(stderr, ": %s", msg);
    if (json_object_object_get_ex(e, "scope", NULL))
        fprintf(stderr, " [scope %s %s]", cmctl_jtext(e, "scope", "?"), cmctl_jtext(e, "scope_id", "(org)"));
    if (json_object_object_get_ex(e, "limit", NULL))
        fprintf(stderr, " [limit %s = %s, current %s, retry after %s s]", cmctl_jtext(e, "limit", "?"),
                cmctl_jtext(e, "limit_value", "?"), cmctl_jtext(e, "current", "?"),
                cmctl_jtext(e, "retry_after_s", "?"));
    fputc('\n', stderr);
}

static json_object *parse(const char *text, size_t len)
{
    if (len > 0x7fffffff) return NULL;
    json_tokener *tok = json_tokener_new();
    if (!tok) return NULL;
    json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    size_t end = o ? json_tokener_get_parse_end(tok) : len;
    while (end < len && strchr(" \t\r\n", text[end])) end++;
    if (end < len) {
        /* Bytes after the document: not the JSON we expect. */
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

int cmctl_call(const char *method, const char *path, json_object *body, const char *extra_header,
               cmctl_reply *out)
{
    cmctl_buf url;
    const char *key = NULL;
    char err[CMCTL_ERRLEN];
    cmctl_resp resp;
    int rc;

    memset(out, 0, sizeof *out);
    cmctl_buf_init(&url);
    if ((rc = base_url(&url)) != CMCTL_OK || (rc = api_key(&key)) != CMCTL_OK) {
        cmctl_buf_free(&url);
        return rc;
    }
    cmctl_buf_adds(&url, path);
    if (!cmctl_buf_str(&url)) {
        cmctl_buf_free(&url);
        return cmctl_fail(CMCTL_ENOMEM, cmctl_strerror(CMCTL_ENOMEM));
    }
    const char *text = body ? json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN) : NULL;
    if (body && !text) {
        cmctl_buf_free(&url);
        return cmctl_fail(CMCTL_ENOMEM, cmctl_strerror(CMCTL_ENOMEM));
    }
    rc = cmctl_net_request(method, cmctl_buf_str(&url), key, text, extra_header, &resp, err, sizeof err);
    cmctl_buf_free(&url);
    if (rc == CMCTL_ENET) {
        fprintf(stderr, "%s: cannot reach the server: %s\n", CMCTL_PROG, err);
        return rc;
    }
    if (rc != CMCTL_OK) return cmctl_fail(rc, cmctl_strerror(rc));

    out->status = resp.status;
    out->raw = resp.body;
    out->json = resp.len ? parse(resp.body, resp.len) : NULL;
    if (resp.status < 200 || resp.status > 299) {
        print_http_error(out);
        return CMCTL_EHTTP;
    }
    if (resp.len && !out->json) {
        char line[200];
        one_line(out->raw, line, sizeof line);
        fprintf(stderr, "%s: %ld with a body that is not JSON: %s\n", CMCTL_PROG, resp.status, line);
        return CMCTL_EREPLY;
    }
    return CMCTL_OK;
}

void cmctl_reply_free(cmctl_reply *r)
{
    if (!r) return;
    json_object_put(r->json);
    free(r->raw);
    r->json = NULL;
    r->raw = NULL;
}

int cmctl_print_raw(const cmctl_reply *r)
{
    const char *s = r->raw ? r->raw : "";
    size_t n = strlen(s);
    fputs(s, stdout);
    if (n == 0 || s[n - 1] != '\n') fputc('\n', stdout);
    return CMCTL_OK;
}

int cmctl_get_show(cmctl_buf *path, int json, int (*show)(json_object *reply))
{
    if (!cmctl_buf_str(path)) {
        cmctl_buf_free(path);
        return cmctl_fail(CMCTL_ENOMEM, cmctl_strerror(CMCTL_ENOMEM));
    }
    cmctl_reply r;
    int rc = cmctl_call("GET", cmctl_buf_str(path), NULL, NULL, &r);
    cmctl_buf_free(path);
    if (rc == CMCTL_OK && json) {
        rc = cmctl_print_raw(&r);
    } else if (rc == CMCTL_OK && (rc = show(r.json)) != CMCTL_OK) {
        cmctl_fail(rc, cmctl_strerror(rc));
    }
    cmctl_reply_free(&r);
    return rc;
}

int cmctl_print_rows(json_object *reply, const char *array, const cmctl_col *cols, size_t ncols)
{
    const char *head[16], *row[16];
    json_object *items = cmctl_jget(reply, array, json_type_array);
    if (!items || ncols > 16) return CMCTL_EREPLY;
    for (size_t c = 0; c < ncols; c++) head[c] = cols[c].head;
    cmctl_table *t = cmctl_table_new(ncols, head);
    if (!t) return CMCTL_ENOMEM;
    for (size_t c = 0; c < ncols; c++)
        if (cols[c].right) cmctl_table_right(t, c);
    int rc = CMCTL_OK;
    for (size_t i = 0; rc == CMCTL_OK && i < json_object_array_length(items); i++) {
        json_object *o = json_object_array_get_idx(items, i);
        for (size_t c = 0; c < ncols; c++) row[c] = cmctl_jtext(o, cols[c].field, cols[c].missing);
        rc = cmctl_table_add(t, row);
    }
    if (rc == CMCTL_OK) rc = cmctl_table_print(t, stdout);
    cmctl_table_free(t);
    return rc;
}

json_object *cmctl_jget(json_object *obj, const char *key, json_type type)
{
    json_object *v = NULL;
    if (!obj || !json_object_is_type(obj, json_type_object)) return NULL;
    if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, type)) return NULL;
    return v;
}

const char *cmctl_jtext(json_object *obj, const char *key, const char *dflt)
{
    json_object *v = NULL;
    if (!obj || !json_object_is_type(obj, json_type_object)) return dflt;
    if (!json_object_object_get_ex(obj, key, &v) || !v) return dflt;
    switch (json_object_get_type(v)) {
    case json_type_string:
        return json_object_get_string(v);
    case json_type_object:
    case json_type_array:
        return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
    default:
        /* Numbers: the parser kept their text, and get_string returns it;
         * that is what makes money print exactly as the server sent it. */
        return json_object_get_string(v);
    }
}

static int add(json_object *obj, const char *key, json_object *v)
{
    if (!v) return CMCTL_ENOMEM;
    if (json_object_object_add(obj, key, v) != 0) {
        json_object_put(v);
        return CMCTL_ENOMEM;
    }
    return CMCTL_OK;
}

/* A double that serializes as its own text: the server reads money from the
 * number's text, so the value json-c holds next to it is never used. */
static json_object *number(const char *text)
{
    return json_object_new_double_s(strtod(text, NULL), text);
}

int cmctl_jadd_str(json_object *obj, const char *key, const char *text)
{
    return text ? add(obj, key, json_object_new_string(text)) : CMCTL_OK;
}

int cmctl_jadd_number(json_object *obj, const char *key, const char *text)
{
    return text ? add(obj, key, number(text)) : CMCTL_OK;
}

int cmctl_jadd_int(json_object *obj, const char *key, long long v)
{
    return add(obj, key, json_object_new_int64(v));
}

int cmctl_jpush_number(json_object *arr, const char *text)
{
    json_object *v = number(text);
    if (!v) return CMCTL_ENOMEM;
    if (json_object_array_add(arr, v) != 0) {
        json_object_put(v);
        return CMCTL_ENOMEM;
    }
    return CMCTL_OK;
}
