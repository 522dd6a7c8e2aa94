/* hot_queue.c - hot.h's queue calls: ACK, DRAIN, DRAINED and QIDS
 * (server/lua/ack.lua, drain.lua, drained.lua, qids.lua). */
#include "auth.h"
#include "error.h"
#include "hbrow.h"
#include "hot.h"
#include "hot_internal.h"
#include "hot_layout.h"
#include "refusal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const cm_hot_capped_names[CM_HOT_CAPPED] = {
    "cost_usd",   "tokens_in",     "tokens_out",        "llm_calls",       "tokens_cached",
    "tool_calls", "intents_total", "intents_succeeded", "intents_failed"};

/* Script arguments built as NUL-terminated strings in one buffer, then
 * pointed at once it no longer moves. */
typedef struct {
    cm_buf text;
    size_t *off;
    int n, cap;
} args;

static void args_init(args *a, int cap)
{
    cm_buf_init(&a->text);
    a->off = malloc((size_t)(cap ? cap : 1) * sizeof *a->off);
    a->n = 0;
    a->cap = cap;
    if (!a->off) a->text.failed = 1;
}

static void arg_str(args *a, const char *s)
{
    if (a->n >= a->cap) {
        a->text.failed = 1;
        return;
    }
    a->off[a->n] = a->text.len;
    cm_buf_adds(&a->text, s);
    cm_buf_add(&a->text, "", 1); /* its NUL: the next string follows it */
    a->n++;
}

static void arg_int(args *a, long long v)
{
    char num[CM_INT_TEXT_MAX];
    cm_int_text(v, num);
    arg_str(a, num);
}

static void arg_window(args *a, const char *address, char grain, int64_t start)
{
    char key[CM_HOT_KEY_MAX];
    cm_hot_key_window(address, grain, start, key);
    arg_str(a, key);
}

static void arg_windows(args *a, const cm_hb *hb)
{
    int64_t starts[CM_WIN3];
    cm_policy_window_starts(hb->ts, starts);
    for (int g = 0; g < CM_WIN3; g++) arg_window(a, hb->agent, CM_HOT_GRAINS[g], starts[g]);
}

/* A row's deltas, in the order ACK and DRAINED take them (cm_hot_capped_names). */
static void arg_deltas(args *a, const cm_hb *hb)
{
    const int64_t d[CM_HOT_CAPPED] = {hb->cost_nanos,    hb->tokens_in,     hb->tokens_out,
                                      hb->llm_calls,     hb->tokens_cached, hb->tool_calls,
                                      hb->intents_total, hb->intents_succeeded, hb->intents_failed};
    for (int f = 0; f < CM_HOT_CAPPED; f++) arg_int(a, (long long)d[f]);
}

/* a's strings as an argv (malloc'd), NULL when building them failed. */
static const char **args_argv(const args *a)
{
    const char **argv = a->text.failed ? NULL : malloc((size_t)(a->n ? a->n : 1) * sizeof *argv);
    for (int i = 0; argv && i < a->n; i++) argv[i] = a->text.data + a->off[i];
    return argv;
}

static void args_free(args *a)
{
    free(a->off);
    cm_buf_free(&a->text);
}

/* Runs script with a's strings, nkeys of them keys; frees a. Answered to
 * cb with the reply, or, cb NULL, to done with the outcome alone. */
static int args_eval(cm_hot *h, args *a, int script, int nkeys, cm_store_cb cb, cm_hot_done_cb done, void *arg)
{
    const char **argv = args_argv(a);
    int rc = !argv ? CM_ENOMEM
             : cb  ? cm_hot_eval(h, script, nkeys, a->n, argv, cb, arg)
                   : cm_hot_eval_done(h, script, nkeys, a->n, argv, done, arg);
    free(argv);
    args_free(a);
    return rc;
}

/* ---- ACK ---- */

typedef struct {
    cm_hot *h;
    int n, nagents;
    cm_hot_ack_cb cb;
    void *arg;
} ack_call;

