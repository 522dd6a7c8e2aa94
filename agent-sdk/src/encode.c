/* encode.c - JSON request bodies, built by hand: money as exact decimal
 * text from integer nano-dollars, never through a double. */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

void cm__buf_init(cm__buf *b)
{
    memset(b, 0, sizeof *b);
}

void cm__buf_free(cm__buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

void cm__buf_reset(cm__buf *b)
{
    b->len = 0;
    b->oom = false;
    if (b->p) b->p[0] = 0;
}

void cm__buf_add(cm__buf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void cm__buf_adds(cm__buf *b, const char *s)
{
    cm__buf_add(b, s, strlen(s));
}

void cm__buf_add_jstr(cm__buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    cm__buf_add(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        cm__buf_add(b, s + run, i - run);
        run = i + 1;
        if (c == '"') cm__buf_add(b, "\\\"", 2);
        else if (c == '\\') cm__buf_add(b, "\\\\", 2);
        else if (c == '\n') cm__buf_add(b, "\\n", 2);
        else if (c == '\t') cm__buf_add(b, "\\t", 2);
        else if (c == '\r') cm__buf_add(b, "\\r", 2);
        else {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            cm__buf_add(b, u, 6);
        }
    }
    cm__buf_add(b, s + run, n - run);
    cm__buf_add(b, "\"", 1);
}

static void add_i64(cm__buf *b, const char *name, int64_t v)
{
    char num[24];
    cm__buf_adds(b, name);
    cm__buf_add(b, num, cm__u64_format((uint64_t)v, num));
}

/* Part k of a total split into pieces of at most max. */
static int64_t part_of(int64_t total, int64_t max, uint32_t k)
{
    if ((int64_t)k > total / max) return 0; /* also keeps k * max from overflowing */
    int64_t done = (int64_t)k * max;
    if (total <= done) return 0;
    return total - done < max ? total - done : max;
}

const char *const cm__money_metrics[CM__MONEY_KINDS] = {"revenue_usd", "refund_usd", "external_spend_usd",
                                                       "fees_usd"};

static bool last_money_part(const cm__entry *e, uint32_t k)
{
    for (int m = 0; m < CM__MONEY_KINDS; m++)
        if (part_of(e->money[m], CM__MONEY_MAX, k + 1) != 0) return false;
    return true;
}

static bool last_part(const cm__entry *e, uint32_t k)
{
    return part_of(e->cost_nanos, CM__MONEY_MAX, k + 1) == 0 && part_of(e->tokens_in, CM__COUNT_MAX, k + 1) == 0 &&
           part_of(e->tokens_out, CM__COUNT_MAX, k + 1) == 0 && part_of(e->llm_calls, CM__COUNT_MAX, k + 1) == 0 &&
           part_of(e->tool_calls, CM__COUNT_MAX, k + 1) == 0 &&
           part_of(e->tokens_cached, CM__COUNT_MAX, k + 1) == 0 &&
           part_of(e->tokens_cache_write, CM__COUNT_MAX, k + 1) == 0 && last_money_part(e, k);
}

int cm__encode_batch(const cm__table *t, cm__cursor *cur, const char *agent, cm__ids *ids, int max_batch,
                     cm__buf *out, int *nhb, int64_t *cost)
{
    cm__buf_reset(out);
    *nhb = 0;
    *cost = 0;
    if (max_batch < 1 || max_batch > CM__BATCH_MAX) max_batch = CM__BATCH_MAX;
    cm__buf_adds(out, "{\"heartbeats\":[");
    while (cur->entry < t->n && *nhb < max_batch && out->len < CM__BATCH_BYTES_MAX) {
        const cm__entry *e = &t->e[cur->entry];
        uint32_t k = cur->part;
        char idbuf[CM__ID_BUFSZ], money[CM__MONEY_BUFSZ];
        size_t idn = cm__id_format(ids->prefix, ids->next++, idbuf, sizeof idbuf);
        if (*nhb) cm__buf_add(out, ",", 1);
        cm__buf_add(out, "{", 1);
        if (agent) {
            cm__buf_adds(out, "\"agent\":");
            cm__buf_add_jstr(out, agent, strlen(agent));
            cm__buf_add(out, ",", 1);
        }
        cm__buf_adds(out, "\"id\":");
        cm__buf_add_jstr(out, idbuf, idn);
        if (e->len) {
            cm__buf_adds(out, ",\"intent_id\":");
            cm__buf_add_jstr(out, e->intent, e->len);
        }
        if (e->mlen) {
            cm__buf_adds(out, ",\"model\":");
            cm__buf_add_jstr(out, e->model, e->mlen);
        }
        /* One heartbeat carries at most the server's per-heartbeat limits;
         * the rest of a larger entry goes into the next heartbeat(s). A
         * report left to the rate card sends no cost: the server prices it. */
        int64_t c = part_of(e->cost_nanos, CM__MONEY_MAX, k);
        cm__buf_adds(out, ",\"metrics\":{");
        if (!e->by_card) {
            cm__buf_adds(out, "\"cost_usd\":");
            cm__buf_add(out, money, cm__money_format(c, money));
            cm__buf_add(out, ",", 1);
        }
        add_i64(out, "\"tokens_in\":", part_of(e->tokens_in, CM__COUNT_MAX, k));
        add_i64(out, ",\"tokens_out\":", part_of(e->tokens_out, CM__COUNT_MAX, k));
        add_i64(out, ",\"llm_calls\":", part_of(e->llm_calls, CM__COUNT_MAX, k));
        int64_t tc = part_of(e->tool_calls, CM__COUNT_MAX, k), tk = part_of(e->tokens_cached, CM__COUNT_MAX, k);
        if (tc) add_i64(out, ",\"tool_calls\":", tc);
        if (tk) add_i64(out, ",\"tokens_cached\":", tk);
        int64_t tw = part_of(e->tokens_cache_write, CM__COUNT_MAX, k);
        if (tw) add_i64(out, ",\"tokens_cache_write\":", tw);
        for (int m = 0; m < CM__MONEY_KINDS; m++) {
            int64_t v = part_of(e->money[m], CM__MONEY_MAX, k);
            if (!v) continue;
            cm__buf_adds(out, ",\"");
            cm__buf_adds(out, cm__money_metrics[m]);
            cm__buf_adds(out, "\":");
            cm__buf_add(out, money, cm__money_format(v, money));
        }
        cm__buf_adds(out, "}}");
        *cost += c;
        (*nhb)++;
        if (last_part(e, k)) {
            cur->entry++;
            cur->part = 0;
        } else {
            cur->part++;
        }
    }
    cm__buf_adds(out, "]}");
    return out->oom ? CM_ENOMEM : CM_OK;
}

int cm__encode_intent_end(const char *base, const char *intent_id, const char *status, double quality,
                          cm__buf *url, cm__buf *body)
{
    static const char hex[] = "0123456789ABCDEF";
    cm__buf_reset(url);
    cm__buf_adds(url, base);
    cm__buf_add(url, "/", 1);
    /* Unreserved bytes as they are, every other one %XX: a path segment. */
    for (const unsigned char *p = (const unsigned char *)intent_id; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
            *p == '.' || *p == '_' || *p == '~') {
            cm__buf_add(url, (const char *)p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            cm__buf_add(url, e, 3);
        }
    }
    cm__buf_adds(url, "/end");
    cm__buf_add(url, "", 1); /* a C string for curl */
    cm__buf_reset(body);
    cm__buf_adds(body, "{\"status\":");
    cm__buf_add_jstr(body, status, strlen(status));
    if (quality >= 0) {
        char q[32];
        snprintf(q, sizeof q, ",\"quality\":%.9f", quality);
        cm__buf_adds(body, q);
    }
    cm__buf_add(body, "}", 1);
    return url->oom || body->oom ? CM_ENOMEM : CM_OK;
}

/* ,"name":"value" (the comma only after the first member), unless value
 * is NULL or "". */
static void add_member(cm__buf *out, bool *first, const char *name, const char *value)
{
    if (!value || !*value) return;
    if (!*first) cm__buf_add(out, ",", 1);
    *first = false;
    cm__buf_add(out, "\"", 1);
    cm__buf_adds(out, name);
    cm__buf_adds(out, "\":");
    cm__buf_add_jstr(out, value, strlen(value));
}

int cm__encode_intent(const char *agent, const char *intent_id, const cm_intent_attrs *attrs, cm__buf *out)
{
    bool first = true;
    cm__buf_reset(out);
    cm__buf_add(out, "{", 1);
    add_member(out, &first, "agent", agent);
    add_member(out, &first, "intent_id", intent_id);
    if (attrs) {
        add_member(out, &first, "run_id", attrs->run_id);
        add_member(out, &first, "session_id", attrs->session_id);
        add_member(out, &first, "workflow", attrs->workflow);
        add_member(out, &first, "customer", attrs->customer);
    }
    cm__buf_add(out, "}", 1);
    return out->oom ? CM_ENOMEM : CM_OK;
}
