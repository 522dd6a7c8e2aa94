#include "persist.h"
#include "error.h"
#include "hbrow.h"
#include "log.h"
#include "refusal.h"
#include "seen.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BATCH 2000      /* entries per statement: a commit's fsync amortised, one statement's latency low */
#define POLL_MS 5       /* between two looks at the done id for waiting reads */
/* Between two batches that were not full (an empty queue included): a
 * statement per 100 ms instead of one per few ms stores the same heartbeats
 * in fewer, larger statements, which cost PostgreSQL less per heartbeat (an
 * agent's rows of a batch are one rollup update, one commit). Reads do not
 * wait for it: a waiting read starts the next batch at once. */
#define PACE_MS 100
#define LEASE_MS 1000   /* a drainer that stops is replaced after this; a slower batch is safe (the mark) */
#define RETRY_MS 500    /* after PostgreSQL or Redis failed */

/* A queue entry of the batch in flight. */
typedef struct {
    char id[48];
    uint64_t ms, seq;
    char *text; /* owned */
    cm_hb hb;
    bool dup; /* its increments are to be taken back: it repeats an earlier (agent, id) of the
                 batch (not sent), or PostgreSQL found it stored */
} entry;

typedef struct waiter waiter;
struct waiter {
    cm_persist *p;
    cm_persist_wait_cb cb;
    void *arg;
    uint64_t ms, seq; /* the queue's last id when the read came */
    uint64_t deadline;
    waiter *next;
};

struct cm_persist {
    uv_loop_t *loop;
    cm_pg_pool *db; /* borrowed */
    cm_hot *hot;    /* borrowed */
    int read_wait_ms;
    uv_timer_t tick;  /* the next drain */
    uv_timer_t watch; /* the done id, while reads wait */
    int open_handles;
    char owner[96];
    cm_seen *seen; /* owned: agents whose last_heartbeat moved this second */
    bool busy;     /* a batch in flight, from DRAIN to DRAINED */
    bool watching; /* a QIDS of the watch in flight */
    entry *batch;  /* owned, the batch in flight; the build's while one runs */
    int n;
    struct build *build; /* owned, the batch's columns being made off the loop, or NULL */
    bool closing;        /* freed while a build ran: its end frees p */
    /* After a batch PostgreSQL refused for good, entries go one at a time
     * up to its last id. */
    bool single;
    uint64_t single_ms, single_seq;
    waiter *waiters;
    /* After Redis lost its data (a rebuild), batches merge PostgreSQL's
     * totals into the windows until the queue has been emptied once. */
    unsigned long rebuilds_seen;
    bool heal, heal_until_empty;
    _Atomic unsigned long long stored, duplicates, refused, queued;
};

static bool id_le(uint64_t ams, uint64_t aseq, uint64_t bms, uint64_t bseq)
{
    return ams < bms || (ams == bms && aseq <= bseq);
}

static void drain(cm_persist *p);

static void on_tick(uv_timer_t *t)
{
    drain(t->data);
}

static void next_in(cm_persist *p, uint64_t ms)
{
    if (!uv_is_closing((uv_handle_t *)&p->tick)) uv_timer_start(&p->tick, on_tick, ms, 0);
}

static void batch_free(cm_persist *p)
{
    for (int i = 0; i < p->n; i++) free(p->batch[i].text);
    free(p->batch);
    p->batch = NULL;
    p->n = 0;
}

/* The batch is over (stored and trimmed, or failed: then retried later). */
static void batch_end(cm_persist *p, bool ok, uint64_t again_ms)
{
    int n = p->n;
    batch_free(p);
    p->busy = false;
    next_in(p, ok && (n == BATCH || p->waiters) ? 0 : again_ms);
}

/* ---- waiting reads ---- */

static void wake(cm_persist *p, bool all, uint64_t done_ms, uint64_t done_seq)
{
    uint64_t now = uv_now(p->loop);
    waiter **w = &p->waiters;
    while (*w) {
        waiter *x = *w;
        if (all || now >= x->deadline || id_le(x->ms, x->seq, done_ms, done_seq)) {
            *w = x->next;
            x->cb(x->arg, true);
            free(x);
        } else {
            w = &x->next;
        }
    }
    if (!p->waiters && !uv_is_closing((uv_handle_t *)&p->watch)) uv_timer_stop(&p->watch);
}

