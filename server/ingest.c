#include "ingest.h"
#include "auth.h"
#include "error.h"
#include "log.h"
#include "money.h"
#include "budget.h"
#include "policy.h"
#include "refusal.h"
#include "seen.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows in one statement: big enough to amortise the commit's fsync, small
 * enough to keep one statement's latency low. */
#define GROUP_ROWS 4000
#define MAX_RETRIES 3

/* A group's rows add at most this to a capped total that is at most
 * CM_TOTAL_MAX, so the statement's arithmetic stays inside bigint and the
 * cap's check_violation comes before any overflow. */
_Static_assert(CM_TOTAL_MAX <= INT64_MAX - GROUP_ROWS * CM_MONEY_MAX &&
                   CM_TOTAL_MAX <= INT64_MAX - GROUP_ROWS * CM_COUNT_MAX,
               "a group commit could overflow a capped total");

/* The one statement of a group commit (data-modifying CTEs always run to
 * completion, referenced or not). A row is new when its id is (heartbeat_ids
 * is the 7-day dedupe, schema/012_partitions.sql; each row's key is hashed
 * here, cm_auth_hb_key, and sent as $31); rows without an id always are. Lock order is fixed by the ORDER BY
 * clauses so concurrent replicas do not deadlock each other (and a deadlock
 * that happens anyway is retried). Every output column is text so the three
 * kinds of rows can share one result ($22 are the distinct agents to
 * register or whose last_heartbeat to move: those not written already
 * this second, see seen.h):
 *   'n' idx                      a row that was new (not a duplicate)
 *   'r' address grain bucket ... a rollup's absolute totals after this commit
 *   't' address cost             the agent's cost today before this
 *                                statement (an 'r' row of today's day
 *                                bucket, when there is one, is newer; a
 *                                join on the 'roll' CTE here would rescan
 *                                it once per agent) */
static const char group_sql[] =
    "WITH input AS (SELECT t.*, decode(t.key_hex, 'hex') AS key"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
    " $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::bigint[],"
    " $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[],"
    " $18::bigint[], $19::float8[], $20::int[], $23::text[], $24::bigint[], $25::bigint[], $26::text[],"
    " $27::bigint[], $28::bigint[], $29::bigint[], $30::bigint[], $31::text[])"
    " AS t(address, hb_id, intent_id, run_id,"
    " session_id, workflow, parent_intent_id, status, ts, cost, tin, tout, tcached, calls, tools,"
    " itotal, isucc, ifail, lat, idx, model, tcwrite, priced, customer, revenue, refund, external, fees,"
    " key_hex)),"
    " ids AS (INSERT INTO heartbeat_ids (key) SELECT key FROM input"
    " WHERE key IS NOT NULL ORDER BY 1 ON CONFLICT DO NOTHING RETURNING key),"
    " ins AS (INSERT INTO heartbeats (address, hb_id, intent_id, run_id, session_id, workflow,"
    " parent_intent_id, status, ts, cost_nanos, tokens_in, tokens_out, tokens_cached, llm_calls,"
    " tool_calls, intents_total, intents_succeeded, intents_failed, avg_latency_ms, model,"
    " tokens_cache_write, priced_nanos, customer, revenue_nanos, refund_nanos, external_nanos, fees_nanos)"
    " SELECT i.address, i.hb_id, intent_id, run_id, session_id, workflow, parent_intent_id, status,"
    " to_timestamp(ts), cost, tin, tout, tcached, calls, tools, itotal, isucc, ifail, lat, model,"
    " tcwrite, priced, customer, revenue, refund, external, fees"
    " FROM input i LEFT JOIN ids ON ids.key = i.key"
    " WHERE i.hb_id IS NULL OR ids.key IS NOT NULL"
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
    " reg AS (INSERT INTO agents AS a (address, org, last_heartbeat, health)"
    " SELECT address, split_part(address, '/', 3), now(), 'healthy' FROM unnest($22::text[]) AS t(address) ORDER BY 1"
    " ON CONFLICT (address) DO UPDATE SET last_heartbeat = greatest(a.last_heartbeat, excluded.last_heartbeat)"
    " RETURNING 1),"
    " today AS (SELECT date_trunc('day', to_timestamp($21), 'UTC') AS d)"
    " SELECT 'n', i.idx::text, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM input i"
    " WHERE i.hb_id IS NULL OR EXISTS (SELECT 1 FROM ids WHERE ids.key = i.key)"
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
    cm_hot_agent_state state;
    cm_forecast forecast;    /* from the CHECK; all zero when Redis did not answer */
    const cm_job *listed_in; /* the last reply that named it, so each names it once */
} group_agent;

