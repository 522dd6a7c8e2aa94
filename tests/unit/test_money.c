/* test_money.c - exact parsing, half-even rounding and shortest formatting
 * of nano-dollar amounts. */
#include "unit.h"

#include "error.h"
#include "money.h"

/* Parses a C string; the value is -777 when parse left *out alone. */
static int parse(const char *s, int64_t *v)
{
    *v = -777;
    return cm_money_parse(s, strlen(s), v);
}

#define CHECK_PARSE(text, want)                                              \
    do {                                                                     \
        int64_t v_;                                                          \
        CHECK_EQ_I64(parse(text, &v_), CM_OK);                               \
        CHECK_EQ_I64(v_, want);                                              \
    } while (0)

#define CHECK_PARSE_RC(text, rc)                                             \
    do {                                                                     \
        int64_t v_;                                                          \
        CHECK_EQ_I64(parse(text, &v_), rc);                                  \
        CHECK_EQ_I64(v_, -777);                                              \
    } while (0)

static void parse_plain(void)
{
    CHECK_PARSE("0", 0);
    CHECK_PARSE("1", 1000000000);
    CHECK_PARSE("12.47", 12470000000);
    CHECK_PARSE("0.1", 100000000);
    CHECK_PARSE("0.000000001", 1);
    CHECK_PARSE("0.123456789", 123456789);
    CHECK_PARSE("200", 200000000000);
    CHECK_PARSE("3.50", 3500000000);
    CHECK_PARSE("0.0", 0);
    CHECK_PARSE("0.000000000", 0);
    CHECK_PARSE("-0", 0);
    CHECK_PARSE("-0.0", 0);
    CHECK_PARSE("-0e5", 0);
    CHECK_PARSE("0e400", 0);
    CHECK_PARSE("0.0000000000000000000000000000000000", 0);
    CHECK_PARSE("10", 10000000000);
    CHECK_PARSE("999999.999999999", 999999999999999);
}

static void parse_exponent(void)
{
    CHECK_PARSE("1e-10", 0);
    CHECK_PARSE("1e-9", 1);
    CHECK_PARSE("1E-9", 1);
    CHECK_PARSE("1.5E+3", 1500000000000);
    CHECK_PARSE("1.5e3", 1500000000000);
    CHECK_PARSE("0.1e1", 1000000000);
    CHECK_PARSE("0.1E+1", 1000000000);
    CHECK_PARSE("123e-2", 1230000000);
    CHECK_PARSE("5e-10", 0);   /* exactly half, 0 is even */
    CHECK_PARSE("15e-10", 2);  /* exactly half, up to even 2 */
    CHECK_PARSE("25e-10", 2);  /* exactly half, down to even 2 */
    CHECK_PARSE("1e6", 1000000000000000);
    CHECK_PARSE("1E6", CM_MONEY_MAX);
    CHECK_PARSE("0.000001e12", CM_MONEY_MAX);
    CHECK_PARSE("1000000000000000e-9", CM_MONEY_MAX);
    CHECK_PARSE("1e-400", 0);
    CHECK_PARSE("1e-99999999999999999999999999", 0);
    CHECK_PARSE("-1e-400", 0);
    CHECK_PARSE("1e00000000000000000000000000", 1000000000);
    CHECK_PARSE("1e+0", 1000000000);
    CHECK_PARSE("1e-0", 1000000000);
    CHECK_PARSE_RC("1e400", CM_ERANGE);
    CHECK_PARSE_RC("1e99999999999999999999999999", CM_ERANGE);
    CHECK_PARSE_RC("1e7", CM_ERANGE);
    CHECK_PARSE_RC("1e16", CM_ERANGE);
    CHECK_PARSE_RC("1e19", CM_ERANGE);
    CHECK_PARSE_RC("-1e400", CM_ERANGE);
}

