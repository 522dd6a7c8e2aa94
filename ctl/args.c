/* args.c - option parsing and value checks (see args.h). */
#include "args.h"

#include "ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmctl_usage_error(const char *cmd, const char *what)
{
    fprintf(stderr, "%s %s: %s (see %s %s --help)\n", CMCTL_PROG, cmd, what, CMCTL_PROG, cmd);
    return CMCTL_EUSAGE;
}

static const cmctl_opt *find_opt(const cmctl_spec *spec, const char *name, size_t len)
{
    for (size_t i = 0; i < spec->nopts; i++)
        if (strlen(spec->opts[i].name) == len && strncmp(spec->opts[i].name, name, len) == 0)
            return &spec->opts[i];
    return NULL;
}

static int opt_error(const cmctl_spec *spec, const char *fmt_what, const char *arg)
{
    char msg[256];
    snprintf(msg, sizeof msg, fmt_what, arg);
    return cmctl_usage_error(spec->cmd, msg);
}

int cmctl_args_parse(const cmctl_spec *spec, int argc, char **argv, const char **pos, size_t *npos)
{
    int options_done = 0;
    *npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!options_done && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            fputs(spec->usage, stdout);
            return CMCTL_DONE;
        }
        if (!options_done && strcmp(a, "--") == 0) {
            options_done = 1;
            continue;
        }
        if (!options_done && a[0] == '-' && a[1] == '-') {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            const cmctl_opt *o = find_opt(spec, name, len);
            if (!o) return opt_error(spec, "unknown option %.100s", a);
            if (!o->takes_value) {
                if (eq) return opt_error(spec, "option --%.100s takes no value", o->name);
                *o->flag = 1;
                continue;
            }
            if (eq) {
                *o->value = eq + 1;
            } else {
                /* The next word is the value even when it starts with '-',
                 * so "--cost -1" reaches the server and its own error. */
                if (i + 1 >= argc) return opt_error(spec, "option --%.100s needs a value", o->name);
                *o->value = argv[++i];
            }
            continue;
        }
        if (!options_done && a[0] == '-' && a[1] != '\0')
            return opt_error(spec, "unknown option %.100s", a);
        if (*npos >= spec->max_pos) return opt_error(spec, "unexpected argument %.100s", a);
        pos[(*npos)++] = a;
    }
    if (*npos < spec->min_pos) return cmctl_usage_error(spec->cmd, "missing argument");
    return CMCTL_OK;
}

int cmctl_arg_count(const char *cmd, const char *opt, const char *s, long long max, long long *out)
{
    char msg[160];
    size_t n = strlen(s);
    int ok = n > 0 && n <= 19 && strspn(s, "0123456789") == n;
    if (ok) {
        /* Digits only and at most 19 of them, so strtoll cannot see a sign,
         * spaces or trailing text; ERANGE catches the rest. */
        errno = 0;
        long long v = strtoll(s, NULL, 10);
        ok = errno == 0 && v <= max;
        if (ok) *out = v;
    }
    if (ok) return CMCTL_OK;
    snprintf(msg, sizeof msg, "--%s must be a whole number from 0 to %lld, not \"%.40s\"", opt, max, s);
    return cmctl_usage_error(cmd, msg);
}

static const char *digits(const char *p)
{
    while (*p >= '0' && *p <= '9') p++;
    return p;
}

int cmctl_arg_number(const char *cmd, const char *opt, const char *s)
{
    const char *p = s;
    int ok = 1;
    if (*p == '-') p++;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        p = digits(p);
    } else {
        ok = 0;
    }
    if (ok && *p == '.') {
        const char *q = digits(p + 1);
        ok = q > p + 1;
        p = q;
    }
    if (ok && (*p == 'e' || *p == 'E')) {
        p++;
        if (*p == '+' || *p == '-') p++;
        const char *q = digits(p);
        ok = q > p;
        p = q;
    }
    if (ok && *p == '\0' && strlen(s) <= 64) return CMCTL_OK;
    char msg[160];
    snprintf(msg, sizeof msg, "--%s must be a number such as 12.5, not \"%.40s\"", opt, s);
    return cmctl_usage_error(cmd, msg);
}

int cmctl_arg_choice(const char *cmd, const char *opt, const char *s, const char *const *choices)
{
    char msg[256];
    size_t used;
    for (size_t i = 0; choices[i]; i++)
        if (strcmp(s, choices[i]) == 0) return CMCTL_OK;
    used = (size_t)snprintf(msg, sizeof msg, "--%s must be one of", opt);
    for (size_t i = 0; choices[i] && used < sizeof msg; i++)
        used += (size_t)snprintf(msg + used, sizeof msg - used, "%s%s", i ? ", " : " ", choices[i]);
    return cmctl_usage_error(cmd, msg);
}
