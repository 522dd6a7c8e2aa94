/* test_hbrow.c - a heartbeat as a queue entry and back (decode(encode(h)) is
 * h; decode refuses what encode never makes, leaving its output zeroed), a
 * group's duplicate pairs, and the column arrays the statements read. */
#include "unit.h"

#include "auth.h"
#include "error.h"
#include "hbrow.h"

#include <float.h>
#include <stdlib.h>

/* Field by field, so a failure names the field; then the whole struct
 * (both sides start zeroed), so a field added to cm_hb but not here is
 * still compared. The latency is compared bit for bit: -0 and the 17th
 * digit count. */
static void check_same(const cm_hb *a, const cm_hb *b)
{
#define S(m) CHECK_STR(a->m, b->m)
#define I(m) CHECK_EQ_I64(a->m, b->m)
    S(agent); S(id); S(intent_id); S(run_id); S(session_id); S(workflow); S(parent_intent_id);
    S(customer); S(status); S(model);
    I(ts); I(cost_nanos); I(has_cost); I(priced); I(priced_nanos); I(revenue_nanos); I(refund_nanos);
    I(external_nanos); I(fees_nanos); I(tokens_in); I(tokens_out); I(tokens_cached); I(tokens_cache_write);
    I(llm_calls); I(tool_calls); I(compute_ms); I(intents_total); I(intents_succeeded); I(intents_failed);
    I(has_latency);
#undef S
#undef I
    CHECK(memcmp(&a->avg_latency_ms, &b->avg_latency_ms, sizeof a->avg_latency_ms) == 0);
    CHECK(memcmp(a, b, sizeof *a) == 0);
}

static void round_trip(const cm_hb *h)
{
    cm_buf b;
    cm_buf_init(&b);
    cm_hbrow_encode(h, &b);
    CHECK(!b.failed);
    cm_hb back;
    memset(&back, 0xab, sizeof back);
    int rc = cm_hbrow_decode(b.data, b.len, &back);
    CHECK_EQ_I64(rc, CM_OK);
    if (rc != CM_OK) fprintf(stderr, "  entry: %s\n", b.data);
    check_same(h, &back);
    cm_buf_free(&b);
}

/* dst filled to its last byte: prefix, then 'x'. */
static void fill(char *dst, size_t size, const char *prefix)
{
    size_t n = strlen(prefix);
    memcpy(dst, prefix, n);
    memset(dst + n, 'x', size - 1 - n);
    dst[size - 1] = '\0';
}
#define FILL(m, prefix) fill(h->m, sizeof h->m, prefix)

/* Every field set: strings at their longest, with bytes JSON escapes and
 * a two-byte character; negatives and int64 extremes (the entry codec
 * takes any int64, whatever the request codec allows), but one: json-c
 * reads a number past int64 as INT64_MAX or INT64_MIN, so a strict
 * decoder may have to refuse those two. */
static void full(cm_hb *h)
{
    memset(h, 0, sizeof *h);
    FILL(agent, "agent://acme/prod/");
    FILL(id, "id\"\\\x01\x1f\xc3\xa9/");
    FILL(intent_id, "in-");
    FILL(run_id, "ru-");
    FILL(session_id, "se-");
    FILL(workflow, "wf-");
    FILL(parent_intent_id, "pi-");
    FILL(customer, "cu-");
    FILL(status, "st-");
    FILL(model, "mo-");
    h->ts = INT64_MIN + 1;
    h->cost_nanos = INT64_MAX - 1;
    h->has_cost = true;
    h->priced = true;
    h->priced_nanos = 0;
    h->revenue_nanos = -1;
    h->refund_nanos = INT64_MIN + 1;
    h->external_nanos = 1;
    h->fees_nanos = INT64_MAX - 1;
    h->tokens_in = INT64_MAX - 1;
    h->tokens_out = -2;
    h->tokens_cached = INT64_MIN + 1;
    h->tokens_cache_write = 3;
    h->llm_calls = 1000000000000000000;
    h->tool_calls = -1000000000000000000;
    h->compute_ms = -4;
    h->intents_total = 5;
    h->intents_succeeded = -6;
    h->intents_failed = 7;
    h->has_latency = true;
    h->avg_latency_ms = 0.1 + 0.2; /* 0.30000000000000004: 17 digits */
}

