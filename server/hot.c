#include "hot.h"
#include "address.h"
#include "buf.h"
#include "error.h"
#include "hot_layout.h"
#include "hot_internal.h"
#include "hot_rebuild.h"
#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The scripts of server/lua/, embedded at build time (scripts/embed_lua.sh). */
extern const char cm_lua_merge[], cm_lua_admit[], cm_lua_check[], cm_lua_hreplace[], cm_lua_draw[],
    cm_lua_release[], cm_lua_restore[], cm_lua_pgen[], cm_lua_ack[], cm_lua_drain[], cm_lua_drained[],
    cm_lua_qids[], cm_lua_qfloor[];

enum { MERGE = 0, ADMIT, CHECK, HREPLACE, DRAW, RELEASE, RESTORE, PGEN };
static const char *const scripts[CM_HOT_NSCRIPTS] = {
    cm_lua_merge, cm_lua_admit, cm_lua_check,   cm_lua_hreplace, cm_lua_draw, cm_lua_release, cm_lua_restore,
    cm_lua_pgen,  cm_lua_ack,   cm_lua_drain,   cm_lua_drained,  cm_lua_qids, cm_lua_qfloor};
_Static_assert(CM_HOT_ACK == PGEN + 1, "the queue's scripts follow the others");

#define MERGE_CHUNK 200 /* window hashes per MERGE call */
#define CHECK_CHUNK 100 /* agents per CHECK call */

/* The fields of a window hash merge.lua sets, in cm_hot_rollup's order,
 * and the one ADMIT counts. */
static const char *const rollup_fields[] = {"cost", "tin", "tout", "calls", "hb"};
enum { NROLLUP = 5 };
#define INTENTS_FIELD "intents"

struct cm_hot {
    cm_store *store;   /* owned */
    cm_pg_pool *pg;    /* borrowed */
    uv_timer_t retry;  /* re-runs a failed or early rebuild */
    bool rebuilding;
    bool rebuild_again;
    int horizon_s;    /* of a predicted exhaustion's mark */
    _Atomic bool complete; /* the mirror is rebuilt since Redis connected */
    unsigned long generation; /* cm_store_generation at the last connect */
    bool failing_over;        /* a new primary's mirror is not rebuilt yet: no admission */
    unsigned long rebuilds;   /* whole rebuilds done */
    bool bulk;                /* calls go in the store's bulk lane (cm_hot_set_bulk) */
    bool all_windows;         /* cm_hot_set_all_windows */
};

static void rebuild(cm_hot *h);

static void on_ready(void *arg)
{
    /* A (re)connected Redis may have restarted, been flushed or missed
     * merges while it was away: bring the hot windows back from PostgreSQL. */
    cm_hot *h = arg;
    unsigned long generation = cm_store_generation(h->store);
    /* Another primary (a failover) holds the replica's counters, which may
     * be behind PostgreSQL's: an admission counted on them before the
     * rebuild's max-merge would be lost in it, so none until then. */
    if (h->generation && generation != h->generation) h->failing_over = true;
    h->generation = generation;
    atomic_store(&h->complete, false);
    rebuild(h);
}

int cm_hot_new(uv_loop_t *loop, const cm_store_where *where, cm_pg_pool *pg, cm_hot **out)
{
    cm_hot *h = calloc(1, sizeof *h);
    if (!h) return CM_ENOMEM;
    h->pg = pg;
    h->horizon_s = 3600;
    h->all_windows = true;
    int rc = cm_store_new(loop, where, scripts, CM_HOT_NSCRIPTS, on_ready, h, &h->store);
    if (rc != CM_OK) {
        free(h);
        return rc;
    }
    uv_timer_init(loop, &h->retry);
    h->retry.data = h;
    *out = h;
    return CM_OK;
}

static void on_closed(uv_handle_t *handle)
{
    free(handle->data);
}

void cm_hot_free(cm_hot *h)
{
    if (!h) return;
    cm_store_free(h->store);
    uv_close((uv_handle_t *)&h->retry, on_closed);
}

void cm_hot_set_all_windows(cm_hot *h, bool all)
{
    h->all_windows = all;
}

bool cm_hot_all_windows(const cm_hot *h)
{
    return h->all_windows;
}

void cm_hot_set_horizon(cm_hot *h, int seconds)
{
    h->horizon_s = seconds;
}

void cm_hot_set_deadline(cm_hot *h, int ms)
{
    cm_store_set_deadline(h->store, ms);
}

const cm_store *cm_hot_store(const cm_hot *h)
{
    return h->store;
}

bool cm_hot_ready(const cm_hot *h)
{
    return cm_store_ready(h->store) && atomic_load(&((cm_hot *)h)->complete);
}

int cm_hot_eval(cm_hot *h, int script, int nkeys, int argc, const char *const *argv, cm_store_cb cb, void *arg)
{
    size_t *lens = malloc((size_t)argc * sizeof *lens);
    if (!lens) return CM_ENOMEM;
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    int rc = h->bulk ? cm_store_eval_bulk(h->store, script, nkeys, argc, argv, lens, cb, arg)
                     : cm_store_eval(h->store, script, nkeys, argc, argv, lens, cb, arg);
    free(lens);
    return rc;
}

void cm_hot_set_bulk(cm_hot *h, bool on)
{
    h->bulk = on;
}

void cm_hot_hold_bulk(cm_hot *h, bool hold)
{
    cm_store_bulk_hold(h->store, hold);
}

/* ---- rebuild ---- */

static void on_retry(uv_timer_t *t)
{
    rebuild(t->data);
}

