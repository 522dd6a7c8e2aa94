#include "ingest.h"
#include "error.h"
#include "log.h"
#include "policy.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows in one statement: big enough to amortise the commit's fsync, small
 * enough to keep one statement's latency low. */
#define GROUP_ROWS 4000
#define MAX_RETRIES 3
#define CHECK_CHUNK 100 /* agents per CHECK call */

/* The one statement of a group commit (data-modifying CTEs always run to
 * completion, referenced or not). Lock order is fixed by the ORDER BY
 * clauses so concurrent replicas do not deadlock each other (and a deadlock
 * that happens anyway is retried). Every output column is text so the three
 * kinds of rows can share one result:
 *   'n' idx                      a row that was new (not a duplicate)
 *   'r' address grain bucket ... a rollup's absolute totals after this commit
 *   't' address cost             the agent's cost today before this
 *                                statement (an 'r' row of today's day
 *                                bucket, when there is one, is newer; a
 *                                join on the 'roll' CTE here would rescan
 *                                it once per agent) */
static const char group_sql[] =
    "WITH input AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
    " $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::bigint[],"
    " $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[],"
    " $18::bigint[], $19::float8[], $20::int[]) AS t(address, hb_id, intent_id, run_id,"
    " session_id, workflow, parent_intent_id, status, ts, cost, tin, tout, tcached, calls, tools,"
    " itotal, isucc, ifail, lat, idx)),"
    " ins AS (INSERT INTO heartbeats (address, hb_id, intent_id, run_id, session_id, workflow,"
    " parent_intent_id, status, ts, cost_nanos, tokens_in, tokens_out, tokens_cached, llm_calls,"
    " tool_calls, intents_total, intents_succeeded, intents_failed, avg_latency_ms)"
    " SELECT address, hb_id, intent_id, run_id, session_id, workflow, parent_intent_id, status,"
    " to_timestamp(ts), cost, tin, tout, tcached, calls, tools, itotal, isucc, ifail, lat"
    " FROM input ORDER BY address, hb_id"
    " ON CONFLICT (address, hb_id) WHERE hb_id IS NOT NULL DO NOTHING"
    " RETURNING address, hb_id, intent_id, ts, cost_nanos, tokens_in, tokens_out, tokens_cached,"
    " llm_calls, tool_calls, intents_total, intents_succeeded, intents_failed),"
    " roll AS (INSERT INTO rollup_agent AS r (address, grain, bucket, cost_nanos, tokens_in,"
    " tokens_out, tokens_cached, llm_calls, tool_calls, heartbeats, intents_total,"
    " intents_succeeded, intents_failed)"
    " SELECT i.address, g.grain, date_trunc(g.unit, i.ts, 'UTC'), sum(cost_nanos), sum(tokens_in),"
    " sum(tokens_out), sum(tokens_cached), sum(llm_calls), sum(tool_calls), count(*),"
    " sum(intents_total), sum(intents_succeeded), sum(intents_failed)"
    " FROM ins i CROSS JOIN (VALUES ('h', 'hour'), ('d', 'day'), ('m', 'month')) AS g(grain, unit)"
    " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    " ON CONFLICT (address, grain, bucket) DO UPDATE SET"
    " cost_nanos = r.cost_nanos + excluded.cost_nanos, tokens_in = r.tokens_in + excluded.tokens_in,"
    " tokens_out = r.tokens_out + excluded.tokens_out,"
    " tokens_cached = r.tokens_cached + excluded.tokens_cached,"
    " llm_calls = r.llm_calls + excluded.llm_calls, tool_calls = r.tool_calls + excluded.tool_calls,"
    " heartbeats = r.heartbeats + excluded.heartbeats,"
    " intents_total = r.intents_total + excluded.intents_total,"
    " intents_succeeded = r.intents_succeeded + excluded.intents_succeeded,"
    " intents_failed = r.intents_failed + excluded.intents_failed"
    " RETURNING address, grain, bucket, cost_nanos, tokens_in, tokens_out, llm_calls, heartbeats),"
    " iroll AS (INSERT INTO rollup_intent_hour AS r (address, intent_id, bucket, cost_nanos,"
    " tokens_in, tokens_out, tokens_cached, llm_calls, tool_calls, heartbeats)"
    " SELECT address, intent_id, date_trunc('hour', ts, 'UTC'), sum(cost_nanos), sum(tokens_in),"
    " sum(tokens_out), sum(tokens_cached), sum(llm_calls), sum(tool_calls), count(*)"
    " FROM ins WHERE intent_id IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    " ON CONFLICT (address, intent_id, bucket) DO UPDATE SET"
    " cost_nanos = r.cost_nanos + excluded.cost_nanos, tokens_in = r.tokens_in + excluded.tokens_in,"
    " tokens_out = r.tokens_out + excluded.tokens_out,"
    " tokens_cached = r.tokens_cached + excluded.tokens_cached,"
    " llm_calls = r.llm_calls + excluded.llm_calls, tool_calls = r.tool_calls + excluded.tool_calls,"
    " heartbeats = r.heartbeats + excluded.heartbeats RETURNING 1),"
    " reg AS (INSERT INTO agents AS a (address, org, last_heartbeat)"
    " SELECT DISTINCT address, split_part(address, '/', 3), now() FROM input ORDER BY 1"
    " ON CONFLICT (address) DO UPDATE SET last_heartbeat = greatest(a.last_heartbeat, excluded.last_heartbeat)"
    " RETURNING 1),"
    " today AS (SELECT date_trunc('day', to_timestamp($21), 'UTC') AS d)"
    " SELECT 'n', i.idx::text, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM input i"
    " WHERE i.hb_id IS NULL OR EXISTS (SELECT 1 FROM ins WHERE ins.address = i.address AND ins.hb_id = i.hb_id)"
    " UNION ALL SELECT 'r', address, grain, extract(epoch FROM bucket)::bigint::text, cost_nanos::text,"
    " tokens_in::text, tokens_out::text, llm_calls::text, heartbeats::text FROM roll"
    " UNION ALL SELECT 't', x.address, coalesce(d.cost_nanos, 0)::text, NULL, NULL,"
    " NULL, NULL, NULL, NULL FROM (SELECT DISTINCT address FROM input) x CROSS JOIN today"
    " LEFT JOIN rollup_agent d ON d.address = x.address AND d.grain = 'd' AND d.bucket = today.d";