static void on_watch_ids(void *arg, int rc, const char *last, const char *done)
{
    (void)last;
    cm_persist *p = arg;
    p->watching = false;
    uint64_t ms = 0, seq = 0;
    /* Redis cannot say: reads go on with what PostgreSQL has. */
    bool all = rc != CM_OK;
    if (!all && done[0] && cm_hot_qid_parse(done, &ms, &seq) != CM_OK) all = true;
    wake(p, all, ms, seq);
}

static void on_watch(uv_timer_t *t)
{
    cm_persist *p = t->data;
    if (p->watching) return;
    p->watching = cm_hot_qids(p->hot, on_watch_ids, p) == CM_OK;
    if (!p->watching) wake(p, true, 0, 0);
}

static void on_first_ids(void *arg, int rc, const char *last, const char *done)
{
    waiter *w = arg;
    cm_persist *p = w->p;
    uint64_t lms, lseq, dms = 0, dseq = 0;
    if (rc != CM_OK || !last[0] || cm_hot_qid_parse(last, &lms, &lseq) != CM_OK ||
        (done[0] && cm_hot_qid_parse(done, &dms, &dseq) != CM_OK) || id_le(lms, lseq, dms, dseq)) {
        w->cb(w->arg, true);
        free(w);
        return;
    }
    w->ms = lms;
    w->seq = lseq;
    w->deadline = uv_now(p->loop) + (uint64_t)p->read_wait_ms;
    w->next = p->waiters;
    p->waiters = w;
    if (!uv_is_active((uv_handle_t *)&p->watch) && !uv_is_closing((uv_handle_t *)&p->watch))
        uv_timer_start(&p->watch, on_watch, POLL_MS, POLL_MS);
    if (!p->busy) next_in(p, 0);
}

void cm_persist_wait(cm_persist *p, cm_persist_wait_cb cb, void *arg)
{
    waiter *w = calloc(1, sizeof *w);
    if (!w || p->read_wait_ms == 0) {
        free(w);
        cb(arg, true);
        return;
    }
    *w = (waiter){.p = p, .cb = cb, .arg = arg};
    if (cm_hot_qids(p->hot, on_first_ids, w) != CM_OK) {
        free(w);
        cb(arg, true);
    }
}

/* ---- a batch ---- */

static void on_drained(void *arg, int rc)
{
    cm_persist *p = arg;
    if (rc != CM_OK) {
        /* Committed but not trimmed: drained again, stored once (the mark). */
        batch_end(p, false, RETRY_MS);
        return;
    }
    entry *last = &p->batch[p->n - 1];
    if (p->single && id_le(p->single_ms, p->single_seq, last->ms, last->seq)) p->single = false;
    wake(p, false, last->ms, last->seq);
    batch_end(p, true, PACE_MS);
}

static void send_drained(cm_persist *p)
{
    cm_hot_undo *undo = malloc((size_t)p->n * sizeof *undo);
    int nu = 0, rc = CM_ENOMEM;
    if (undo) {
        for (int i = 0; i < p->n; i++)
            if (p->batch[i].dup) undo[nu++] = (cm_hot_undo){p->batch[i].id, &p->batch[i].hb};
        rc = cm_hot_drained(p->hot, p->batch[p->n - 1].id, undo, nu, on_drained, p);
    }
    free(undo);
    if (rc != CM_OK) batch_end(p, false, RETRY_MS);
}

/* An entry refused alone is kept in persist_refused, past the mark, so the
 * queue goes on; the mark keeps a second run from keeping it twice. */
static const char refuse_sql[] =
    "WITH mark AS (SELECT ms, seq FROM persist_mark WHERE id = 1 FOR UPDATE),"
    " kept AS (INSERT INTO persist_refused (ms, seq, payload, sqlstate) SELECT $1, $2, $3, $4 FROM mark m"
    " WHERE ($1::bigint, $2::bigint) > (m.ms, m.seq) ON CONFLICT DO NOTHING RETURNING 1)"
    " UPDATE persist_mark p SET ms = $1, seq = $2 FROM mark m"
    " WHERE p.id = 1 AND (m.ms, m.seq) < ($1::bigint, $2::bigint)";

static void on_refused(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    cm_persist *p = arg;
    if (rc != CM_OK) {
        batch_end(p, false, RETRY_MS);
        return;
    }
    atomic_fetch_add(&p->refused, 1);
    send_drained(p);
}

static void refuse(cm_persist *p, const char *sqlstate)
{
    entry *e = &p->batch[0];
    char ms[24], seq[24];
    snprintf(ms, sizeof ms, "%" PRIu64, e->ms);
    snprintf(seq, sizeof seq, "%" PRIu64, e->seq);
    const char *params[] = {ms, seq, e->text, sqlstate};
    cm_log(CM_LOG_ERROR, "event=persist_refused entry=%s sqlstate=%s", e->id, sqlstate);
    if (cm_pg_query(p->db, refuse_sql, 4, params, on_refused, p) != CM_OK) batch_end(p, false, RETRY_MS);
}

