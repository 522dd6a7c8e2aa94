/* test_time.c - RFC 3339 parsing/printing, the civil-date algorithm and the
 * hour/day/week/month windows. Expected instants were computed with an
 * independent implementation (Python's calendar.timegm). */
#include "unit.h"

#include "error.h"
#include "timeutil.h"

static int tparse(const char *s, int64_t *t)
{
    *t = -777;
    return cm_time_parse(s, strlen(s), t);
}

#define CHECK_TIME(text, want)                                               \
    do {                                                                     \
        int64_t t_;                                                          \
        CHECK_EQ_I64(tparse(text, &t_), CM_OK);                              \
        CHECK_EQ_I64(t_, want);                                              \
    } while (0)

#define CHECK_TIME_BAD(text)                                                 \
    do {                                                                     \
        int64_t t_;                                                          \
        CHECK_EQ_I64(tparse(text, &t_), CM_EINVAL);                          \
        CHECK_EQ_I64(t_, -777);                                              \
    } while (0)

#define CHECK_FMT(t, want)                                                   \
    do {                                                                     \
        char b_[CM_TIME_BUFSZ];                                              \
        CHECK_EQ_I64(cm_time_format(t, b_, sizeof b_), 20);                  \
        CHECK_STR(b_, want);                                                 \
    } while (0)

#define CHECK_WIN(w, t, want_from, want_to)                                  \
    do {                                                                     \
        int64_t f_ = -1, e_ = -1;                                            \
        cm_window_bounds(w, t, &f_, &e_);                                    \
        CHECK_EQ_I64(f_, want_from);                                         \
        CHECK_EQ_I64(e_, want_to);                                           \
    } while (0)

static void parse_valid(void)
{
    CHECK_TIME("1970-01-01T00:00:00Z", 0);
    CHECK_TIME("2026-11-22T10:15:00Z", 1795342500);
    CHECK_TIME("2024-02-29T00:00:00Z", 1709164800);
    CHECK_TIME("2000-02-29T00:00:00Z", 951782400);
    CHECK_TIME("9999-12-31T23:59:59Z", 253402300799);
    CHECK_TIME("2024-12-31T23:59:59Z", 1735689599);
    /* Either case for T and Z, and a space for T. */
    CHECK_TIME("2026-11-22t10:15:00z", 1795342500);
    CHECK_TIME("2026-11-22 10:15:00Z", 1795342500);
    CHECK_TIME("2026-11-22T10:15:00+00:00", 1795342500);
    CHECK_TIME("2026-11-22T10:15:00-00:00", 1795342500);
    /* Fractions are truncated toward the earlier second. */
    CHECK_TIME("2026-11-22T10:15:00.999999999Z", 1795342500);
    CHECK_TIME("2026-11-22T10:15:00.5Z", 1795342500);
    CHECK_TIME("2026-11-22T10:15:00.0Z", 1795342500);
    CHECK_TIME("2026-11-22T10:15:59.9999999999999999999+00:00", 1795342559);
    /* Second 60 is read as 59. */
    CHECK_TIME("2016-12-31T23:59:60Z", 1483228799);
    CHECK_TIME("2016-12-31T23:59:59Z", 1483228799);
    /* Offsets shift into another UTC day. */
    CHECK_TIME("2024-03-01T02:00:00+05:30", 1709238600); /* 02-29 20:30Z */
    CHECK_TIME("2024-02-29T20:00:00-08:00", 1709265600); /* 03-01 04:00Z */
    CHECK_TIME("2024-12-31T16:00:00-08:00", 1735689600); /* 2025-01-01Z */
    CHECK_TIME("2025-01-01T05:29:59+05:30", 1735689599); /* 2024-12-31Z */
    CHECK_TIME("2024-03-03T23:59:59-23:59", 1709467200 + 12 * 3600 - 1 + 23 * 3600 + 59 * 60);
    {
        /* Exactly len bytes, no terminator needed. */
        const char *s = "2026-11-22T10:15:00Z trailing";
        int64_t t = -777;
        CHECK_EQ_I64(cm_time_parse(s, 20, &t), CM_OK);
        CHECK_EQ_I64(t, 1795342500);
        CHECK_EQ_I64(cm_time_parse(s, 21, &t), CM_EINVAL);
        CHECK_EQ_I64(cm_time_parse(s, 19, &t), CM_EINVAL);
    }
    {
        char raw[20];
        int64_t t = -777;
        memcpy(raw, "2026-11-22T10:15:00Z", sizeof raw);
        CHECK_EQ_I64(cm_time_parse(raw, sizeof raw, &t), CM_OK);
        CHECK_EQ_I64(t, 1795342500);
    }
}