static void on_ack(void *arg, int rc, const cm_store_reply *reply)
{
    ack_call *c = arg;
    int *status = NULL;
    int64_t *cost = NULL;
    cm_hot_ack_result r = {0};
    if (rc == CM_OK) {
        if (cm_store_reply_int(reply, 0) == 0) cm_hot_epoch_missing(c->h);
        r.full = cm_store_reply_int(reply, 1) != 0;
        status = calloc((size_t)c->n + 1, sizeof *status);
        cost = calloc((size_t)c->nagents + 1, sizeof *cost);
        if (!status || !cost) rc = CM_ENOMEM;
        else if (!r.full && cm_store_reply_len(reply) != 2 + c->n + c->nagents) rc = CM_ESTORE;
    }
    if (rc == CM_OK && !r.full) {
        for (int i = 0; i < c->n; i++) status[i] = (int)cm_store_reply_int(reply, 2 + i);
        for (int i = 0; i < c->nagents; i++) {
            char tmp[24];
            cost[i] = strtoll(cm_store_reply_str(reply, 2 + c->n + i, tmp, sizeof tmp), NULL, 10);
        }
    }
    r.status = status;
    r.cost_today = cost;
    c->cb(c->arg, rc, rc == CM_OK ? &r : NULL);
    free(status);
    free(cost);
    free(c);
}

int cm_hot_ack(cm_hot *h, const cm_hot_ack_in *in, cm_hot_ack_cb cb, void *arg)
{
    if (in->n <= 0) return CM_EINVAL;
    ack_call *c = malloc(sizeof *c);
    if (!c) return CM_ENOMEM;
    *c = (ack_call){.h = h, .n = in->n, .nagents = in->nagents, .cb = cb, .arg = arg};
    int nkeys = 3 + 4 * in->n + in->nagents;
    args a;
    args_init(&a, nkeys + 8 + in->nrequests + (2 + CM_HOT_CAPPED) * in->n);
    arg_str(&a, CM_HOT_EPOCH_KEY);
    arg_str(&a, CM_HOT_QUEUE_KEY);
    arg_str(&a, CM_HOT_QUEUE_LAST_KEY);
    for (int i = 0; i < in->n; i++) {
        const cm_hb *hb = in->hbs[i];
        char hex[CM_HB_KEY_HEX_LEN], key[CM_HOT_KEY_MAX];
        if (hb->id[0] && cm_auth_hb_key(hb->agent, hb->id, hex) != CM_OK) a.text.failed = 1;
        /* A row without an id has no mark: a name ACK never writes. */
        if (hb->id[0]) cm_hot_key_dedupe(hex, key);
        else snprintf(key, sizeof key, "cm:d:-");
        arg_str(&a, key);
        arg_windows(&a, hb);
    }
    int64_t today[CM_WIN3];
    cm_policy_window_starts(in->now, today);
    for (int i = 0; i < in->nagents; i++) arg_window(&a, in->agents[i], CM_HOT_GRAINS[CM_WIN3_DAY], today[CM_WIN3_DAY]);
    arg_int(&a, in->mark_ttl_s);
    arg_int(&a, in->max_queue);
    for (int g = 0; g < CM_WIN3; g++) arg_int(&a, cm_hot_window_ttl(CM_HOT_GRAINS[g]));
    arg_int(&a, CM_TOTAL_MAX);
    arg_int(&a, in->nrequests);
    arg_int(&a, in->nagents);
    for (int q = 0; q < in->nrequests; q++) arg_int(&a, in->request_rows[q]);
    cm_buf entry;
    cm_buf_init(&entry);
    for (int i = 0; i < in->n; i++) {
        const cm_hb *hb = in->hbs[i];
        arg_str(&a, hb->id[0] ? "1" : "0");
        entry.len = 0;
        cm_hbrow_encode(hb, &entry);
        if (entry.failed) a.text.failed = 1;
        arg_str(&a, entry.len ? entry.data : "");
        arg_deltas(&a, hb);
    }
    cm_buf_free(&entry);
    int rc = args_eval(h, &a, CM_HOT_ACK, nkeys, on_ack, NULL, c);
    if (rc != CM_OK) free(c);
    return rc;
}

/* ---- DRAIN ---- */

typedef struct {
    cm_hot_drain_cb cb;
    void *arg;
} drain_call;

static void on_drain(void *arg, int rc, const cm_store_reply *reply)
{
    drain_call *c = arg;
    int n = rc == CM_OK ? (cm_store_reply_len(reply) - 1) / 2 : 0;
    long long queued = rc == CM_OK ? cm_store_reply_int(reply, 0) : 0;
    cm_hot_entry *e = calloc((size_t)(n > 0 ? n : 0) + 1, sizeof *e);
    if (!e && rc == CM_OK) rc = CM_ENOMEM;
    for (int i = 0; e && i < n; i++) {
        char tmp[8];
        e[i].id = cm_store_reply_str(reply, 1 + 2 * i, tmp, sizeof tmp);
        e[i].text = cm_store_reply_str(reply, 2 + 2 * i, tmp, sizeof tmp);
    }
    c->cb(c->arg, rc, e, rc == CM_OK && n > 0 ? n : 0, queued);
    free(e);
    free(c);
}

