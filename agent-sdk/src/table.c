/* table.c - the coalescing buffer: one entry per intent, all memory
 * allocated up front (cm_report allocates nothing). Open addressing with
 * linear probing over a slot array at most half full; entries are dense
 * so the encoder walks them in insertion order. Not locked: the client
 * holds its lock around every call. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int cm__table_init(cm__table *t, uint32_t cap)
{
    memset(t, 0, sizeof *t);
    if (cap < 1 || cap > (1u << 24)) return CM_EINVAL;
    uint32_t slots = 2;
    while (slots < 2 * cap) slots *= 2;
    t->e = malloc((size_t)cap * sizeof *t->e);
    t->slot = malloc((size_t)slots * sizeof *t->slot);
    if (!t->e || !t->slot) {
        cm__table_free(t);
        return CM_ENOMEM;
    }
    t->cap = cap;
    t->mask = slots - 1;
    memset(t->slot, 0xff, (size_t)slots * sizeof *t->slot);
    return CM_OK;
}

void cm__table_free(cm__table *t)
{
    free(t->e);
    free(t->slot);
    memset(t, 0, sizeof *t);
}

void cm__table_clear(cm__table *t)
{
    if (t->n == 0) return;
    /* Few entries: unset their slots; many: wipe the slot array. */
    if (t->n < (t->mask + 1) / 16) {
        for (uint32_t i = 0; i < t->n; i++) {
            uint32_t s = t->e[i].hash & t->mask;
            while (t->slot[s] != (int32_t)i) s = (s + 1) & t->mask;
            t->slot[s] = -1;
        }
        /* Linear probing needs no tombstones here: every slot is emptied. */
    } else {
        memset(t->slot, 0xff, ((size_t)t->mask + 1) * sizeof *t->slot);
    }
    t->n = 0;
}

/* An intent's reports of different models share its hash: its probe run
 * holds them side by side. */
static int32_t find_slot(const cm__table *t, const char *intent, uint32_t len, const cm__delta *key, uint32_t hash,
                         uint32_t *where)
{
    uint32_t s = hash & t->mask;
    for (;;) {
        int32_t i = t->slot[s];
        if (i < 0) {
            *where = s;
            return -1;
        }
        const cm__entry *e = &t->e[i];
        if (e->hash == hash && e->len == len && memcmp(e->intent, intent, len) == 0 && e->mlen == key->mlen &&
            (key->mlen == 0 || memcmp(e->model, key->model, key->mlen) == 0) && e->by_card == key->by_card) {
            *where = s;
            return i;
        }
        s = (s + 1) & t->mask;
    }
}

const cm__entry *cm__table_find(const cm__table *t, const char *intent, uint32_t len)
{
    uint32_t where;
    const cm__delta none = {0};
    int32_t i = find_slot(t, intent, len, &none, cm__hash(intent, len), &where);
    return i < 0 ? NULL : &t->e[i];
}

static bool add_ok(int64_t a, int64_t b)
{
    return b <= INT64_MAX - a;
}

int cm__table_merge(cm__table *t, const char *intent, uint32_t len, uint32_t hash, const cm__delta *d)
{
    uint32_t where;
    int32_t i = find_slot(t, intent, len, d, hash, &where);
    cm__entry *e;
    if (i >= 0) {
        e = &t->e[i];
        if (!add_ok(e->cost_nanos, d->cost_nanos) || !add_ok(e->tokens_in, d->tokens_in) ||
            !add_ok(e->tokens_out, d->tokens_out) || !add_ok(e->llm_calls, d->llm_calls) ||
            !add_ok(e->tool_calls, d->tool_calls) || !add_ok(e->tokens_cached, d->tokens_cached) ||
            !add_ok(e->tokens_cache_write, d->tokens_cache_write))
            return CM_ERANGE;
        for (int m = 0; m < CM__MONEY_KINDS; m++)
            if (!add_ok(e->money[m], d->money[m])) return CM_ERANGE;
        for (int m = 0; m < CM__MONEY_KINDS; m++) e->money[m] += d->money[m];
        e->cost_nanos += d->cost_nanos;
        e->tokens_in += d->tokens_in;
        e->tokens_out += d->tokens_out;
        e->llm_calls += d->llm_calls;
        e->tool_calls += d->tool_calls;
        e->tokens_cached += d->tokens_cached;
        e->tokens_cache_write += d->tokens_cache_write;
        return CM_OK;
    }
    if (t->n >= t->cap || len > CM_INTENT_ID_MAX || d->mlen > CM_MODEL_MAX)
        return t->n >= t->cap ? CM_EFULL : CM_EINVAL;
    e = &t->e[t->n];
    e->hash = hash;
    e->len = len;
    memcpy(e->intent, intent, len);
    e->intent[len] = 0;
    e->cost_nanos = d->cost_nanos;
    e->tokens_in = d->tokens_in;
    e->tokens_out = d->tokens_out;
    e->llm_calls = d->llm_calls;
    e->tool_calls = d->tool_calls;
    e->tokens_cached = d->tokens_cached;
    memcpy(e->money, d->money, sizeof e->money);
    e->tokens_cache_write = d->tokens_cache_write;
    e->mlen = d->mlen;
    if (d->mlen) memcpy(e->model, d->model, d->mlen); /* d->model may be NULL when mlen is 0 */
    e->model[d->mlen] = 0;
    e->by_card = d->by_card;
    t->slot[where] = (int32_t)t->n;
    t->n++;
    return CM_OK;
}
