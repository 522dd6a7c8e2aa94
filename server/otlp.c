#include "otlp.h"
#include "address.h"
#include "error.h"
#include "otlp_trace.pb-c.h"
#include "rpc_status.pb-c.h"

#include <json-c/json.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* An attribute's value as both encodings give it; strings are borrowed and
 * not NUL-terminated. */
typedef enum { V_NONE, V_STR, V_INT, V_DOUBLE } vkind;
typedef struct {
    vkind kind;
    const char *s; /* V_STR: the string; V_DOUBLE: the number's text */
    size_t len;
    int64_t i;
} value;

/* What one span says that costmesh records. */
typedef struct {
    const char *agent; /* gen_ai.agent.name, borrowed */
    size_t agent_len;
    const char *conversation;
    size_t conversation_len;
    const char *model; /* gen_ai.response.model, else gen_ai.request.model */
    size_t model_len;
    bool response_model;
    int64_t tin, tout, tcached, tcwrite, cost;
    bool has_cost;
    bool usage;
    const char *bad; /* the first usage attribute that is malformed */
} facts;

/* The decoding of one request: the heartbeats so far and the counts. */
typedef struct {
    cm_hb *hbs;
    size_t n;
    int64_t now;
    cm_otlp_stats *st;
} batch;

static bool key_is(const char *key, const char *a, const char *b)
{
    return strcmp(key, a) == 0 || (b && strcmp(key, b) == 0);
}

/* A count: an int, or an int's decimal text (intValue is a string in OTLP
 * JSON, and some SDKs send counts as strings). */
static bool count_of(const value *v, int64_t *out)
{
    int64_t x = v->i;
    if (v->kind == V_STR) {
        char tmp[24];
        if (v->len == 0 || v->len >= sizeof tmp) return false;
        memcpy(tmp, v->s, v->len);
        tmp[v->len] = '\0';
        char *end;
        if (tmp[0] < '0' || tmp[0] > '9') return false;
        x = strtoll(tmp, &end, 10);
        if (*end) return false;
    } else if (v->kind != V_INT) {
        return false;
    }
    if (x < 0 || x > CM_COUNT_MAX) return false;
    *out = x;
    return true;
}

static void take_count(facts *f, const char *key, const value *v, int64_t *dst)
{
    f->usage = true;
    if (!count_of(v, dst) && !f->bad) f->bad = key;
}

