/* log.h - one line per event, key=value, to stderr.
 *
 * The level is checked before anything is formatted, so a filtered-out
 * debug line costs one comparison. Thread-safe (one fprintf per line). Never
 * pass API keys or other secrets. */
#ifndef CM_LOG_H
#define CM_LOG_H

enum { CM_LOG_DEBUG = 0, CM_LOG_INFO = 1, CM_LOG_WARN = 2, CM_LOG_ERROR = 3 };

extern int cm_log_level;

/* "debug" | "info" | "warn" | "error"; CM_OK or CM_EINVAL. */
int cm_log_set_level(const char *name);

#define cm_log(level, ...)                                                     \
    do {                                                                       \
        if ((level) >= cm_log_level) cm_log_write((level), __VA_ARGS__);      \
    } while (0)

void cm_log_write(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