static void on_stored(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    cm_persist *p = arg;
    cm_apierr e;
    if (rc != CM_OK) {
        if (!cm_refusal_of(sqlstate, cm_pgres_constraint(res), &e)) {
            cm_log(CM_LOG_WARN, "event=persist_failed sqlstate=%s retry_in_ms=%d", sqlstate, RETRY_MS);
            batch_end(p, false, RETRY_MS);
        } else if (p->n == 1) {
            refuse(p, sqlstate);
        } else {
            /* Find the entry at fault: one at a time up to this batch's end. */
            p->single = true;
            p->single_ms = p->batch[p->n - 1].ms;
            p->single_seq = p->batch[p->n - 1].seq;
            batch_end(p, false, 0);
        }
        return;
    }
    int rows = cm_pgres_rows(res), nroll = 0;
    cm_hot_rollup *roll = malloc((size_t)(rows ? rows : 1) * sizeof *roll);
    for (int r = 0; r < rows; r++) {
        if (cm_pgres_get(res, r, 0)[0] == 'r') {
            if (roll) cm_hot_rollup_read(res, r, 1, &roll[nroll++]);
            continue;
        }
        long idx = strtol(cm_pgres_get(res, r, 1), NULL, 10);
        if (idx >= 0 && idx < p->n) p->batch[idx].dup = true;
    }
    /* After Redis lost its data (a rebuild came) its windows hold what came
     * since plus what the rebuild read: the totals PostgreSQL has after each
     * batch, merged as maxima, bring them up to what is stored, until a
     * batch empties the queue. What is acknowledged while a merge is on its
     * way can still be missing from a window until it ends (guarantees.md,
     * section 12). In steady state Redis holds PostgreSQL's totals plus
     * what is queued, so the merge (every window of the batch) is skipped.
     * Sent before DRAINED, which Redis runs after it. Fire-and-forget. */
    if (nroll > 0 && p->heal) cm_hot_merge(p->hot, roll, nroll, NULL, NULL);
    if (p->heal_until_empty) p->heal = p->heal_until_empty = false;
    free(roll);
    unsigned long long dups = 0;
    int64_t sec = (int64_t)(uv_now(p->loop) / 1000);
    for (int i = 0; i < p->n; i++) {
        dups += p->batch[i].dup;
        cm_seen_put(p->seen, p->batch[i].hb.agent, sec);
    }
    atomic_fetch_add(&p->duplicates, dups);
    atomic_fetch_add(&p->stored, (unsigned long long)p->n - dups);
    send_drained(p);
}

/* Appends e's id to two array texts begun with "{": its milliseconds to
 * ids[0], its sequence to ids[1]. */
static void add_entry_id(cm_buf ids[2], const entry *e)
{
    if (ids[0].len > 1) {
        cm_buf_add(&ids[0], ",", 1);
        cm_buf_add(&ids[1], ",", 1);
    }
    cm_buf_add_int(&ids[0], (int64_t)e->ms);
    cm_buf_add_int(&ids[1], (int64_t)e->seq);
}

/* A batch's entries decoded and its statement's columns made on a thread
 * of libuv's pool: for a full batch that is tens of milliseconds of JSON
 * and text, which on the loop thread every acknowledgement in flight
 * would wait for. The build reads and writes only the batch's entries and
 * itself; the loop leaves both alone until after_build. */
typedef struct build {
    uv_work_t work;
    cm_persist *p;
    int bad; /* the first entry not decoded, or -1 */
    int rc;  /* of making the columns */
    cm_buf cols[CM_HBROW_COLS]; /* all-zero (empty) until made */
    cm_buf ids[4]; /* $33/$34: the entries of the rows sent; $36/$37: those left out */
    const char **agents; /* owned array: the batch's distinct agents, sorted (cm_hbrow_distinct) */
    size_t nagents;
} build;

static void build_free(build *b)
{
    for (int c = 0; c < CM_HBROW_COLS; c++) cm_buf_free(&b->cols[c]);
    for (int k = 0; k < 4; k++) cm_buf_free(&b->ids[k]);
    free(b->agents);
    free(b);
}