static void take_attr(facts *f, const char *key, const value *v)
{
    if (key_is(key, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")) {
        take_count(f, key, v, &f->tin);
    } else if (key_is(key, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")) {
        take_count(f, key, v, &f->tout);
    } else if (key_is(key, "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens")) {
        take_count(f, key, v, &f->tcached);
    } else if (key_is(key, "gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens")) {
        take_count(f, key, v, &f->tcwrite);
    } else if (key_is(key, "gen_ai.usage.cost", NULL)) {
        char tmp[64];
        f->usage = true;
        f->has_cost = true;
        bool ok = (v->kind == V_STR || v->kind == V_DOUBLE || v->kind == V_INT);
        if (ok && v->kind == V_INT) snprintf(tmp, sizeof tmp, "%" PRId64, v->i);
        else if (ok && v->len < sizeof tmp) memcpy(tmp, v->s, v->len), tmp[v->len] = '\0';
        else ok = false;
        if ((!ok || cm_codec_money(tmp, &f->cost) != CM_OK) && !f->bad) f->bad = key;
    } else if (key_is(key, "gen_ai.agent.name", NULL) && v->kind == V_STR) {
        f->agent = v->s;
        f->agent_len = v->len;
    } else if (key_is(key, "gen_ai.response.model", "gen_ai.request.model") && v->kind == V_STR &&
               !f->response_model) {
        /* The model that answered is the one that charged: the response's
         * name wins over the request's, in whatever order they come. */
        f->model = v->s;
        f->model_len = v->len;
        f->response_model = strcmp(key, "gen_ai.response.model") == 0;
    } else if (key_is(key, "gen_ai.conversation.id", NULL) && v->kind == V_STR) {
        f->conversation = v->s;
        f->conversation_len = v->len;
    }
}

static void reject(batch *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reject(batch *b, const char *fmt, ...)
{
    if (b->st->rejected++ > 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->st->why, sizeof b->st->why, fmt, ap);
    va_end(ap);
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) out[2 * i] = digits[in[i] >> 4], out[2 * i + 1] = digits[in[i] & 15];
    out[2 * n] = '\0';
}

/* Copies a string value of at most max bytes of valid UTF-8. */
static bool copy_text(char *dst, size_t max, const char *s, size_t len)
{
    if (len > max || cm_utf8_valid_prefix(s, len) != len || memchr(s, '\0', len)) return false;
    memcpy(dst, s, len);
    dst[len] = '\0';
    return true;
}

/* One span, its ids already in hex ("" when absent), into the batch: a
 * heartbeat, an ignored span or a rejected one. service: the resource's
 * service.name (NULL when none). */
static int add_span(batch *b, const facts *f, const value *service, const char *trace, const char *span,
                    const char *parent, uint64_t start_ns, uint64_t end_ns, cm_apierr *e)
{
    if (!f->usage) {
        b->st->ignored++;
        return CM_OK;
    }
    if (f->bad) return reject(b, "span %s: %s is not a count or amount it can be", span, f->bad), CM_OK;
    if (strlen(span) != 16) return reject(b, "a span with usage has no 8-byte span id"), CM_OK;
    const char *name = f->agent ? f->agent : service ? service->s : NULL;
    size_t name_len = f->agent ? f->agent_len : service ? service->len : 0;
    if (!name || cm_addr_check_org(name, name_len) != CM_OK) /* the rule of every address segment */
        return reject(b, "span %s: neither gen_ai.agent.name nor service.name is an agent name"
                         " (1 to 64 of A-Z a-z 0-9 . _ -)", span),
               CM_OK;
    uint64_t ns = end_ns ? end_ns : start_ns;
    int64_t ts = ns ? (int64_t)(ns / 1000000000u) : b->now;
    if (ts < b->now - CM_TS_PAST_S || ts > b->now + CM_TS_FUTURE_S)
        return reject(b, "span %s ended outside the last 7 days", span), CM_OK;
    if (b->n == CM_BATCH_MAX)
        return cm_apierr_set(e, 413, "payload_too_large", NULL,
                             "an export may carry at most %d spans with usage", CM_BATCH_MAX);
    cm_hb *h = &b->hbs[b->n];
    memset(h, 0, sizeof *h);
    if (f->conversation && !copy_text(h->session_id, CM_ID_MAX, f->conversation, f->conversation_len))
        return reject(b, "span %s: gen_ai.conversation.id is over %d bytes", span, CM_ID_MAX), CM_OK;
    if (f->model && (!cm_model_valid(f->model, f->model_len) || !copy_text(h->model, CM_MODEL_MAX, f->model, f->model_len)))
        return reject(b, "span %s: the model is not 1 to %d of A-Z a-z 0-9 . _ - : / @ +", span, CM_MODEL_MAX), CM_OK;
    if (f->model && f->tcached + f->tcwrite > f->tin)
        return reject(b, "span %s: gen_ai.usage.input_tokens must include the cache read and cache creation tokens",
                      span),
               CM_OK;
    memcpy(h->agent, name, name_len);
    h->agent[name_len] = '\0';
    snprintf(h->id, sizeof h->id, "%s", span);
    snprintf(h->run_id, sizeof h->run_id, "%s", trace);
    snprintf(h->parent_intent_id, sizeof h->parent_intent_id, "%s", parent);
    h->ts = ts;
    h->tokens_in = f->tin;
    h->tokens_out = f->tout;
    h->tokens_cached = f->tcached;
    h->tokens_cache_write = f->tcwrite;
    h->cost_nanos = f->cost;
    h->has_cost = f->has_cost;
    h->llm_calls = 1;
    b->n++;
    return CM_OK;
}

/* ---- OTLP JSON ---- */

static json_object *member(json_object *o, const char *name, json_type type)
{
    json_object *v = NULL;
    if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, name, &v)) return NULL;
    return json_object_is_type(v, type) ? v : NULL;
}

/* An attribute value object {"stringValue":...} and the like. */
static value json_value(json_object *kv)
{
    value v = {V_NONE, NULL, 0, 0};
    json_object *av = member(kv, "value", json_type_object), *x;
    if ((x = member(av, "stringValue", json_type_string))) {
        v.kind = V_STR;
    } else if ((x = member(av, "intValue", json_type_string))) {
        v.kind = V_STR; /* int64 travels as text in OTLP JSON */
    } else if ((x = member(av, "intValue", json_type_int))) {
        v.kind = V_INT;
        v.i = json_object_get_int64(x);
    } else if ((x = member(av, "doubleValue", json_type_double)) || (x = member(av, "doubleValue", json_type_int))) {
        v.kind = V_DOUBLE; /* json-c keeps the number's text: money is parsed from it */
    }
    if (v.kind == V_STR || v.kind == V_DOUBLE) {
        v.s = json_object_get_string(x);
        v.len = v.kind == V_STR ? (size_t)json_object_get_string_len(x) : strlen(v.s);
    }
    return v;
}