static void retry_in(cm_hot *h, uint64_t ms)
{
    if (!uv_is_closing((uv_handle_t *)&h->retry)) uv_timer_start(&h->retry, on_retry, ms, 0);
}

static void rebuilt(cm_hot *h, bool ok, void *arg)
{
    (void)arg;
    h->rebuilding = false;
    /* A rebuild asked for while this one ran (Redis reconnected) means this
     * one may be incomplete: only the last one makes the mirror complete. */
    if (ok && cm_store_set(h->store, CM_HOT_EPOCH_KEY, "1", 0) == CM_OK) {
        h->rebuilds++;
        if (!h->rebuild_again) {
            atomic_store(&h->complete, true);
            h->failing_over = false;
        }
        cm_log(CM_LOG_INFO, "event=redis_rebuilt");
    } else {
        cm_log(CM_LOG_WARN, "event=redis_rebuild_failed retry_in_ms=1000");
        retry_in(h, 1000);
    }
    if (h->rebuild_again) {
        h->rebuild_again = false;
        rebuild(h);
    }
}

static void rebuild(cm_hot *h)
{
    if (h->rebuilding) {
        h->rebuild_again = true;
        return;
    }
    if (!cm_pg_pool_ready(h->pg)) {
        /* Redis came up before PostgreSQL: try again shortly. */
        retry_in(h, 200);
        return;
    }
    h->rebuilding = true;
    atomic_store(&h->complete, false);
    if (cm_hot_rebuild_pass(h, h->pg, NULL, false, rebuilt, NULL) != CM_OK) rebuilt(h, false, NULL);
}

/* ---- calls answered once after one or more script calls ---- */

/* A typed call sent as one or more script calls: answers once, after the
 * last reply. */
typedef struct {
    cm_hot *h;
    int pending; /* script calls not yet answered, plus one while sending */
    int rc;      /* the first failure */
    cm_hot_done_cb cb;
    void *arg;
} batch;

static batch *batch_new(cm_hot *h, cm_hot_done_cb cb, void *arg)
{
    batch *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->h = h;
    b->pending = 1;
    b->cb = cb;
    b->arg = arg;
    return b;
}

/* Sends one script call of b; its callback must end in batch_step. */
static int batch_eval(batch *b, int script, int nkeys, int argc, const char *const *argv, cm_store_cb cb,
                      void *arg)
{
    b->pending++;
    int rc = cm_hot_eval(b->h, script, nkeys, argc, argv, cb, arg);
    if (rc != CM_OK) b->pending--;
    return rc;
}

/* One script call of b ended with rc (or the sending did). */
static void batch_step(batch *b, int rc)
{
    if (rc != CM_OK && b->rc == CM_OK) b->rc = rc;
    if (--b->pending > 0) return;
    if (b->cb) b->cb(b->arg, b->rc);
    free(b);
}

/* Ends the sending. Returns CM_OK when a script call went (the callback
 * runs after the last reply, with `failed` when that is an error), else
 * `failed`, freeing b without calling back. */
static int batch_sent(batch *b, int failed)
{
    if (b->pending == 1) {
        free(b);
        return failed;
    }
    batch_step(b, failed);
    return CM_OK;
}

static void on_batch_reply(void *arg, int rc, const cm_store_reply *reply)
{
    (void)reply;
    batch_step(arg, rc);
}

int cm_hot_eval_done(cm_hot *h, int script, int nkeys, int argc, const char *const *argv, cm_hot_done_cb cb,
                     void *arg)
{
    batch *b = batch_new(h, cb, arg);
    if (!b) return CM_ENOMEM;
    return batch_sent(b, batch_eval(b, script, nkeys, argc, argv, on_batch_reply, b));
}

/* ---- MERGE ---- */

/* A row of either kind: its window and its fields' values. */
typedef void (*row_fn)(const void *rows, int i, const char **address, char *grain, int64_t *start,
                       int64_t values[NROLLUP]);

static void rollup_row(const void *rows, int i, const char **address, char *grain, int64_t *start,
                       int64_t values[NROLLUP])
{
    const cm_hot_rollup *r = (const cm_hot_rollup *)rows + i;
    *address = r->address;
    *grain = r->grain;
    *start = r->start;
    int64_t v[NROLLUP] = {r->cost, r->tokens_in, r->tokens_out, r->llm_calls, r->heartbeats};
    memcpy(values, v, sizeof v);
}

static void count_row(const void *rows, int i, const char **address, char *grain, int64_t *start,
                      int64_t values[NROLLUP])
{
    const cm_hot_count *r = (const cm_hot_count *)rows + i;
    *address = r->tag;
    *grain = r->grain;
    *start = r->start;
    values[0] = r->value;
}

void cm_hot_epoch_missing(cm_hot *h)
{
    /* The rebuild's own merges find the epoch missing until it ends. */
    if (h->rebuilding) return;
    cm_log(CM_LOG_WARN, "event=redis_epoch_missing action=rebuild");
    rebuild(h);
}

static void on_merged(void *arg, int rc, const cm_store_reply *reply)
{
    batch *b = arg;
    if (rc == CM_OK && cm_store_reply_int(reply, 0) == 0) cm_hot_epoch_missing(b->h);
    batch_step(b, rc);
}

/* One MERGE call for rows [from, to), each with the nf fields named;
 * gated: each only while its agent's policy has a limit (merge.lua). */
