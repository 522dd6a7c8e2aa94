/* client.c - the client: options, cm_report() into the active table, the
 * background sender, cm_flush(), cm_intent_begin(), cm_client_free().
 *
 * Two tables of max_pending_intents entries each. cm_report() merges into
 * `active` under `mu`. The sender freezes `active` by swapping it with the
 * empty `spare` (O(1), under `mu`), then, without the lock, encodes the
 * frozen table into request bodies of at most max_batch heartbeats, each
 * body built once (ids assigned then) and resent unchanged until the server
 * acknowledges it. Only then is the next body encoded, and only when the
 * whole frozen table is acknowledged is the next freeze made: older data
 * always goes first. Generations count freezes: gen_acked is the last
 * frozen table fully acknowledged, which is what cm_flush() waits for. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

struct cm_client {
    /* Immutable after cm_client_new. */
    cm_options opt;
    char *url_hb, *url_intents, *api_key, *agent, *ca_file;
    char id_prefix[CM__ID_PREFIX_LEN + 1];

    pthread_mutex_t mu;
    pthread_cond_t wake; /* the sender waits on it */
    pthread_cond_t done; /* cm_flush() waits on it */
    /* Under mu. */
    cm__table tables[2];
    cm__table *active, *spare;
    bool frozen_busy;
    uint64_t gen_frozen, gen_acked, kick;
    bool flush_req, stop;
    int64_t close_deadline_ms;
    cm_stats st;

    _Atomic int state;
    _Atomic int64_t cost_today;
    _Atomic int64_t abort_at_ms; /* set at close: aborts a request in progress */

    /* Sender thread only. */
    pthread_t thread;
    bool thread_started;
    cm__http *hb_http;
    cm__ids ids;
    uint64_t rng;
    int cb_state;
    cm__buf body;
    cm__http_res res;

    /* cm_intent_begin: a cached connection, used when free. */
    pthread_mutex_t intent_mu;
    cm__http *intent_http;
};

CM_API void cm_options_init(cm_options *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->flush_interval_ms = 30000;
    o->max_batch = 500;
    o->max_pending_intents = 4096;
    o->request_timeout_ms = 10000;
    o->connect_timeout_ms = 3000;
    o->backoff_initial_ms = 250;
    o->backoff_max_ms = 30000;
    o->close_timeout_ms = 5000;
}

static char *dup_str(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (p) memcpy(p, s, n + 1);
    return p;
}

static char *join(const char *base, const char *path)
{
    size_t bn = strlen(base), pn = strlen(path);
    while (bn && base[bn - 1] == '/') bn--;
    char *p = malloc(bn + pn + 1);
    if (!p) return NULL;
    memcpy(p, base, bn);
    memcpy(p + bn, path, pn + 1);
    return p;
}

static bool valid_options(const cm_options *o)
{
    if (!o->url || !*o->url || !o->api_key || !*o->api_key) return false;
    if (strncmp(o->url, "http://", 7) != 0 && strncmp(o->url, "https://", 8) != 0) return false;
    for (const char *k = o->api_key; *k; k++)
        if ((unsigned char)*k < 0x21 || *k == 0x7f) return false; /* a header value: no spaces, no CR/LF */
    if (o->agent && (strncmp(o->agent, "agent://", 8) != 0 || !cm__utf8_valid(o->agent, strlen(o->agent)) ||
                     strlen(o->agent) > 512))
        return false;
    if (o->flush_interval_ms < 10 || o->max_batch < 1 || o->max_batch > CM__BATCH_MAX) return false;
    if (o->max_pending_intents < 1 || o->max_pending_intents > (1 << 24)) return false;
    if (o->request_timeout_ms < 1 || o->connect_timeout_ms < 1) return false;
    if (o->backoff_initial_ms < 1 || o->backoff_max_ms < o->backoff_initial_ms) return false;
    if (o->close_timeout_ms < 0) return false;
    return true;
}

static void *sender_main(void *arg);

static void destroy(cm_client *c)
{
    cm__http_free(c->hb_http);
    cm__http_free(c->intent_http);
    cm__table_free(&c->tables[0]);
    cm__table_free(&c->tables[1]);
    cm__buf_free(&c->body);
    cm__buf_free(&c->res.body);
    free(c->url_hb);
    free(c->url_intents);
    free(c->api_key);
    free(c->agent);
    free(c->ca_file);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->intent_mu);
    pthread_cond_destroy(&c->wake);
    pthread_cond_destroy(&c->done);
    free(c);
}