typedef struct group group;
struct group {
    cm_ingest *in;
    cm_jobq jobs;  /* in arrival order, as their rows are */
    row *rows;
    size_t nrows;
    int64_t now;
    int retries;
    group_agent *agents; /* owned */
    int nagents;
    /* The part of a split group to send on the same writer once this one's
     * statement is over (see split). */
    group *then;
};

struct cm_ingest {
    cm_pg_pool *db; /* the ingest pool: group commits only */
    cm_hot *hot;
    cm_notify *notify;
    cm_seen *seen;        /* owned */
    cm_jobq waiting;      /* jobs not yet in a group */
    int inflight;         /* writers busy: a group, or the parts of a split
                             one, sent to PostgreSQL and not yet answered */
    _Atomic size_t backlog;
    _Atomic unsigned long long accepted, duplicates, ignored;
};

static void flush(cm_ingest *in);

int cm_ingest_new(cm_pg_pool *db, cm_hot *hot, cm_notify *notify, cm_ingest **out)
{
    cm_ingest *in = calloc(1, sizeof *in);
    if (!in || cm_seen_new(&in->seen) != CM_OK) {
        free(in);
        return CM_ENOMEM;
    }
    in->db = db;
    in->hot = hot;
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
static void fail_jobs(cm_ingest *in, cm_jobq *q, int status, const char *code, const char *field,
                      const char *msg)
{
    cm_job *j;
    while ((j = cm_jobq_pop(q)) != NULL) {
        cm_job_fail(j, status, code, field, msg);
        answer(in, j);
    }
}

void cm_ingest_free(cm_ingest *in)
{
    if (!in) return;
    fail_jobs(in, &in->waiting, 503, "shutting_down", NULL, "the server is stopping; retry");
    cm_seen_free(in->seen);
    free(in);
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

unsigned long long cm_ingest_ignored(const cm_ingest *in)
{
    return atomic_load(&((cm_ingest *)in)->ignored);
}

void cm_ingest_submit(cm_ingest *in, cm_job *j)
{
    atomic_fetch_add(&in->backlog, 1);
    cm_jobq_push(&in->waiting, j);
    if (in->inflight < CM_INGEST_WRITERS) flush(in);
}


/* ---- array parameters in PostgreSQL's text form ---- */

/* The row columns: $1..$20, then $21 (now) and $22 (agents to write),
 * then the columns added later, $23..$30. */
enum { NCOLS = 29, NPARAMS = 31, FIRST_LATE_COL = 20 };

/* The parameter index of row column col. */
static int col_param(int col)
{
    return col < FIRST_LATE_COL ? col : col + 2;
}

static const cm_hb *row_hb(const row *r)
{
    return &r->job->req.heartbeat.hbs[r->hb];
}

static void add_col(cm_buf *b, int col, const cm_hb *h, size_t idx)
{
    switch (col) {
    case 0: cm_buf_add_pg_text(b, h->agent); break;
    case 1: cm_buf_add_pg_text(b, h->id); break;
    case 2: cm_buf_add_pg_text(b, h->intent_id); break;
    case 3: cm_buf_add_pg_text(b, h->run_id); break;
    case 4: cm_buf_add_pg_text(b, h->session_id); break;
    case 5: cm_buf_add_pg_text(b, h->workflow); break;
    case 6: cm_buf_add_pg_text(b, h->parent_intent_id); break;
    case 7: cm_buf_add_pg_text(b, h->status); break;
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
    case 20: cm_buf_add_pg_text(b, h->model); break;
    case 21: cm_buf_addf(b, "%lld", (long long)h->tokens_cache_write); break;
    case 22:
        if (h->priced) cm_buf_addf(b, "%lld", (long long)h->priced_nanos);
        else cm_buf_adds(b, "NULL");
        break;
    case 23: cm_buf_add_pg_text(b, h->customer); break;
    case 24: cm_buf_addf(b, "%lld", (long long)h->revenue_nanos); break;
    case 25: cm_buf_addf(b, "%lld", (long long)h->refund_nanos); break;
    case 26: cm_buf_addf(b, "%lld", (long long)h->external_nanos); break;
    case 27: cm_buf_addf(b, "%lld", (long long)h->fees_nanos); break;
    case 28: {
        char key[CM_HB_KEY_HEX_LEN];
        if (!h->id[0])
            cm_buf_adds(b, "NULL");
        else if (cm_auth_hb_key(h->agent, h->id, key) == CM_OK)
            cm_buf_adds(b, key);
        else
            b->failed = 1;
        break;
    }
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

static void mark_dups(group *g, row **order)
{
    size_t n = 0;
    for (size_t i = 0; i < g->nrows; i++)
        if (row_hb(&g->rows[i])->id[0]) order[n++] = &g->rows[i];
    qsort(order, n, sizeof *order, cmp_rows);
    for (size_t i = 1; i < n; i++)
        if (strcmp(row_hb(order[i])->agent, row_hb(order[i - 1])->agent) == 0 &&
            strcmp(row_hb(order[i])->id, row_hb(order[i - 1])->id) == 0)
            order[i]->dup = 1;
}

static void group_free(group *g)
{
    free(g->agents);
    free(g->rows);
    free(g);
}

/* The first jobs of src as a group: at most max_jobs of them and, past the
 * first, GROUP_ROWS rows. NULL when memory ran out; src is then as it was. */
static group *group_take(cm_ingest *in, cm_jobq *src, size_t max_jobs)
{
    size_t cap = 0, njobs = 0;
    for (cm_job *j = src->head; j && njobs < max_jobs && (njobs == 0 || cap + j->req.heartbeat.n <= GROUP_ROWS);
         j = j->next, njobs++)
        cap += j->req.heartbeat.n;
    group *g = calloc(1, sizeof *g);
    row **order = malloc((cap ? cap : 1) * sizeof *order);
    if (g) g->rows = calloc(cap ? cap : 1, sizeof *g->rows);
    if (!g || !g->rows || !order) {
        if (g) free(g->rows);
        free(g);
        free(order);
        return NULL;
    }
    g->in = in;
    while (njobs--) {
        cm_job *j = cm_jobq_pop(src);
        cm_jobq_push(&g->jobs, j);
        if (!g->now || j->now > g->now) g->now = j->now;
        for (size_t h = 0; h < j->req.heartbeat.n; h++) {
            g->rows[g->nrows].job = j;
            g->rows[g->nrows].hb = h;
            g->nrows++;
        }
    }
    mark_dups(g, order);
    free(order);
    return g;
}

static void send_group(group *g);

/* A writer's statement is over: it takes the next part of a split group,
 * or else the queue's next group. */
static void writer_next(cm_ingest *in, group *next)
{
    if (next) {
        send_group(next);
        return;
    }
    in->inflight--;
    flush(in);
}

/* Answers every job of g with the same error and frees g, whose writer
 * goes on. */
static void fail_group(group *g, int status, const char *code, const char *field, const char *msg)
{
    cm_ingest *in = g->in;
    group *next = g->then;
    fail_jobs(in, &g->jobs, status, code, field, msg);
    group_free(g);
    writer_next(in, next);
}

static void on_group(void *arg, int rc, const cm_pgres *res, const char *sqlstate);

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The distinct agents of g whose row this replica has not written yet this
 * second, as a text array into b. */
static void add_agents(const group *g, cm_buf *b)
{
    cm_buf_add(b, "{", 1);
    const char **v = malloc((g->nrows ? g->nrows : 1) * sizeof *v);
    if (!v) {
        b->failed = 1;
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < g->nrows; i++)
        if (!g->rows[i].dup) v[n++] = row_hb(&g->rows[i])->agent;
    qsort(v, n, sizeof *v, cmp_str);
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        if ((i > 0 && strcmp(v[i], v[i - 1]) == 0) || cm_seen_written(g->in->seen, v[i], g->now)) continue;
        if (!first) cm_buf_add(b, ",", 1);
        first = 0;
        cm_buf_add_pg_text(b, v[i]);
    }
    free(v);
    cm_buf_add(b, "}", 1);
}

static void send_group(group *g)
{
    cm_buf cols[NCOLS + 1];
    const char *params[NPARAMS];
    char nowbuf[24];
    for (int c = 0; c < NCOLS; c++) {
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
    cm_buf_init(&cols[NCOLS]);
    add_agents(g, &cols[NCOLS]);
    snprintf(nowbuf, sizeof nowbuf, "%lld", (long long)g->now);
    int failed = 0;
    for (int c = 0; c <= NCOLS; c++) failed |= cols[c].failed;
    for (int c = 0; c < NCOLS; c++) params[col_param(c)] = cols[c].data;
    params[FIRST_LATE_COL] = nowbuf;
    params[FIRST_LATE_COL + 1] = cols[NCOLS].data;
    int rc = failed ? CM_ENOMEM : cm_pg_query_prepared(g->in->db, group_sql, NPARAMS, params, on_group, g);
    for (int c = 0; c <= NCOLS; c++) cm_buf_free(&cols[c]);
    if (rc != CM_OK)
        fail_group(g, 503, "store_unavailable", NULL,
                   rc == CM_ENOMEM ? "out of memory; retry" : "PostgreSQL is unavailable; retry");
}

static void flush(cm_ingest *in)
{
    if (!in->waiting.head) return;
    group *g = group_take(in, &in->waiting, SIZE_MAX);
    if (!g) {
        fail_jobs(in, &in->waiting, 503, "internal", NULL, "out of memory; retry");
        return;
    }
    in->inflight++;
    send_group(g);
}

/* Splits g, which PostgreSQL refused for good, into halves sent one after
 * the other on g's writer, before whatever was to follow g: a half without
 * the request at fault commits, the other is split again, until that
 * request is alone and answered with the refusal. Frees g and returns what
 * its writer sends next. */
static group *split(group *g)
{
    cm_ingest *in = g->in;
    group *next = g->then;
    size_t n = 0;
    for (cm_job *j = g->jobs.head; j; j = j->next) n++;
    group *first = group_take(in, &g->jobs, n / 2);
    group *second = first ? group_take(in, &g->jobs, SIZE_MAX) : NULL;
    if (second) {
        first->then = second;
        second->then = next;
        next = first;
    } else if (first) {
        fail_jobs(in, &first->jobs, 503, "internal", NULL, "out of memory; retry");
        group_free(first);
    }
    /* Empty unless memory ran out. */
    fail_jobs(in, &g->jobs, 503, "internal", NULL, "out of memory; retry");
    group_free(g);
    return next;
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
        cm_buf b, fc;
        cm_buf_init(&b);
        cm_buf_init(&fc);
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
            /* The forecast of an agent with a cost limit: its burn over the
             * last hour and when each limit runs out at that pace. */
            const cm_forecast *f = &ga->forecast;
            if (!f->has[CM_LIM_COST_HOUR] && !f->has[CM_LIM_COST_DAY] && !f->has[CM_LIM_COST_MONTH]) continue;
            cm_buf_adds(&fc, fc.len ? "," : "");
            cm_buf_add_jstr(&fc, ga->address);
            cm_buf_adds(&fc, ":");
            cm_forecast_json(f, g->now, &fc);
        }
        cm_buf_adds(&b, "}");
        if (fc.len) {
            cm_buf_adds(&b, ",\"forecasts\":{");
            cm_buf_add(&b, fc.data, fc.len);
            cm_buf_adds(&b, "}");
        }
        if (fc.failed) b.failed = 1;
        cm_buf_free(&fc);
        const cm_ignored *ig = &j->req.heartbeat.ignored;
        if (ig->count) {
            atomic_fetch_add(&in->ignored, ig->count);
            cm_buf_adds(&b, ",\"ignored\":[");
            cm_buf_add(&b, ig->listed.data, ig->listed.len);
            cm_buf_adds(&b, "]");
        }
        cm_buf_adds(&b, "}");
        cm_job_reply(j, 202, &b);
        answer(in, j);
    }
}

/* ---- hot windows ---- */

/* The 'r' rows [from, to) of the result into Redis. Fire-and-forget:
 * PostgreSQL already holds the truth. */
static void merge_rollups(cm_ingest *in, const cm_pgres *res, int from, int to)
{
    cm_hot_rollup *v = malloc((size_t)(to - from) * sizeof *v);
    if (!v) return;
    for (int r = from; r < to; r++) cm_hot_rollup_read(res, r, 1, &v[r - from]);
    cm_hot_merge(in->hot, v, to - from, NULL, NULL);
    free(v);
}

/* The new rows of intents draw their reservations down at the agent's
 * level (draw.lua), now that their cost is in the agent's windows; the
 * scopes' are drawn when the rollup worker counts it there. */
static void draw_reservations(group *g)
{
    cm_hot_spent *v = malloc((g->nrows ? g->nrows : 1) * sizeof *v);
    char (*orgs)[CM_ADDR_SEG_MAX + 1] = malloc((g->nrows ? g->nrows : 1) * sizeof *orgs);
    int n = 0;
    for (size_t i = 0; v && orgs && i < g->nrows; i++) {
        const cm_hb *hb = row_hb(&g->rows[i]);
        if (!g->rows[i].is_new || !hb->intent_id[0] || hb->cost_nanos <= 0 || cm_addr_org(hb->agent, orgs[n]) != CM_OK)
            continue;
        v[n] = (cm_hot_spent){.org = orgs[n], .intent_id = hb->intent_id, .cost = hb->cost_nanos};
        n++;
    }
    if (n > 0) cm_hot_draw(g->in->hot, false, v, n);
    free(v);
    free(orgs);
}

static void finish_group(group *g)
{
    reply_jobs(g);
    group_free(g);
}

/* Records the event of a newly crossed mark: a threshold of a cost limit
 * (threshold_crossed), the limit itself (policy_breached), or its
 * exhaustion predicted within the horizon (exhaustion_predicted). */
static void mark_event(cm_ingest *in, const char *address, const cm_hot_mark *m, const cm_forecast *f, int64_t now)
{
    char org[CM_ADDR_SEG_MAX + 1];
    if (cm_addr_org(address, org) != CM_OK) return;
    cm_scope s = {.kind = CM_SCOPE_AGENT};
    snprintf(s.id, sizeof s.id, "%s", address);
    cm_buf d;
    cm_buf_init(&d);
    const char *type = cm_budget_mark_event(&s, m->limit, m->limit_value, m->current, m->fraction, f, now, &d);
    char *details = cm_buf_take(&d, NULL);
    if (details) cm_notify_event(in->notify, org, address, type, details, true, NULL, NULL);
    free(details);
}

static void on_check(void *arg, int rc, const cm_hot_check_result *r)
{
    (void)rc; /* an agent Redis could not answer for reads active */
    group *g = arg;
    for (int i = 0; i < g->nagents; i++) {
        g->agents[i].state = r->state[i];
        g->agents[i].forecast = r->forecast[i];
    }
    for (int i = 0; i < r->nmarks; i++)
        mark_event(g->in, g->agents[r->marks[i].agent].address, &r->marks[i], &r->forecast[r->marks[i].agent],
                   g->now);
    finish_group(g);
}

/* Reads every agent's state in the windows of g->now; the group is
 * finished by on_check, unless this fails. */
static int send_check(group *g)
{
    const char **addresses = malloc((size_t)g->nagents * sizeof *addresses + 1);
    if (!addresses) return CM_ENOMEM;
    for (int i = 0; i < g->nagents; i++) addresses[i] = g->agents[i].address;
    int rc = cm_hot_check(g->in->hot, addresses, g->nagents, g->now, on_check, g);
    free(addresses);
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
        cm_apierr e;
        if (!cm_refusal_of(sqlstate, cm_pgres_constraint(res), &e))
            /* Outcome unknown when the connection dropped: the client's
             * retry with the same ids is what makes it exactly-once. */
            fail_group(g, 503, "store_unavailable", NULL, "PostgreSQL did not confirm the write; retry");
        else if (g->jobs.head != g->jobs.tail)
            /* One request's rows must not fail the others' forever. */
            writer_next(in, split(g));
        else
            fail_group(g, e.status, e.code, e.field, e.message);
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
    /* Committed: these agents' rows need no write again this second. */
    for (int i = 0; i < g->nagents; i++) cm_seen_put(in->seen, g->agents[i].address, g->now);
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
     * runs the merges before the checks. Meanwhile the next group goes to
     * PostgreSQL. */
    group *next = g->then;
    if (rfirst >= 0) merge_rollups(in, res, rfirst, rlast);
    draw_reservations(g);
    if (send_check(g) != CM_OK) finish_group(g);
    writer_next(in, next);
}