/* A row of the group: which job and which heartbeat of it. */
typedef struct {
    cm_job *job;
    size_t hb;
    int dup;      /* duplicate of an earlier row of the same group */
    int is_new;   /* set from the result */
} row;

/* A distinct agent of the group, with what its reply says. */
typedef struct {
    char address[CM_ADDR_MAX];
    int64_t cost_today;
    int state; /* 0 active, 1 blocked, 2 killed (from Redis) */
    const cm_job *listed_in; /* the last reply that named it, so each names it once */
} group_agent;

typedef struct group {
    cm_ingest *in;
    cm_jobq jobs;  /* in arrival order, as their rows are */
    row *rows;
    size_t nrows;
    int64_t now;
    int retries;
    group_agent *agents; /* owned */
    int nagents;
    int checks;          /* CHECK calls not yet answered */
} group;

struct cm_ingest {
    uv_timer_t retry; /* re-runs a failed rebuild */
    cm_pg_pool *writer;
    cm_store *store;
    cm_notify *notify;
    cm_jobq waiting;      /* jobs not yet in a group */
    int inflight;         /* groups sent to PostgreSQL, not yet answered */
    int rebuilding;
    int rebuild_again;
    _Atomic size_t backlog;
    _Atomic unsigned long long accepted, duplicates;
};

static void flush(cm_ingest *in);

int cm_ingest_new(uv_loop_t *loop, cm_pg_pool *writer, cm_store *store, cm_notify *notify,
                  cm_ingest **out)
{
    cm_ingest *in = calloc(1, sizeof *in);
    if (!in) return CM_ENOMEM;
    uv_timer_init(loop, &in->retry);
    in->retry.data = in;
    in->writer = writer;
    in->store = store;
    in->notify = notify;
    *out = in;
    return CM_OK;
}

static void answer(cm_ingest *in, cm_job *j)
{
    atomic_fetch_sub(&in->backlog, 1);
    j->done(j);
}