static cm__http *new_http(const cm_client *c, bool abortable)
{
    cm__http_opts ho = {.api_key = c->api_key,
                        .ca_file = c->ca_file,
                        .timeout_ms = c->opt.request_timeout_ms,
                        .connect_timeout_ms = c->opt.connect_timeout_ms,
                        .abort_at_ms = abortable ? &c->abort_at_ms : NULL};
    return cm__http_new(&ho);
}

CM_API int cm_client_new(const cm_options *o, cm_client **out)
{
    if (out) *out = NULL;
    if (!o || !out || !valid_options(o)) return CM_EINVAL;
    if (cm__http_global_init() != CM_OK) return CM_ENOMEM;
    cm_client *c = calloc(1, sizeof *c);
    if (!c) return CM_ENOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->intent_mu, NULL);
    pthread_cond_init(&c->wake, &ca);
    pthread_cond_init(&c->done, &ca);
    pthread_condattr_destroy(&ca);
    c->opt = *o;
    c->url_hb = join(o->url, "/v1/mesh/heartbeat");
    c->url_intents = join(o->url, "/v1/mesh/intents");
    c->api_key = dup_str(o->api_key);
    c->agent = dup_str(o->agent);
    c->ca_file = dup_str(o->ca_file);
    c->opt.url = c->opt.api_key = c->opt.agent = c->opt.ca_file = NULL; /* only our copies are used */
    int rc = CM_ENOMEM;
    if (!c->url_hb || !c->url_intents || !c->api_key || (o->agent && !c->agent) || (o->ca_file && !c->ca_file))
        goto fail;
    if ((rc = cm__table_init(&c->tables[0], (uint32_t)o->max_pending_intents)) != CM_OK ||
        (rc = cm__table_init(&c->tables[1], (uint32_t)o->max_pending_intents)) != CM_OK)
        goto fail;
    c->active = &c->tables[0];
    c->spare = &c->tables[1];
    rc = CM_ENOMEM;
    if (!(c->hb_http = new_http(c, true))) goto fail;
    cm__id_prefix(c->id_prefix);
    c->ids.prefix = c->id_prefix;
    c->ids.next = 1;
    c->rng = cm__hash(c->id_prefix, CM__ID_PREFIX_LEN) | ((uint64_t)cm__now_ms() << 32) | 1;
    atomic_init(&c->state, CM_STATE_UNKNOWN);
    atomic_init(&c->cost_today, -1);
    atomic_init(&c->abort_at_ms, 0);
    cm__buf_init(&c->body);
    cm__buf_init(&c->res.body);
    if (pthread_create(&c->thread, NULL, sender_main, c) != 0) {
        rc = CM_ETHREAD;
        goto fail;
    }
    c->thread_started = true;
    *out = c;
    return CM_OK;
fail:
    destroy(c);
    return rc;
}

/* ---------------------------------------------------------------- report */

static bool neg(const cm_usage *u)
{
    return u->tokens_in < 0 || u->tokens_out < 0 || u->llm_calls < 0 || u->tool_calls < 0 || u->tokens_cached < 0 ||
           u->tokens_cache_write < 0;
}

/* The server's rule for a model name (1..CM_MODEL_MAX of A-Z a-z 0-9 and
 * . _ - : / @ +): a report it would refuse is refused here, not dropped later. */
