/* cmd_kill.c - `costmeshctl kill|resume ADDR`: the kill switch. */
#include "args.h"
#include "call.h"
#include "ctl.h"
#include "sbuf.h"

#include <stdio.h>
#include <string.h>

static const char kill_usage[] =
    "usage: costmeshctl kill ADDR [--json]\n"
    "\n"
    "Kill agent ADDR (agent://ORG/ENV/NAME; needs an admin key): its new intents get 403\n"
    "agent_killed until `costmeshctl resume ADDR`. Its heartbeats are still recorded.\n"
    "  --json   print the server's JSON as it was sent\n";

static const char resume_usage[] =
    "usage: costmeshctl resume ADDR [--json]\n"
    "\n"
    "Resume killed agent ADDR (agent://ORG/ENV/NAME; needs an admin key): it may open\n"
    "intents again, within its cost policy.\n"
    "  --json   print the server's JSON as it was sent\n";

int cmctl_cmd_kill(int argc, char **argv)
{
    int resume = strcmp(argv[0], "resume") == 0;
    int json = 0;
    const cmctl_opt opts[] = {{"json", 0, NULL, &json}};
    const cmctl_spec spec = {resume ? "resume" : "kill", resume ? resume_usage : kill_usage, opts, 1, 1, 1};
    const char *pos[1];
    size_t npos;
    int rc = cmctl_args_parse(&spec, argc - 1, argv + 1, pos, &npos);
    if (rc != CMCTL_OK) return rc;

    cmctl_buf path;
    cmctl_buf_init(&path);
    cmctl_buf_agent_path(&path, pos[0], resume ? "/resume" : "/kill");
    if (!cmctl_buf_str(&path)) return cmctl_fail(CMCTL_ENOMEM, cmctl_strerror(CMCTL_ENOMEM));
    cmctl_reply r;
    rc = cmctl_call("POST", cmctl_buf_str(&path), NULL, NULL, &r);
    cmctl_buf_free(&path);
    if (rc == CMCTL_OK && json)
        rc = cmctl_print_raw(&r);
    else if (rc == CMCTL_OK)
        printf("%s  state %s\n", cmctl_jtext(r.json, "address", pos[0]), cmctl_jtext(r.json, "state", "-"));
    cmctl_reply_free(&r);
    return rc;
}