static void parse_rounding(void)
{
    CHECK_PARSE("0.0000000005", 0);
    CHECK_PARSE("0.0000000015", 2);
    CHECK_PARSE("0.0000000025", 2);
    CHECK_PARSE("0.0000000035", 4);
    CHECK_PARSE("0.00000000250000001", 3);
    CHECK_PARSE("0.00000000050000000000000000001", 1);
    CHECK_PARSE("0.0000000004999999999999", 0);
    CHECK_PARSE("0.0000000006", 1);
    CHECK_PARSE("0.00000000149", 1);
    CHECK_PARSE("0.1000000000000000000000001", 100000000);
    CHECK_PARSE("0.1000000004999999999999999", 100000000);
    CHECK_PARSE("0.1000000005000000000000000", 100000000);
    CHECK_PARSE("0.1000000015000000000000000", 100000002);
    CHECK_PARSE("1.9999999995", 2000000000);   /* carry through every digit */
    CHECK_PARSE("9.9999999995", 10000000000);
    CHECK_PARSE("0.00000000000000000001", 0);
    CHECK_PARSE("999999.9999999994", 999999999999999);
    CHECK_PARSE("999999.9999999995", CM_MONEY_MAX); /* rounds up onto the max */
    CHECK_PARSE("1000000.0000000004", CM_MONEY_MAX);
    CHECK_PARSE("1000000.0000000005", CM_MONEY_MAX); /* half, max is even */
    CHECK_PARSE_RC("1000000.0000000006", CM_ERANGE);
    CHECK_PARSE_RC("1000000.000000001", CM_ERANGE);
    CHECK_PARSE_RC("1000000.0000000015", CM_ERANGE);
}

static void parse_sign(void)
{
    CHECK_PARSE("-0.0000000001", 0);
    CHECK_PARSE("-0.0000000005", 0);
    CHECK_PARSE("-0.0000000004999", 0);
    CHECK_PARSE_RC("-0.0000000006", CM_ERANGE);
    CHECK_PARSE_RC("-0.0000000015", CM_ERANGE);
    CHECK_PARSE_RC("-1", CM_ERANGE);
    CHECK_PARSE_RC("-0.000000001", CM_ERANGE);
    CHECK_PARSE_RC("-12.47", CM_ERANGE);
    CHECK_PARSE_RC("1000001", CM_ERANGE);
    CHECK_PARSE_RC("9223372036.854775807", CM_ERANGE);
    CHECK_PARSE_RC("99999999999999999999999999999999999", CM_ERANGE);
    CHECK_PARSE_RC("18446744073709551616", CM_ERANGE);
}

static void parse_invalid(void)
{
    static const char *const bad[] = {
        "", "-", "+1", "01", "00", "-01", "00.5", "1.", ".5", "-.5", "1.e5",
        "1e", "1e+", "1e-", "e5", "1E", "1x", "1 ", " 1", "1.0.0", "1e5.0",
        "0x10", "1,5", "NaN", "nan", "Infinity", "-Infinity", "inf", "--1",
        "1ee5", "1e+-5", "1.5e+3x", "1\t", "\n1", "1_000", "1e5e5", "\xd9\xa1",
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = -777;
        int rc = cm_money_parse(bad[i], strlen(bad[i]), &v);

        CHECK_EQ_I64(rc, CM_EINVAL);
        CHECK_EQ_I64(v, -777);
        if (rc != CM_EINVAL)
            fprintf(stderr, "  input was \"%s\"\n", bad[i]);
    }
    {
        /* NUL bytes inside the span are junk, not a terminator. */
        int64_t v = -777;
        CHECK_EQ_I64(cm_money_parse("1\0", 2, &v), CM_EINVAL);
        CHECK_EQ_I64(cm_money_parse("1\0002", 3, &v), CM_EINVAL);
        CHECK_EQ_I64(cm_money_parse("\0", 1, &v), CM_EINVAL);
        CHECK_EQ_I64(cm_money_parse("0.5\0", 4, &v), CM_EINVAL);
        CHECK_EQ_I64(v, -777);
    }
    {
        /* Exactly len bytes are read: the rest of the buffer is ignored. */
        int64_t v = -777;
        CHECK_EQ_I64(cm_money_parse("12.47,\"x\"", 5, &v), CM_OK);
        CHECK_EQ_I64(v, 12470000000);
        CHECK_EQ_I64(cm_money_parse("1.5e3]", 3, &v), CM_OK);
        CHECK_EQ_I64(v, 1500000000);
        CHECK_EQ_I64(cm_money_parse("1.5e3]", 4, &v), CM_EINVAL);
        CHECK_EQ_I64(cm_money_parse("7", 0, &v), CM_EINVAL);
    }
    {
        /* A buffer with no terminator at all: ASan catches over-reads. */
        char raw[3] = {'2', '.', '5'};
        int64_t v = -777;
        CHECK_EQ_I64(cm_money_parse(raw, sizeof raw, &v), CM_OK);
        CHECK_EQ_I64(v, 2500000000);
    }
    {
        int64_t v = -777;
        CHECK_EQ_I64(cm_money_parse(NULL, 0, &v), CM_EINVAL);
        CHECK_EQ_I64(cm_money_parse("1", 1, NULL), CM_EINVAL);
    }
}