static bool model_ok(const char *m, size_t n)
{
    if (n == 0 || n > CM_MODEL_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (!((m[i] >= 'a' && m[i] <= 'z') || (m[i] >= 'A' && m[i] <= 'Z') || (m[i] >= '0' && m[i] <= '9') ||
              strchr("._-:/@+", m[i])))
            return false;
    return true;
}

CM_API int cm_report(cm_client *c, const cm_usage *u)
{
    return cm_report_money(c, u, NULL);
}

CM_API int cm_report_money(cm_client *c, const cm_usage *u, const cm_money *m)
{
    if (!c || !u || neg(u)) return CM_EINVAL;
    cm__delta d = {0};
    d.model = u->model ? u->model : "";
    size_t mlen = strnlen(d.model, CM_MODEL_MAX + 1);
    if (mlen && !model_ok(d.model, mlen)) return CM_EINVAL;
    d.mlen = (uint32_t)mlen;
    /* The server refuses a model call whose cache tokens are not part of its input. */
    if (mlen && u->tokens_cached > u->tokens_in - u->tokens_cache_write) return CM_EINVAL;
    d.by_card = u->cost_usd == CM_COST_BY_RATE_CARD;
    if (d.by_card && !mlen) return CM_EINVAL;
    int rc = d.by_card ? CM_OK : cm__money_from_double(u->cost_usd, &d.cost_nanos);
    const double money[CM__MONEY_KINDS] = {m ? m->revenue_usd : 0, m ? m->refund_usd : 0,
                                           m ? m->external_spend_usd : 0, m ? m->fees_usd : 0};
    for (int i = 0; rc == CM_OK && i < CM__MONEY_KINDS; i++) rc = cm__money_from_double(money[i], &d.money[i]);
    if (rc != CM_OK) return rc;
    d.tokens_in = u->tokens_in;
    d.tokens_out = u->tokens_out;
    d.llm_calls = u->llm_calls;
    d.tool_calls = u->tool_calls;
    d.tokens_cached = u->tokens_cached;
    d.tokens_cache_write = u->tokens_cache_write;
    const char *id = u->intent_id ? u->intent_id : "";
    size_t len = strnlen(id, CM_INTENT_ID_MAX + 1);
    if (len > CM_INTENT_ID_MAX || !cm__utf8_valid(id, len)) return CM_EINVAL;
    uint32_t hash = cm__hash(id, len);

    pthread_mutex_lock(&c->mu);
    if (c->stop) {
        rc = CM_ESHUTDOWN;
    } else {
        uint32_t before = c->active->n;
        rc = cm__table_merge(c->active, id, (uint32_t)len, hash, &d);
        if (rc == CM_OK) {
            c->st.reports++;
            /* Wake the sender once, when this report makes the batch full. */
            if (c->active->n != before && c->active->n == (uint32_t)c->opt.max_batch)
                pthread_cond_signal(&c->wake);
        } else if (rc == CM_EFULL) {
            c->st.reports_full++;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* ---------------------------------------------------------------- sender */

static void deadline_ts(int64_t at_ms, struct timespec *ts)
{
    ts->tv_sec = (time_t)(at_ms / 1000);
    ts->tv_nsec = (long)(at_ms % 1000) * 1000000L;
}

/* Waits on cond (mu held) until at_ms; false when at_ms passed. */
static bool wait_until(pthread_cond_t *cond, pthread_mutex_t *mu, int64_t at_ms)
{
    struct timespec ts;
    deadline_ts(at_ms, &ts);
    return pthread_cond_timedwait(cond, mu, &ts) != ETIMEDOUT;
}

/* mu held. True once a closing client has used up its close_timeout_ms. */
static bool give_up(const cm_client *c)
{
    return c->stop && cm__now_ms() >= c->close_deadline_ms;
}

/* Backoff sleep (mu held): ends early on close or on a cm_flush() kick. */
static void sleep_backoff(cm_client *c, int64_t ms)
{
    int64_t until = cm__now_ms() + ms;
    uint64_t kick = c->kick;
    while (!c->stop && c->kick == kick && cm__now_ms() < until) wait_until(&c->wake, &c->mu, until);
    while (c->stop && !give_up(c) && cm__now_ms() < until)
        wait_until(&c->wake, &c->mu, until < c->close_deadline_ms ? until : c->close_deadline_ms);
}

static void note_state(cm_client *c, const cm__hb_reply *r)
{
    if (r->cost_today_nanos >= 0) atomic_store(&c->cost_today, r->cost_today_nanos);
    if (r->state == CM_STATE_UNKNOWN) return;
    atomic_store(&c->state, r->state);
    if (r->state != c->cb_state) {
        c->cb_state = r->state;
        if (c->opt.on_state) c->opt.on_state(c->opt.userdata, r->state, r->cost_today_nanos);
    }
}

enum outcome { ACKED, DROPPED, RETRY };

/* Sends c->body once (mu not held) and classifies the answer. */
static enum outcome send_once(cm_client *c, int nhb, int64_t cost, int64_t *retry_after_ms)
{
    int rc = cm__http_post(c->hb_http, c->url_hb, c->body.p, c->body.len, &c->res);
    int status = c->res.status;
    *retry_after_ms = c->res.retry_after_s > 0 ? c->res.retry_after_s * 1000 : 0;
    enum outcome out;
    cm__hb_reply r = {0, 0, CM_STATE_UNKNOWN, -1};
    int err;
    if (rc != CM_OK) {
        out = RETRY;
        err = CM_ENETWORK;
    } else if (status >= 200 && status < 300) {
        out = ACKED;
        err = CM_OK;
        if (cm__parse_hb_reply(c->res.body.p, c->res.body.len, c->agent, &r) != CM_OK) {
            /* Acknowledged all the same: a 2xx means durable. Count all as accepted. */
            r.accepted = nhb;
        }
    } else if (status == 400 || status == 413 || status == 422) {
        /* The server will never take this body: resending would block
         * every later batch. Counted, never silent. */
        out = DROPPED;
        err = CM_EREJECTED;
    } else {
        /* 5xx, 408, 429; also 401/403/404: a configuration problem that
         * may be fixed server-side. The data waits. */
        out = RETRY;
        err = status == 401 || status == 403 ? CM_EAUTH : CM_EHTTP;
    }
    pthread_mutex_lock(&c->mu);
    c->st.batches_sent++;
    c->st.last_error = err;
    c->st.last_http_status = status;
    if (out == ACKED) {
        c->st.batches_acked++;
        c->st.heartbeats_acked += (uint64_t)(r.accepted > 0 ? r.accepted : 0);
        c->st.heartbeats_duplicate += (uint64_t)(r.duplicates > 0 ? r.duplicates : 0);
        c->st.cost_acked_nanos += cost;
    } else if (out == DROPPED) {
        c->st.heartbeats_dropped += (uint64_t)nhb;
        c->st.cost_dropped_nanos += cost;
    }
    pthread_mutex_unlock(&c->mu);
    if (out == ACKED) note_state(c, &r);
    return out;
}

/* Delivers the frozen table t (mu not held). CM_OK when every heartbeat
 * was acknowledged or dropped; CM_ETIMEDOUT when a closing client gave up. */
static int deliver(cm_client *c, const cm__table *t)
{
    cm__cursor cur = {0, 0};
    int attempt = 0;
    while (cur.entry < t->n) {
        cm__cursor saved = cur;
        uint64_t saved_next = c->ids.next;
        int nhb;
        int64_t cost, retry_after_ms = 0;
        enum outcome out;
        if (cm__encode_batch(t, &cur, c->agent, &c->ids, c->opt.max_batch, &c->body, &nhb, &cost) != CM_OK) {
            cur = saved;
            c->ids.next = saved_next;
            out = RETRY;
            pthread_mutex_lock(&c->mu);
            c->st.last_error = CM_ENOMEM;
            pthread_mutex_unlock(&c->mu);
        } else {
            /* This body is frozen: resent byte for byte until acknowledged. */
            attempt = 0;
            for (;;) {
                out = send_once(c, nhb, cost, &retry_after_ms);
                if (out != RETRY) break;
                attempt++;
                pthread_mutex_lock(&c->mu);
                if (give_up(c)) {
                    pthread_mutex_unlock(&c->mu);
                    return CM_ETIMEDOUT;
                }
                sleep_backoff(c, cm__backoff_ms(attempt, c->opt.backoff_initial_ms, c->opt.backoff_max_ms,
                                                retry_after_ms, cm__rand_next(&c->rng)));
                bool stop = give_up(c);
                if (!stop) c->st.retries++;
                pthread_mutex_unlock(&c->mu);
                if (stop) return CM_ETIMEDOUT;
            }
            continue;
        }
        pthread_mutex_lock(&c->mu);
        attempt++;
        bool stop = give_up(c);
        if (!stop) sleep_backoff(c, cm__backoff_ms(attempt, c->opt.backoff_initial_ms, c->opt.backoff_max_ms, 0,
                                                   cm__rand_next(&c->rng)));
        pthread_mutex_unlock(&c->mu);
        if (stop) return CM_ETIMEDOUT;
    }
    return CM_OK;
}

static void *sender_main(void *arg)
{
    cm_client *c = arg;
    pthread_mutex_lock(&c->mu);
    int64_t next_flush = cm__now_ms() + c->opt.flush_interval_ms;
    for (;;) {
        while (!c->stop && !c->flush_req && c->active->n < (uint32_t)c->opt.max_batch && cm__now_ms() < next_flush)
            wait_until(&c->wake, &c->mu, next_flush);
        c->flush_req = false;
        if (c->active->n == 0 || give_up(c)) {
            next_flush = cm__now_ms() + c->opt.flush_interval_ms;
            if (c->stop) break;
            continue;
        }
        /* Freeze: new reports go to the fresh table from here on. */
        cm__table *t = c->active;
        c->active = c->spare;
        c->spare = NULL;
        c->frozen_busy = true;
        uint64_t gen = ++c->gen_frozen;
        next_flush = cm__now_ms() + c->opt.flush_interval_ms;
        pthread_mutex_unlock(&c->mu);

        int rc = deliver(c, t);

        pthread_mutex_lock(&c->mu);
        if (rc != CM_OK) {
            /* Closing, out of time: what is left in t is lost (documented). */
            c->spare = t;
            c->frozen_busy = false;
            break;
        }
        cm__table_clear(t);
        c->spare = t;
        c->frozen_busy = false;
        c->gen_acked = gen;
        pthread_cond_broadcast(&c->done);
    }
    pthread_cond_broadcast(&c->done);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---------------------------------------------------------------- flush */

CM_API int cm_flush(cm_client *c, int timeout_ms)
{
    if (!c) return CM_EINVAL;
    int64_t until = timeout_ms < 0 ? INT64_MAX : cm__now_ms() + timeout_ms;
    pthread_mutex_lock(&c->mu);
    if (c->stop) {
        pthread_mutex_unlock(&c->mu);
        return CM_ESHUTDOWN;
    }
    uint64_t target = c->active->n ? c->gen_frozen + 1 : c->frozen_busy ? c->gen_frozen : c->gen_acked;
    uint64_t dropped = c->st.heartbeats_dropped;
    if (c->active->n) c->flush_req = true;
    c->kick++;
    pthread_cond_signal(&c->wake);
    while (c->gen_acked < target && !c->stop && cm__now_ms() < until) {
        if (timeout_ms < 0) pthread_cond_wait(&c->done, &c->mu);
        else wait_until(&c->done, &c->mu, until);
    }
    int rc = c->gen_acked >= target ? (c->st.heartbeats_dropped != dropped ? CM_EREJECTED : CM_OK)
             : c->stop                ? CM_ESHUTDOWN
                                      : CM_ETIMEDOUT;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* ---------------------------------------------------------------- intents */

/* POSTs body to url on the cached intent connection when it is free, else
 * on a connection of the call's own. */
static int intent_post(cm_client *c, const char *url, const cm__buf *body, cm__http_res *res)
{
    cm__http *h = NULL;
    bool cached = pthread_mutex_trylock(&c->intent_mu) == 0;
    if (cached) {
        if (!c->intent_http) c->intent_http = new_http(c, false);
        h = c->intent_http;
    } else {
        h = new_http(c, false);
    }
    int rc = h ? cm__http_post(h, url, body->p, body->len, res) : CM_ENOMEM;
    if (cached) pthread_mutex_unlock(&c->intent_mu);
    else cm__http_free(h);
    return rc;
}

CM_API int cm_intent_end(cm_client *c, const char *intent_id, const char *status, double quality, cm_decision *why)
{
    cm_decision scratch;
    cm_decision *d = why ? why : &scratch;
    memset(d, 0, sizeof *d);
    if (!c || !intent_id || !*intent_id || strnlen(intent_id, CM_INTENT_ID_MAX + 1) > CM_INTENT_ID_MAX ||
        !cm__utf8_valid(intent_id, strlen(intent_id)) || !status ||
        (strcmp(status, "succeeded") != 0 && strcmp(status, "failed") != 0 && strcmp(status, "cancelled") != 0) ||
        quality != quality || quality > 1)
        return CM_EINVAL;
    cm__buf url, body;
    cm__http_res res;
    cm__buf_init(&url);
    cm__buf_init(&body);
    memset(&res, 0, sizeof res);
    cm__buf_init(&res.body);
    int rc = cm__encode_intent_end(c->url_intents, intent_id, status, quality, &url, &body);
    if (rc == CM_OK) rc = intent_post(c, url.p, &body, &res);
    if (rc == CM_OK) {
        d->http_status = res.status;
        rc = cm__parse_intent_reply(res.status, res.body.p, res.body.len, d);
        if (rc == CM_OK) snprintf(d->intent_id, sizeof d->intent_id, "%s", intent_id);
    }
    cm__buf_free(&url);
    cm__buf_free(&body);
    cm__buf_free(&res.body);
    return rc;
}

/* An id the server takes: NULL, or at most CM_INTENT_ID_MAX bytes of UTF-8;
 * `printable` also refuses control characters (the server's rule for
 * attributes, which a batch must never carry to a 400). */
static bool id_ok(const char *s, bool printable)
{
    if (!s) return true;
    size_t n = strnlen(s, CM_INTENT_ID_MAX + 1);
    if (n > CM_INTENT_ID_MAX || !cm__utf8_valid(s, n)) return false;
    for (size_t i = 0; printable && i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
    return true;
}

CM_API int cm_intent_begin(cm_client *c, const char *intent_id, cm_decision *why)
{
    return cm_intent_begin_attrs(c, intent_id, NULL, why);
}

CM_API int cm_intent_begin_attrs(cm_client *c, const char *intent_id, const cm_intent_attrs *attrs,
                                 cm_decision *why)
{
    cm_decision scratch;
    cm_decision *d = why ? why : &scratch;
    memset(d, 0, sizeof *d);
    if (!c) return CM_EINVAL;
    if (!id_ok(intent_id, false) ||
        (attrs && (!id_ok(attrs->run_id, true) || !id_ok(attrs->session_id, true) ||
                   !id_ok(attrs->workflow, true) || !id_ok(attrs->customer, true))))
        return CM_EINVAL;
    cm__buf body;
    cm__http_res res;
    cm__buf_init(&body);
    memset(&res, 0, sizeof res);
    cm__buf_init(&res.body);
    int rc = cm__encode_intent(c->agent, intent_id, attrs, &body);
    if (rc == CM_OK) rc = intent_post(c, c->url_intents, &body, &res);
    if (rc == CM_OK) {
        d->http_status = res.status;
        rc = cm__parse_intent_reply(res.status, res.body.p, res.body.len, d);
        if (rc == CM_EBUDGET && d->retry_after_s == 0 && res.retry_after_s > 0) d->retry_after_s = res.retry_after_s;
        if (rc == CM_OK) atomic_store(&c->state, CM_STATE_ACTIVE);
        else if (rc == CM_EBUDGET) atomic_store(&c->state, CM_STATE_BLOCKED);
        else if (rc == CM_EKILLED) atomic_store(&c->state, CM_STATE_KILLED);
    }
    cm__buf_free(&body);
    cm__buf_free(&res.body);
    return rc;
}

/* ---------------------------------------------------------------- queries */

CM_API int cm_agent_state(cm_client *c, int *state, int64_t *cost_today_nanos)
{
    if (!c || !state) return CM_EINVAL;
    *state = atomic_load(&c->state);
    if (cost_today_nanos) *cost_today_nanos = atomic_load(&c->cost_today);
    return CM_OK;
}

CM_API int cm_client_stats(cm_client *c, cm_stats *out)
{
    if (!c || !out) return CM_EINVAL;
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    out->pending_intents = c->active->n;
    if (c->frozen_busy) {
        const cm__table *f = c->active == &c->tables[0] ? &c->tables[1] : &c->tables[0];
        out->pending_intents += f->n;
    }
    pthread_mutex_unlock(&c->mu);
    return CM_OK;
}

/* ---------------------------------------------------------------- free */

CM_API void cm_client_free(cm_client *c)
{
    if (!c) return;
    if (c->thread_started) {
        pthread_mutex_lock(&c->mu);
        c->stop = true;
        c->close_deadline_ms = cm__now_ms() + c->opt.close_timeout_ms;
        atomic_store(&c->abort_at_ms, c->close_deadline_ms > 0 ? c->close_deadline_ms : 1);
        pthread_cond_broadcast(&c->wake);
        pthread_cond_broadcast(&c->done);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
    }
    destroy(c);
}