static int merge_chunk(batch *b, const void *rows, row_fn row, int from, int to, const char *const *fields,
                       int nf, bool gated)
{
    enum { NUM = CM_INT_TEXT_MAX };
    int n = to - from;
    int argc = 1 + 2 * n + n * (2 + 2 * nf);
    const char **argv = malloc((size_t)argc * sizeof *argv);
    char *keys = malloc((size_t)n * (gated ? 2 : 1) * CM_HOT_KEY_MAX);
    char *nums = malloc((size_t)n * (size_t)(1 + nf) * NUM);
    char nfs[8];
    int rc = CM_ENOMEM;
    if (!argv || !keys || !nums) goto out;
    snprintf(nfs, sizeof nfs, "%d", nf);
    argv[0] = CM_HOT_EPOCH_KEY;
    int a = 1 + 2 * n;
    char *num = nums, *key = keys;
    for (int i = 0; i < n; i++) {
        const char *address;
        char grain;
        int64_t start, values[NROLLUP];
        row(rows, from + i, &address, &grain, &start, values);
        argv[1 + 2 * i] = CM_HOT_EPOCH_KEY;
        if (gated) {
            cm_hot_key_policy(address, key);
            argv[1 + 2 * i] = key;
            key += CM_HOT_KEY_MAX;
        }
        cm_hot_key_window(address, grain, start, key);
        argv[2 + 2 * i] = key;
        key += CM_HOT_KEY_MAX;
        /* Without printf: a whole rebuild formats six numbers per window,
         * millions, on the loop thread. */
        cm_int_text(cm_hot_window_ttl(grain), num);
        argv[a++] = num;
        num += NUM;
        argv[a++] = nfs;
        for (int f = 0; f < nf; f++) {
            cm_int_text(values[f], num);
            argv[a++] = fields[f];
            argv[a++] = num;
            num += NUM;
        }
    }
    rc = batch_eval(b, MERGE, 1 + 2 * n, argc, argv, on_merged, b);
out:
    free(argv);
    free(keys);
    free(nums);
    return rc;
}

static int merge(cm_hot *h, const void *rows, row_fn row, int n, const char *const *fields, int nf, bool gated,
                 cm_hot_done_cb cb, void *arg)
{
    if (n <= 0) return CM_EINVAL;
    batch *b = batch_new(h, cb, arg);
    if (!b) return CM_ENOMEM;
    int rc = CM_OK;
    for (int from = 0; from < n && rc == CM_OK; from += MERGE_CHUNK)
        rc = merge_chunk(b, rows, row, from, from + MERGE_CHUNK < n ? from + MERGE_CHUNK : n, fields, nf, gated);
    return batch_sent(b, rc);
}

int cm_hot_merge(cm_hot *h, const cm_hot_rollup *rows, int n, cm_hot_done_cb cb, void *arg)
{
    return merge(h, rows, rollup_row, n, rollup_fields, NROLLUP, !h->all_windows, cb, arg);
}

int cm_hot_merge_count(cm_hot *h, const char *field, const cm_hot_count *rows, int n, cm_hot_done_cb cb,
                       void *arg)
{
    const char *fields[] = {field};
    return merge(h, rows, count_row, n, fields, 1, false, cb, arg);
}


/* ---- CHECK ---- */

typedef struct check_call check_call;

typedef struct {
    check_call *call;
    int first, n; /* the agents it asks about */
} check_chunk;

/* What the chunks' replies say, until the last. */
struct check_call {
    batch *fan;                /* answers through check_done */
    int64_t now;
    cm_hot_agent_state *state; /* owned */
    cm_forecast *forecast;     /* owned */
    cm_hot_mark *marks;        /* owned */
    int nmarks;
    check_chunk *chunks;       /* owned */
    cm_hot_check_cb cb;
    void *arg;
};

static void check_call_free(check_call *c)
{
    free(c->state);
    free(c->forecast);
    free(c->marks);
    free(c->chunks);
    free(c);
}

static void check_done(void *arg, int rc)
{
    check_call *c = arg;
    cm_hot_check_result r = {c->state, c->forecast, c->nmarks, c->marks};
    c->cb(c->arg, rc, &r);
    check_call_free(c);
}

/* The reply: per agent its state, this and the previous hour's cost, the
 * day's, the month's, its three cost limits; then five values per mark. */
enum { CHECK_AGENT_VALUES = 8 };

static void read_forecast(const cm_store_reply *r, int at, int64_t now, cm_forecast *f)
{
    char tmp[32];
    memset(f, 0, sizeof *f);
    f->burn = cm_forecast_burn(cm_store_reply_int(r, at + 1), cm_store_reply_int(r, at + 2), now);
    f->current[CM_LIM_COST_HOUR] = cm_store_reply_int(r, at + 1);
    f->current[CM_LIM_COST_DAY] = cm_store_reply_int(r, at + 3);
    f->current[CM_LIM_COST_MONTH] = cm_store_reply_int(r, at + 4);
    for (int i = CM_LIM_COST_HOUR; i < CM_LIM_COUNT; i++) {
        int k = at + 5 + i - CM_LIM_COST_HOUR;
        f->has[i] = cm_store_reply_str(r, k, tmp, sizeof tmp)[0] != '\0';
        f->limit[i] = f->has[i] ? cm_store_reply_int(r, k) : 0;
    }
}