static void json_attrs(json_object *owner, facts *f, value *service)
{
    json_object *attrs = member(owner, "attributes", json_type_array);
    size_t n = attrs ? json_object_array_length(attrs) : 0;
    for (size_t i = 0; i < n; i++) {
        json_object *kv = json_object_array_get_idx(attrs, i);
        json_object *k = member(kv, "key", json_type_string);
        if (!k) continue;
        value v = json_value(kv);
        if (service && strcmp(json_object_get_string(k), "service.name") == 0 && v.kind == V_STR) *service = v;
        if (f) take_attr(f, json_object_get_string(k), &v);
    }
}

/* A hex id of `bytes` bytes into out (lowercase), "" when absent or
 * malformed: an id is only ever used as it came. */
static void json_id(json_object *span, const char *name, size_t bytes, char *out)
{
    json_object *v = member(span, name, json_type_string);
    const char *s = v ? json_object_get_string(v) : "";
    out[0] = '\0';
    if (strlen(s) != 2 * bytes || strspn(s, "0123456789abcdefABCDEF") != 2 * bytes) return;
    for (size_t i = 0; i < 2 * bytes; i++) out[i] = (char)(s[i] | 0x20);
    out[2 * bytes] = '\0';
}

/* A *UnixNano field: decimal text, or a number. 0 when absent or bad. */
static uint64_t json_nanos(json_object *span, const char *name)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(span, name, &v) || !v) return 0;
    if (json_object_is_type(v, json_type_int)) return (uint64_t)json_object_get_uint64(v);
    if (!json_object_is_type(v, json_type_string)) return 0;
    const char *s = json_object_get_string(v);
    char *end;
    if (s[0] < '0' || s[0] > '9') return 0;
    unsigned long long x = strtoull(s, &end, 10);
    return *end ? 0 : (uint64_t)x;
}

static int decode_json(const char *body, size_t len, batch *b, cm_apierr *e)
{
    json_object *root = cm_codec_parse(body, len, e);
    if (!root) return CM_EINVAL;
    int rc = CM_OK;
    json_object *rss = member(root, "resourceSpans", json_type_array);
    if (!json_object_is_type(root, json_type_object) ||
        (!rss && json_object_object_get_ex(root, "resourceSpans", NULL)))
        rc = cm_apierr_set(e, 400, "invalid_body", "resourceSpans",
                           "the body must be an ExportTraceServiceRequest with a resourceSpans array");
    size_t nrs = rss ? json_object_array_length(rss) : 0;
    for (size_t r = 0; r < nrs && rc == CM_OK; r++) {
        json_object *rs = json_object_array_get_idx(rss, r);
        value service = {V_NONE, NULL, 0, 0};
        json_attrs(member(rs, "resource", json_type_object), NULL, &service);
        json_object *sss = member(rs, "scopeSpans", json_type_array);
        size_t nss = sss ? json_object_array_length(sss) : 0;
        for (size_t s = 0; s < nss && rc == CM_OK; s++) {
            json_object *spans = member(json_object_array_get_idx(sss, s), "spans", json_type_array);
            size_t nsp = spans ? json_object_array_length(spans) : 0;
            for (size_t i = 0; i < nsp && rc == CM_OK; i++) {
                json_object *sp = json_object_array_get_idx(spans, i);
                facts f;
                memset(&f, 0, sizeof f);
                json_attrs(sp, &f, NULL);
                char trace[33], span[17], parent[17];
                json_id(sp, "traceId", 16, trace);
                json_id(sp, "spanId", 8, span);
                json_id(sp, "parentSpanId", 8, parent);
                rc = add_span(b, &f, service.kind == V_STR ? &service : NULL, trace, span, parent,
                              json_nanos(sp, "startTimeUnixNano"), json_nanos(sp, "endTimeUnixNano"), e);
            }
        }
    }
    json_object_put(root);
    return rc;
}

/* ---- OTLP protobuf ---- */

static value pb_value(const Otlp__AnyValue *av, char *numtext, size_t numsz)
{
    value v = {V_NONE, NULL, 0, 0};
    if (!av) return v;
    switch (av->value_case) {
    case OTLP__ANY_VALUE__VALUE_STRING_VALUE:
        v.kind = V_STR;
        v.s = av->string_value;
        v.len = strlen(av->string_value);
        break;
    case OTLP__ANY_VALUE__VALUE_INT_VALUE:
        v.kind = V_INT;
        v.i = av->int_value;
        break;
    case OTLP__ANY_VALUE__VALUE_DOUBLE_VALUE:
        /* 17 digits give the double back exactly; the money parser then
         * rounds it to nano-dollars, so 0.1 is 0.1. */
        v.kind = V_DOUBLE;
        v.len = (size_t)snprintf(numtext, numsz, "%.17g", av->double_value);
        v.s = numtext;
        break;
    default: break;
    }
    return v;
}