int cm_hot_drain(cm_hot *h, const char *owner, int lease_ms, int max, cm_hot_drain_cb cb, void *arg)
{
    drain_call *c = malloc(sizeof *c);
    if (!c) return CM_ENOMEM;
    *c = (drain_call){cb, arg};
    args a;
    args_init(&a, 5);
    arg_str(&a, CM_HOT_QUEUE_KEY);
    arg_str(&a, CM_HOT_QUEUE_LEASE_KEY);
    arg_str(&a, owner);
    arg_int(&a, lease_ms);
    arg_int(&a, max);
    int rc = args_eval(h, &a, CM_HOT_DRAIN, 2, on_drain, NULL, c);
    if (rc != CM_OK) free(c);
    return rc;
}

/* ---- DRAINED ---- */

int cm_hot_qid_parse(const char *id, uint64_t *ms, uint64_t *seq)
{
    char *end;
    if (!id || id[0] < '0' || id[0] > '9') return CM_EINVAL;
    *ms = strtoull(id, &end, 10);
    if (*end != '-' || end[1] < '0' || end[1] > '9') return CM_EINVAL;
    *seq = strtoull(end + 1, &end, 10);
    return *end ? CM_EINVAL : CM_OK;
}

int cm_hot_drained(cm_hot *h, const char *last_id, const cm_hot_undo *undo, int n, cm_hot_done_cb cb, void *arg)
{
    uint64_t ms, seq;
    if (cm_hot_qid_parse(last_id, &ms, &seq) != CM_OK) return CM_EINVAL;
    char next[48];
    snprintf(next, sizeof next, "%" PRIu64 "-%" PRIu64, ms, seq + 1);
    int nkeys = 2 + 3 * n;
    args a;
    args_init(&a, nkeys + 3 + (1 + CM_HOT_CAPPED) * n);
    arg_str(&a, CM_HOT_QUEUE_KEY);
    arg_str(&a, CM_HOT_QUEUE_DONE_KEY);
    for (int i = 0; i < n; i++) arg_windows(&a, undo[i].hb);
    arg_str(&a, next);
    arg_str(&a, last_id);
    arg_int(&a, n);
    for (int i = 0; i < n; i++) {
        arg_str(&a, undo[i].id);
        arg_deltas(&a, undo[i].hb);
    }
    return args_eval(h, &a, CM_HOT_DRAINED, nkeys, NULL, cb, arg);
}

/* ---- QFLOOR ---- */

int cm_hot_queue_floor(cm_hot *h, const char *ms, const char *seq, cm_hot_done_cb cb, void *arg)
{
    char id[48];
    snprintf(id, sizeof id, "%s-%s", ms, seq);
    args a;
    args_init(&a, 2);
    arg_str(&a, CM_HOT_QUEUE_KEY);
    arg_str(&a, id);
    return args_eval(h, &a, CM_HOT_QFLOOR, 1, NULL, cb, arg);
}

/* ---- QIDS ---- */

typedef struct {
    cm_hot_qids_cb cb;
    void *arg;
} qids_call;

static void on_qids(void *arg, int rc, const cm_store_reply *reply)
{
    qids_call *c = arg;
    char t1[8], t2[8];
    c->cb(c->arg, rc, rc == CM_OK ? cm_store_reply_str(reply, 0, t1, sizeof t1) : "",
          rc == CM_OK ? cm_store_reply_str(reply, 1, t2, sizeof t2) : "");
    free(c);
}

int cm_hot_qids(cm_hot *h, cm_hot_qids_cb cb, void *arg)
{
    qids_call *c = malloc(sizeof *c);
    if (!c) return CM_ENOMEM;
    *c = (qids_call){cb, arg};
    args a;
    args_init(&a, 2);
    arg_str(&a, CM_HOT_QUEUE_LAST_KEY);
    arg_str(&a, CM_HOT_QUEUE_DONE_KEY);
    int rc = args_eval(h, &a, CM_HOT_QIDS, 2, on_qids, NULL, c);
    if (rc != CM_OK) free(c);
    return rc;
}
