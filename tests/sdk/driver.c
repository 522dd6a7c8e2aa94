/* tests/sdk/driver.c - drives the SDK for tests/integration/test_f_sdk.py.
 *
 *   sdk_driver session URL KEY AGENT|- [name=value ...]
 *
 * Options: flush_ms, max_batch, max_pending, timeout_ms, backoff_ms,
 * backoff_max_ms, close_ms. Then reads one command per line on stdin and
 * answers one line on stdout (key=value):
 *
 *   report COST N THREADS NINTENTS PREFIX   THREADS threads each make N reports
 *                                           of COST (intent PREFIX-k, k = i % NINTENTS;
 *                                           PREFIX "-": no intent)
 *                                           -> report ok=.. full=.. err=..
 *   model NAME COST|card TIN TCACHED TWRITE TOUT   one report of model NAME, no
 *                                           intent, with COST or left to the rate
 *                                           card (CM_COST_BY_RATE_CARD)
 *                                           -> model rc=N name=...
 *   flush MS      -> flush rc=N name=...
 *   intent ID|- [RUN SESSION WORKFLOW CUSTOMER]   (each "-" for none; with
 *                 them, cm_intent_begin_attrs)
 *                 -> intent rc=N name=... status=.. code=.. limit=.. limit_value=..
 *                    limit_value_exact=.. current_exact=.. retry_after_s=.. intent_id=..
 *   money ID|- COST REVENUE REFUND EXTERNAL FEES   one cm_report_money
 *                 -> money rc=N name=...
 *   state         -> state state=N cost_today_nanos=N callbacks=N last_cb=N
 *   stats         -> stats reports=.. ... (every cm_stats field)
 *   quit          -> frees the client (bounded by close_ms), "bye", exit 0
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "costmesh.h"

static _Atomic int callbacks, last_cb;

static void on_state(void *ud, int state, int64_t cost)
{
    (void)ud;
    (void)cost;
    atomic_store(&last_cb, state);
    atomic_fetch_add(&callbacks, 1);
}

static int to_long(const char *s, long *out)
{
    char *end;
    if (!s || !*s) return -1;
    long v = strtol(s, &end, 10);
    if (*end) return -1;
    *out = v;
    return 0;
}

typedef struct {
    cm_client *c;
    double cost;
    long n, nintents;
    const char *prefix;
    int tid;
    long ok, full, err;
} job;

static void *run(void *arg)
{
    job *j = arg;
    char ids[64][96];
    long k = j->nintents < 1 ? 1 : j->nintents > 64 ? 64 : j->nintents;
    for (long i = 0; i < k; i++) snprintf(ids[i], sizeof ids[i], "%s-%ld", j->prefix, i);
    cm_usage u = {.cost_usd = j->cost, .tokens_in = 3, .tokens_out = 2, .llm_calls = 1};
    for (long i = 0; i < j->n; i++) {
        u.intent_id = strcmp(j->prefix, "-") == 0 ? NULL : ids[(i + j->tid) % k];
        int rc = cm_report(j->c, &u);
        if (rc == CM_OK) j->ok++;
        else if (rc == CM_EFULL) j->full++;
        else j->err++;
    }
    return NULL;
}

/* NULL for "-". */
static const char *dash(const char *s)
{
    return strcmp(s, "-") == 0 ? NULL : s;
}

static const char *name_of(int rc)
{
    static const char *const names[] = {"CM_OK", "CM_EINVAL", "CM_ENOMEM", "CM_EFULL", "CM_ERANGE",
                                        "CM_ETIMEDOUT", "CM_ENETWORK", "CM_EBUDGET", "CM_EKILLED", "CM_EAUTH",
                                        "CM_EHTTP", "CM_EPROTO", "CM_ETHREAD", "CM_ESHUTDOWN", "CM_EREJECTED"};
    return rc <= 0 && -rc < (int)(sizeof names / sizeof names[0]) ? names[-rc] : "unknown";
}

