/* timeutil.h - UTC calendar arithmetic: RFC 3339 parsing/printing and the
 * hour/day/week/month windows that spend and policies are counted in.
 *
 * Times are int64 Unix seconds. Pure functions, no libc time zone state,
 * thread-safe. Windows are half-open [from, to). */
#ifndef CM_TIMEUTIL_H
#define CM_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

/* "2026-11-22T10:15:00Z" plus NUL. */
#define CM_TIME_BUFSZ 21

typedef enum {
    CM_WIN_HOUR = 0,
    CM_WIN_DAY = 1,
    CM_WIN_WEEK = 2, /* ISO week, from Monday 00:00 UTC */
    CM_WIN_MONTH = 3,
} cm_window;

/* Parses RFC 3339 date-time: "YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)",
 * 'T'/'Z' in either case, a space instead of 'T' too. Fractions are
 * truncated toward the earlier second. Years 1970..9999 only. Validates
 * field ranges (month 1-12, day within month incl. leap years, hour 0-23,
 * minute 0-59, second 0-60 where 60 is read as 59). `s` need not be
 * NUL-terminated. Returns CM_OK or CM_EINVAL. */
int cm_time_parse(const char *s, size_t len, int64_t *out);

/* Writes "YYYY-MM-DDTHH:MM:SSZ". Returns the length (20), or 0 when
 * bufsz < CM_TIME_BUFSZ or t is outside 1970..9999. */
size_t cm_time_format(int64_t t, char *buf, size_t bufsz);

/* Days since 1970-01-01 of a proleptic Gregorian date, and back. */
int64_t cm_time_days_from_civil(int64_t y, unsigned m, unsigned d);
void cm_time_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);

/* "hour" | "day" | "week" | "month" (exact, lowercase). CM_OK or CM_EINVAL. */
int cm_window_parse(const char *s, cm_window *out);
/* Static name of a window; never NULL. */
const char *cm_window_name(cm_window w);
/* Bounds of the window of kind `w` that contains `t`. */
void cm_window_bounds(cm_window w, int64_t t, int64_t *from, int64_t *to);
/* The series bucket of a window: hour for hour/day, day for week/month. */
cm_window cm_window_bucket(cm_window w);

#endif