static void on_checked(void *arg, int rc, const cm_store_reply *r)
{
    check_chunk *k = arg;
    check_call *c = k->call;
    if (rc == CM_OK) {
        int len = cm_store_reply_len(r), head = k->n * CHECK_AGENT_VALUES;
        for (int i = 0; i < k->n && (i + 1) * CHECK_AGENT_VALUES <= len; i++) {
            long long st = cm_store_reply_int(r, i * CHECK_AGENT_VALUES);
            c->state[k->first + i] = st >= CM_HOT_AGENT_ACTIVE && st <= CM_HOT_AGENT_KILLED ? (cm_hot_agent_state)st
                                                                                           : CM_HOT_AGENT_ACTIVE;
            read_forecast(r, i * CHECK_AGENT_VALUES, c->now, &c->forecast[k->first + i]);
        }
        int more = len > head ? (len - head) / 5 : 0;
        cm_hot_mark *marks = more ? realloc(c->marks, (size_t)(c->nmarks + more) * sizeof *marks) : c->marks;
        if (!marks) {
            rc = CM_ENOMEM;
        } else {
            c->marks = marks;
            for (int at = head; at + 5 <= len; at += 5) {
                long long ai = cm_store_reply_int(r, at);
                if (ai < 0 || ai >= k->n) continue;
                cm_hot_mark *m = &c->marks[c->nmarks++];
                m->agent = k->first + (int)ai;
                m->limit = (int)cm_store_reply_int(r, at + 1);
                m->fraction = cm_store_reply_int(r, at + 2);
                m->current = cm_store_reply_int(r, at + 3);
                m->limit_value = cm_store_reply_int(r, at + 4);
            }
        }
    }
    batch_step(c->fan, rc);
}

/* KEYS and ARGV as check.lua's header lays them out. */
enum { CHECK_KEYS = 5, CHECK_ARGS = 4, CHECK_ARGV_FIXED = 4 };

static int check_chunk_send(check_chunk *k, const char *const *addresses, int64_t now, int horizon_s)
{
    int64_t starts[CM_WIN3], month_end;
    cm_policy_window_starts(now, starts);
    cm_window_bounds(CM_WIN_MONTH, now, &starts[CM_WIN3_MONTH], &month_end);
    char ttl[24], nowt[24], hz[24], mend[24], start[CM_WIN3][24];
    snprintf(ttl, sizeof ttl, "%ld", CM_HOT_MARKER_TTL);
    snprintf(nowt, sizeof nowt, "%lld", (long long)now);
    snprintf(hz, sizeof hz, "%d", horizon_s);
    snprintf(mend, sizeof mend, "%lld", (long long)month_end);
    for (int w = 0; w < CM_WIN3; w++) snprintf(start[w], sizeof start[w], "%lld", (long long)starts[w]);
    int n = k->n, nkeys = 1 + CHECK_KEYS * n, argc = nkeys + CHECK_ARGV_FIXED + CHECK_ARGS * n;
    const char **argv = malloc((size_t)argc * sizeof *argv);
    char (*keys)[CM_HOT_KEY_MAX] = malloc((size_t)n * CHECK_KEYS * sizeof *keys);
    int rc = CM_ENOMEM;
    if (!argv || !keys) goto out;
    argv[0] = CM_HOT_EPOCH_KEY;
    const char **av = argv + nkeys;
    av[0] = ttl;
    av[1] = nowt;
    av[2] = hz;
    av[3] = mend;
    for (int i = 0; i < n; i++) {
        const char *address = addresses[k->first + i];
        /* Per agent: its policy hash, its hour, day and month hashes and the
         * previous hour's; its tag, then the three windows' starts. */
        char (*kk)[CM_HOT_KEY_MAX] = keys + CHECK_KEYS * i;
        cm_hot_key_policy(address, kk[0]);
        for (int w = 0; w < CM_WIN3; w++) cm_hot_key_window(address, CM_HOT_GRAINS[w], starts[w], kk[1 + w]);
        cm_hot_key_window(address, 'h', starts[CM_WIN3_HOUR] - 3600, kk[4]);
        for (int j = 0; j < CHECK_KEYS; j++) argv[1 + CHECK_KEYS * i + j] = kk[j];
        av[CHECK_ARGV_FIXED + CHECK_ARGS * i] = address;
        for (int w = 0; w < CM_WIN3; w++) av[CHECK_ARGV_FIXED + CHECK_ARGS * i + 1 + w] = start[w];
    }
    rc = batch_eval(k->call->fan, CHECK, nkeys, argc, argv, on_checked, k);
out:
    free(argv);
    free(keys);
    return rc;
}

int cm_hot_check(cm_hot *h, const char *const *addresses, int n, int64_t now, cm_hot_check_cb cb, void *arg)
{
    if (n <= 0) return CM_EINVAL;
    int nchunks = (n + CHECK_CHUNK - 1) / CHECK_CHUNK;
    check_call *c = calloc(1, sizeof *c);
    if (c) {
        c->state = calloc((size_t)n, sizeof *c->state);
        c->forecast = calloc((size_t)n, sizeof *c->forecast);
        c->chunks = calloc((size_t)nchunks, sizeof *c->chunks);
        c->fan = batch_new(h, check_done, c);
    }
    if (!c || !c->state || !c->forecast || !c->chunks || !c->fan) {
        if (c) {
            free(c->fan);
            check_call_free(c);
        }
        return CM_ENOMEM;
    }
    c->cb = cb;
    c->arg = arg;
    c->now = now;
    /* A chunk that cannot be sent leaves its agents active; the others
     * still go. */
    int failed = CM_OK;
    for (int i = 0; i < nchunks; i++) {
        check_chunk *k = &c->chunks[i];
        k->call = c;
        k->first = i * CHECK_CHUNK;
        k->n = n - k->first < CHECK_CHUNK ? n - k->first : CHECK_CHUNK;
        int rc = check_chunk_send(k, addresses, now, h->horizon_s);
        if (rc != CM_OK) failed = rc;
    }
    int rc = batch_sent(c->fan, failed);
    if (rc != CM_OK) check_call_free(c);
    return rc;
}

/* ---- ADMIT ---- */

typedef struct {
    cm_hot *h;
    const cm_hot_admission *a; /* the caller's, alive until cb */
    bool agent_rebuilt;        /* its own rebuild ran: no second one */
    cm_hot_admit_cb cb;
    void *arg;
} admit_call;