static void encode_decode(void)
{
    cm_hb h;
    full(&h);
    CHECK_EQ_I64(strlen(h.agent), CM_ADDR_MAX - 1);
    CHECK_EQ_I64(strlen(h.status), CM_STATUS_MAX);
    round_trip(&h);

    /* Latencies: ones that need all 17 digits, the extremes of a normal
     * double, a negative, -0. */
    static const double lats[] = {0.1 + 0.2, 1.0000000000000002, 1e12, 123456.78901234567,
                                  DBL_MIN, DBL_MAX, -1.5, -0.0, 0.0};
    for (size_t i = 0; i < sizeof lats / sizeof lats[0]; i++) {
        h.avg_latency_ms = lats[i];
        round_trip(&h);
    }
    /* Subnormal latencies: the request codec takes any number from 0 to
     * 1e12, so an entry may carry one. strtod reads them back exactly but
     * says ERANGE. */
    h.avg_latency_ms = 1e-310;
    round_trip(&h);
    h.avg_latency_ms = DBL_TRUE_MIN;
    round_trip(&h);
    /* Price 0 and no client cost, ts 0, each present only by its flag. */
    h.has_cost = false;
    h.ts = 0;
    round_trip(&h);
    h.priced = false;
    h.priced_nanos = 0;
    h.has_latency = false;
    h.avg_latency_ms = 0;
    round_trip(&h);

    /* Every field at its default: only ts is written. */
    memset(&h, 0, sizeof h);
    cm_buf b;
    cm_buf_init(&b);
    cm_hbrow_encode(&h, &b);
    CHECK_STR(b.data, "{\"ts\":0}");
    cm_buf_free(&b);
    round_trip(&h);

    /* The text of an entry is read by later releases from a queue that
     * outlives the process: pinned. */
    snprintf(h.agent, sizeof h.agent, "agent://o/e/n");
    snprintf(h.id, sizeof h.id, "hb-1");
    h.ts = 1795342500;
    h.cost_nanos = 30000000;
    h.has_cost = true;
    h.priced = true;
    h.tokens_out = -1;
    h.has_latency = true;
    h.avg_latency_ms = 12.5;
    cm_buf_init(&b);
    cm_hbrow_encode(&h, &b);
    CHECK_STR(b.data, "{\"a\":\"agent://o/e/n\",\"id\":\"hb-1\",\"ts\":1795342500,\"c\":30000000,"
                      "\"to\":-1,\"hc\":true,\"pr\":0,\"la\":\"12.5\"}");
    cm_buf_free(&b);
    round_trip(&h);
}

/* decode of text[0..len) is CM_EINVAL and leaves *out all zero. */
static void refused_n(const char *text, size_t len)
{
    static const cm_hb zero;
    cm_hb out;
    memset(&out, 0xab, sizeof out);
    int rc = cm_hbrow_decode(text, len, &out);
    CHECK_EQ_I64(rc, CM_EINVAL);
    if (rc != CM_EINVAL) fprintf(stderr, "  decoded: %.*s\n", (int)len, text);
    CHECK(memcmp(&out, &zero, sizeof out) == 0);
}
#define REFUSED(lit) refused_n(lit, sizeof lit - 1)

static void refused(const char *text)
{
    refused_n(text, strlen(text));
}