static void pb_attrs(Otlp__KeyValue **kvs, size_t n, facts *f, value *service)
{
    for (size_t i = 0; i < n; i++) {
        char numtext[40];
        value v = pb_value(kvs[i]->value, numtext, sizeof numtext);
        if (service && strcmp(kvs[i]->key, "service.name") == 0 && v.kind == V_STR) *service = v;
        if (f) take_attr(f, kvs[i]->key, &v);
    }
}

static void pb_id(ProtobufCBinaryData d, size_t bytes, char *out)
{
    out[0] = '\0';
    if (d.len == bytes) hex(d.data, bytes, out);
}

static int decode_protobuf(const char *body, size_t len, batch *b, cm_apierr *e)
{
    Otlp__ExportTraceServiceRequest *req =
        otlp__export_trace_service_request__unpack(NULL, len, (const uint8_t *)body);
    if (!req) return cm_apierr_set(e, 400, "invalid_body", NULL, "the body is not an ExportTraceServiceRequest");
    int rc = CM_OK;
    for (size_t r = 0; r < req->n_resource_spans && rc == CM_OK; r++) {
        const Otlp__ResourceSpans *rs = req->resource_spans[r];
        value service = {V_NONE, NULL, 0, 0};
        if (rs->resource) pb_attrs(rs->resource->attributes, rs->resource->n_attributes, NULL, &service);
        for (size_t s = 0; s < rs->n_scope_spans && rc == CM_OK; s++) {
            const Otlp__ScopeSpans *ss = rs->scope_spans[s];
            for (size_t i = 0; i < ss->n_spans && rc == CM_OK; i++) {
                const Otlp__Span *sp = ss->spans[i];
                facts f;
                memset(&f, 0, sizeof f);
                pb_attrs(sp->attributes, sp->n_attributes, &f, NULL);
                char trace[33], span[17], parent[17];
                pb_id(sp->trace_id, 16, trace);
                pb_id(sp->span_id, 8, span);
                pb_id(sp->parent_span_id, 8, parent);
                rc = add_span(b, &f, service.kind == V_STR ? &service : NULL, trace, span, parent,
                              sp->start_time_unix_nano, sp->end_time_unix_nano, e);
            }
        }
    }
    otlp__export_trace_service_request__free_unpacked(req, NULL);
    return rc;
}

/* ---- the request and its answer ---- */

int cm_otlp_decode(const char *content_type, const char *body, size_t len, int64_t now, cm_hb **hbs, size_t *n,
                   cm_otlp_stats *st, cm_apierr *e)
{
    memset(st, 0, sizeof *st);
    *hbs = NULL;
    *n = 0;
    st->protobuf = cm_codec_media_is(content_type, "application/x-protobuf");
    if (!st->protobuf && !cm_codec_media_is(content_type, "application/json"))
        return cm_apierr_set(e, 415, "unsupported_media_type", "Content-Type",
                             "Content-Type must be application/json or application/x-protobuf");
    batch b = {calloc(CM_BATCH_MAX, sizeof(cm_hb)), 0, now, st};
    if (!b.hbs) return cm_apierr_set(e, 500, "internal", NULL, "out of memory");
    int rc = st->protobuf ? decode_protobuf(body, len, &b, e) : decode_json(body, len, &b, e);
    if (rc != CM_OK || b.n == 0) {
        free(b.hbs);
        return rc;
    }
    cm_hb *fit = realloc(b.hbs, b.n * sizeof *fit);
    *hbs = fit ? fit : b.hbs;
    *n = b.n;
    return CM_OK;
}

static _Atomic unsigned long long ignored_total[CM_IGNORED_KINDS];

void cm_otlp_count_ignored(cm_ignored_kind kind, size_t n)
{
    atomic_fetch_add(&ignored_total[kind], n);
}

unsigned long long cm_otlp_ignored(cm_ignored_kind kind)
{
    return atomic_load(&ignored_total[kind]);
}

/* protobuf-c packs through this sink straight into a cm_buf, whose
 * allocation failure stays sticky as for any other body. */
typedef struct {
    ProtobufCBuffer base;
    cm_buf *out;
} buf_sink;

static void sink_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
    cm_buf_add(((buf_sink *)b)->out, (const char *)data, len);
}