/* Answers every job of q with the same error, emptying q. */
static void fail_jobs(cm_ingest *in, cm_jobq *q, int status, const char *code, const char *msg)
{
    cm_job *j;
    while ((j = cm_jobq_pop(q)) != NULL) {
        cm_job_fail(j, status, code, NULL, msg);
        answer(in, j);
    }
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void cm_ingest_free(cm_ingest *in)
{
    if (!in) return;
    fail_jobs(in, &in->waiting, 503, "shutting_down", "the server is stopping; retry");
    uv_close((uv_handle_t *)&in->retry, on_closed);
}

size_t cm_ingest_backlog(const cm_ingest *in)
{
    return atomic_load(&((cm_ingest *)in)->backlog);
}

unsigned long long cm_ingest_accepted(const cm_ingest *in)
{
    return atomic_load(&((cm_ingest *)in)->accepted);
}

unsigned long long cm_ingest_duplicates(const cm_ingest *in)
{
    return atomic_load(&((cm_ingest *)in)->duplicates);
}

void cm_ingest_submit(cm_ingest *in, cm_job *j)
{
    atomic_fetch_add(&in->backlog, 1);
    cm_jobq_push(&in->waiting, j);
    if (in->inflight < CM_INGEST_WRITERS) flush(in);
}

/* ---- array parameters in PostgreSQL's text form ---- */

static void arr_text(cm_buf *b, const char *s)
{
    if (!*s) {
        cm_buf_adds(b, "NULL");
        return;
    }
    cm_buf_add(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\') cm_buf_add(b, "\\", 1);
        cm_buf_add(b, p, 1);
    }
    cm_buf_add(b, "\"", 1);
}

enum { NCOLS = 21 };

static const cm_hb *row_hb(const row *r)
{
    return &r->job->req.heartbeat.hbs[r->hb];
}

static void add_col(cm_buf *b, int col, const cm_hb *h, size_t idx)
{
    switch (col) {
    case 0: arr_text(b, h->agent); break;
    case 1: arr_text(b, h->id); break;
    case 2: arr_text(b, h->intent_id); break;
    case 3: arr_text(b, h->run_id); break;
    case 4: arr_text(b, h->session_id); break;
    case 5: arr_text(b, h->workflow); break;
    case 6: arr_text(b, h->parent_intent_id); break;
    case 7: arr_text(b, h->status); break;
    case 8: cm_buf_addf(b, "%lld", (long long)h->ts); break;
    case 9: cm_buf_addf(b, "%lld", (long long)h->cost_nanos); break;
    case 10: cm_buf_addf(b, "%lld", (long long)h->tokens_in); break;
    case 11: cm_buf_addf(b, "%lld", (long long)h->tokens_out); break;
    case 12: cm_buf_addf(b, "%lld", (long long)h->tokens_cached); break;
    case 13: cm_buf_addf(b, "%lld", (long long)h->llm_calls); break;
    case 14: cm_buf_addf(b, "%lld", (long long)h->tool_calls); break;
    case 15: cm_buf_addf(b, "%lld", (long long)h->intents_total); break;
    case 16: cm_buf_addf(b, "%lld", (long long)h->intents_succeeded); break;
    case 17: cm_buf_addf(b, "%lld", (long long)h->intents_failed); break;
    case 18:
        if (h->has_latency) cm_buf_addf(b, "%.17g", h->avg_latency_ms);
        else cm_buf_adds(b, "NULL");
        break;
    case 19: cm_buf_addf(b, "%zu", idx); break;
    }
}

/* Marks rows whose (agent, id) already appeared earlier in the group, so
 * each pair is sent once and the result maps back without ambiguity.
 * Quadratic only within one agent's rows with ids, via a sort. */
static int cmp_rows(const void *a, const void *b)
{
    const row *x = *(const row *const *)a, *y = *(const row *const *)b;
    int c = strcmp(row_hb(x)->agent, row_hb(y)->agent);
    if (c) return c;
    c = strcmp(row_hb(x)->id, row_hb(y)->id);
    if (c) return c;
    return x < y ? -1 : x > y;
}

static int mark_dups(group *g)
{
    row **order = malloc(g->nrows * sizeof *order);
    if (!order) return CM_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < g->nrows; i++)
        if (row_hb(&g->rows[i])->id[0]) order[n++] = &g->rows[i];
    qsort(order, n, sizeof *order, cmp_rows);
    for (size_t i = 1; i < n; i++)
        if (strcmp(row_hb(order[i])->agent, row_hb(order[i - 1])->agent) == 0 &&
            strcmp(row_hb(order[i])->id, row_hb(order[i - 1])->id) == 0)
            order[i]->dup = 1;
    free(order);
    return CM_OK;
}