/* {"ts":1,"<name>":"x..."} with n bytes of x: refused one past max. */
static void string_bounds(void)
{
    static const struct {
        const char *name;
        size_t max;
    } strs[] = {{"a", CM_ADDR_MAX - 1}, {"id", CM_ID_MAX}, {"in", CM_ID_MAX}, {"ru", CM_ID_MAX},
                {"se", CM_ID_MAX},      {"wf", CM_ID_MAX}, {"pi", CM_ID_MAX}, {"cu", CM_ID_MAX},
                {"st", CM_STATUS_MAX},  {"mo", CM_MODEL_MAX}};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        char text[CM_ADDR_MAX + 32], x[CM_ADDR_MAX + 1];
        memset(x, 'x', strs[i].max + 1);
        x[strs[i].max + 1] = '\0';
        snprintf(text, sizeof text, "{\"ts\":1,\"%s\":\"%s\"}", strs[i].name, x);
        refused(text);
        /* At max it is read, whole. */
        x[strs[i].max] = '\0';
        snprintf(text, sizeof text, "{\"ts\":1,\"%s\":\"%s\"}", strs[i].name, x);
        cm_hb h;
        CHECK_EQ_I64(cm_hbrow_decode(text, strlen(text), &h), CM_OK);
        CHECK(memmem(&h, sizeof h, x, strs[i].max + 1) != NULL);
        /* Empty: encode leaves an empty string out. */
        snprintf(text, sizeof text, "{\"ts\":1,\"%s\":\"\"}", strs[i].name);
        refused(text);
    }
}

static void decode_refuses(void)
{
    /* Not JSON, or more than one value. */
    refused_n("", 0);
    REFUSED("{");
    REFUSED("{\"ts\":1");
    REFUSED("{\"ts\":1}x");
    REFUSED("{\"ts\":1}{\"ts\":1}");
    REFUSED("{\"ts\":1},");
    REFUSED("{'ts':1}");
    /* Only len bytes are read: what follows them is not the entry's. */
    cm_hb h;
    CHECK_EQ_I64(cm_hbrow_decode("{\"ts\":7}garbage", 8, &h), CM_OK);
    CHECK_EQ_I64(h.ts, 7);
    refused_n("{\"ts\":7}", 7);

    /* Unknown or misspelt keys, and the struct's own names. */
    REFUSED("{\"ts\":1,\"zz\":1}");
    REFUSED("{\"ts\":1,\"A\":\"agent://o/e/n\"}");
    REFUSED("{\"ts\":1,\"cost_nanos\":1}");
    REFUSED("{\"ts\":1,\"\":1}");

    /* ts is required. */
    REFUSED("{}");
    REFUSED("{\"a\":\"agent://o/e/n\",\"c\":5}");
    REFUSED("{\"hc\":true,\"pr\":0,\"la\":\"1\"}");

    /* A wrong type for each kind. An int field: */
    REFUSED("{\"ts\":\"1\"}");
    REFUSED("{\"ts\":1,\"c\":\"5\"}");
    REFUSED("{\"ts\":1,\"c\":5.0}");
    REFUSED("{\"ts\":1,\"c\":5e0}");
    REFUSED("{\"ts\":1,\"c\":true}");
    REFUSED("{\"ts\":1,\"c\":null}");
    REFUSED("{\"ts\":1,\"pr\":\"0\"}");
    REFUSED("{\"ts\":1,\"pr\":null}");
    /* A string field: */
    REFUSED("{\"ts\":1,\"a\":5}");
    REFUSED("{\"ts\":1,\"id\":null}");
    REFUSED("{\"ts\":1,\"st\":[\"ok\"]}");
    REFUSED("{\"ts\":1,\"mo\":{}}");
    REFUSED("{\"ts\":1,\"cu\":false}");
    /* The flag: present only as true. */
    REFUSED("{\"ts\":1,\"hc\":false}");
    REFUSED("{\"ts\":1,\"hc\":1}");
    REFUSED("{\"ts\":1,\"hc\":\"true\"}");
    REFUSED("{\"ts\":1,\"hc\":null}");
    /* The latency: text of a number, nothing else. */
    REFUSED("{\"ts\":1,\"la\":1.5}");
    REFUSED("{\"ts\":1,\"la\":\"\"}");
    REFUSED("{\"ts\":1,\"la\":\"1.5ms\"}");
    REFUSED("{\"ts\":1,\"la\":\"fast\"}");
    REFUSED("{\"ts\":1,\"la\":\"1e999\"}");
    /* A failure after fields were read still leaves *out zeroed. */
    REFUSED("{\"a\":\"agent://o/e/n\",\"ts\":1,\"c\":5,\"hc\":true,\"la\":\"2\",\"id\":7}");

    string_bounds();

    /* Strings are UTF-8 without NUL: PostgreSQL refuses anything else,
     * and encode writes U+FFFD for bytes that are not UTF-8, so such an
     * entry would not read back as itself. */
    REFUSED("{\"ts\":1,\"a\":\"\xff\"}");
    REFUSED("{\"ts\":1,\"a\":\"x\xc3\"}");
    REFUSED("{\"ts\":1,\"a\":\"\xc0\xaf\"}");
    REFUSED("{\"ts\":1,\"a\":\"\xed\xa0\x80\"}");
    REFUSED("{\"ts\":1,\"a\":\"\xf4\x90\x80\x80\"}");
    REFUSED("{\"ts\":1,\"id\":\"x\\u0000y\"}");
    REFUSED("{\"ts\":1,\"id\":\"\\u0000\"}");
    REFUSED("{\"ts\":1,\"la\":\"1\\u00002\"}");
    REFUSED("{\"ts\":1,\"id\":\"x\0y\"}");

    /* An int past int64: json-c saturates it without a word (errno is
     * not set), so it must not read as INT64_MAX or INT64_MIN. */
    REFUSED("{\"ts\":9223372036854775808}");
    REFUSED("{\"ts\":1,\"c\":18446744073709551616}");
    REFUSED("{\"ts\":-9223372036854775809}");
    REFUSED("{\"ts\":1,\"pr\":-99999999999999999999}");

    /* JSON that is not an object (last: today these crash). */
    REFUSED("1");
    REFUSED("[]");
    REFUSED("\"\"");
    REFUSED("true");
    REFUSED("null");
}