static void parse_long(void)
{
    /* Many digits, far more than int64 holds, still exact. */
    char buf[2100];
    int64_t v;
    size_t n = 0;

    buf[n++] = '0';
    buf[n++] = '.';
    for (int i = 0; i < 9; i++)
        buf[n++] = '0';
    buf[n++] = '5';
    for (int i = 0; i < 2000; i++)
        buf[n++] = '0';
    v = -777;
    CHECK_EQ_I64(cm_money_parse(buf, n, &v), CM_OK);
    CHECK_EQ_I64(v, 0); /* exactly half after 2000 zeros: even */
    buf[n++] = '1';
    CHECK_EQ_I64(cm_money_parse(buf, n, &v), CM_OK);
    CHECK_EQ_I64(v, 1); /* a 1 two thousand digits later tips it */

    /* A long integer part balanced by a long negative exponent. */
    n = 0;
    buf[n++] = '1';
    for (int i = 0; i < 1000; i++)
        buf[n++] = '0';
    buf[n++] = 'e';
    buf[n++] = '-';
    buf[n++] = '1';
    buf[n++] = '0';
    buf[n++] = '0';
    buf[n++] = '0';
    CHECK_EQ_I64(cm_money_parse(buf, n, &v), CM_OK);
    CHECK_EQ_I64(v, 1000000000);
    buf[n - 1] = '1'; /* e-1001 */
    CHECK_EQ_I64(cm_money_parse(buf, n, &v), CM_OK);
    CHECK_EQ_I64(v, 100000000);
    buf[n - 4] = '0'; /* e-0001: 10^999 */
    CHECK_EQ_I64(cm_money_parse(buf, n, &v), CM_ERANGE);
}

static void sums(void)
{
    /* The reason for all this: 2000 * 0.1 is exactly 200, unlike doubles. */
    int64_t sum = 0, v = 0;

    for (int i = 0; i < 2000; i++) {
        CHECK_EQ_I64(cm_money_parse("0.1", 3, &v), CM_OK);
        sum += v;
    }
    CHECK_EQ_I64(sum, 200 * CM_NANOS_PER_USD);
    {
        char buf[CM_MONEY_BUFSZ];
        CHECK_EQ_I64(cm_money_format(sum, buf, sizeof buf), 3);
        CHECK_STR(buf, "200");
    }
    sum = 0;
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_I64(cm_money_parse("0.01", 4, &v), CM_OK);
        sum += v;
    }
    CHECK_EQ_I64(sum, 30000000);
    /* Thousands of maximal values still sum inside int64. */
    CHECK(CM_MONEY_MAX <= INT64_MAX / 9000);
}

