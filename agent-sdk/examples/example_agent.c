/* example_agent.c - a complete (toy) agent using the costmesh SDK.
 *
 *   COSTMESH_URL=http://127.0.0.1:8080 COSTMESH_API_KEY=... \
 *   COSTMESH_AGENT=agent://default/dev/example ./build/sdk_example_agent [tasks]
 *
 * For each task it asks costmeshd to admit an intent, pauses when a cost
 * policy blocks the agent, "calls an LLM" (simulated) a few times reporting
 * the usage of each call, and at the end flushes and prints its counters.
 * Build: cc example_agent.c $(pkg-config --cflags --libs costmesh) */
#include <costmesh.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void on_state(void *userdata, int state, int64_t cost_today_nanos)
{
    (void)userdata;
    /* Runs on the SDK's thread: keep it short. */
    fprintf(stderr, "example: agent state now %s (cost today %lld nano-USD)\n",
            state == CM_STATE_BLOCKED ? "blocked" : state == CM_STATE_KILLED ? "killed" : "active",
            (long long)cost_today_nanos);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int parse_tasks(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    return (*end || v < 1 || v > 100000) ? -1 : (int)v;
}

int main(int argc, char **argv)
{
    const char *url = getenv("COSTMESH_URL"), *key = getenv("COSTMESH_API_KEY"),
               *agent = getenv("COSTMESH_AGENT");
    int tasks = argc > 1 ? parse_tasks(argv[1]) : 3;
    if (!url || !key || tasks < 0) {
        fprintf(stderr, "usage: COSTMESH_URL=... COSTMESH_API_KEY=... [COSTMESH_AGENT=agent://ORG/ENV/NAME] %s [tasks]\n",
                argv[0]);
        return 2;
    }
    printf("costmesh SDK %s (header %s)\n", cm_version(), CM_VERSION_STRING);

    cm_options o;
    cm_options_init(&o);
    o.url = url;
    o.api_key = key;
    o.agent = agent; /* NULL is fine with a key bound to one agent */
    o.flush_interval_ms = 1000;
    o.on_state = on_state;
    cm_client *c;
    int rc = cm_client_new(&o, &c);
    if (rc != CM_OK) {
        fprintf(stderr, "cm_client_new: %s\n", cm_strerror(rc));
        return 1;
    }

    for (int t = 0; t < tasks; t++) {
        cm_decision why;
        char intent[64];
        snprintf(intent, sizeof intent, "example-%ld-%d", (long)time(NULL), t);
        rc = cm_intent_begin(c, intent, &why);
        if (rc == CM_EBUDGET) {
            printf("task %d refused: %s is %.9g of %.9g; retry in %lld s\n", t, why.limit, why.current,
                   why.limit_value, (long long)why.retry_after_s);
            break; /* a real agent would sleep retry_after_s or stop */
        }
        if (rc == CM_EKILLED) {
            printf("task %d refused: the agent is killed\n", t);
            break;
        }
        if (rc != CM_OK) {
            /* The server is unreachable: this agent chooses to work anyway
             * (reports are buffered and sent when it is back). */
            fprintf(stderr, "intent %s: %s (http %d); working anyway\n", intent, cm_strerror(rc), why.http_status);
        }
        for (int call = 0; call < 3; call++) {
            sleep_ms(20); /* the LLM call */
            cm_usage u = {.intent_id = intent, .cost_usd = 0.0125, .tokens_in = 1200, .tokens_out = 300,
                          .llm_calls = 1};
            if ((rc = cm_report(c, &u)) != CM_OK) fprintf(stderr, "cm_report: %s\n", cm_strerror(rc));
        }
        int state;
        cm_agent_state(c, &state, NULL);
        if (state == CM_STATE_BLOCKED) {
            printf("blocked by a cost policy: pausing\n");
            break;
        }
        printf("task %d done (intent %s)\n", t, why.intent_id[0] ? why.intent_id : intent);
    }

    rc = cm_flush(c, 10000);
    cm_stats st;
    cm_client_stats(c, &st);
    printf("flush: %s; reports %llu, heartbeats acknowledged %llu, cost acknowledged %lld nano-USD\n",
           cm_strerror(rc), (unsigned long long)st.reports, (unsigned long long)st.heartbeats_acked,
           (long long)st.cost_acked_nanos);
    cm_client_free(c);
    return rc == CM_OK ? 0 : 1;
}