/* ---- duplicates ---- */

static cm_hb *row(cm_hb *h, const char *agent, const char *id)
{
    memset(h, 0, sizeof *h);
    snprintf(h->agent, sizeof h->agent, "%s", agent);
    snprintf(h->id, sizeof h->id, "%s", id);
    return h;
}

static void mark_dups(void)
{
    enum { N = 10 };
    cm_hb rows[N];
    const cm_hb *hbs[N];
    for (int i = 0; i < N; i++) hbs[i] = &rows[i];
    row(&rows[0], "agent://o/e/a", "1");
    row(&rows[1], "agent://o/e/a", "2");
    row(&rows[2], "agent://o/e/b", "1");   /* same id, another agent */
    row(&rows[3], "agent://o/e/a", "1");   /* duplicate of 0 */
    row(&rows[4], "agent://o/e/a", "");    /* no id: never a duplicate */
    row(&rows[5], "agent://o/e/a", "");
    row(&rows[6], "agent://o/e/b", "1");   /* duplicate of 2 */
    row(&rows[7], "agent://o/e/a", "1");   /* duplicate of 0 again */
    row(&rows[8], "agent://o/e/ab", "c");  /* the pairs are not concatenated */
    row(&rows[9], "agent://o/e/a", "bc");
    unsigned char dup[N + 1];
    memset(dup, 7, sizeof dup);
    CHECK_EQ_I64(cm_hbrow_mark_dups(hbs, N, dup), CM_OK);
    static const unsigned char want[N] = {0, 0, 0, 1, 0, 0, 1, 1, 0, 0};
    for (int i = 0; i < N; i++) CHECK_EQ_I64(dup[i], want[i]);
    CHECK_EQ_I64(dup[N], 7);

    /* The first in input order stays, though the later one sorts first by
     * every other field. */
    row(&rows[0], "agent://o/e/a", "1");
    snprintf(rows[0].intent_id, sizeof rows[0].intent_id, "z");
    rows[0].ts = 2000000000;
    rows[0].cost_nanos = 9;
    row(&rows[1], "agent://o/e/a", "1");
    snprintf(rows[1].intent_id, sizeof rows[1].intent_id, "a");
    rows[1].ts = 1;
    rows[1].cost_nanos = 1;
    CHECK_EQ_I64(cm_hbrow_mark_dups(hbs, 2, dup), CM_OK);
    CHECK_EQ_I64(dup[0], 0);
    CHECK_EQ_I64(dup[1], 1);
    /* Reversed, the other one stays. */
    const cm_hb *rev[2] = {&rows[1], &rows[0]};
    CHECK_EQ_I64(cm_hbrow_mark_dups(rev, 2, dup), CM_OK);
    CHECK_EQ_I64(dup[0], 0);
    CHECK_EQ_I64(dup[1], 1);

    /* Nothing to mark: dup untouched past n. */
    memset(dup, 7, sizeof dup);
    CHECK_EQ_I64(cm_hbrow_mark_dups(hbs, 0, dup), CM_OK);
    CHECK_EQ_I64(dup[0], 7);

    /* A bigger group against the definition: a row is a duplicate when an
     * earlier row has its (agent, id). */
    enum { M = 600 };
    cm_hb *many = calloc(M, sizeof *many);
    const cm_hb **ptrs = calloc(M, sizeof *ptrs);
    unsigned char *got = malloc(M);
    CHECK(many && ptrs && got);
    if (!many || !ptrs || !got) goto out;
    uint32_t seed = 12345;
    for (int i = 0; i < M; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned r = seed >> 16;
        char agent[32], id[16];
        snprintf(agent, sizeof agent, "agent://o/e/n%u", r % 5);
        if (r % 11 == 0) id[0] = '\0';
        else snprintf(id, sizeof id, "%u", (r / 5) % 40);
        ptrs[i] = row(&many[i], agent, id);
    }
    CHECK_EQ_I64(cm_hbrow_mark_dups(ptrs, M, got), CM_OK);
    int marked = 0, wrong = 0;
    for (int i = 0; i < M; i++) {
        int earlier = 0;
        for (int j = 0; j < i && many[i].id[0] && !earlier; j++)
            earlier = strcmp(many[i].agent, many[j].agent) == 0 && strcmp(many[i].id, many[j].id) == 0;
        wrong += got[i] != earlier;
        marked += earlier;
    }
    CHECK_EQ_I64(wrong, 0);
    CHECK(marked > 0 && marked < M);
out:
    free(many);
    free(ptrs);
    free(got);
}

