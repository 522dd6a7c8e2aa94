/* args.h - the command-line parser every subcommand shares, and checks of
 * option values that must become JSON numbers.
 *
 * Options are long only ("--name VALUE" or "--name=VALUE") and may come
 * before, between or after the positional arguments; "--" ends them.
 * "--help" and "-h" print the subcommand's usage to stdout. */
#ifndef CMCTL_ARGS_H
#define CMCTL_ARGS_H

#include <stddef.h>

typedef struct cmctl_opt {
    const char *name;    /* without the dashes: "window" */
    int takes_value;     /* 0: a flag */
    const char **value;  /* set to the value, borrowed from argv (takes_value) */
    int *flag;           /* set to 1 when given (flags) */
} cmctl_opt;

typedef struct cmctl_spec {
    const char *cmd;     /* "policy set", for messages */
    const char *usage;   /* the whole --help text */
    const cmctl_opt *opts;
    size_t nopts;
    size_t min_pos;      /* positional arguments expected */
    size_t max_pos;
} cmctl_spec;

/* Parses argv[0..argc) (the arguments after the subcommand's name). Fills
 * pos[0..*npos) with the positional arguments (borrowed; pos has room for
 * spec->max_pos). Returns CMCTL_OK, CMCTL_DONE after printing --help, or
 * CMCTL_EUSAGE after printing one line saying what is wrong. */
int cmctl_args_parse(const cmctl_spec *spec, int argc, char **argv, const char **pos, size_t *npos);

/* Prints "costmeshctl CMD: WHAT (see costmeshctl CMD --help)" to stderr and
 * returns CMCTL_EUSAGE, so callers can `return cmctl_usage_error(...)`. */
int cmctl_usage_error(const char *cmd, const char *what);

/* A whole number from 0 to max written in decimal digits only. Writes it to
 * *out and returns CMCTL_OK, else prints a usage error naming opt. */
int cmctl_arg_count(const char *cmd, const char *opt, const char *s, long long max, long long *out);

/* s is a JSON number (RFC 8259 grammar). The text itself goes into request
 * bodies, never a double made from it, so money keeps every digit; the
 * server decides whether the value is in range. */
int cmctl_arg_number(const char *cmd, const char *opt, const char *s);

/* s is one of the NULL-terminated choices. */
int cmctl_arg_choice(const char *cmd, const char *opt, const char *s, const char *const *choices);

#endif