static int send_admit(admit_call *c);

static void admit_answer(admit_call *c, int rc, const cm_hot_admit_result *r)
{
    c->cb(c->arg, rc, r);
    free(c);
}

/* The agent's own rebuild ended: mark it rebuilt, then ask again. The
 * marker and the ADMIT go on one connection, in that order, before the
 * pass releases the bulk lane (hot_rebuild.c). */
static void on_agent_rebuilt(cm_hot *h, bool ok, void *arg)
{
    admit_call *c = arg;
    char key[CM_HOT_KEY_MAX];
    cm_hot_key_rebuilt(c->a->agent, key);
    if (ok && cm_store_set(h->store, key, "1", CM_HOT_REBUILT_TTL) == CM_OK && send_admit(c) == CM_OK) return;
    cm_hot_admit_result res = {.code = CM_HOT_REBUILDING};
    admit_answer(c, CM_OK, &res);
}

/* The reply: {code, n, then per level: breached, newly, blocks, current
 * (5), limits (5), this and the previous hour's cost, then tree cost, tree
 * reached, tree newly reached}, or {-1} (epoch missing), {-2, answer},
 * {-3} (in flight). */
enum { LEVEL_VALUES = 3 + 2 * CM_LIM_COUNT + 2 };

static void on_admitted(void *arg, int rc, const cm_store_reply *r)
{
    admit_call *c = arg;
    if (rc != CM_OK) {
        admit_answer(c, rc, NULL);
        return;
    }
    cm_hot_admit_result res;
    memset(&res, 0, sizeof res);
    char tmp[32];
    switch (cm_store_reply_int(r, 0)) {
    case -1:
        /* Redis lost its data: the whole mirror comes back in the
         * background, this agent's part now. */
        if (!c->h->rebuilding) rebuild(c->h);
        if (!c->agent_rebuilt) {
            c->agent_rebuilt = true;
            if (cm_hot_rebuild_pass(c->h, c->h->pg, c->a->agent, false, on_agent_rebuilt, c) == CM_OK) return;
        }
        res.code = CM_HOT_REBUILDING;
        break;
    case -2:
        res.code = CM_HOT_REPEAT;
        cm_hot_answer_parse(cm_store_reply_str(r, 1, tmp, sizeof tmp), &res.answer.status,
                            &res.answer.retry_after, &res.answer.body);
        break;
    case -3: res.code = CM_HOT_IN_FLIGHT; break;
    case 2: res.code = CM_HOT_KILLED; break;
    default:
        res.code = cm_store_reply_int(r, 0) == 1 ? CM_HOT_ADMITTED : CM_HOT_REFUSED;
        res.nlevels = (int)cm_store_reply_int(r, 1);
        if (res.nlevels > c->a->ntags) res.nlevels = c->a->ntags;
        for (int l = 0; l < res.nlevels; l++) {
            cm_hot_level *v = &res.level[l];
            int at = 2 + l * LEVEL_VALUES;
            v->breached = (unsigned)cm_store_reply_int(r, at);
            v->newly = (unsigned)cm_store_reply_int(r, at + 1);
            v->blocks = cm_store_reply_int(r, at + 2) == 1;
            for (int i = 0; i < CM_LIM_COUNT; i++) {
                v->current[i] = cm_store_reply_int(r, at + 3 + i);
                v->limit[i] = cm_store_reply_int(r, at + 3 + CM_LIM_COUNT + i);
            }
            v->this_hour = cm_store_reply_int(r, at + 3 + 2 * CM_LIM_COUNT);
            v->prev_hour = cm_store_reply_int(r, at + 4 + 2 * CM_LIM_COUNT);
        }
        /* The tree's three values follow every level the script sent. */
        int at = 2 + (int)cm_store_reply_int(r, 1) * LEVEL_VALUES;
        snprintf(res.tree_cost, sizeof res.tree_cost, "%s", cm_store_reply_str(r, at, tmp, sizeof tmp));
        res.tree_reached = cm_store_reply_int(r, at + 1) != 0;
        res.tree_newly = cm_store_reply_int(r, at + 2) != 0;
        break;
    }
    admit_answer(c, CM_OK, &res);
}

/* KEYS and ARGV as admit.lua's header lays them out. */
enum { ADMIT_KEYS_FIXED = 5, ADMIT_KEYS_LEVEL = 6, ADMIT_ARGV_FIXED = 13, ADMIT_TREE_ARGV = 3 };