/* ---- the columns ---- */

static void columns(void)
{
    cm_hb rows[3];
    const cm_hb *hbs[3] = {&rows[0], &rows[1], &rows[2]};
    cm_hb *h = row(&rows[0], "agent://acme/prod/bot", "hb-1");
    snprintf(h->intent_id, sizeof h->intent_id, "i-1");
    snprintf(h->run_id, sizeof h->run_id, "a\"b\\c,{d}");
    snprintf(h->session_id, sizeof h->session_id, "s 1");
    snprintf(h->workflow, sizeof h->workflow, "NULL");
    snprintf(h->parent_intent_id, sizeof h->parent_intent_id, "p-1");
    snprintf(h->status, sizeof h->status, "ok");
    snprintf(h->model, sizeof h->model, "gpt-4o");
    snprintf(h->customer, sizeof h->customer, "c-1");
    h->ts = 1795342500;
    h->cost_nanos = 1, h->tokens_in = 2, h->tokens_out = 3, h->tokens_cached = 4, h->llm_calls = 5;
    h->tool_calls = 6, h->intents_total = 7, h->intents_succeeded = 8, h->intents_failed = 9;
    h->tokens_cache_write = 10, h->revenue_nanos = 11, h->refund_nanos = 12, h->external_nanos = 13;
    h->fees_nanos = 14, h->compute_ms = 15;
    h->has_latency = true;
    h->avg_latency_ms = 0.1 + 0.2;
    h->priced = true;
    h->priced_nanos = 0;
    /* Skipped: none of its values may show. */
    h = row(&rows[1], "agent://acme/prod/skipped", "hb-2");
    h->ts = h->cost_nanos = h->tokens_in = h->compute_ms = 99;
    h->has_latency = h->priced = true;
    /* No id, latency or price; the strings absent. */
    h = row(&rows[2], "agent://acme/prod/b2", "");
    h->ts = -1;
    h->cost_nanos = INT64_MIN, h->tokens_in = -2, h->tokens_out = -3, h->tokens_cached = -4;
    h->llm_calls = -5, h->tool_calls = -6, h->intents_total = -7, h->intents_succeeded = -8;
    h->intents_failed = -9, h->tokens_cache_write = -10, h->revenue_nanos = -11, h->refund_nanos = -12;
    h->external_nanos = -13, h->fees_nanos = -14, h->compute_ms = INT64_MAX;
    h->avg_latency_ms = 5; /* without has_latency: not sent */
    h->priced_nanos = 6;   /* without priced: not sent */

    /* The key is PostgreSQL's cm_hb_key of the pair (test_auth.c). */
    static const char *const want[CM_HBROW_COLS] = {
        "{\"agent://acme/prod/bot\",\"agent://acme/prod/b2\"}",
        "{\"hb-1\",NULL}",
        "{\"i-1\",NULL}",
        "{\"a\\\"b\\\\c,{d}\",NULL}",
        "{\"s 1\",NULL}",
        "{\"NULL\",NULL}",
        "{\"p-1\",NULL}",
        "{\"ok\",NULL}",
        "{1795342500,-1}",
        "{1,-9223372036854775808}",
        "{2,-2}",
        "{3,-3}",
        "{4,-4}",
        "{5,-5}",
        "{6,-6}",
        "{7,-7}",
        "{8,-8}",
        "{9,-9}",
        "{0.30000000000000004,NULL}",
        "{0,2}",
        "{\"gpt-4o\",NULL}",
        "{10,-10}",
        "{0,NULL}",
        "{\"c-1\",NULL}",
        "{11,-11}",
        "{12,-12}",
        "{13,-13}",
        "{14,-14}",
        "{3063921a2a74e2d30369c52755b6e847,NULL}",
        "{15,9223372036854775807}",
    };
    unsigned char skip[3] = {0, 1, 0};
    cm_buf cols[CM_HBROW_COLS];
    CHECK_EQ_I64(cm_hbrow_columns(hbs, skip, 3, cols), CM_OK);
    for (int c = 0; c < CM_HBROW_COLS; c++) {
        CHECK_STR(cols[c].data, want[c]);
        cm_buf_free(&cols[c]);
    }

    /* Without skip every row is there, idx its place. */
    CHECK_EQ_I64(cm_hbrow_columns(hbs, NULL, 3, cols), CM_OK);
    CHECK_STR(cols[0].data, "{\"agent://acme/prod/bot\",\"agent://acme/prod/skipped\",\"agent://acme/prod/b2\"}");
    CHECK_STR(cols[19].data, "{0,1,2}");
    for (int c = 0; c < CM_HBROW_COLS; c++) cm_buf_free(&cols[c]);

    /* No rows, or every row skipped: empty arrays. */
    CHECK_EQ_I64(cm_hbrow_columns(hbs, NULL, 0, cols), CM_OK);
    for (int c = 0; c < CM_HBROW_COLS; c++) {
        CHECK_STR(cols[c].data, "{}");
        cm_buf_free(&cols[c]);
    }
    memset(skip, 1, sizeof skip);
    CHECK_EQ_I64(cm_hbrow_columns(hbs, skip, 3, cols), CM_OK);
    for (int c = 0; c < CM_HBROW_COLS; c++) {
        CHECK_STR(cols[c].data, "{}");
        cm_buf_free(&cols[c]);
    }
}

/* Column col is sent as parameter cm_hbrow_param(col) + 1, and both
 * statements unnest that parameter as the array type the column's text
 * is. */
static void params(void)
{
    for (int c = 0; c < CM_HBROW_COLS; c++)
        CHECK_EQ_I64(cm_hbrow_param(c), c < 20 ? c : c + 2);
    CHECK_EQ_I64(cm_hbrow_param(CM_HBROW_COLS - 1), CM_HBROW_PARAMS - 1);
    for (int c = 0; c < CM_HBROW_COLS; c++) {
        const char *type = "bigint";
        if (c <= 7 || c == 20 || c == 23 || c == 28) type = "text";
        else if (c == 18) type = "float8";
        else if (c == 19) type = "int";
        char want[32];
        snprintf(want, sizeof want, "$%d::%s[]", cm_hbrow_param(c) + 1, type);
        CHECK(strstr(cm_hbrow_group_sql, want) != NULL);
        CHECK(strstr(cm_hbrow_persist_sql, want) != NULL);
    }
}

void test_hbrow(void)
{
    encode_decode();
    mark_dups();
    columns();
    params();
    decode_refuses();
}