static void group_free(group *g)
{
    free(g->agents);
    free(g->rows);
    free(g);
}

static void on_group(void *arg, int rc, const cm_pgres *res, const char *sqlstate);

static void send_group(group *g)
{
    cm_buf cols[NCOLS];
    const char *params[NCOLS];
    char nowbuf[24];
    for (int c = 0; c < NCOLS - 1; c++) {
        cm_buf_init(&cols[c]);
        cm_buf_add(&cols[c], "{", 1);
        int first = 1;
        for (size_t i = 0; i < g->nrows; i++) {
            if (g->rows[i].dup) continue;
            if (!first) cm_buf_add(&cols[c], ",", 1);
            first = 0;
            add_col(&cols[c], c, row_hb(&g->rows[i]), i);
        }
        cm_buf_add(&cols[c], "}", 1);
    }
    snprintf(nowbuf, sizeof nowbuf, "%lld", (long long)g->now);
    int failed = 0;
    for (int c = 0; c < NCOLS - 1; c++) {
        failed |= cols[c].failed;
        params[c] = cols[c].data;
    }
    params[NCOLS - 1] = nowbuf;
    int rc = failed ? CM_ENOMEM : cm_pg_query(g->in->writer, group_sql, NCOLS, params, on_group, g);
    for (int c = 0; c < NCOLS - 1; c++) cm_buf_free(&cols[c]);
    if (rc != CM_OK) {
        cm_ingest *in = g->in;
        in->inflight--;
        fail_jobs(in, &g->jobs, 503, "store_unavailable",
                  rc == CM_ENOMEM ? "out of memory; retry" : "PostgreSQL is unavailable; retry");
        group_free(g);
        if (in->waiting.head) flush(in);
    }
}

static void flush(cm_ingest *in)
{
    if (!in->waiting.head) return;
    group *g = calloc(1, sizeof *g);
    size_t cap = 0;
    for (cm_job *j = in->waiting.head; j && (cap == 0 || cap + j->req.heartbeat.n <= GROUP_ROWS); j = j->next) cap += j->req.heartbeat.n;
    if (g) g->rows = calloc(cap ? cap : 1, sizeof *g->rows);
    if (!g || !g->rows) {
        free(g);
        fail_jobs(in, &in->waiting, 503, "internal", "out of memory; retry");
        return;
    }
    g->in = in;
    while (in->waiting.head && g->nrows + in->waiting.head->req.heartbeat.n <= cap) {
        cm_job *j = cm_jobq_pop(&in->waiting);
        cm_jobq_push(&g->jobs, j);
        if (!g->now || j->now > g->now) g->now = j->now;
        for (size_t h = 0; h < j->req.heartbeat.n; h++) {
            g->rows[g->nrows].job = j;
            g->rows[g->nrows].hb = h;
            g->nrows++;
        }
    }
    in->inflight++;
    if (mark_dups(g) != CM_OK) {
        in->inflight--;
        fail_jobs(in, &g->jobs, 503, "internal", "out of memory; retry");
        group_free(g);
        return;
    }
    send_group(g);
}

/* ---- replies ---- */

static int cmp_agents(const void *a, const void *b)
{
    return strcmp(((const group_agent *)a)->address, ((const group_agent *)b)->address);
}

/* The group's agent of that address (agents are sorted), or NULL. */
static group_agent *find_agent(group *g, const char *address)
{
    group_agent key;
    snprintf(key.address, sizeof key.address, "%s", address);
    return g->agents ? bsearch(&key, g->agents, (size_t)g->nagents, sizeof *g->agents, cmp_agents) : NULL;
}

static const char *const state_names[] = {"active", "blocked", "killed"};