static void cmd_report(cm_client *c, char **arg, int nargs)
{
    long n, threads, nintents;
    char *end;
    double cost = nargs == 5 ? strtod(arg[0], &end) : 0;
    if (nargs != 5 || *end || to_long(arg[1], &n) || to_long(arg[2], &threads) || to_long(arg[3], &nintents) ||
        threads < 1 || threads > 64) {
        printf("error bad report arguments\n");
        return;
    }
    pthread_t th[64];
    job jobs[64];
    for (long t = 0; t < threads; t++) {
        jobs[t] = (job){c, cost, n, nintents, arg[4], (int)t, 0, 0, 0};
        pthread_create(&th[t], NULL, run, &jobs[t]);
    }
    long ok = 0, full = 0, err = 0;
    for (long t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        ok += jobs[t].ok;
        full += jobs[t].full;
        err += jobs[t].err;
    }
    printf("report ok=%ld full=%ld err=%ld\n", ok, full, err);
}

int main(int argc, char **argv)
{
    if (argc < 5 || strcmp(argv[1], "session") != 0) {
        fprintf(stderr, "usage: %s session URL KEY AGENT|- [name=value ...]\n", argv[0]);
        return 2;
    }
    cm_options o;
    cm_options_init(&o);
    o.url = argv[2];
    o.api_key = argv[3];
    o.agent = strcmp(argv[4], "-") == 0 ? NULL : argv[4];
    o.on_state = on_state;
    for (int i = 5; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        long v;
        if (!eq || to_long(eq + 1, &v)) {
            fprintf(stderr, "bad option %s\n", argv[i]);
            return 2;
        }
        *eq = 0;
        if (strcmp(argv[i], "flush_ms") == 0) o.flush_interval_ms = (int)v;
        else if (strcmp(argv[i], "max_batch") == 0) o.max_batch = (int)v;
        else if (strcmp(argv[i], "max_pending") == 0) o.max_pending_intents = (int)v;
        else if (strcmp(argv[i], "timeout_ms") == 0) o.request_timeout_ms = (int)v;
        else if (strcmp(argv[i], "backoff_ms") == 0) o.backoff_initial_ms = (int)v;
        else if (strcmp(argv[i], "backoff_max_ms") == 0) o.backoff_max_ms = (int)v;
        else if (strcmp(argv[i], "close_ms") == 0) o.close_timeout_ms = (int)v;
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    cm_client *c;
    int rc = cm_client_new(&o, &c);
    if (rc != CM_OK) {
        printf("error cm_client_new rc=%d name=%s\n", rc, name_of(rc));
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready version=%s\n", cm_version());
    char line[512];
    while (fgets(line, sizeof line, stdin)) {
        char *arg[8];
        int nargs = 0;
        char *save = NULL;
        char *cmd = strtok_r(line, " \t\r\n", &save);
        if (!cmd) continue;
        char *a;
        while (nargs < 8 && (a = strtok_r(NULL, " \t\r\n", &save))) arg[nargs++] = a;
        if (strcmp(cmd, "report") == 0) {
            cmd_report(c, arg, nargs);
        } else if (strcmp(cmd, "model") == 0) {
            long t[4];
            char *end = NULL;
            cm_usage u = {.llm_calls = 1};
            if (nargs == 6) u.cost_usd = strcmp(arg[1], "card") == 0 ? CM_COST_BY_RATE_CARD : strtod(arg[1], &end);
            if (nargs != 6 || (end && *end) || to_long(arg[2], &t[0]) || to_long(arg[3], &t[1]) ||
                to_long(arg[4], &t[2]) || to_long(arg[5], &t[3])) {
                printf("error bad model arguments\n");
                continue;
            }
            u.model = arg[0];
            u.tokens_in = t[0];
            u.tokens_cached = t[1];
            u.tokens_cache_write = t[2];
            u.tokens_out = t[3];
            rc = cm_report(c, &u);
            printf("model rc=%d name=%s\n", rc, name_of(rc));
        } else if (strcmp(cmd, "flush") == 0) {
            long ms;
            if (nargs != 1 || to_long(arg[0], &ms)) {
                printf("error bad flush arguments\n");
                continue;
            }
            rc = cm_flush(c, (int)ms);
            printf("flush rc=%d name=%s\n", rc, name_of(rc));
        } else if (strcmp(cmd, "intent") == 0) {
            cm_decision d;
            cm_intent_attrs at = {NULL, NULL, NULL, NULL};
            if (nargs == 5) at = (cm_intent_attrs){dash(arg[1]), dash(arg[2]), dash(arg[3]), dash(arg[4])};
            rc = nargs == 5 ? cm_intent_begin_attrs(c, dash(arg[0]), &at, &d)
                            : cm_intent_begin(c, nargs >= 1 ? dash(arg[0]) : NULL, &d);
            printf("intent rc=%d name=%s status=%d code=%s limit=%s limit_value=%.17g limit_value_exact=%lld "
                   "current=%.17g current_exact=%lld retry_after_s=%lld intent_id=%s\n",
                   rc, name_of(rc), d.http_status, d.error_code[0] ? d.error_code : "-", d.limit[0] ? d.limit : "-",
                   d.limit_value, (long long)d.limit_value_exact, d.current, (long long)d.current_exact,
                   (long long)d.retry_after_s, d.intent_id[0] ? d.intent_id : "-");
        } else if (strcmp(cmd, "end") == 0) {
            /* end INTENT STATUS [QUALITY] */
            cm_decision d;
            memset(&d, 0, sizeof d);
            rc = nargs >= 2 ? cm_intent_end(c, arg[0], arg[1], nargs >= 3 ? strtod(arg[2], NULL) : -1, &d) : CM_EINVAL;
            printf("end rc=%d name=%s status=%d code=%s intent_id=%s\n", rc, name_of(rc), d.http_status,
                   d.error_code[0] ? d.error_code : "-", d.intent_id[0] ? d.intent_id : "-");
        } else if (strcmp(cmd, "money") == 0) {
            double v[5];
            char *end = NULL;
            int bad = nargs != 6;
            for (int i = 0; !bad && i < 5; i++) {
                v[i] = strtod(arg[1 + i], &end);
                bad = *end != '\0';
            }
            if (bad) {
                printf("error bad money arguments\n");
                continue;
            }
            cm_usage u = {.intent_id = dash(arg[0]), .cost_usd = v[0]};
            cm_money m = {v[1], v[2], v[3], v[4]};
            rc = cm_report_money(c, &u, &m);
            printf("money rc=%d name=%s\n", rc, name_of(rc));
        } else if (strcmp(cmd, "state") == 0) {
            int st;
            int64_t today;
            cm_agent_state(c, &st, &today);
            printf("state state=%d cost_today_nanos=%lld callbacks=%d last_cb=%d\n", st, (long long)today,
                   atomic_load(&callbacks), atomic_load(&last_cb));
        } else if (strcmp(cmd, "stats") == 0) {
            cm_stats s;
            cm_client_stats(c, &s);
            printf("stats reports=%llu reports_full=%llu batches_sent=%llu batches_acked=%llu retries=%llu "
                   "heartbeats_acked=%llu heartbeats_duplicate=%llu heartbeats_dropped=%llu cost_dropped_nanos=%lld "
                   "cost_acked_nanos=%lld pending_intents=%llu last_error=%d last_http_status=%d\n",
                   (unsigned long long)s.reports, (unsigned long long)s.reports_full,
                   (unsigned long long)s.batches_sent, (unsigned long long)s.batches_acked,
                   (unsigned long long)s.retries, (unsigned long long)s.heartbeats_acked,
                   (unsigned long long)s.heartbeats_duplicate, (unsigned long long)s.heartbeats_dropped,
                   (long long)s.cost_dropped_nanos, (long long)s.cost_acked_nanos,
                   (unsigned long long)s.pending_intents, s.last_error, s.last_http_status);
        } else if (strcmp(cmd, "quit") == 0) {
            break;
        } else {
            printf("error unknown command %s\n", cmd);
        }
    }
    cm_client_free(c);
    printf("bye\n");
    return 0;
}