static void add_packed(const ProtobufCMessage *msg, cm_buf *out)
{
    buf_sink sink = {{sink_append}, out};
    protobuf_c_message_pack_to_buffer(msg, &sink.base);
}

const char *cm_otlp_reply(const cm_otlp_stats *st, cm_buf *out)
{
    if (!st->protobuf) {
        if (st->rejected == 0) {
            cm_buf_adds(out, "{}");
        } else {
            cm_buf_addf(out, "{\"partialSuccess\":{\"rejectedSpans\":\"%zu\",\"errorMessage\":", st->rejected);
            cm_buf_add_jstr(out, st->why);
            cm_buf_adds(out, "}}");
        }
        return "application/json";
    }
    Otlp__ExportTracePartialSuccess ps = OTLP__EXPORT_TRACE_PARTIAL_SUCCESS__INIT;
    Otlp__ExportTraceServiceResponse resp = OTLP__EXPORT_TRACE_SERVICE_RESPONSE__INIT;
    if (st->rejected) {
        ps.rejected_spans = (int64_t)st->rejected;
        ps.error_message = (char *)st->why;
        resp.partial_success = &ps;
    }
    add_packed(&resp.base, out);
    return "application/x-protobuf";
}

/* ---- error bodies: google.rpc.Status ---- */

cm_error_form cm_otlp_error_form(const char *content_type)
{
    return content_type && cm_codec_media_is(content_type, "application/x-protobuf") ? CM_ERRORS_OTLP_PROTOBUF
                                                                                      : CM_ERRORS_OTLP_JSON;
}

/* The google.rpc.Code an HTTP status stands for (OTLP clients go by the
 * HTTP status, and may only record this one). */
static int32_t rpc_code(int status)
{
    switch (status) {
    case 400: case 415: return 3;  /* INVALID_ARGUMENT */
    case 401: return 16;           /* UNAUTHENTICATED */
    case 403: return 7;            /* PERMISSION_DENIED */
    case 404: return 5;            /* NOT_FOUND */
    case 409: return 10;           /* ABORTED */
    case 413: case 429: return 8;  /* RESOURCE_EXHAUSTED */
    case 422: return 9;            /* FAILED_PRECONDITION */
    case 503: return 14;           /* UNAVAILABLE */
    case 500: return 13;           /* INTERNAL */
    default: return 2;             /* UNKNOWN */
    }
}

#define BAD_REQUEST_TYPE "type.googleapis.com/google.rpc.BadRequest"

static void add_status_protobuf(int32_t code, const char *field, const char *message, cm_buf *out)
{
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    st.code = code;
    st.message = (char *)message;
    Google__Rpc__BadRequest__FieldViolation fv = GOOGLE__RPC__BAD_REQUEST__FIELD_VIOLATION__INIT;
    Google__Rpc__BadRequest__FieldViolation *fvs[] = {&fv};
    Google__Rpc__BadRequest br = GOOGLE__RPC__BAD_REQUEST__INIT;
    Google__Rpc__Any any = GOOGLE__RPC__ANY__INIT;
    Google__Rpc__Any *details[] = {&any};
    cm_buf packed;
    cm_buf_init(&packed);
    if (field) {
        fv.field = (char *)field;
        fv.description = (char *)message;
        br.n_field_violations = 1;
        br.field_violations = fvs;
        add_packed(&br.base, &packed);
        any.type_url = (char *)BAD_REQUEST_TYPE;
        any.value.len = packed.len;
        any.value.data = (uint8_t *)packed.data;
        st.n_details = 1;
        st.details = details;
    }
    if (packed.failed) out->failed = 1;
    add_packed(&st.base, out);
    cm_buf_free(&packed);
}

const char *cm_otlp_error(cm_error_form form, int status, const char *code, const char *field, const char *message,
                          cm_buf *out)
{
    if (field && !*field) field = NULL;
    if (form == CM_ERRORS_OTLP_PROTOBUF) {
        add_status_protobuf(rpc_code(status), field, message, out);
        return "application/x-protobuf";
    }
    cm_buf_addf(out, "{\"code\":%d,\"message\":", (int)rpc_code(status));
    cm_buf_add_jstr(out, message);
    if (field) {
        cm_buf_adds(out, ",\"details\":[{\"@type\":\"" BAD_REQUEST_TYPE "\",\"fieldViolations\":[{\"field\":");
        cm_buf_add_jstr(out, field);
        cm_buf_adds(out, ",\"description\":");
        cm_buf_add_jstr(out, message);
        cm_buf_adds(out, "}]}]");
    }
    cm_buf_adds(out, ",");
    cm_buf_add_error_member(out, code, message, field);
    cm_buf_adds(out, "}");
    return "application/json";
}
