#include "ingest.h"
#include "auth.h"
#include "error.h"
#include "hbrow.h"
#include "nameset.h"
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
/* The rows that must wait before a writer beyond the first takes them.
 * Scratch, 64 connections of single heartbeats (at most ~64 rows waiting):
 * one writer instead of two gave 8 % more heartbeats a second for 18 % less
 * PostgreSQL CPU per heartbeat (groups of ~22 rows instead of ~11, the
 * statement's fixed cost being ~0.7 ms); 100-row batches on 16 connections
 * did the same either way. */
#define SPARE_ROWS 256
#define MAX_RETRIES 3
/* Agents a replica remembers as registered: past it, it starts over. */
#define KNOWN_MAX 1000000
/* How long a group waits for Redis replicas to hold its ACK. */
#define WAIT_REPLICAS_MS 1000

/* A group's rows add at most this to a capped total that is at most
 * CM_TOTAL_MAX, so the statement's arithmetic stays inside bigint and the
 * cap's check_violation comes before any overflow. */
_Static_assert(CM_TOTAL_MAX <= INT64_MAX - GROUP_ROWS * CM_MONEY_MAX &&
                   CM_TOTAL_MAX <= INT64_MAX - GROUP_ROWS * CM_COUNT_MAX,
               "a group commit could overflow a capped total");

/* A row of the group: which job and which heartbeat of it. */
typedef struct {
    cm_job *job;
    size_t hb;
    int is_new;   /* set from the result */
    int refused;  /* Redis as the durable point: 1 + the cap (cm_hot_capped_names) its request would pass */
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
    unsigned char *dup; /* owned, per row: repeats an earlier (agent, id) of the group, not sent */
    int64_t now;
    int retries;
    group_agent *agents; /* owned: the distinct agents of the rows, sorted */
    const char **addresses; /* owned array: agents' addresses in order, which the ACK and CHECK name */
    int nagents;
    int writer; /* the slot of cm_ingest's writers whose statement this is */
    /* The part of a split group to send on the same writer once this one's
     * statement is over (see split). */
    group *then;
    /* The replies still to come before the jobs are answered (the CHECK;
     * with Redis as the durable point also the ACK and WAIT), and the error
     * all jobs get when one of them failed. */
    int pending;
    /* Monotonic ns: when the group went to the durable point, and when its
     * reply (commit or ACK) came back. */
    uint64_t sent_ns, stored_ns;
    int fail_status;
    const char *fail_code;
    const char *fail_msg;
};

struct cm_ingest {
    uv_loop_t *loop;
    uv_timer_t stall; /* runs flush when a busy writer's statement turns stall_ms old */
    cm_pg_pool *db; /* the ingest pool: group commits only */
    cm_hot *hot;
    cm_notify *notify;
    cm_ingest_opts opts;
    cm_seen *seen;        /* owned */
    cm_nameset *known;    /* owned; Redis durable: agents known registered */
    cm_jobq waiting;      /* jobs not yet in a group */
    size_t waiting_rows;  /* their heartbeats */
    /* Writer slots: busy with a group, or the parts of a split one, sent to
     * PostgreSQL and not yet answered; and when its statement began. */
    bool busy[CM_INGEST_WRITERS];
    uint64_t since[CM_INGEST_WRITERS]; /* loop ms */
    _Atomic size_t backlog;
    _Atomic unsigned long long accepted, duplicates, ignored;
    /* cm_ingest_timing's sums, kept by the loop thread, read by /metrics. */
    _Atomic unsigned long long stage_ns[CM_INGEST_STAGES], timed, groups, group_rows;
};

static void flush(cm_ingest *in);