/* `call` writes into b_ and returns the length: both are checked. */
#define CHECK_WRITES(call, want)                                             \
    do {                                                                     \
        char b_[64];                                                         \
        size_t n_ = (call);                                                  \
        CHECK_STR(b_, want);                                                 \
        CHECK_EQ_I64(n_, strlen(want));                                      \
    } while (0)
#define CHECK_FMT(nanos, want) CHECK_WRITES(cm_money_format(nanos, b_, CM_MONEY_BUFSZ), want)
#define CHECK_FMT_TEXT(nanos, want) CHECK_WRITES(cm_money_format_text(nanos, b_, sizeof b_), want)

static void format(void)
{
    char buf[64];

    CHECK_FMT(0, "0");
    CHECK_FMT(1, "0.000000001");
    CHECK_FMT(10, "0.00000001");
    CHECK_FMT(100000000, "0.1");
    CHECK_FMT(12470000000, "12.47");
    CHECK_FMT(200000000000, "200");
    CHECK_FMT(-3500000000, "-3.5");
    CHECK_FMT(-1, "-0.000000001");
    CHECK_FMT(1000000001, "1.000000001");
    CHECK_FMT(123456789, "0.123456789");
    CHECK_FMT(CM_MONEY_MAX, "1000000");
    CHECK_FMT(CM_MONEY_MAX - 1, "999999.999999999");
    CHECK_FMT(INT64_MAX, "9223372036.854775807");
    CHECK_FMT(INT64_MIN, "-9223372036.854775808");
    CHECK_FMT(1000000000000, "1000");

    /* Too small a buffer: nothing written, 0 returned. */
    memset(buf, 'x', sizeof buf);
    CHECK_EQ_I64(cm_money_format(1, buf, CM_MONEY_BUFSZ - 1), 0);
    CHECK(buf[0] == 'x');
    CHECK_EQ_I64(cm_money_format(1, buf, 0), 0);
    CHECK_EQ_I64(cm_money_format(1, NULL, CM_MONEY_BUFSZ), 0);
    /* The worst case fits the documented size exactly. */
    CHECK_EQ_I64(cm_money_format(INT64_MIN, buf, CM_MONEY_BUFSZ), 21);
    CHECK(strlen("-9223372036.854775808") + 1 <= CM_MONEY_BUFSZ);
}

/* Sums PostgreSQL made in numeric, past int64 too. */
static void format_text(void)
{
    char buf[64];

    CHECK_FMT_TEXT("0", "0");
    CHECK_FMT_TEXT("-0", "0");
    CHECK_FMT_TEXT("000", "0");
    CHECK_FMT_TEXT("5", "0.000000005");
    CHECK_FMT_TEXT("-5", "-0.000000005");
    CHECK_FMT_TEXT("0012470000000", "12.47");
    CHECK_FMT_TEXT("1000000000", "1");
    CHECK_FMT_TEXT("1000000000000000000", "1000000000");
    CHECK_FMT_TEXT("1999999999999999999", "1999999999.999999999");
    /* Three times INT64_MAX: a week of rows written before the caps. */
    CHECK_FMT_TEXT("27670116110564327421", "27670116110.564327421");
    CHECK_FMT_TEXT("-27670116110564327421", "-27670116110.564327421");
    CHECK_FMT_TEXT("100000000000000000000000000000", "100000000000000000000");

    /* Not an integer: nothing written, 0 returned. */
    static const char *const bad[] = {"", "-", "+1", "1.5", "1e3", " 1", "1 ", "--1", "0x10", "\xd9\xa1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(buf, 'x', sizeof buf);
        CHECK_EQ_I64(cm_money_format_text(bad[i], buf, sizeof buf), 0);
        CHECK(buf[0] == 'x');
    }
    CHECK_EQ_I64(cm_money_format_text(NULL, buf, sizeof buf), 0);
    CHECK_EQ_I64(cm_money_format_text("1", NULL, sizeof buf), 0);
    /* The documented room: 3 bytes past max(digits, 10), and no less. */
    CHECK_EQ_I64(cm_money_format_text("-1", buf, 13), 12);
    CHECK_STR(buf, "-0.000000001");
    CHECK_EQ_I64(cm_money_format_text("-1", buf, 12), 0);
    CHECK_EQ_I64(cm_money_format_text("-27670116110564327421", buf, 23), 22);
    CHECK_EQ_I64(cm_money_format_text("-27670116110564327421", buf, 22), 0);
    /* Every int64 formats alike either way. */
    for (int64_t p = 1; p > 0 && p <= INT64_MAX / 7; p *= 7) {
        char text[32], want[CM_MONEY_BUFSZ];
        snprintf(text, sizeof text, "%lld", (long long)p);
        cm_money_format(p, want, sizeof want);
        CHECK_FMT_TEXT(text, want);
    }
}