static void reply_jobs(group *g)
{
    cm_ingest *in = g->in;
    size_t r = 0;
    cm_job *j;
    while ((j = cm_jobq_pop(&g->jobs)) != NULL) {
        size_t accepted = 0;
        for (size_t h = 0; h < j->req.heartbeat.n; h++, r++) accepted += g->rows[r].is_new;
        size_t dups = j->req.heartbeat.n - accepted;
        atomic_fetch_add(&in->accepted, accepted);
        atomic_fetch_add(&in->duplicates, dups);
        cm_buf b;
        cm_buf_init(&b);
        cm_buf_addf(&b, "{\"accepted\":%zu,\"duplicates\":%zu,\"agents\":{", accepted, dups);
        int first = 1;
        for (size_t h = 0; h < j->req.heartbeat.n; h++) {
            /* Every agent of the group has a 't' row, so ga is found. */
            group_agent *ga = find_agent(g, j->req.heartbeat.hbs[h].agent);
            if (!ga || ga->listed_in == j) continue;
            ga->listed_in = j;
            if (!first) cm_buf_add(&b, ",", 1);
            first = 0;
            cm_buf_add_jstr(&b, ga->address);
            cm_buf_addf(&b, ":{\"state\":\"%s\",\"cost_today_usd\":", state_names[ga->state]);
            cm_buf_add_money(&b, ga->cost_today);
            cm_buf_adds(&b, "}");
        }
        cm_buf_adds(&b, "}}");
        cm_job_reply(j, 202, &b);
        answer(in, j);
    }
}

/* ---- Redis mirror ---- */

static const char *const merge_fields[] = {"cost", "tin", "tout", "calls", "hb"};
enum { NMERGE = 5 };

/* Builds the MERGE call for rows [from, to) of res whose columns start at
 * `col`: address, grain, bucket, then one column per field (NMERGE fields
 * of a rollup, or the one intents count). */
static int send_merge(cm_ingest *in, const cm_pgres *res, int from, int to, int col,
                      const char *const *fields, int nfields, cm_store_cb cb, void *arg)
{
    int nk = to - from;
    int argc = 1 + nk + nk * (2 + 2 * nfields);
    const char **argv = malloc((size_t)argc * sizeof *argv);
    size_t *lens = malloc((size_t)argc * sizeof *lens);
    char *keys = malloc((size_t)nk * CM_STORE_KEY_MAX);
    char *nums = malloc((size_t)nk * 16);
    char nf[8];
    int rc = CM_ENOMEM;
    if (!argv || !lens || !keys || !nums) goto out;
    snprintf(nf, sizeof nf, "%d", nfields);
    int a = 0;
    argv[a++] = CM_STORE_EPOCH_KEY;
    for (int r = from; r < to; r++) {
        char *k = keys + (size_t)(r - from) * CM_STORE_KEY_MAX;
        cm_store_key_window(cm_pgres_get(res, r, col), cm_pgres_get(res, r, col + 1)[0],
                            strtoll(cm_pgres_get(res, r, col + 2), NULL, 10), k);
        argv[a++] = k;
    }
    for (int r = from; r < to; r++) {
        char *ttl = nums + (size_t)(r - from) * 16;
        snprintf(ttl, 16, "%ld", cm_store_window_ttl(cm_pgres_get(res, r, col + 1)[0]));
        argv[a++] = ttl;
        argv[a++] = nf;
        for (int f = 0; f < nfields; f++) {
            argv[a++] = fields[f];
            argv[a++] = cm_pgres_get(res, r, col + 3 + f);
        }
    }
    for (int i = 0; i < a; i++) lens[i] = strlen(argv[i]);
    rc = cm_store_eval(in->store, CM_SCRIPT_MERGE, 1 + nk, a, argv, lens, cb, arg);
out:
    free(argv);
    free(lens);
    free(keys);
    free(nums);
    return rc;
}

static void on_merged(void *arg, int rc, const cm_store_reply *reply)
{
    cm_ingest *in = arg;
    if (rc == CM_OK && cm_store_reply_int(reply, 0) == 0 && !in->rebuilding) {
        cm_log(CM_LOG_WARN, "event=redis_epoch_missing action=rebuild");
        cm_ingest_rebuild(in);
    }
}

static void finish_group(group *g)
{
    reply_jobs(g);
    group_free(g);
}

/* Records the events of newly crossed marks: a threshold of a cost limit
 * (threshold_crossed) or the limit itself (policy_breached). */