int cm_ingest_new(uv_loop_t *loop, cm_pg_pool *db, cm_hot *hot, cm_notify *notify, const cm_ingest_opts *opts,
                  cm_ingest **out)
{
    cm_ingest *in = calloc(1, sizeof *in);
    if (!in || cm_seen_new(&in->seen) != CM_OK || cm_nameset_new(KNOWN_MAX, &in->known) != CM_OK) {
        if (in) cm_seen_free(in->seen);
        free(in);
        return CM_ENOMEM;
    }
    if (uv_timer_init(loop, &in->stall) != 0) {
        cm_seen_free(in->seen);
        cm_nameset_free(in->known);
        free(in);
        return CM_EIO;
    }
    in->stall.data = in;
    in->loop = loop;
    in->opts = *opts;
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

static void on_closed(uv_handle_t *h)
{
    cm_ingest *in = h->data;
    cm_seen_free(in->seen);
    cm_nameset_free(in->known);
    free(in);
}

void cm_ingest_free(cm_ingest *in)
{
    if (!in) return;
    fail_jobs(in, &in->waiting, 503, "shutting_down", NULL, "the server is stopping; retry");
    uv_close((uv_handle_t *)&in->stall, on_closed);
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

void cm_ingest_timing_read(const cm_ingest *in, cm_ingest_timing *out)
{
    cm_ingest *m = (cm_ingest *)in;
    for (int s = 0; s < CM_INGEST_STAGES; s++) out->stage_ns[s] = atomic_load(&m->stage_ns[s]);
    out->timed = atomic_load(&m->timed);
    out->groups = atomic_load(&m->groups);
    out->group_rows = atomic_load(&m->group_rows);
}

const char *const cm_ingest_stage_names[CM_INGEST_STAGES] = {"routing", "queue", "store", "hot"};

/* Adds job j's stages to the sums; now_ns is when g's jobs are answered.
 * Every heartbeat job came through the bridge (http.c), and the clock is
 * monotonic across threads, so each stage ends after it began. */
static void time_job(cm_ingest *in, const group *g, const cm_job *j, uint64_t now_ns)
{
    uint64_t at[CM_INGEST_STAGES + 1] = {j->handed_ns, j->queued_ns, g->sent_ns, g->stored_ns, now_ns};
    for (int s = 0; s < CM_INGEST_STAGES; s++) atomic_fetch_add(&in->stage_ns[s], at[s + 1] - at[s]);
    atomic_fetch_add(&in->timed, 1);
}

void cm_ingest_submit(cm_ingest *in, cm_job *j)
{
    j->queued_ns = uv_hrtime();
    atomic_fetch_add(&in->backlog, 1);
    cm_jobq_push(&in->waiting, j);
    in->waiting_rows += j->req.heartbeat.n;
    flush(in);
}


static const cm_hb *row_hb(const row *r)
{
    return &r->job->req.heartbeat.hbs[r->hb];
}

/* The rows of g as heartbeats (malloc'd), those left out as duplicates
 * included unless with_dups is false. */
static const cm_hb **group_hbs(const group *g, bool with_dups, size_t *n)
{
    const cm_hb **hbs = malloc((g->nrows ? g->nrows : 1) * sizeof *hbs);
    *n = 0;
    for (size_t i = 0; hbs && i < g->nrows; i++)
        if (with_dups || !g->dup[i]) hbs[(*n)++] = row_hb(&g->rows[i]);
    return hbs;
}

/* Marks rows whose (agent, id) already appeared earlier in the group, so
 * each pair is sent once and the result maps back without ambiguity; and
 * lists the group's distinct agents, which the statement, the ACK, the
 * CHECK and the replies all name. */
static int group_index(group *g)
{
    size_t n;
    const cm_hb **hbs = group_hbs(g, true, &n);
    int rc = hbs ? cm_hbrow_mark_dups(hbs, n, g->dup) : CM_ENOMEM;
    const char **names = (const char **)hbs; /* reused: the rows' agents */
    size_t k = 0;
    for (size_t i = 0; rc == CM_OK && i < n; i++)
        if (!g->dup[i]) names[k++] = hbs[i]->agent;
    if (rc == CM_OK) k = cm_hbrow_distinct(names, k);
    if (rc == CM_OK && !(g->agents = calloc(k + 1, sizeof *g->agents))) rc = CM_ENOMEM;
    for (size_t i = 0; rc == CM_OK && i < k; i++)
        snprintf(g->agents[i].address, sizeof g->agents[i].address, "%s", names[i]);
    if (rc == CM_OK && !(g->addresses = malloc((k + 1) * sizeof *g->addresses))) rc = CM_ENOMEM;
    for (size_t i = 0; rc == CM_OK && i < k; i++) g->addresses[i] = g->agents[i].address;
    if (rc == CM_OK) g->nagents = (int)k;
    free(hbs);
    return rc;
}

static void group_free(group *g)
{
    free(g->addresses);
    free(g->agents);
    free(g->dup);
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
    if (g) {
        g->rows = calloc(cap ? cap : 1, sizeof *g->rows);
        g->dup = calloc(cap ? cap : 1, 1);
    }
    if (!g || !g->rows || !g->dup) {
        if (g) group_free(g);
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
    if (group_index(g) != CM_OK) {
        /* Back to src as they were, in order. */
        cm_jobq rest = *src;
        *src = g->jobs;
        for (cm_job *j; (j = cm_jobq_pop(&rest));) cm_jobq_push(src, j);
        group_free(g);
        return NULL;
    }
    return g;
}

static void send_group(group *g);
static group *split(group *g);

/* Writer slot w's statement is over: it takes the next part of a split
 * group, or else the queue's next group. */
static void writer_next(cm_ingest *in, int w, group *next)
{
    if (next) {
        next->writer = w;
        send_group(next);
        return;
    }
    in->busy[w] = false;
    flush(in);
}

/* Answers every job of g with the same error and frees g, whose writer
 * goes on. */
static void fail_group(group *g, int status, const char *code, const char *field, const char *msg)
{
    cm_ingest *in = g->in;
    group *next = g->then;
    int w = g->writer;
    fail_jobs(in, &g->jobs, status, code, field, msg);
    group_free(g);
    writer_next(in, w, next);
}

static void on_group(void *arg, int rc, const cm_pgres *res, const char *sqlstate);

/* PostgreSQL refused g's statement: a deadlock is retried, a refusal for
 * good splits g until the request at fault is alone and answered with it,
 * anything else answers 503. */
static void group_failed(group *g, const cm_pgres *res, const char *sqlstate)
{
    int retry = (strcmp(sqlstate, "40P01") == 0 || strcmp(sqlstate, "40001") == 0) && g->retries < MAX_RETRIES;
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
    else if (g->jobs.head != g->jobs.tail) {
        /* One request's rows must not fail the others' forever. */
        cm_ingest *in = g->in;
        int w = g->writer;
        writer_next(in, w, split(g));
    }
    else
        fail_group(g, e.status, e.code, e.field, e.message);
}

/* The agents of g not in `seen` for second sec, nor in `known` (either may
 * be NULL), as a text array into b; their number. */
static size_t add_agents(const group *g, const cm_seen *seen, int64_t sec, const cm_nameset *known, cm_buf *b)
{
    size_t added = 0;
    cm_buf_add(b, "{", 1);
    for (int i = 0; i < g->nagents; i++) {
        const char *a = g->agents[i].address;
        if ((seen && cm_seen_written(seen, a, sec)) || (known && cm_nameset_has(known, a))) continue;
        if (added++) cm_buf_add(b, ",", 1);
        cm_buf_add_pg_text(b, a);
    }
    cm_buf_add(b, "}", 1);
    return added;
}

static void send_commit(group *g)
{
    cm_buf cols[CM_HBROW_COLS], agents;
    const char *params[CM_HBROW_PARAMS];
    char nowbuf[24];
    size_t n;
    /* A row's idx is its place in g->rows, which the result names. */
    const cm_hb **hbs = group_hbs(g, true, &n);
    bool cols_made = hbs != NULL;
    int failed = !cols_made || cm_hbrow_columns(hbs, g->dup, n, cols) != CM_OK;
    cm_buf_init(&agents);
    add_agents(g, g->in->seen, g->now, NULL, &agents);
    snprintf(nowbuf, sizeof nowbuf, "%lld", (long long)g->now);
    failed |= agents.failed;
    for (int c = 0; !failed && c < CM_HBROW_COLS; c++) params[cm_hbrow_param(c)] = cols[c].data;
    params[CM_HBROW_FIRST_LATE] = nowbuf;
    params[CM_HBROW_FIRST_LATE + 1] = agents.data;
    int rc = failed ? CM_ENOMEM
                    : cm_pg_query_prepared_within(g->in->db, g->in->opts.deadline_ms, cm_hbrow_group_sql,
                                                  CM_HBROW_PARAMS, params, on_group, g);
    for (int c = 0; cols_made && c < CM_HBROW_COLS; c++) cm_buf_free(&cols[c]);
    free(hbs);
    cm_buf_free(&agents);
    if (rc != CM_OK)
        fail_group(g, 503, "store_unavailable", NULL,
                   rc == CM_ENOMEM ? "out of memory; retry" : "PostgreSQL is unavailable; retry");
}

/* ---- Redis as the durable point ---- */

static void send_ack(group *g);

static void on_register(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    group *g = arg;
    if (rc != CM_OK) {
        group_failed(g, res, sqlstate);
        return;
    }
    /* A name not kept (memory) is only registered again. */
    for (int i = 0; i < g->nagents; i++) (void)cm_nameset_add(g->in->known, g->agents[i].address);
    send_ack(g);
}

/* An agent's row in PostgreSQL comes before its first 202: the org's
 * quota of agents is checked there, and reads list the agent at once. */
static void send_register(group *g)
{
    cm_buf agents;
    cm_buf_init(&agents);
    size_t n = add_agents(g, NULL, 0, g->in->known, &agents);
    const char *params[] = {agents.data};
    int rc = agents.failed ? CM_ENOMEM : CM_OK;
    if (rc == CM_OK && n == 0) {
        cm_buf_free(&agents);
        send_ack(g);
        return;
    }
    if (rc == CM_OK) rc = cm_pg_query_prepared_within(g->in->db, g->in->opts.deadline_ms, cm_hbrow_register_sql, 1, params,
                                                      on_register, g);
    cm_buf_free(&agents);
    if (rc != CM_OK)
        fail_group(g, 503, "store_unavailable", NULL,
                   rc == CM_ENOMEM ? "out of memory; retry" : "PostgreSQL is unavailable; retry");
}

static void on_ack(void *arg, int rc, const cm_hot_ack_result *r);
static int send_check(group *g);

static void send_ack(group *g)
{
    cm_ingest *in = g->in;
    size_t n, njobs = 0;
    const cm_hb **hbs = group_hbs(g, false, &n);
    for (cm_job *j = g->jobs.head; j; j = j->next) njobs++;
    int *per_job = calloc(njobs + 1, sizeof *per_job);
    int rc = hbs && per_job ? CM_OK : CM_ENOMEM;
    if (rc == CM_OK) {
        size_t q = 0, r = 0;
        for (cm_job *j = g->jobs.head; j; j = j->next, q++)
            for (size_t h = 0; h < j->req.heartbeat.n; h++, r++) per_job[q] += !g->dup[r];
        cm_hot_ack_in a = {.hbs = hbs, .n = (int)n, .request_rows = per_job, .nrequests = (int)njobs,
                           .agents = g->addresses, .nagents = g->nagents, .now = g->now,
                           .mark_ttl_s = in->opts.mark_ttl_s, .max_queue = in->opts.max_queue};
        g->pending = 1;
        rc = cm_hot_ack(in->hot, &a, on_ack, g);
    }
    free(hbs);
    free(per_job);
    if (rc != CM_OK) {
        fail_group(g, 503, "store_unavailable", NULL,
                   rc == CM_ENOMEM ? "out of memory; retry" : "Redis is unavailable; retry");
        return;
    }
    /* Sent at once behind the ACK: Redis runs it after the ACK, in the same
     * turn of its loop, so both replies wait for one fsync, not two. */
    if (send_check(g) == CM_OK) g->pending++;
}

static void send_group(group *g)
{
    g->sent_ns = uv_hrtime();
    g->in->since[g->writer] = uv_now(g->in->loop);
    if (g->in->opts.durable_redis) send_register(g);
    else send_commit(g);
}

static void on_stall(uv_timer_t *t)
{
    flush(t->data);
}

/* The loop time at which a busy writer's statement turns stall_ms old (the
 * earliest); UINT64_MAX when none will. */
static uint64_t stall_due(const cm_ingest *in)
{
    uint64_t due = UINT64_MAX;
    for (int w = 0; in->opts.stall_ms > 0 && w < CM_INGEST_WRITERS; w++)
        if (in->busy[w] && in->since[w] + (uint64_t)in->opts.stall_ms < due)
            due = in->since[w] + (uint64_t)in->opts.stall_ms;
    return due;
}

/* Sends the waiting jobs as groups while a writer is free: an idle ingest
 * sends at once, a busy one when SPARE_ROWS wait or once a busy writer's
 * statement is stall_ms old (the timer comes back then). */
static void flush(cm_ingest *in)
{
    for (;;) {
        int free_slot = -1, busy = 0;
        for (int w = CM_INGEST_WRITERS - 1; w >= 0; w--) {
            if (in->busy[w]) busy++;
            else free_slot = w;
        }
        if (!in->waiting.head || free_slot < 0) return;
        uint64_t now = uv_now(in->loop), due = stall_due(in);
        if (busy > 0 && in->waiting_rows < SPARE_ROWS && now < due) {
            if (due != UINT64_MAX && !uv_is_active((uv_handle_t *)&in->stall))
                uv_timer_start(&in->stall, on_stall, due - now, 0);
            return;
        }
        group *g = group_take(in, &in->waiting, SIZE_MAX);
        if (!g) {
            fail_jobs(in, &in->waiting, 503, "internal", NULL, "out of memory; retry");
            in->waiting_rows = 0;
            return;
        }
        in->waiting_rows -= g->nrows;
        g->writer = free_slot;
        in->busy[free_slot] = true;
        send_group(g);
    }
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
    uint64_t now_ns = uv_hrtime();
    cm_job *j;
    while ((j = cm_jobq_pop(&g->jobs)) != NULL) {
        time_job(in, g, j, now_ns);
        size_t accepted = 0;
        int refused = 0;
        for (size_t h = 0; h < j->req.heartbeat.n; h++, r++) {
            accepted += g->rows[r].is_new;
            if (g->rows[r].refused) refused = g->rows[r].refused;
        }
        if (refused) {
            /* The same answer PostgreSQL's cap gives (refusal.h). */
            char cap[64];
            cm_apierr e;
            snprintf(cap, sizeof cap, "cap_%s", cm_hot_capped_names[refused - 1]);
            cm_refusal_of("23514", cap, &e);
            cm_job_fail(j, e.status, e.code, e.field, e.message);
            answer(in, j);
            continue;
        }
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

static void step(group *g);

static void on_check(void *arg, int rc, const cm_hot_check_result *r)
{
    (void)rc; /* an agent Redis could not answer for reads active */
    group *g = arg;
    for (int i = 0; i < g->nagents; i++) {
        g->agents[i].state = r->state[i];
        g->agents[i].forecast = r->forecast[i];
    }
    /* With Redis as the durable point the ACK's reply came first: a failed
     * one acknowledged nothing, so nothing was crossed. */
    for (int i = 0; i < r->nmarks && !g->fail_status; i++)
        mark_event(g->in, g->agents[r->marks[i].agent].address, &r->marks[i], &r->forecast[r->marks[i].agent],
                   g->now);
    step(g);
}

/* Reads every agent's state in the windows of g->now; the group is
 * finished by on_check, unless this fails. */
static int send_check(group *g)
{
    return cm_hot_check(g->in->hot, g->addresses, g->nagents, g->now, on_check, g);
}

/* g's durable point answered: its statement (or ACK) is timed and counted
 * with the rows it stored (the group's, less its repeats). */
static void stored(group *g)
{
    size_t sent = 0;
    for (size_t i = 0; i < g->nrows; i++) sent += !g->dup[i];
    g->stored_ns = uv_hrtime();
    atomic_fetch_add(&g->in->groups, 1);
    atomic_fetch_add(&g->in->group_rows, sent);
}

static void on_group(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    group *g = arg;
    cm_ingest *in = g->in;
    if (rc != CM_OK) {
        group_failed(g, res, sqlstate);
        return;
    }
    stored(g);
    int rows = cm_pgres_rows(res), rfirst = -1, rlast = -1;
    for (int i = 0; i < rows; i++) {
        char kind = cm_pgres_get(res, i, 0)[0];
        if (kind == 'n') {
            size_t idx = strtoull(cm_pgres_get(res, i, 1), NULL, 10);
            if (idx < g->nrows) g->rows[idx].is_new = 1;
        } else if (kind == 'r') {
            if (rfirst < 0) rfirst = i;
            rlast = i + 1;
        } else if (kind == 't') {
            group_agent *ga = find_agent(g, cm_pgres_get(res, i, 1));
            if (ga) ga->cost_today = strtoll(cm_pgres_get(res, i, 2), NULL, 10);
        }
    }
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
    int w = g->writer;
    if (rfirst >= 0) merge_rollups(in, res, rfirst, rlast);
    draw_reservations(g);
    g->pending = 1;
    if (send_check(g) != CM_OK) step(g);
    writer_next(in, w, next);
}

/* One of g's replies came (or will not): the last one answers its jobs.
 * The writer went on already (on_group, on_ack). */
static void step(group *g)
{
    if (--g->pending > 0) return;
    if (g->fail_status) {
        fail_jobs(g->in, &g->jobs, g->fail_status, g->fail_code, NULL, g->fail_msg);
        group_free(g);
    } else {
        finish_group(g);
    }
}

static void redis_failed(group *g, int status, const char *code, const char *msg)
{
    if (g->fail_status) return;
    g->fail_status = status;
    g->fail_code = code;
    g->fail_msg = msg;
}

static void on_replicated(void *arg, int rc, long long replicas)
{
    group *g = arg;
    /* The queue's entries are on the primary but maybe not on the replica a
     * failover would promote: not a 202. A retry with the same ids is
     * answered as duplicates once they are. */
    if (rc != CM_OK || replicas < g->in->opts.wait_replicas)
        redis_failed(g, 503, "store_unavailable", "Redis did not confirm the write on a replica; retry");
    step(g);
}

static void on_ack(void *arg, int rc, const cm_hot_ack_result *r)
{
    group *g = arg;
    cm_ingest *in = g->in;
    /* The writer takes the next group now; g waits for its CHECK (and WAIT). */
    group *next = g->then;
    int w = g->writer;
    g->then = NULL;
    if (rc != CM_OK) {
        /* Outcome unknown when the connection dropped, as with PostgreSQL. */
        redis_failed(g, 503, "store_unavailable", "Redis did not confirm the write; retry");
    } else if (r->full) {
        redis_failed(g, 503, "queue_full",
                     "heartbeats wait for PostgreSQL beyond the queue's bound (queue-max); retry later");
    } else {
        for (size_t i = 0, k = 0; i < g->nrows; i++) {
            if (g->dup[i]) continue;
            int st = r->status[k++];
            g->rows[i].is_new = st == 1;
            if (st < 0) g->rows[i].refused = -st;
        }
        stored(g);
        for (int i = 0; i < g->nagents; i++) g->agents[i].cost_today = r->cost_today[i];
        draw_reservations(g);
        if (in->opts.wait_replicas > 0) {
            g->pending++;
            if (cm_hot_wait_replicas(in->hot, in->opts.wait_replicas, WAIT_REPLICAS_MS, on_replicated, g) != CM_OK)
                on_replicated(g, CM_ESTORE, 0);
        }
    }
    step(g);
    writer_next(in, w, next);
}