static void run_build(uv_work_t *w)
{
    build *b = w->data;
    entry *batch = b->p->batch;
    int n = b->p->n;
    for (int i = 0; i < n && b->bad < 0; i++)
        if (cm_hbrow_decode(batch[i].text, strlen(batch[i].text), &batch[i].hb) != CM_OK) b->bad = i;
    if (b->bad >= 0) return;
    const cm_hb **hbs = malloc((size_t)n * sizeof *hbs);
    unsigned char *skip = malloc((size_t)n);
    b->agents = malloc((size_t)n * sizeof *b->agents);
    b->rc = hbs && skip && b->agents ? CM_OK : CM_ENOMEM;
    if (b->rc == CM_OK) {
        for (int i = 0; i < n; i++) hbs[i] = &batch[i].hb;
        b->rc = cm_hbrow_mark_dups(hbs, (size_t)n, skip);
        for (int i = 0; i < n; i++) batch[i].dup = skip[i];
        if (cm_hbrow_columns(hbs, skip, (size_t)n, b->cols) != CM_OK) b->rc = CM_ENOMEM;
        for (int i = 0; i < n; i++) b->agents[i] = batch[i].hb.agent;
        b->nagents = cm_hbrow_distinct(b->agents, (size_t)n);
    }
    if (b->rc == CM_OK) {
        for (int k = 0; k < 4; k++) cm_buf_add(&b->ids[k], "{", 1);
        for (int i = 0; i < n; i++) add_entry_id(&b->ids[skip[i] ? 2 : 0], &batch[i]);
        for (int k = 0; k < 4; k++) {
            cm_buf_add(&b->ids[k], "}", 1);
            if (b->ids[k].failed) b->rc = CM_ENOMEM;
        }
    }
    free(hbs);
    free(skip);
}

static void release(cm_persist *p);

/* The batch's statement (hbrow.h cm_hbrow_persist_sql), from its build. */
static int send_store(cm_persist *p, const build *b)
{
    cm_buf listed;
    const char *params[CM_HBROW_PERSIST_PARAMS];
    char last_ms[24], last_seq[24];
    cm_buf_init(&listed);
    /* $22: the batch's agents whose last_heartbeat has not moved this
     * second (p->seen is the loop's). */
    int64_t sec = (int64_t)(uv_now(p->loop) / 1000);
    cm_buf_add(&listed, "{", 1);
    for (size_t i = 0, added = 0; i < b->nagents; i++) {
        if (cm_seen_written(p->seen, b->agents[i], sec)) continue;
        if (added++) cm_buf_add(&listed, ",", 1);
        cm_buf_add_pg_text(&listed, b->agents[i]);
    }
    cm_buf_add(&listed, "}", 1);
    int rc = listed.failed ? CM_ENOMEM : CM_OK;
    if (rc == CM_OK) {
        snprintf(last_ms, sizeof last_ms, "%" PRIu64, p->batch[p->n - 1].ms);
        snprintf(last_seq, sizeof last_seq, "%" PRIu64, p->batch[p->n - 1].seq);
        for (int c = 0; c < CM_HBROW_COLS; c++) params[cm_hbrow_param(c)] = b->cols[c].data;
        params[CM_HBROW_FIRST_LATE] = last_ms;
        params[CM_HBROW_FIRST_LATE + 1] = listed.data;
        params[32] = b->ids[0].data;
        params[33] = b->ids[1].data;
        params[34] = last_seq;
        params[35] = b->ids[2].data;
        params[36] = b->ids[3].data;
        params[37] = p->heal ? "true" : "false";
        rc = cm_pg_query_prepared(p->db, cm_hbrow_persist_sql, CM_HBROW_PERSIST_PARAMS, params, on_stored, p);
    }
    cm_buf_free(&listed);
    return rc;
}

static void after_build(uv_work_t *w, int status)
{
    build *b = w->data;
    cm_persist *p = b->p;
    /* A build is never cancelled (status); were it, the batch is drained
     * again later. */
    int bad = status == 0 ? b->bad : -1;
    int rc = status == 0 ? b->rc : CM_ENOMEM;
    if (!p->closing && bad < 0 && rc == CM_OK) rc = send_store(p, b);
    build_free(b);
    p->build = NULL;
    if (p->closing) {
        release(p);
    } else if (bad == 0 && p->n == 1) {
        /* Not a heartbeat this release can read: kept, never dropped. */
        refuse(p, "decode");
    } else if (bad >= 0) {
        p->single = true;
        p->single_ms = p->batch[p->n - 1].ms;
        p->single_seq = p->batch[p->n - 1].seq;
        batch_end(p, false, 0);
    } else if (rc != CM_OK) {
        batch_end(p, false, RETRY_MS);
    }
}