static void mark_event(cm_ingest *in, const char *address, const cm_store_reply *r, int at)
{
    char tmp[32], org[CM_ADDR_SEG_MAX + 1];
    if (cm_addr_org(address, org) != CM_OK) return;
    int lim = (int)cm_store_reply_int(r, at + 1);
    int64_t fraction = cm_store_reply_int(r, at + 2);
    cm_buf d;
    cm_buf_init(&d);
    cm_buf_addf(&d, "{\"limit\":\"%s\",\"limit_value\":", cm_limit_name(lim));
    cm_policy_value_json(lim, strtoll(cm_store_reply_str(r, at + 4, tmp, sizeof tmp), NULL, 10), &d);
    cm_buf_adds(&d, ",\"current\":");
    cm_policy_value_json(lim, strtoll(cm_store_reply_str(r, at + 3, tmp, sizeof tmp), NULL, 10), &d);
    if (fraction) {
        cm_buf_adds(&d, ",\"threshold\":");
        cm_buf_add_money(&d, fraction);
    }
    cm_buf_adds(&d, "}");
    char *details = cm_buf_take(&d, NULL);
    if (details)
        cm_notify_event(in->notify, org, address, fraction ? "threshold_crossed" : "policy_breached", details, true,
                        NULL, NULL);
    free(details);
}

typedef struct {
    group *g;
    int first, n;
} check_call;

static void on_check(void *arg, int rc, const cm_store_reply *r)
{
    check_call *cc = arg;
    group *g = cc->g;
    if (rc == CM_OK) {
        int len = cm_store_reply_len(r);
        for (int i = 0; i < cc->n && i < len; i++) {
            long long st = cm_store_reply_int(r, i);
            g->agents[cc->first + i].state = st >= 0 && st <= 2 ? (int)st : 0;
        }
        for (int at = cc->n; at + 5 <= len; at += 5) {
            long long ai = cm_store_reply_int(r, at);
            if (ai >= 0 && ai < cc->n) mark_event(g->in, g->agents[cc->first + ai].address, r, at);
        }
    }
    free(cc);
    if (--g->checks == 0) finish_group(g);
}

/* CHECK for agents [from, from + CHECK_CHUNK) of the group, at the current
 * windows. */
static int send_check(group *g, int from)
{
    int n = g->nagents - from < CHECK_CHUNK ? g->nagents - from : CHECK_CHUNK;
    int64_t win[CM_WIN3];
    char starts[CM_WIN3][24];
    cm_policy_window_starts(g->now, win);
    for (int w = 0; w < CM_WIN3; w++) snprintf(starts[w], sizeof starts[w], "%lld", (long long)win[w]);
    int argc = 1 + 8 * n;
    const char **argv = malloc((size_t)argc * sizeof *argv);
    size_t *lens = malloc((size_t)argc * sizeof *lens);
    char (*keys)[CM_STORE_KEY_MAX] = malloc((size_t)n * 4 * sizeof *keys);
    check_call *cc = malloc(sizeof *cc);
    int rc = CM_ENOMEM;
    if (!argv || !lens || !keys || !cc) goto out;
    argv[0] = CM_STORE_EPOCH_KEY;
    for (int i = 0; i < n; i++) {
        const char *addr = g->agents[from + i].address;
        /* Per agent: its policy hash, then its hour, day and month hashes. */
        cm_store_key_policy(addr, keys[4 * i]);
        for (int w = 0; w < CM_WIN3; w++) cm_store_key_window(addr, CM_STORE_GRAINS[w], win[w], keys[4 * i + 1 + w]);
        for (int k = 0; k < 4; k++) argv[1 + 4 * i + k] = keys[4 * i + k];
        argv[1 + 4 * n + 4 * i] = addr;
        for (int w = 0; w < CM_WIN3; w++) argv[2 + 4 * n + 4 * i + w] = starts[w];
    }
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    cc->g = g;
    cc->first = from;
    cc->n = n;
    rc = cm_store_eval(g->in->store, CM_SCRIPT_CHECK, 1 + 4 * n, argc, argv, lens, on_check, cc);
    if (rc == CM_OK) cc = NULL;
out:
    free(argv);
    free(lens);
    free(keys);
    free(cc);
    return rc;
}

