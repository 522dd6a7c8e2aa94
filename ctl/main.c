/* main.c - costmeshctl: dispatch to a subcommand, map its result to an exit
 * status. */
#include "ctl.h"
#include "net.h"

#include <stdio.h>
#include <string.h>

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"keys", cmctl_cmd_keys, "create, list or revoke API keys (admin)"},
    {"policy", cmctl_cmd_policy, "get, set or delete a cost policy: an agent's, the org's, an env's, ..."},
    {"spend", cmctl_cmd_spend, "an agent's, run's, session's, workflow's or customer's spend in a window, with its series"},
    {"top", cmctl_cmd_top, "the most expensive runs, sessions, workflows, customers or agents of a window"},
    {"agents", cmctl_cmd_agents, "the org's agents: health, last heartbeat, intents and cost today"},
    {"kill", cmctl_cmd_kill, "stop an agent's new intents (admin)"},
    {"resume", cmctl_cmd_kill, "let a killed agent open intents again (admin)"},
    {"events", cmctl_cmd_events, "the org's recent events, newest first"},
    {"heartbeat", cmctl_cmd_heartbeat, "send one heartbeat by hand"},
    {"intent", cmctl_cmd_intent, "open an intent (exit 3 when the policy refuses it)"},
    {"intent-end", cmctl_cmd_intent_end, "end an intent, releasing what is left of its reservation"},
    {"pricing", cmctl_cmd_pricing, "list the org's rate cards, or add a version (admin)"},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fputs("usage: costmeshctl COMMAND [ARGS] [--help]\n"
          "\n"
          "The command-line client of costmeshd.\n"
          "\n"
          "commands:\n",
          f);
    for (size_t i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fputs("\n"
          "environment:\n"
          "  COSTMESH_URL      the server (default http://127.0.0.1:8080)\n"
          "  COSTMESH_API_KEY  the API key sent as x-api-key (required)\n"
          "\n"
          "exit status: 0 done, 1 failed (the server's error is printed on one line),\n"
          "2 bad command line or missing COSTMESH_API_KEY, 3 intent refused (429).\n"
          "`costmeshctl COMMAND --help` describes each command.\n",
          f);
}

const char *cmctl_strerror(int rc)
{
    switch (rc) {
    case CMCTL_OK: return "ok";
    case CMCTL_EUSAGE: return "bad command line";
    case CMCTL_ENOMEM: return "out of memory";
    case CMCTL_ENET: return "no answer from the server";
    case CMCTL_EHTTP: return "the server answered with an error";
    case CMCTL_EREPLY: return "unexpected answer from the server";
    case CMCTL_EREFUSED: return "refused by the agent's cost policy";
    case CMCTL_EIO: return "input/output error";
    default: return "unknown error";
    }
}

static int exit_status(int rc)
{
    switch (rc) {
    case CMCTL_OK:
    case CMCTL_DONE: return CMCTL_EXIT_OK;
    case CMCTL_EUSAGE: return CMCTL_EXIT_USAGE;
    case CMCTL_EREFUSED: return CMCTL_EXIT_REFUSED;
    default: return CMCTL_EXIT_FAIL;
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "%s: missing command (see %s --help)\n", CMCTL_PROG, CMCTL_PROG);
        return CMCTL_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return CMCTL_EXIT_OK;
    }
    const command *cmd = NULL;
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) cmd = &commands[i];
    if (!cmd) {
        fprintf(stderr, "%s: unknown command \"%.60s\" (see %s --help)\n", CMCTL_PROG, name, CMCTL_PROG);
        return CMCTL_EXIT_USAGE;
    }
    if (cmctl_net_init() != CMCTL_OK) {
        fprintf(stderr, "%s: could not initialise libcurl\n", CMCTL_PROG);
        return CMCTL_EXIT_FAIL;
    }
    int rc = cmd->run(argc - 1, argv + 1);
    cmctl_net_cleanup();
    /* A table cut short by a full disk or closed pipe is a failure too. */
    if (fflush(stdout) != 0 && rc >= CMCTL_OK) {
        fprintf(stderr, "%s: could not write the output\n", CMCTL_PROG);
        rc = CMCTL_EIO;
    }
    return exit_status(rc);
}
