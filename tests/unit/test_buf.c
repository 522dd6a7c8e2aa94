/* test_buf.c - the growable buffer, its JSON writers and the error body. */
#include "unit.h"

#include "buf.h"

#include <stdlib.h>

/* Runs one writer on a fresh buffer and returns its text (caller frees). */
static char *take(cm_buf *b)
{
    size_t len = 12345;
    char *s = cm_buf_take(b, &len);
    CHECK(s != NULL);
    if (s) CHECK_EQ_I64(len, strlen(s));
    return s;
}

static void check_jstr(const char *in, const char *want)
{
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_add_jstr(&b, in);
    char *s = take(&b);
    CHECK_STR(s, want);
    free(s);
}

static void jstr(void)
{
    check_jstr("", "\"\"");
    check_jstr("plain", "\"plain\"");
    check_jstr("a\"b", "\"a\\\"b\"");
    check_jstr("a\\b", "\"a\\\\b\"");
    check_jstr("\"\\\"", "\"\\\"\\\\\\\"\"");
    check_jstr("\n", "\"\\u000a\"");
    check_jstr("\t\r\b\f", "\"\\u0009\\u000d\\u0008\\u000c\"");
    check_jstr("\x01x\x1f", "\"\\u0001x\\u001f\"");
    check_jstr("\x1b[0m", "\"\\u001b[0m\"");
    /* 0x7f and 0x20 are legal in JSON strings as they are. */
    check_jstr(" \x7f", "\" \x7f\"");
    /* Slashes are not escaped; addresses stay readable. */
    check_jstr("agent://a/b/c", "\"agent://a/b/c\"");
    /* UTF-8 passes through unchanged. */
    check_jstr("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    /* Escapes at the start and end of the runs. */
    check_jstr("\"abc\"", "\"\\\"abc\\\"\"");
    {
        /* A long string forces the buffer to grow several times. */
        char in[3001], want[3003 + 3000];
        memset(in, 'x', 3000);
        in[3000] = '\0';
        for (int i = 0; i < 3000; i += 100) in[i] = '"';
        size_t k = 0;
        want[k++] = '"';
        for (int i = 0; i < 3000; i++) {
            if (in[i] == '"') want[k++] = '\\';
            want[k++] = in[i];
        }
        want[k++] = '"';
        want[k] = '\0';
        check_jstr(in, want);
    }
}

static void check_money(int64_t nanos, const char *want)
{
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_add_money(&b, nanos);
    char *s = take(&b);
    CHECK_STR(s, want);
    free(s);
}

static void check_money_text(const char *nanos, const char *want)
{
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "x");
    cm_buf_add_money_text(&b, nanos);
    char *s = take(&b);
    CHECK_STR(s, want);
    free(s);
}

static void check_time(int64_t t, const char *want)
{
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_add_jtime(&b, t);
    char *s = take(&b);
    CHECK_STR(s, want);
    free(s);
}

static void writers(void)
{
    check_money(0, "0");
    check_money(1, "0.000000001");
    check_money(100000000, "0.1");
    check_money(12470000000LL, "12.47");
    check_money(200000000000LL, "200");
    check_money(30000000, "0.03");
    check_money(-3500000000LL, "-3.5");
    check_money(1000000000000000LL, "1000000");
    check_money(INT64_MAX, "9223372036.854775807");
    check_money(INT64_MIN, "-9223372036.854775808");

    /* A numeric sum from PostgreSQL, past int64. */
    check_money_text("27670116110564327421", "x27670116110.564327421");
    check_money_text("30000000", "x0.03");
    {
        /* Text that is not a decimal integer spends the buffer. */
        cm_buf b;
        cm_buf_init(&b);
        cm_buf_add_money_text(&b, "12.5");
        CHECK(b.failed);
        CHECK(cm_buf_take(&b, NULL) == NULL);
    }

    check_time(0, "\"1970-01-01T00:00:00Z\"");
    check_time(1795342500, "\"2026-11-22T10:15:00Z\"");
    check_time(951782400, "\"2000-02-29T00:00:00Z\"");
    check_time(253402300799LL, "\"9999-12-31T23:59:59Z\"");

    /* Writers append after what is there. */
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{\"cost_usd\":");
    cm_buf_add_money(&b, 520000000);
    cm_buf_adds(&b, ",\"from\":");
    cm_buf_add_jtime(&b, 0);
    cm_buf_add(&b, "}xyz", 1);
    cm_buf_addf(&b, "%s%d", "", 7);
    char *s = take(&b);
    CHECK_STR(s, "{\"cost_usd\":0.52,\"from\":\"1970-01-01T00:00:00Z\"}7");
    free(s);
}

static void addf(void)
{
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_addf(&b, "%d-%s", 42, "x");
    /* Longer than the formatter's stack buffer. */
    char big[1000];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cm_buf_addf(&b, "[%s]", big);
    cm_buf_addf(&b, "%s", "");
    size_t len = 0;
    char *s = cm_buf_take(&b, &len);
    CHECK(s != NULL);
    if (s) {
        CHECK_EQ_I64(len, 4 + 2 + 999);
        CHECK_EQ_I64(strlen(s), len);
        CHECK(strncmp(s, "42-x[yyy", 8) == 0);
        CHECK(s[len - 1] == ']');
    }
    free(s);
}