static void on_group(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    group *g = arg;
    cm_ingest *in = g->in;
    if (rc != CM_OK) {
        int retry = (strcmp(sqlstate, "40P01") == 0 || strcmp(sqlstate, "40001") == 0) &&
                    g->retries < MAX_RETRIES;
        if (retry) {
            g->retries++;
            send_group(g);
            return;
        }
        in->inflight--;
        /* Outcome unknown when the connection dropped: the client's retry
         * with the same ids is what makes it exactly-once. */
        fail_jobs(in, &g->jobs, 503, "store_unavailable", "PostgreSQL did not confirm the write; retry");
        group_free(g);
        flush(in);
        return;
    }
    int rows = cm_pgres_rows(res), rfirst = -1, rlast = -1, nt = 0;
    for (int i = 0; i < rows; i++) nt += cm_pgres_get(res, i, 0)[0] == 't';
    g->agents = calloc((size_t)nt + 1, sizeof *g->agents);
    for (int i = 0; i < rows; i++) {
        char kind = cm_pgres_get(res, i, 0)[0];
        if (kind == 'n') {
            size_t idx = strtoull(cm_pgres_get(res, i, 1), NULL, 10);
            if (idx < g->nrows) g->rows[idx].is_new = 1;
        } else if (kind == 'r') {
            if (rfirst < 0) rfirst = i;
            rlast = i + 1;
        } else if (kind == 't' && g->agents) {
            group_agent *ga = &g->agents[g->nagents++];
            snprintf(ga->address, sizeof ga->address, "%s", cm_pgres_get(res, i, 1));
            ga->cost_today = strtoll(cm_pgres_get(res, i, 2), NULL, 10);
        }
    }
    if (g->agents) qsort(g->agents, (size_t)g->nagents, sizeof *g->agents, cmp_agents);
    /* Today's day rollup as this statement left it. */
    int64_t win[CM_WIN3];
    cm_policy_window_starts(g->now, win);
    for (int i = rfirst; rfirst >= 0 && i < rlast; i++) {
        if (cm_pgres_get(res, i, 2)[0] != 'd' || strtoll(cm_pgres_get(res, i, 3), NULL, 10) != win[CM_WIN3_DAY])
            continue;
        group_agent *ga = find_agent(g, cm_pgres_get(res, i, 1));
        if (ga) ga->cost_today = strtoll(cm_pgres_get(res, i, 4), NULL, 10);
    }
    /* Mirror into Redis and read each agent's policy state before
     * answering, so the reply says whether the agent is now blocked. Redis
     * runs the merges before the checks. The merge is fire-and-check:
     * PostgreSQL already holds the truth. Meanwhile the next group goes to
     * PostgreSQL. */
    in->inflight--;
    if (cm_store_ready(in->store)) {
        for (int from = rfirst; rfirst >= 0 && from < rlast; from += 200) {
            int to = from + 200 < rlast ? from + 200 : rlast;
            if (send_merge(in, res, from, to, 1, merge_fields, NMERGE, on_merged, in) != CM_OK) break;
        }
        for (int from = 0; from < g->nagents; from += CHECK_CHUNK)
            if (send_check(g, from) == CM_OK) g->checks++;
    }
    if (g->checks == 0) finish_group(g);
    flush(in);
}

/* ---- rebuild ---- */

/* The three queries of a rebuild, run one after the other: rollups and
 * intent counts of the current windows (merged as maxima), then every
 * policy and kill flag (replaced). */
static const char rebuild_rollups_sql[] =
    "SELECT address, grain, extract(epoch FROM bucket)::bigint::text, cost_nanos::text,"
    " tokens_in::text, tokens_out::text, llm_calls::text, heartbeats::text FROM rollup_agent"
    " WHERE (grain = 'h' AND bucket >= now() - interval '49 hours')"
    " OR (grain = 'd' AND bucket >= now() - interval '9 days')"
    " OR (grain = 'm' AND bucket >= date_trunc('month', now(), 'UTC') - interval '1 month')";

static const char rebuild_intents_sql[] =
    "SELECT address, g.grain, extract(epoch FROM date_trunc(g.unit, admitted_at, 'UTC'))::bigint::text,"
    " count(*)::text FROM intents CROSS JOIN (VALUES ('h', 'hour'), ('d', 'day'), ('m', 'month')) AS g(grain, unit)"
    " WHERE admitted_at >= date_trunc('month', now(), 'UTC') - interval '1 month'"
    " AND (g.grain <> 'h' OR admitted_at >= now() - interval '49 hours') GROUP BY 1, 2, 3";

/* Columns: address, has a policy, killed, then CM_PG_POLICY_COLS. */
static const char rebuild_policies_sql[] =
    "SELECT coalesce(c.address, a.address), c.address IS NOT NULL, coalesce(a.killed, false), " CM_PG_POLICY_COLS
    " FROM cost_policies c FULL JOIN (SELECT address, killed FROM agents WHERE killed) a ON a.address = c.address";