static void parse_invalid(void)
{
    static const char *const bad[] = {
        "",
        "2026-11-22",
        "2026-11-22T10:15:00",         /* no zone */
        "2026-11-22T10:15Z",           /* no seconds */
        "2026-11-22T10:15:00.Z",       /* empty fraction */
        "2026-11-22T10:15:00,5Z",
        "2026-11-22X10:15:00Z",
        "2026-11-22T10:15:00ZZ",
        "2026-11-22T10:15:00Z ",
        " 2026-11-22T10:15:00Z",
        "2026-11-22T10:15:00+0530",
        "2026-11-22T10:15:00+05",
        "2026-11-22T10:15:00+5:30",
        "2026-11-22T10:15:00+24:00",
        "2026-11-22T10:15:00+05:60",
        "2026-11-22T10:15:00UTC",
        "2026-1-22T10:15:00Z",
        "26-11-22T10:15:00Z",
        "+2026-11-22T10:15:00Z",
        "2026/11/22T10:15:00Z",
        "2026-11-22T10-15-00Z",
        "2026-11-22T1a:15:00Z",
        "2026-11-22T10:15:0-Z",
        "2023-02-29T00:00:00Z",        /* not a leap year */
        "2100-02-29T00:00:00Z",        /* century, not a leap year */
        "2024-02-30T00:00:00Z",
        "2024-04-31T00:00:00Z",
        "2024-00-10T00:00:00Z",
        "2024-13-10T00:00:00Z",
        "2024-01-00T00:00:00Z",
        "2024-01-32T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T23:60:00Z",
        "2024-01-01T23:59:61Z",
        "1969-12-31T23:59:59Z",        /* before 1970 */
        "0000-01-01T00:00:00Z",
        "1970-01-01T00:00:00+00:01",   /* offset lands before 1970 */
        "9999-12-31T23:59:59-00:01",   /* offset lands in 10000 */
        "10000-01-01T00:00:00Z",
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t t = -777;
        int rc = cm_time_parse(bad[i], strlen(bad[i]), &t);

        CHECK_EQ_I64(rc, CM_EINVAL);
        CHECK_EQ_I64(t, -777);
        if (rc != CM_EINVAL)
            fprintf(stderr, "  input was \"%s\"\n", bad[i]);
    }
    CHECK_TIME_BAD("2024-01-01T00:00:00Z\n");
    {
        int64_t t = -777;
        CHECK_EQ_I64(cm_time_parse("2024-01-01T00:00:00Z\0", 21, &t), CM_EINVAL);
        CHECK_EQ_I64(cm_time_parse("2024-01-01T00:00\0:00Z", 21, &t), CM_EINVAL);
        CHECK_EQ_I64(cm_time_parse(NULL, 0, &t), CM_EINVAL);
        CHECK_EQ_I64(cm_time_parse("2024-01-01T00:00:00Z", 20, NULL), CM_EINVAL);
        CHECK_EQ_I64(t, -777);
    }
}

static void format(void)
{
    char buf[64];

    CHECK_FMT(0, "1970-01-01T00:00:00Z");
    CHECK_FMT(1795342500, "2026-11-22T10:15:00Z");
    CHECK_FMT(1709164800, "2024-02-29T00:00:00Z");
    CHECK_FMT(951782400, "2000-02-29T00:00:00Z");
    CHECK_FMT(1735689599, "2024-12-31T23:59:59Z");
    CHECK_FMT(253402300799, "9999-12-31T23:59:59Z");
    CHECK_EQ_I64(cm_time_format(-1, buf, sizeof buf), 0);
    CHECK_EQ_I64(cm_time_format(253402300800, buf, sizeof buf), 0);
    CHECK_EQ_I64(cm_time_format(INT64_MIN, buf, sizeof buf), 0);
    CHECK_EQ_I64(cm_time_format(INT64_MAX, buf, sizeof buf), 0);
    CHECK_EQ_I64(cm_time_format(0, buf, CM_TIME_BUFSZ - 1), 0);
    CHECK_EQ_I64(cm_time_format(0, NULL, CM_TIME_BUFSZ), 0);
    CHECK_EQ_I64(cm_time_format(0, buf, CM_TIME_BUFSZ), 20);

    /* Round trips, one per ~11.6 days across the whole range plus odd
     * seconds, so every month and leap rule is visited. */
    for (int64_t t = 0; t < 253402300800; t += 1000003 * 7 + 12345) {
        char b[CM_TIME_BUFSZ];
        int64_t back = -1;

        CHECK_EQ_I64(cm_time_format(t, b, sizeof b), 20);
        CHECK_EQ_I64(cm_time_parse(b, 20, &back), CM_OK);
        CHECK_EQ_I64(back, t);
    }
}