static void error_body(void)
{
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_add_error(&b, "invalid_field", "heartbeats[3].metrics.cost_usd must be a number",
                     "heartbeats[3].metrics.cost_usd");
    char *s = take(&b);
    CHECK_STR(s, "{\"error\":{\"code\":\"invalid_field\",\"message\":"
                 "\"heartbeats[3].metrics.cost_usd must be a number\","
                 "\"field\":\"heartbeats[3].metrics.cost_usd\"}}");
    free(s);

    cm_buf_init(&b);
    cm_buf_add_error(&b, "not_found", "no such path", NULL);
    s = take(&b);
    CHECK_STR(s, "{\"error\":{\"code\":\"not_found\",\"message\":\"no such path\"}}");
    free(s);

    cm_buf_init(&b);
    cm_buf_add_error(&b, "not_found", "no such path", "");
    s = take(&b);
    CHECK_STR(s, "{\"error\":{\"code\":\"not_found\",\"message\":\"no such path\"}}");
    free(s);

    /* Message and field text is escaped. */
    cm_buf_init(&b);
    cm_buf_add_error(&b, "invalid_field", "say \"hi\"\n", "a\\b");
    s = take(&b);
    CHECK_STR(s, "{\"error\":{\"code\":\"invalid_field\",\"message\":\"say \\\"hi\\\"\\u000a\","
                 "\"field\":\"a\\\\b\"}}");
    free(s);
}

static void ownership(void)
{
    cm_buf b;
    size_t len = 99;

    /* take on an untouched buffer: an empty, owned string. */
    cm_buf_init(&b);
    char *s = cm_buf_take(&b, &len);
    CHECK(s != NULL);
    CHECK_EQ_I64(len, 0);
    if (s) CHECK_STR(s, "");
    free(s);

    /* take hands over the data and resets the buffer for reuse. */
    cm_buf_init(&b);
    cm_buf_adds(&b, "hello");
    char *first = cm_buf_take(&b, NULL);
    CHECK_STR(first, "hello");
    CHECK(b.data == NULL);
    CHECK_EQ_I64(b.len, 0);
    CHECK_EQ_I64(b.cap, 0);
    CHECK_EQ_I64(b.failed, 0);
    cm_buf_adds(&b, "again");
    char *second = cm_buf_take(&b, &len);
    CHECK_STR(second, "again");
    CHECK_EQ_I64(len, 5);
    CHECK(first != second);
    /* The first text is still ours and intact. */
    CHECK_STR(first, "hello");
    free(first);
    free(second);

    /* Empty adds keep it NUL-terminated; free after adds, and twice. */
    cm_buf_init(&b);
    cm_buf_add(&b, "", 0);
    cm_buf_adds(&b, "x");
    CHECK(b.data != NULL && b.data[b.len] == '\0');
    cm_buf_free(&b);
    CHECK(b.data == NULL);
    cm_buf_free(&b);

    /* A failure is sticky: later appends are no-ops, take gives NULL and
     * releases what was held. */
    cm_buf_init(&b);
    cm_buf_adds(&b, "partial");
    b.failed = 1;
    cm_buf_adds(&b, "more");
    cm_buf_addf(&b, "%d", 5);
    cm_buf_add_jstr(&b, "s");
    CHECK_EQ_I64(b.len, 7);
    len = 42;
    CHECK(cm_buf_take(&b, &len) == NULL);
    CHECK(b.data == NULL);
    CHECK_EQ_I64(b.failed, 0);
}

/* cm_int_text against printf's "%lld", at the edges of each length. */
static void int_text(void)
{
    int64_t v[] = {0, 1, -1, 9, 10, -10, 99, 100, 123456789, -987654321, INT64_MAX, INT64_MIN, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char got[CM_INT_TEXT_MAX], want[32];
        size_t n = cm_int_text(v[i], got);
        snprintf(want, sizeof want, "%lld", (long long)v[i]);
        CHECK_STR(got, want);
        CHECK_EQ_I64(n, strlen(want));
    }
    for (int64_t p = 1; p <= INT64_MAX / 10; p *= 10) {
        int64_t around[] = {p - 1, p, p + 1, -p};
        for (int k = 0; k < 4; k++) {
            char got[CM_INT_TEXT_MAX], want[32];
            cm_int_text(around[k], got);
            snprintf(want, sizeof want, "%lld", (long long)around[k]);
            CHECK_STR(got, want);
        }
    }
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{");
    cm_buf_add_int(&b, -42);
    cm_buf_add_int(&b, INT64_MAX);
    char *s = take(&b);
    CHECK_STR(s, "{-429223372036854775807");
    free(s);
}

void test_buf(void)
{
    int_text();
    jstr();
    writers();
    addf();
    error_body();
    ownership();
}