typedef struct {
    cm_ingest *in;
    int step;
    int pending;
    int failed;
} rebuild;

static void retry_rebuild(uv_timer_t *t)
{
    cm_ingest_rebuild(t->data);
}

static void rebuild_done(cm_ingest *in, int ok)
{
    in->rebuilding = 0;
    if (ok) {
        cm_store_set(in->store, CM_STORE_EPOCH_KEY, "1", 0);
        cm_log(CM_LOG_INFO, "event=redis_rebuilt");
    } else {
        cm_log(CM_LOG_WARN, "event=redis_rebuild_failed retry_in_ms=1000");
        if (!uv_is_closing((uv_handle_t *)&in->retry))
            uv_timer_start(&in->retry, retry_rebuild, 1000, 0);
    }
    if (in->rebuild_again) {
        in->rebuild_again = 0;
        cm_ingest_rebuild(in);
    }
}

static void rebuild_step(rebuild *rb);

static void on_rebuild_call(void *arg, int rc, const cm_store_reply *reply)
{
    (void)reply;
    rebuild *rb = arg;
    if (rc != CM_OK) rb->failed = 1;
    if (--rb->pending > 0) return;
    if (rb->failed || rb->step == 3) {
        cm_ingest *in = rb->in;
        int ok = !rb->failed;
        free(rb);
        rebuild_done(in, ok);
        return;
    }
    rebuild_step(rb);
}

static void policy_row(rebuild *rb, const cm_pgres *res, int r)
{
    cm_policy pol;
    const char *address = cm_pgres_get(res, r, 0);
    bool has = cm_pgres_get(res, r, 1)[0] == 't';
    if (has) cm_pg_policy(res, r, 3, &pol);
    rb->pending += 2;
    if (cm_store_put_policy(rb->in->store, address, has ? &pol : NULL, on_rebuild_call, rb) != CM_OK) {
        rb->pending--;
        rb->failed = 1;
    }
    if (cm_store_put_killed(rb->in->store, address, cm_pgres_get(res, r, 2)[0] == 't', on_rebuild_call, rb) != CM_OK) {
        rb->pending--;
        rb->failed = 1;
    }
}

static void on_rebuild_rows(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    rebuild *rb = arg;
    static const char *const intents_field[] = {"intents"};
    rb->pending = 1; /* held until every call of this step is sent */
    if (rc != CM_OK) rb->failed = 1;
    int rows = rc == CM_OK ? cm_pgres_rows(res) : 0;
    if (rb->step == 3) {
        for (int r = 0; r < rows && !rb->failed; r++) policy_row(rb, res, r);
    } else {
        for (int from = 0; from < rows && !rb->failed; from += 200) {
            int to = from + 200 < rows ? from + 200 : rows;
            rb->pending++;
            int sent = rb->step == 1
                           ? send_merge(rb->in, res, from, to, 0, merge_fields, NMERGE, on_rebuild_call, rb)
                           : send_merge(rb->in, res, from, to, 0, intents_field, 1, on_rebuild_call, rb);
            if (sent != CM_OK) {
                rb->pending--;
                rb->failed = 1;
            }
        }
    }
    on_rebuild_call(rb, CM_OK, NULL);
}

static void rebuild_step(rebuild *rb)
{
    static const char *const steps[] = {rebuild_rollups_sql, rebuild_intents_sql, rebuild_policies_sql};
    rb->step++;
    if (cm_pg_query(rb->in->writer, steps[rb->step - 1], 0, NULL, on_rebuild_rows, rb) != CM_OK) {
        cm_ingest *in = rb->in;
        free(rb);
        rebuild_done(in, 0);
    }
}

void cm_ingest_rebuild(cm_ingest *in)
{
    if (in->rebuilding) {
        in->rebuild_again = 1;
        return;
    }
    if (!cm_pg_pool_ready(in->writer)) {
        /* Redis came up before PostgreSQL: try again shortly. */
        if (!uv_is_closing((uv_handle_t *)&in->retry)) uv_timer_start(&in->retry, retry_rebuild, 200, 0);
        return;
    }
    rebuild *rb = calloc(1, sizeof *rb);
    if (!rb) {
        rebuild_done(in, 0);
        return;
    }
    in->rebuilding = 1;
    rb->in = in;
    rebuild_step(rb);
}
