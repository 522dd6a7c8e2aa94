#include "hot.h"
#include "error.h"
#include "hot_layout.h"
#include "hot_rebuild.h"
#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The scripts of server/lua/, embedded at build time (scripts/embed_lua.sh). */
extern const char cm_lua_merge[], cm_lua_admit[], cm_lua_check[], cm_lua_hreplace[];

enum { MERGE = 0, ADMIT, CHECK, HREPLACE, NSCRIPTS };
static const char *const scripts[NSCRIPTS] = {cm_lua_merge, cm_lua_admit, cm_lua_check, cm_lua_hreplace};

#define MERGE_CHUNK 200 /* window hashes per MERGE call */
#define CHECK_CHUNK 100 /* agents per CHECK call */

/* The fields of a window hash merge.lua sets, in cm_hot_rollup's order,
 * and the one ADMIT counts. */
static const char *const rollup_fields[] = {"cost", "tin", "tout", "calls", "hb"};
enum { NROLLUP = 5 };
static const char *const intents_fields[] = {"intents"};

struct cm_hot {
    cm_store *store;   /* owned */
    cm_pg_pool *pg;    /* borrowed */
    uv_timer_t retry;  /* re-runs a failed or early rebuild */
    bool rebuilding;
    bool rebuild_again;
    _Atomic bool complete; /* the mirror is rebuilt since Redis connected */
    unsigned long generation; /* cm_store_generation at the last connect */
    bool failing_over;        /* a new primary's mirror is not rebuilt yet: no admission */
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
    int rc = cm_store_new(loop, where, scripts, NSCRIPTS, on_ready, h, &h->store);
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

const cm_store *cm_hot_store(const cm_hot *h)
{
    return h->store;
}

bool cm_hot_ready(const cm_hot *h)
{
    return cm_store_ready(h->store) && atomic_load(&((cm_hot *)h)->complete);
}

/* Runs a script whose arguments are all NUL-terminated. */
static int eval(cm_hot *h, int script, int nkeys, int argc, const char *const *argv, cm_store_cb cb, void *arg)
{
    size_t *lens = malloc((size_t)argc * sizeof *lens);
    if (!lens) return CM_ENOMEM;
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    int rc = cm_store_eval(h->store, script, nkeys, argc, argv, lens, cb, arg);
    free(lens);
    return rc;
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
    if (cm_hot_rebuild_pass(h, h->pg, NULL, rebuilt, NULL) != CM_OK) rebuilt(h, false, NULL);
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
    int rc = eval(b->h, script, nkeys, argc, argv, cb, arg);
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

static void intents_row(const void *rows, int i, const char **address, char *grain, int64_t *start,
                        int64_t values[NROLLUP])
{
    const cm_hot_intents *r = (const cm_hot_intents *)rows + i;
    *address = r->address;
    *grain = r->grain;
    *start = r->start;
    values[0] = r->intents;
}

static void on_merged(void *arg, int rc, const cm_store_reply *reply)
{
    batch *b = arg;
    cm_hot *h = b->h;
    /* The rebuild's own merges find the epoch missing until it ends. */
    if (rc == CM_OK && cm_store_reply_int(reply, 0) == 0 && !h->rebuilding) {
        cm_log(CM_LOG_WARN, "event=redis_epoch_missing action=rebuild");
        rebuild(h);
    }
    batch_step(b, rc);
}

/* One MERGE call for rows [from, to), each with the nf fields named. */
static int merge_chunk(batch *b, const void *rows, row_fn row, int from, int to, const char *const *fields,
                       int nf)
{
    enum { NUM = 24 };
    int n = to - from;
    int argc = 1 + n + n * (2 + 2 * nf);
    const char **argv = malloc((size_t)argc * sizeof *argv);
    char *keys = malloc((size_t)n * CM_HOT_KEY_MAX);
    char *nums = malloc((size_t)n * (size_t)(1 + nf) * NUM);
    char nfs[8];
    int rc = CM_ENOMEM;
    if (!argv || !keys || !nums) goto out;
    snprintf(nfs, sizeof nfs, "%d", nf);
    argv[0] = CM_HOT_EPOCH_KEY;
    int a = 1 + n;
    char *num = nums;
    for (int i = 0; i < n; i++) {
        const char *address;
        char grain;
        int64_t start, values[NROLLUP];
        row(rows, from + i, &address, &grain, &start, values);
        char *key = keys + (size_t)i * CM_HOT_KEY_MAX;
        cm_hot_key_window(address, grain, start, key);
        argv[1 + i] = key;
        snprintf(num, NUM, "%ld", cm_hot_window_ttl(grain));
        argv[a++] = num;
        num += NUM;
        argv[a++] = nfs;
        for (int f = 0; f < nf; f++) {
            snprintf(num, NUM, "%lld", (long long)values[f]);
            argv[a++] = fields[f];
            argv[a++] = num;
            num += NUM;
        }
    }
    rc = batch_eval(b, MERGE, 1 + n, argc, argv, on_merged, b);
out:
    free(argv);
    free(keys);
    free(nums);
    return rc;
}

static int merge(cm_hot *h, const void *rows, row_fn row, int n, const char *const *fields, int nf,
                 cm_hot_done_cb cb, void *arg)
{
    if (n <= 0) return CM_EINVAL;
    batch *b = batch_new(h, cb, arg);
    if (!b) return CM_ENOMEM;
    int rc = CM_OK;
    for (int from = 0; from < n && rc == CM_OK; from += MERGE_CHUNK)
        rc = merge_chunk(b, rows, row, from, from + MERGE_CHUNK < n ? from + MERGE_CHUNK : n, fields, nf);
    return batch_sent(b, rc);
}

int cm_hot_merge(cm_hot *h, const cm_hot_rollup *rows, int n, cm_hot_done_cb cb, void *arg)
{
    return merge(h, rows, rollup_row, n, rollup_fields, NROLLUP, cb, arg);
}

int cm_hot_merge_intents(cm_hot *h, const cm_hot_intents *rows, int n, cm_hot_done_cb cb, void *arg)
{
    return merge(h, rows, intents_row, n, intents_fields, 1, cb, arg);
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
    cm_hot_agent_state *state; /* owned */
    cm_hot_mark *marks;        /* owned */
    int nmarks;
    check_chunk *chunks;       /* owned */
    cm_hot_check_cb cb;
    void *arg;
};

static void check_call_free(check_call *c)
{
    free(c->state);
    free(c->marks);
    free(c->chunks);
    free(c);
}

static void check_done(void *arg, int rc)
{
    check_call *c = arg;
    cm_hot_check_result r = {c->state, c->nmarks, c->marks};
    c->cb(c->arg, rc, &r);
    check_call_free(c);
}

/* The reply: one state per agent, then five values per mark. */
static void on_checked(void *arg, int rc, const cm_store_reply *r)
{
    check_chunk *k = arg;
    check_call *c = k->call;
    if (rc == CM_OK) {
        int len = cm_store_reply_len(r);
        for (int i = 0; i < k->n && i < len; i++) {
            long long st = cm_store_reply_int(r, i);
            c->state[k->first + i] = st >= CM_HOT_AGENT_ACTIVE && st <= CM_HOT_AGENT_KILLED ? (cm_hot_agent_state)st
                                                                                           : CM_HOT_AGENT_ACTIVE;
        }
        int more = len > k->n ? (len - k->n) / 5 : 0;
        cm_hot_mark *marks = more ? realloc(c->marks, (size_t)(c->nmarks + more) * sizeof *marks) : c->marks;
        if (!marks) {
            rc = CM_ENOMEM;
        } else {
            c->marks = marks;
            for (int at = k->n; at + 5 <= len; at += 5) {
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

static int check_chunk_send(check_chunk *k, const char *const *addresses, const int64_t starts[CM_WIN3])
{
    char ttl[24], start[CM_WIN3][24];
    snprintf(ttl, sizeof ttl, "%ld", CM_HOT_MARKER_TTL);
    for (int w = 0; w < CM_WIN3; w++) snprintf(start[w], sizeof start[w], "%lld", (long long)starts[w]);
    int n = k->n, argc = 2 + 8 * n;
    const char **argv = malloc((size_t)argc * sizeof *argv);
    char (*keys)[CM_HOT_KEY_MAX] = malloc((size_t)n * 4 * sizeof *keys);
    int rc = CM_ENOMEM;
    if (!argv || !keys) goto out;
    argv[0] = CM_HOT_EPOCH_KEY;
    argv[1 + 4 * n] = ttl;
    for (int i = 0; i < n; i++) {
        const char *address = addresses[k->first + i];
        /* Per agent: its policy hash, then its hour, day and month hashes;
         * its address, then the three windows' starts. */
        cm_hot_key_policy(address, keys[4 * i]);
        for (int w = 0; w < CM_WIN3; w++) cm_hot_key_window(address, CM_HOT_GRAINS[w], starts[w], keys[4 * i + 1 + w]);
        for (int j = 0; j < 4; j++) argv[1 + 4 * i + j] = keys[4 * i + j];
        argv[2 + 4 * n + 4 * i] = address;
        for (int w = 0; w < CM_WIN3; w++) argv[3 + 4 * n + 4 * i + w] = start[w];
    }
    rc = batch_eval(k->call->fan, CHECK, 1 + 4 * n, argc, argv, on_checked, k);
out:
    free(argv);
    free(keys);
    return rc;
}

int cm_hot_check(cm_hot *h, const char *const *addresses, int n, const int64_t starts[CM_WIN3],
                 cm_hot_check_cb cb, void *arg)
{
    if (n <= 0) return CM_EINVAL;
    int nchunks = (n + CHECK_CHUNK - 1) / CHECK_CHUNK;
    check_call *c = calloc(1, sizeof *c);
    if (c) {
        c->state = calloc((size_t)n, sizeof *c->state);
        c->chunks = calloc((size_t)nchunks, sizeof *c->chunks);
        c->fan = batch_new(h, check_done, c);
    }
    if (!c || !c->state || !c->chunks || !c->fan) {
        if (c) {
            free(c->fan);
            check_call_free(c);
        }
        return CM_ENOMEM;
    }
    c->cb = cb;
    c->arg = arg;
    /* A chunk that cannot be sent leaves its agents active; the others
     * still go. */
    int failed = CM_OK;
    for (int i = 0; i < nchunks; i++) {
        check_chunk *k = &c->chunks[i];
        k->call = c;
        k->first = i * CHECK_CHUNK;
        k->n = n - k->first < CHECK_CHUNK ? n - k->first : CHECK_CHUNK;
        int rc = check_chunk_send(k, addresses, starts);
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
 * marker and the ADMIT go on one connection, in that order. */
static void on_agent_rebuilt(cm_hot *h, bool ok, void *arg)
{
    admit_call *c = arg;
    char key[CM_HOT_KEY_MAX];
    cm_hot_key_rebuilt(c->a->agent, key);
    if (ok && cm_store_set(h->store, key, "1", CM_HOT_REBUILT_TTL) == CM_OK && send_admit(c) == CM_OK) return;
    cm_hot_admit_result res = {.code = CM_HOT_REBUILDING};
    admit_answer(c, CM_OK, &res);
}

/* The reply: {code, breached, newly, current (5), limits (5), tree cost,
 * tree reached, tree newly reached}, or {-1} (epoch missing), {-2,
 * answer}, {-3} (in flight). */
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
            if (cm_hot_rebuild_pass(c->h, c->h->pg, c->a->agent, on_agent_rebuilt, c) == CM_OK) return;
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
        res.code = cm_store_reply_int(r, 0) == 1   ? CM_HOT_ADMITTED
                   : cm_store_reply_int(r, 0) == 3 ? CM_HOT_TREE_CAPPED
                                                   : CM_HOT_REFUSED;
        snprintf(res.tree_cost, sizeof res.tree_cost, "%s",
                 cm_store_reply_str(r, 3 + 2 * CM_LIM_COUNT, tmp, sizeof tmp));
        res.tree_reached = cm_store_reply_int(r, 4 + 2 * CM_LIM_COUNT) != 0;
        res.tree_newly = cm_store_reply_int(r, 5 + 2 * CM_LIM_COUNT) != 0;
        res.breached = (unsigned)cm_store_reply_int(r, 1);
        res.newly = (unsigned)cm_store_reply_int(r, 2);
        for (int i = 0; i < CM_LIM_COUNT; i++) {
            res.current[i] = cm_store_reply_int(r, 3 + i);
            res.limit[i] = cm_store_reply_int(r, 3 + CM_LIM_COUNT + i);
        }
        break;
    }
    admit_answer(c, CM_OK, &res);
}

static int send_admit(admit_call *c)
{
    const cm_hot_admission *a = c->a;
    bool idem = a->idem_key[0] != '\0';
    char keys[6][CM_HOT_KEY_MAX], nums[2 * CM_WIN3 + 3][24];
    const char *argv[21];
    cm_hot_key_policy(a->agent, keys[0]);
    for (int w = 0; w < CM_WIN3; w++) {
        cm_hot_key_window(a->agent, CM_HOT_GRAINS[w], a->starts[w], keys[1 + w]);
        snprintf(nums[w], sizeof nums[w], "%ld", cm_hot_window_ttl(CM_HOT_GRAINS[w]));
        snprintf(nums[CM_WIN3 + w], sizeof nums[0], "%lld", (long long)a->starts[w]);
    }
    cm_hot_key_rebuilt(a->agent, keys[4]);
    snprintf(nums[2 * CM_WIN3], sizeof nums[0], "%ld", CM_HOT_MARKER_TTL);
    snprintf(nums[2 * CM_WIN3 + 1], sizeof nums[0], "%ld", CM_HOT_PENDING_TTL);
    char idem_key[CM_HOT_KEY_MAX];
    if (idem) cm_hot_key_idem(a->agent, a->idem_key, a->by_intent_id, idem_key);
    /* Without a tree cap, KEYS[8] is a name the script never reads. */
    bool tree = a->tree_cap != NULL;
    if (tree) cm_hot_key_tree(a->tree_org, a->tree_root, keys[5]);
    snprintf(nums[2 * CM_WIN3 + 2], sizeof nums[0], "%ld", CM_HOT_TREE_TTL);
    argv[0] = CM_HOT_EPOCH_KEY;
    for (int i = 0; i < 4; i++) argv[1 + i] = keys[i];
    /* Without an Idempotency-Key, KEYS[6] is a name the script never reads. */
    argv[5] = idem ? idem_key : CM_HOT_EPOCH_KEY;
    argv[6] = keys[4];
    argv[7] = tree ? keys[5] : CM_HOT_EPOCH_KEY;
    argv[8] = idem ? "1" : "0";
    for (int w = 0; w < CM_WIN3; w++) argv[9 + w] = nums[w];
    argv[12] = a->agent;
    for (int w = 0; w < CM_WIN3; w++) argv[13 + w] = nums[CM_WIN3 + w];
    argv[16] = nums[2 * CM_WIN3];
    argv[17] = nums[2 * CM_WIN3 + 1];
    argv[18] = tree ? a->tree_cost : "";
    argv[19] = tree ? a->tree_cap : "";
    argv[20] = nums[2 * CM_WIN3 + 2];
    return eval(c->h, ADMIT, 8, 21, argv, on_admitted, c);
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
    for (int w = 0; w < CM_WIN3; w++) {
        cm_hot_key_window(a->agent, CM_HOT_GRAINS[w], a->starts[w], key);
        if (cm_store_hincrby(h->store, key, intents_fields[0], by) != CM_OK) rc = CM_ESTORE;
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
    return rc;
}

/* ---- policies and kill flags ---- */

/* Runs hreplace.lua on the policy hash of `address`; argv[0] is left free
 * for the key. */
static int hreplace(cm_hot *h, const char *address, int argc, const char **argv, cm_hot_done_cb cb, void *arg)
{
    char key[CM_HOT_KEY_MAX];
    cm_hot_key_policy(address, key);
    argv[0] = key;
    batch *b = batch_new(h, cb, arg);
    if (!b) return CM_ENOMEM;
    return batch_sent(b, batch_eval(b, HREPLACE, 1, argc, argv, on_batch_reply, b));
}

int cm_hot_put_policy(cm_hot *h, const char *address, const cm_policy *pol, cm_hot_done_cb cb, void *arg)
{
    char space[CM_HOT_POLICY_SPACE];
    const char *argv[CM_HOT_POLICY_ARGV_MAX + 1];
    cm_policy none;
    if (!pol) {
        cm_policy_init(&none);
        pol = &none;
    }
    return hreplace(h, address, 1 + cm_hot_policy_fields(pol, space, argv + 1), argv, cb, arg);
}

int cm_hot_put_killed(cm_hot *h, const char *address, bool killed, cm_hot_done_cb cb, void *arg)
{
    /* hreplace.lua: set one pair, or set none and delete the field. */
    const char *argv[] = {NULL, killed ? "1" : "0", "killed", "1"};
    return hreplace(h, address, killed ? 4 : 3, argv, cb, arg);
}
