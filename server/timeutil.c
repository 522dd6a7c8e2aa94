/* timeutil.c - UTC calendar arithmetic without libc time zone state.
 *
 * timegm/mktime consult TZ and are not in C11; Howard Hinnant's
 * days_from_civil/civil_from_days are exact for the proleptic Gregorian
 * calendar and need only integer arithmetic. */
#include "timeutil.h"

#include "error.h"

#include <stdbool.h>
#include <string.h>

#define SECS_PER_DAY 86400
#define SECS_PER_HOUR 3600
#define YEAR_MIN 1970
#define YEAR_MAX 9999

/* Floor division: windows must also be right for times before 1970. */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;

    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

int64_t cm_time_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (int64_t)(m > 2 ? m - 3 : m + 9) + 2) / 5 + (int64_t)d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void cm_time_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    unsigned mm = (unsigned)(mp < 10 ? mp + 3 : mp - 9);

    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = mm;
    *y = yoe + era * 400 + (mm <= 2);
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
    static const unsigned dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Reads exactly `n` ASCII digits at s[*i]; false on anything else. */
static bool digits(const char *s, size_t len, size_t *i, size_t n, unsigned *out)
{
    unsigned v = 0;

    if (len - *i < n)
        return false;
    for (size_t k = 0; k < n; k++) {
        char c = s[*i + k];

        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (unsigned)(c - '0');
    }
    *i += n;
    *out = v;
    return true;
}

static bool expect(const char *s, size_t len, size_t *i, char c)
{
    if (*i >= len || s[*i] != c)
        return false;
    (*i)++;
    return true;
}

/* One past the last second we can print: 10000-01-01T00:00:00Z. */
static int64_t time_end(void)
{
    return cm_time_days_from_civil(YEAR_MAX + 1, 1, 1) * SECS_PER_DAY;
}

int cm_time_parse(const char *s, size_t len, int64_t *out)
{
    unsigned y, mo, d, h, mi, se, oh = 0, om = 0;
    int osign = 0;
    size_t i = 0;
    int64_t t;

    if (s == NULL || out == NULL)
        return CM_EINVAL;
    if (!digits(s, len, &i, 4, &y) || !expect(s, len, &i, '-') ||
        !digits(s, len, &i, 2, &mo) || !expect(s, len, &i, '-') ||
        !digits(s, len, &i, 2, &d))
        return CM_EINVAL;
    if (i >= len || (s[i] != 'T' && s[i] != 't' && s[i] != ' '))
        return CM_EINVAL;
    i++;
    if (!digits(s, len, &i, 2, &h) || !expect(s, len, &i, ':') ||
        !digits(s, len, &i, 2, &mi) || !expect(s, len, &i, ':') ||
        !digits(s, len, &i, 2, &se))
        return CM_EINVAL;
    if (i < len && s[i] == '.') {
        size_t start = ++i;

        /* Truncated: the digits only need to be there. */
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return CM_EINVAL;
    }
    if (i >= len)
        return CM_EINVAL;
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        osign = s[i] == '+' ? 1 : -1;
        i++;
        if (!digits(s, len, &i, 2, &oh) || !expect(s, len, &i, ':') ||
            !digits(s, len, &i, 2, &om) || oh > 23 || om > 59)
            return CM_EINVAL;
    } else {
        return CM_EINVAL;
    }
    if (i != len)
        return CM_EINVAL;

    if (y < YEAR_MIN || y > YEAR_MAX || mo < 1 || mo > 12 || d < 1 ||
        d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 60)
        return CM_EINVAL;
    /* No leap-second table: 60 stays inside its minute. */
    if (se == 60)
        se = 59;

    t = cm_time_days_from_civil(y, mo, d) * SECS_PER_DAY +
        (int64_t)h * SECS_PER_HOUR + (int64_t)mi * 60 + se;
    /* Local time minus its offset is UTC. */
    t -= osign * ((int64_t)oh * SECS_PER_HOUR + (int64_t)om * 60);
    /* An offset can push the instant out of the years we print; refuse it
     * so every parsed time formats back. */
    if (t < 0 || t >= time_end())
        return CM_EINVAL;
    *out = t;
    return CM_OK;
}

static void put2(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10 % 10);
    p[1] = (char)('0' + v % 10);
}

size_t cm_time_format(int64_t t, char *buf, size_t bufsz)
{
    int64_t days, secs, y;
    unsigned m, d;

    if (buf == NULL || bufsz < CM_TIME_BUFSZ || t < 0 || t >= time_end())
        return 0;
    days = t / SECS_PER_DAY;
    secs = t % SECS_PER_DAY;
    cm_time_civil_from_days(days, &y, &m, &d);
    put2(buf, (unsigned)(y / 100));
    put2(buf + 2, (unsigned)(y % 100));
    buf[4] = '-';
    put2(buf + 5, m);
    buf[7] = '-';
    put2(buf + 8, d);
    buf[10] = 'T';
    put2(buf + 11, (unsigned)(secs / SECS_PER_HOUR));
    buf[13] = ':';
    put2(buf + 14, (unsigned)(secs / 60 % 60));
    buf[16] = ':';
    put2(buf + 17, (unsigned)(secs % 60));
    buf[19] = 'Z';
    buf[20] = '\0';
    return 20;
}

static const char *const window_names[] = {"hour", "day", "week", "month"};

int cm_window_parse(const char *s, cm_window *out)
{
    if (s == NULL || out == NULL)
        return CM_EINVAL;
    for (size_t k = 0; k < sizeof window_names / sizeof window_names[0]; k++) {
        if (strcmp(s, window_names[k]) == 0) {
            *out = (cm_window)k;
            return CM_OK;
        }
    }
    return CM_EINVAL;
}

const char *cm_window_name(cm_window w)
{
    if ((unsigned)w >= sizeof window_names / sizeof window_names[0])
        return "unknown";
    return window_names[w];
}

void cm_window_bounds(cm_window w, int64_t t, int64_t *from, int64_t *to)
{
    int64_t days = floor_div(t, SECS_PER_DAY);
    int64_t y;
    unsigned m, d;

    switch (w) {
    case CM_WIN_HOUR:
        *from = floor_div(t, SECS_PER_HOUR) * SECS_PER_HOUR;
        *to = *from + SECS_PER_HOUR;
        return;
    case CM_WIN_DAY:
        *from = days * SECS_PER_DAY;
        *to = *from + SECS_PER_DAY;
        return;
    case CM_WIN_WEEK:
        /* 1970-01-01 was a Thursday: day 0 is 3 days past Monday. */
        *from = (days - (days + 3 - floor_div(days + 3, 7) * 7)) * SECS_PER_DAY;
        *to = *from + 7 * SECS_PER_DAY;
        return;
    case CM_WIN_MONTH:
        cm_time_civil_from_days(days, &y, &m, &d);
        *from = cm_time_days_from_civil(y, m, 1) * SECS_PER_DAY;
        if (m == 12)
            *to = cm_time_days_from_civil(y + 1, 1, 1) * SECS_PER_DAY;
        else
            *to = cm_time_days_from_civil(y, m + 1, 1) * SECS_PER_DAY;
        return;
    }
    /* Not a window: an empty one at t, so nothing is counted in it. */
    *from = t;
    *to = t;
}

cm_window cm_window_bucket(cm_window w)
{
    return w == CM_WIN_WEEK || w == CM_WIN_MONTH ? CM_WIN_DAY : CM_WIN_HOUR;
}
