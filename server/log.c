#include "log.h"
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int cm_log_level = CM_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int cm_log_set_level(const char *name)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            cm_log_level = i;
            return CM_OK;
        }
    }
    return CM_EINVAL;
}

void cm_log_write(int level, const char *fmt, ...)
{
    char line[1024];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(line, sizeof line, "ts=%Y-%m-%dT%H:%M:%SZ", &tm);
    int m = snprintf(line + n, sizeof line - n, " level=%s ",
                     level_names[level < 0 || level > 3 ? 3 : level]);
    if (m > 0) n += (size_t)m;
    va_list ap;
    va_start(ap, fmt);
    if (n < sizeof line) vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    /* One write per line keeps lines from threads whole. */
    fprintf(stderr, "%s\n", line);
}