static void civil(void)
{
    int64_t y;
    unsigned m, d;

    CHECK_EQ_I64(cm_time_days_from_civil(1970, 1, 1), 0);
    CHECK_EQ_I64(cm_time_days_from_civil(1969, 12, 31), -1);
    CHECK_EQ_I64(cm_time_days_from_civil(2000, 3, 1), 11017);
    CHECK_EQ_I64(cm_time_days_from_civil(2024, 2, 29), 1709164800 / 86400);
    CHECK_EQ_I64(cm_time_days_from_civil(0, 3, 1), -719468);
    cm_time_civil_from_days(0, &y, &m, &d);
    CHECK(y == 1970 && m == 1 && d == 1);
    cm_time_civil_from_days(-1, &y, &m, &d);
    CHECK(y == 1969 && m == 12 && d == 31);
    cm_time_civil_from_days(11016, &y, &m, &d);
    CHECK(y == 2000 && m == 2 && d == 29);
    cm_time_civil_from_days(-719468, &y, &m, &d);
    CHECK(y == 0 && m == 3 && d == 1);

    /* Consecutive days agree with each other in both directions. */
    {
        int64_t py;
        unsigned pm, pd;
        int bad = 0;

        cm_time_civil_from_days(-800000, &py, &pm, &pd);
        for (int64_t days = -799999; days < 3000000; days++) {
            cm_time_civil_from_days(days, &y, &m, &d);
            if (cm_time_days_from_civil(y, m, d) != days)
                bad++;
            if (!((y == py && m == pm && d == pd + 1) ||
                  (y == py && m == pm + 1 && d == 1) ||
                  (y == py + 1 && m == 1 && pm == 12 && d == 1)))
                bad++;
            py = y;
            pm = m;
            pd = d;
        }
        CHECK_EQ_I64(bad, 0);
    }
}