static int send_admit(admit_call *c)
{
    const cm_hot_admission *a = c->a;
    int n = a->ntags < 1 ? 1 : a->ntags > CM_HOT_LEVELS_MAX ? CM_HOT_LEVELS_MAX : a->ntags;
    int nkeys = ADMIT_KEYS_FIXED + ADMIT_KEYS_LEVEL * n;
    bool idem = a->idem_key[0] != '\0';
    /* With a tree cap, one more key and three more arguments (ADMIT_TREE). */
    bool tree = a->tree_cap != NULL;
    char keys[ADMIT_KEYS_FIXED + ADMIT_KEYS_LEVEL * CM_HOT_LEVELS_MAX + 1][CM_HOT_KEY_MAX], nums[2 * CM_WIN3 + 5][24];
    const char *argv[ADMIT_KEYS_FIXED + ADMIT_KEYS_LEVEL * CM_HOT_LEVELS_MAX + 1 + ADMIT_ARGV_FIXED + CM_HOT_LEVELS_MAX +
                     ADMIT_TREE_ARGV];
    argv[0] = CM_HOT_EPOCH_KEY;
    /* Without an Idempotency-Key, KEYS[2] is a name the script never reads. */
    if (idem) cm_hot_key_idem(a->agent, a->idem_key, a->by_intent_id, keys[1]);
    argv[1] = idem ? keys[1] : CM_HOT_EPOCH_KEY;
    cm_hot_key_rebuilt(a->agent, keys[2]);
    argv[2] = keys[2];
    cm_hot_key_reservation(a->org, a->intent_id, keys[3]);
    argv[3] = keys[3];
    argv[4] = CM_HOT_RESERVATIONS_KEY;
    for (int l = 0; l < n; l++) {
        int k0 = ADMIT_KEYS_FIXED + ADMIT_KEYS_LEVEL * l;
        cm_hot_key_policy(a->tags[l], keys[k0]);
        for (int w = 0; w < CM_WIN3; w++) cm_hot_key_window(a->tags[l], CM_HOT_GRAINS[w], a->starts[w], keys[k0 + 1 + w]);
        cm_hot_key_reserved(a->tags[l], keys[k0 + 4]);
        cm_hot_key_window(a->tags[l], 'h', a->starts[CM_WIN3_HOUR] - 3600, keys[k0 + 5]);
        for (int i = 0; i < ADMIT_KEYS_LEVEL; i++) argv[k0 + i] = keys[k0 + i];
    }
    if (tree) {
        cm_hot_key_tree(a->org, a->tree_root, keys[nkeys]);
        argv[nkeys] = keys[nkeys];
        nkeys++;
    }
    for (int w = 0; w < CM_WIN3; w++) {
        snprintf(nums[w], sizeof nums[w], "%ld", cm_hot_window_ttl(CM_HOT_GRAINS[w]));
        snprintf(nums[CM_WIN3 + w], sizeof nums[0], "%lld", (long long)a->starts[w]);
    }
    snprintf(nums[2 * CM_WIN3], sizeof nums[0], "%ld", CM_HOT_MARKER_TTL);
    snprintf(nums[2 * CM_WIN3 + 1], sizeof nums[0], "%ld", CM_HOT_PENDING_TTL);
    snprintf(nums[2 * CM_WIN3 + 2], sizeof nums[0], "%lld", (long long)(a->estimate > 0 ? a->estimate : 0));
    snprintf(nums[2 * CM_WIN3 + 3], sizeof nums[0], "%lld", (long long)a->deadline);
    const char **av = argv + nkeys;
    av[0] = idem ? "1" : "0";
    for (int w = 0; w < CM_WIN3; w++) av[1 + w] = nums[w];
    for (int w = 0; w < CM_WIN3; w++) av[4 + w] = nums[CM_WIN3 + w];
    for (int i = 0; i < 4; i++) av[7 + i] = nums[2 * CM_WIN3 + i];
    av[11] = a->org;
    av[12] = a->intent_id;
    for (int l = 0; l < n; l++) av[ADMIT_ARGV_FIXED + l] = a->tags[l];
    int nargv = ADMIT_ARGV_FIXED + n;
    if (tree) {
        snprintf(nums[2 * CM_WIN3 + 4], sizeof nums[0], "%ld", CM_HOT_TREE_TTL);
        av[nargv++] = a->tree_cost;
        av[nargv++] = a->tree_cap;
        av[nargv++] = nums[2 * CM_WIN3 + 4];
    }
    return cm_hot_eval(c->h, ADMIT, nkeys, nkeys + nargv, argv, on_admitted, c);
}

int cm_hot_admit(cm_hot *h, const cm_hot_admission *a, cm_hot_admit_cb cb, void *arg)
{
    if (h->failing_over) return CM_ESTORE;
    admit_call *c = calloc(1, sizeof *c);
    if (!c) return CM_ENOMEM;
    c->h = h;
    c->a = a;
    c->cb = cb;
    c->arg = arg;
    int rc = send_admit(c);
    if (rc != CM_OK) free(c);
    return rc;
}

int cm_hot_remember(cm_hot *h, const cm_hot_admission *a, int status, long retry_after, const char *body)
{
    if (!a->idem_key[0]) return CM_OK;
    char key[CM_HOT_KEY_MAX];
    cm_hot_key_idem(a->agent, a->idem_key, a->by_intent_id, key);
    cm_buf b;
    cm_buf_init(&b);
    cm_hot_answer_text(status, retry_after, body, &b);
    char *text = cm_buf_take(&b, NULL);
    int rc = text ? cm_store_set(h->store, key, text, CM_HOT_IDEM_TTL) : CM_ENOMEM;
    free(text);
    return rc;
}

unsigned long cm_hot_generation(const cm_hot *h)
{
    return cm_store_generation(h->store);
}

/* Adds `by` to a's three intent counts. */
static int count_intent(cm_hot *h, const cm_hot_admission *a, long long by)
{
    char key[CM_HOT_KEY_MAX];
    int rc = CM_OK;
    for (int l = 0; l < a->ntags; l++)
        for (int w = 0; w < CM_WIN3; w++) {
            cm_hot_key_window(a->tags[l], CM_HOT_GRAINS[w], a->starts[w], key);
            if (cm_store_hincrby(h->store, key, INTENTS_FIELD, by) != CM_OK) rc = CM_ESTORE;
        }
    return rc;
}

int cm_hot_recorded(cm_hot *h, const cm_hot_admission *a)
{
    if (a->generation == cm_hot_generation(h)) return CM_OK;
    if (!h->failing_over) return count_intent(h, a, 1);
    /* The rebuild running may have read the intents before this one: one
     * more pass reads it, before admission opens. */
    rebuild(h);
    return CM_OK;
}

