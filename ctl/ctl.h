/* ctl.h - what the modules of costmeshctl share: error codes, exit codes and
 * the entry point of each subcommand.
 *
 * Module map: main.c dispatches; args.c parses options; sbuf.c builds text;
 * net.c is the only user of libcurl; call.c turns an HTTP exchange into a
 * parsed reply or one printed error line; table.c prints columns; cmd_*.c
 * hold one subcommand family each. */
#ifndef CMCTL_CTL_H
#define CMCTL_CTL_H

/* CMCTL_OK is 0; failures are negative and only ever appended to. */
enum {
    CMCTL_OK = 0,
    CMCTL_EUSAGE = -1,   /* bad command line or environment (already printed) */
    CMCTL_ENOMEM = -2,   /* allocation failed */
    CMCTL_ENET = -3,     /* no HTTP answer: refused, timeout, bad URL */
    CMCTL_EHTTP = -4,    /* the server answered 4xx/5xx (already printed) */
    CMCTL_EREPLY = -5,   /* the answer is not the JSON we expected */
    CMCTL_EREFUSED = -6, /* an intent was refused by policy (429) */
    CMCTL_EIO = -7,      /* a local system call failed */
};

/* Not an error: --help was printed and the command stops with exit 0. */
#define CMCTL_DONE 1

/* Exit statuses, documented in `costmeshctl --help`. */
enum {
    CMCTL_EXIT_OK = 0,
    CMCTL_EXIT_FAIL = 1,    /* server error, network error, bad reply */
    CMCTL_EXIT_USAGE = 2,   /* bad command line or missing COSTMESH_API_KEY */
    CMCTL_EXIT_REFUSED = 3, /* `intent` refused with 429 */
};

#define CMCTL_PROG "costmeshctl"

/* Room for one error line built from a libcurl reason and a URL. */
#define CMCTL_ERRLEN 512

/* Static English sentence for a code; never NULL. */
const char *cmctl_strerror(int rc);

/* Subcommands. argv[0] is the subcommand's own name; each returns CMCTL_OK,
 * CMCTL_DONE or a negative code whose message has already been printed. */
int cmctl_cmd_keys(int argc, char **argv);
int cmctl_cmd_policy(int argc, char **argv);
int cmctl_cmd_spend(int argc, char **argv);
int cmctl_cmd_top(int argc, char **argv);
int cmctl_cmd_agents(int argc, char **argv);
int cmctl_cmd_kill(int argc, char **argv);   /* kill and resume */
int cmctl_cmd_events(int argc, char **argv);
int cmctl_cmd_heartbeat(int argc, char **argv);
int cmctl_cmd_intent(int argc, char **argv);
int cmctl_cmd_intent_end(int argc, char **argv);
int cmctl_cmd_pricing(int argc, char **argv);

#endif