static void round_trip_one(int64_t v)
{
    char buf[CM_MONEY_BUFSZ];
    size_t n = cm_money_format(v, buf, sizeof buf);
    int64_t back = -777;

    CHECK(n > 0 && n < sizeof buf);
    CHECK_EQ_I64(cm_money_parse(buf, n, &back), CM_OK);
    CHECK_EQ_I64(back, v);
    /* Shortest: never a trailing zero after the point, never a bare point. */
    CHECK(memchr(buf, '.', n) == NULL || (buf[n - 1] != '0' && buf[n - 1] != '.'));
}

static void round_trips(void)
{
    static const int64_t fixed[] = {
        0, 1, 9, 10, 99, 100, 999999999, 1000000000, 1000000001, 1234567890,
        12470000000, 99999999999, 500000000000000, CM_MONEY_MAX - 1,
        CM_MONEY_MAX,
    };
    uint64_t x = 88172645463325252ULL;

    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        round_trip_one(fixed[i]);
    for (int64_t p = 1; p <= CM_MONEY_MAX; p *= 10) {
        round_trip_one(p);
        round_trip_one(p - 1);
        if (p < CM_MONEY_MAX)
            round_trip_one(p + 1);
    }
    /* xorshift: many values across the whole range, deterministic. */
    for (int i = 0; i < 3000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        round_trip_one((int64_t)(x % (uint64_t)(CM_MONEY_MAX + 1)));
        /* Small amounts too: the fraction-only branch. */
        round_trip_one((int64_t)(x % 1000000000ULL));
    }
}

/* A price is stored as written or refused: no digit below a nano-dollar. */
static void exact(void)
{
    int64_t v = -777;
    CHECK_EQ_I64(cm_money_parse_exact("2.5", 3, &v), CM_OK);
    CHECK_EQ_I64(v, 2500000000);
    CHECK_EQ_I64(cm_money_parse_exact("0.000000001", 11, &v), CM_OK);
    CHECK_EQ_I64(v, 1);
    CHECK_EQ_I64(cm_money_parse_exact("1.5000000000", 12, &v), CM_OK); /* trailing zeros are exact */
    CHECK_EQ_I64(v, 1500000000);
    CHECK_EQ_I64(cm_money_parse_exact("15e-10", 6, &v), CM_EINVAL);
    CHECK_EQ_I64(cm_money_parse_exact("0.0000000015", 12, &v), CM_EINVAL);
    CHECK_EQ_I64(cm_money_parse_exact("0.0000000001", 12, &v), CM_EINVAL); /* rounds to 0: still inexact */
    CHECK_EQ_I64(cm_money_parse_exact("1e-20", 5, &v), CM_EINVAL);
    CHECK_EQ_I64(cm_money_parse_exact("0", 1, &v), CM_OK);
    CHECK_EQ_I64(cm_money_parse_exact("2000000", 7, &v), CM_ERANGE);
    CHECK_EQ_I64(cm_money_parse_exact("abc", 3, &v), CM_EINVAL);
}

void test_money(void)
{
    exact();
    parse_plain();
    parse_exponent();
    parse_rounding();
    parse_sign();
    parse_invalid();
    parse_long();
    sums();
    format();
    format_text();
    round_trips();
}