int cm_hot_unadmit(cm_hot *h, const cm_hot_admission *a)
{
    char key[CM_HOT_KEY_MAX];
    int rc = a->generation == cm_hot_generation(h) ? count_intent(h, a, -1) : CM_OK;
    if (a->idem_key[0]) {
        cm_hot_key_idem(a->agent, a->idem_key, a->by_intent_id, key);
        if (cm_store_del(h->store, key) != CM_OK) rc = CM_ESTORE;
    }
    if (a->estimate > 0 && cm_hot_release(h, a->org, a->intent_id, a->agent, NULL, NULL) != CM_OK) rc = CM_ESTORE;
    return rc;
}

/* ---- reservations ---- */

static void on_drawn(void *arg, int rc, const cm_store_reply *reply)
{
    (void)arg;
    (void)rc; /* a lost draw holds the reservation until the intent ends */
    (void)reply;
}

int cm_hot_draw(cm_hot *h, bool scopes, const cm_hot_spent *rows, int n)
{
    if (n <= 0) return CM_EINVAL;
    const char **argv = malloc((size_t)(2 * n + 1) * sizeof *argv);
    char (*keys)[CM_HOT_KEY_MAX] = malloc((size_t)n * sizeof *keys);
    char (*nums)[24] = malloc((size_t)n * sizeof *nums);
    int rc = CM_ENOMEM;
    if (argv && keys && nums) {
        argv[n] = scopes ? "s" : "a";
        for (int i = 0; i < n; i++) {
            cm_hot_key_reservation(rows[i].org, rows[i].intent_id, keys[i]);
            snprintf(nums[i], sizeof nums[i], "%lld", (long long)rows[i].cost);
            argv[i] = keys[i];
            argv[n + 1 + i] = nums[i];
        }
        rc = cm_hot_eval(h, DRAW, n, 2 * n + 1, argv, on_drawn, NULL);
    }
    free(argv);
    free(keys);
    free(nums);
    return rc;
}

typedef struct {
    cm_hot_release_cb cb;
    void *arg;
} release_call;

/* The reply: four values per reservation released; for one, {} (none) or
 * {"other"}. */
static void on_released(void *arg, int rc, const cm_store_reply *r)
{
    release_call *c = arg;
    int len = rc == CM_OK ? cm_store_reply_len(r) : 0, n = len / 4;
    char tmp[4][CM_HOT_KEY_MAX];
    char other[8];
    cm_hot_released v[16];
    int found = n > 0 ? 1 : len == 1 && strcmp(cm_store_reply_str(r, 0, other, sizeof other), "other") == 0 ? -1 : 0;
    /* Answered in runs of 16, so a sweep of any size lends a bounded array. */
    for (int at = 0; c->cb && (at < n || at == 0); at += 16) {
        int k = 0;
        for (; k < 16 && at + k < n; k++) {
            int i = 4 * (at + k);
            char num[24];
            v[k] = (cm_hot_released){.org = cm_store_reply_str(r, i, tmp[0], sizeof tmp[0]),
                                     .intent_id = cm_store_reply_str(r, i + 1, tmp[1], sizeof tmp[1]),
                                     .agent = cm_store_reply_str(r, i + 2, tmp[2], sizeof tmp[2]),
                                     .left = strtoll(cm_store_reply_str(r, i + 3, num, sizeof num), NULL, 10)};
        }
        c->cb(c->arg, rc, found, v, k);
        if (k < 16) break;
    }
    free(c);
}

static int release(cm_hot *h, const char *const *argv, int argc, cm_hot_release_cb cb, void *arg)
{
    release_call *c = calloc(1, sizeof *c);
    if (!c) return CM_ENOMEM;
    *c = (release_call){cb, arg};
    int rc = cm_hot_eval(h, RELEASE, 2, argc, argv, on_released, c);
    if (rc != CM_OK) free(c);
    return rc;
}

int cm_hot_release(cm_hot *h, const char *org, const char *intent_id, const char *agent, cm_hot_release_cb cb,
                   void *arg)
{
    char key[CM_HOT_KEY_MAX];
    cm_hot_key_reservation(org, intent_id, key);
    const char *argv[] = {CM_HOT_RESERVATIONS_KEY, key, "one", agent};
    return release(h, argv, 4, cb, arg);
}

int cm_hot_restore_reservation(cm_hot *h, const cm_hot_reservation *r, cm_hot_done_cb cb, void *arg)
{
    int n = r->ntags < 1 ? 1 : r->ntags > CM_HOT_LEVELS_MAX ? CM_HOT_LEVELS_MAX : r->ntags;
    char keys[2 + CM_HOT_LEVELS_MAX][CM_HOT_KEY_MAX], left[24], deadline[24];
    const char *argv[2 + CM_HOT_LEVELS_MAX + 5];
    cm_hot_key_reservation(r->org, r->intent_id, keys[0]);
    argv[0] = keys[0];
    argv[1] = CM_HOT_RESERVATIONS_KEY;
    for (int l = 0; l < n; l++) {
        cm_hot_key_reserved(r->tags[l], keys[2 + l]);
        argv[2 + l] = keys[2 + l];
    }
    snprintf(left, sizeof left, "%lld", (long long)r->left);
    snprintf(deadline, sizeof deadline, "%lld", (long long)r->deadline);
    const char **av = argv + 2 + n;
    av[0] = left;
    av[1] = deadline;
    av[2] = r->tags[0];
    av[3] = r->org;
    av[4] = r->intent_id;
    return cm_hot_eval_done(h, RESTORE, 2 + n, 2 + n + 5, argv, cb, arg);
}