static void on_drain(void *arg, int rc, const cm_hot_entry *e, int n, long long queued)
{
    cm_persist *p = arg;
    if (rc == CM_OK) atomic_store(&p->queued, (unsigned long long)(queued > 0 ? queued : 0));
    unsigned long rebuilds = cm_hot_rebuilds(p->hot);
    if (rebuilds != p->rebuilds_seen) {
        p->rebuilds_seen = rebuilds;
        p->heal = true;
        p->heal_until_empty = false;
    } else if (rc == CM_OK && p->heal && queued <= n) {
        /* This batch empties the queue: its merge is the last. */
        p->heal_until_empty = true;
    }
    if (rc != CM_OK) {
        batch_end(p, false, RETRY_MS);
        return;
    }
    if (n == 0) {
        batch_end(p, false, PACE_MS);
        return;
    }
    p->batch = calloc((size_t)n, sizeof *p->batch);
    if (!p->batch) {
        batch_end(p, false, RETRY_MS);
        return;
    }
    for (int i = 0; i < n; i++) {
        entry *x = &p->batch[i];
        p->n++;
        snprintf(x->id, sizeof x->id, "%s", e[i].id);
        x->text = strdup(e[i].text);
        if (!x->text || cm_hot_qid_parse(x->id, &x->ms, &x->seq) != CM_OK) {
            batch_end(p, false, RETRY_MS);
            return;
        }
    }
    build *b = calloc(1, sizeof *b); /* its buffers empty (cm_buf_init is all-zero) */
    if (!b) {
        batch_end(p, false, RETRY_MS);
        return;
    }
    b->p = p;
    b->bad = -1;
    b->work.data = b;
    p->build = b;
    if (uv_queue_work(p->loop, &b->work, run_build, after_build) != 0) {
        p->build = NULL;
        build_free(b);
        batch_end(p, false, RETRY_MS);
    }
}

static void drain(cm_persist *p)
{
    if (p->busy || !cm_pg_pool_ready(p->db)) {
        if (!p->busy) next_in(p, RETRY_MS);
        return;
    }
    p->busy = true;
    if (cm_hot_drain(p->hot, p->owner, LEASE_MS, p->single ? 1 : BATCH, on_drain, p) != CM_OK) {
        p->busy = false;
        next_in(p, RETRY_MS);
    }
}

/* ---- life ---- */

int cm_persist_new(uv_loop_t *loop, cm_pg_pool *db, cm_hot *hot, int read_wait_ms, cm_persist **out)
{
    cm_persist *p = calloc(1, sizeof *p);
    if (!p || cm_seen_new(&p->seen) != CM_OK) {
        free(p);
        return CM_ENOMEM;
    }
    p->loop = loop;
    p->db = db;
    p->hot = hot;
    p->read_wait_ms = read_wait_ms;
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    snprintf(p->owner, sizeof p->owner, "%s:%ld:%p", host, (long)getpid(), (void *)p);
    uv_timer_init(loop, &p->tick);
    uv_timer_init(loop, &p->watch);
    p->tick.data = p->watch.data = p;
    p->open_handles = 2;
    next_in(p, 0);
    *out = p;
    return CM_OK;
}

/* One of what p waits for before it goes (its two timers, a build) ended. */
static void release(cm_persist *p)
{
    if (--p->open_handles > 0) return;
    batch_free(p);
    cm_seen_free(p->seen);
    free(p);
}

static void on_closed(uv_handle_t *h)
{
    release(h->data);
}

void cm_persist_free(cm_persist *p)
{
    if (!p) return;
    while (p->waiters) {
        waiter *w = p->waiters;
        p->waiters = w->next;
        w->cb(w->arg, false);
        free(w);
    }
    /* A build running owns the batch: it frees p when it ends. */
    if (p->build) {
        p->closing = true;
        p->open_handles++;
    }
    uv_close((uv_handle_t *)&p->tick, on_closed);
    uv_close((uv_handle_t *)&p->watch, on_closed);
}

unsigned long long cm_persist_stored(const cm_persist *p)
{
    return atomic_load(&((cm_persist *)p)->stored);
}

unsigned long long cm_persist_duplicates(const cm_persist *p)
{
    return atomic_load(&((cm_persist *)p)->duplicates);
}

unsigned long long cm_persist_queued(const cm_persist *p)
{
    return atomic_load(&((cm_persist *)p)->queued);
}

unsigned long long cm_persist_refused(const cm_persist *p)
{
    return atomic_load(&((cm_persist *)p)->refused);
}