static void windows(void)
{
    cm_window w = CM_WIN_MONTH;

    CHECK_EQ_I64(cm_window_parse("hour", &w), CM_OK);
    CHECK_EQ_I64(w, CM_WIN_HOUR);
    CHECK_EQ_I64(cm_window_parse("day", &w), CM_OK);
    CHECK_EQ_I64(w, CM_WIN_DAY);
    CHECK_EQ_I64(cm_window_parse("week", &w), CM_OK);
    CHECK_EQ_I64(w, CM_WIN_WEEK);
    CHECK_EQ_I64(cm_window_parse("month", &w), CM_OK);
    CHECK_EQ_I64(w, CM_WIN_MONTH);
    CHECK_EQ_I64(cm_window_parse("Month", &w), CM_EINVAL);
    CHECK_EQ_I64(cm_window_parse("months", &w), CM_EINVAL);
    CHECK_EQ_I64(cm_window_parse("mont", &w), CM_EINVAL);
    CHECK_EQ_I64(cm_window_parse("", &w), CM_EINVAL);
    CHECK_EQ_I64(cm_window_parse(" day", &w), CM_EINVAL);
    CHECK_EQ_I64(cm_window_parse(NULL, &w), CM_EINVAL);
    CHECK_EQ_I64(w, CM_WIN_MONTH);

    CHECK_STR(cm_window_name(CM_WIN_HOUR), "hour");
    CHECK_STR(cm_window_name(CM_WIN_DAY), "day");
    CHECK_STR(cm_window_name(CM_WIN_WEEK), "week");
    CHECK_STR(cm_window_name(CM_WIN_MONTH), "month");
    CHECK(cm_window_name((cm_window)42) != NULL);
    CHECK(cm_window_name((cm_window)-1) != NULL);
    for (int k = CM_WIN_HOUR; k <= CM_WIN_MONTH; k++) {
        CHECK_EQ_I64(cm_window_parse(cm_window_name((cm_window)k), &w), CM_OK);
        CHECK_EQ_I64(w, k);
    }

    CHECK_EQ_I64(cm_window_bucket(CM_WIN_HOUR), CM_WIN_HOUR);
    CHECK_EQ_I64(cm_window_bucket(CM_WIN_DAY), CM_WIN_HOUR);
    CHECK_EQ_I64(cm_window_bucket(CM_WIN_WEEK), CM_WIN_DAY);
    CHECK_EQ_I64(cm_window_bucket(CM_WIN_MONTH), CM_WIN_DAY);

    /* 2024-12-31T23:59:59Z: the last second of every window kind. */
    CHECK_WIN(CM_WIN_HOUR, 1735689599, 1735686000, 1735689600);
    CHECK_WIN(CM_WIN_DAY, 1735689599, 1735603200, 1735689600);
    CHECK_WIN(CM_WIN_MONTH, 1735689599, 1733011200, 1735689600); /* Dec->Jan */
    /* The next second starts new ones. */
    CHECK_WIN(CM_WIN_HOUR, 1735689600, 1735689600, 1735693200);
    CHECK_WIN(CM_WIN_DAY, 1735689600, 1735689600, 1735776000);
    CHECK_WIN(CM_WIN_MONTH, 1735689600, 1735689600, 1738368000);
    /* 2023-12-31T23:59:59Z, a Sunday: week from Mon 12-25, month Dec. */
    CHECK_WIN(CM_WIN_WEEK, 1704067199, 1703462400, 1704067200);
    CHECK_WIN(CM_WIN_MONTH, 1704067199, 1701388800, 1704067200);

    /* ISO week of a Sunday (2024-03-03 noon) starts the Monday before. */
    CHECK_WIN(CM_WIN_WEEK, 1709467200, 1708905600, 1709510400);
    /* Sunday 23:59:59 is still in it; Monday 00:00 is the next week. */
    CHECK_WIN(CM_WIN_WEEK, 1709510399, 1708905600, 1709510400);
    CHECK_WIN(CM_WIN_WEEK, 1709510400, 1709510400, 1710115200);
    /* A Monday's own week starts that midnight. */
    CHECK_WIN(CM_WIN_WEEK, 1709510400 + 13 * 3600, 1709510400, 1710115200);
    /* A week across a year boundary: Fri 2021-01-01 is in Mon 2020-12-28. */
    CHECK_WIN(CM_WIN_WEEK, 1609459200, 1609113600, 1609718400);
    /* Epoch was a Thursday; its week began Mon 1969-12-29. */
    CHECK_WIN(CM_WIN_WEEK, 0, -3 * 86400, 4 * 86400);

    /* Leap February. */
    CHECK_WIN(CM_WIN_MONTH, 1709164800, 1706745600, 1709251200);
    CHECK_WIN(CM_WIN_DAY, 1709164800, 1709164800, 1709251200);

    /* Offsets move an instant into another UTC day and hour. */
    {
        int64_t t;
        CHECK_EQ_I64(tparse("2024-03-01T02:00:00+05:30", &t), CM_OK);
        CHECK_WIN(CM_WIN_DAY, t, 1709164800, 1709251200);       /* Feb 29 */
        CHECK_WIN(CM_WIN_HOUR, t, 1709236800, 1709240400);      /* 20:00Z */
        CHECK_WIN(CM_WIN_MONTH, t, 1706745600, 1709251200);     /* Feb */
        CHECK_EQ_I64(tparse("2024-02-29T20:00:00-08:00", &t), CM_OK);
        CHECK_WIN(CM_WIN_DAY, t, 1709251200, 1709337600);       /* Mar 1 */
        CHECK_WIN(CM_WIN_HOUR, t, 1709265600, 1709269200);      /* 04:00Z */
        CHECK_WIN(CM_WIN_MONTH, t, 1709251200, 1711929600);     /* Mar */
    }

    /* Invariants over a sweep: t in [from, to), boundaries aligned. */
    {
        int bad = 0;

        for (int64_t t = -86400 * 10; t < 4102444800; t += 86400 * 3 + 3599) {
            for (int k = CM_WIN_HOUR; k <= CM_WIN_MONTH; k++) {
                int64_t f, e, y;
                unsigned m, d;

                cm_window_bounds((cm_window)k, t, &f, &e);
                if (!(f <= t && t < e))
                    bad++;
                if (k == CM_WIN_WEEK && (f / 86400 + 3) % 7 != 0 && f >= 0)
                    bad++;
                if (k == CM_WIN_MONTH) {
                    cm_time_civil_from_days(f / 86400, &y, &m, &d);
                    if (f % 86400 != 0 || d != 1)
                        bad++;
                }
            }
        }
        CHECK_EQ_I64(bad, 0);
    }
    /* Not a window: empty, never garbage. */
    CHECK_WIN((cm_window)42, 1000, 1000, 1000);
}

void test_time(void)
{
    parse_valid();
    parse_invalid();
    format();
    civil();
    windows();
}