int cm_hot_release_due(cm_hot *h, int64_t now, int max, cm_hot_release_cb cb, void *arg)
{
    char t[24], m[24];
    snprintf(t, sizeof t, "%lld", (long long)now);
    snprintf(m, sizeof m, "%d", max);
    /* KEYS[2] is not read for the due ones. */
    const char *argv[] = {CM_HOT_RESERVATIONS_KEY, CM_HOT_RESERVATIONS_KEY, "due", t, m};
    return release(h, argv, 5, cb, arg);
}

/* ---- policies and kill flags ---- */

/* Runs hreplace.lua on the policy hash of `address`: mark names the kind of
 * write, since is 0 for a change from the API or the generation a rebuild
 * pass took (cm_hot_policy_gen); argv[0..3] are left free for the keys and
 * those two. */
static int hreplace(cm_hot *h, const char *address, const char *mark, long long since, int argc,
                    const char **argv, cm_hot_done_cb cb, void *arg)
{
    char key[CM_HOT_KEY_MAX], gen[24];
    cm_hot_key_policy(address, key);
    snprintf(gen, sizeof gen, "%lld", since);
    argv[0] = key;
    argv[1] = CM_HOT_POLICY_GEN_KEY;
    argv[2] = mark;
    argv[3] = gen;
    return cm_hot_eval_done(h, HREPLACE, 2, argc, argv, cb, arg);
}

int cm_hot_replace_policy(cm_hot *h, const char *tag, const cm_policy *pol, long long since, cm_hot_done_cb cb,
                          void *arg)
{
    char space[CM_HOT_POLICY_SPACE];
    const char *argv[CM_HOT_POLICY_ARGV_MAX + 4];
    cm_policy none;
    if (!pol) {
        cm_policy_init(&none);
        pol = &none;
    }
    return hreplace(h, tag, "wp", since, 4 + cm_hot_policy_fields(pol, space, argv + 4), argv, cb, arg);
}

int cm_hot_replace_killed(cm_hot *h, const char *address, bool killed, long long since, cm_hot_done_cb cb,
                          void *arg)
{
    /* Set one pair, or set none and delete the field. */
    const char *argv[] = {NULL, NULL, NULL, NULL, killed ? "1" : "0", "killed", "1"};
    return hreplace(h, address, "wk", since, killed ? 7 : 6, argv, cb, arg);
}

/* A call answered by one number (cm_hot_number_cb). */
typedef struct {
    cm_hot_number_cb cb;
    void *arg;
} number_call;

static void on_number(void *arg, int rc, const cm_store_reply *reply)
{
    number_call *c = arg;
    c->cb(c->arg, rc, rc == CM_OK ? cm_store_reply_int(reply, 0) : 0);
    free(c);
}

static number_call *number_call_new(cm_hot_number_cb cb, void *arg)
{
    number_call *c = malloc(sizeof *c);
    if (c) *c = (number_call){cb, arg};
    return c;
}

int cm_hot_policy_gen(cm_hot *h, cm_hot_number_cb cb, void *arg)
{
    number_call *c = number_call_new(cb, arg);
    if (!c) return CM_ENOMEM;
    const char *argv[] = {CM_HOT_POLICY_GEN_KEY};
    int rc = cm_hot_eval(h, PGEN, 1, 1, argv, on_number, c);
    if (rc != CM_OK) free(c);
    return rc;
}

/* A put whose agent's windows are read back once its policy is in Redis. */
typedef struct {
    cm_hot *h;
    char address[CM_ADDR_MAX];
    cm_hot_done_cb cb;
    void *arg;
} put_call;

static void on_windows_read_back(cm_hot *h, bool ok, void *arg)
{
    (void)h;
    put_call *c = arg;
    c->cb(c->arg, ok ? CM_OK : CM_ESTORE);
    free(c);
}

static void on_agent_policy_put(void *arg, int rc)
{
    put_call *c = arg;
    if (rc == CM_OK) rc = cm_hot_rebuild_pass(c->h, c->h->pg, c->address, true, on_windows_read_back, c);
    if (rc == CM_OK) return;
    c->cb(c->arg, rc);
    free(c);
}

int cm_hot_put_policy(cm_hot *h, const char *tag, const cm_policy *pol, cm_hot_done_cb cb, void *arg)
{
    char org[CM_ADDR_SEG_MAX + 1];
    /* The group commits merge an agent's windows only while its policy has
     * a limit (cm_hot_merge): those before this write are read back. A
     * scope's tag is not an address. */
    if (h->all_windows || !pol || !cm_policy_has_limit(pol) || cm_addr_org(tag, org) != CM_OK)
        return cm_hot_replace_policy(h, tag, pol, 0, cb, arg);
    put_call *c = malloc(sizeof *c);
    if (!c) return CM_ENOMEM;
    *c = (put_call){.h = h, .cb = cb, .arg = arg};
    snprintf(c->address, sizeof c->address, "%s", tag);
    int rc = cm_hot_replace_policy(h, tag, pol, 0, on_agent_policy_put, c);
    if (rc != CM_OK) free(c);
    return rc;
}

int cm_hot_put_killed(cm_hot *h, const char *address, bool killed, cm_hot_done_cb cb, void *arg)
{
    return cm_hot_replace_killed(h, address, killed, 0, cb, arg);
}

int cm_hot_wait_replicas(cm_hot *h, int n, int timeout_ms, cm_hot_number_cb cb, void *arg)
{
    number_call *c = number_call_new(cb, arg);
    if (!c) return CM_ENOMEM;
    int rc = cm_store_wait(h->store, n, timeout_ms, on_number, c);
    if (rc != CM_OK) free(c);
    return rc;
}

unsigned long cm_hot_rebuilds(const cm_hot *h)
{
    return h->rebuilds;
}
