/* pricing.c - rating tokens by a card version, exactly. */
#include "pricing.h"

#include "error.h"
#include "money.h"

#include <string.h>

typedef __int128 i128;

static const char *const fields[CM_PRICE_KINDS] = {
    [CM_PRICE_INPUT] = "input_per_million_usd",
    [CM_PRICE_OUTPUT] = "output_per_million_usd",
    [CM_PRICE_CACHED] = "cached_input_per_million_usd",
    [CM_PRICE_CACHE_WRITE] = "cache_write_per_million_usd",
};

const char *cm_price_field(cm_price_kind k)
{
    return (unsigned)k < CM_PRICE_KINDS ? fields[k] : "";
}

bool cm_model_valid(const char *s, size_t len)
{
    if (len == 0 || len > CM_MODEL_MAX) return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("._-:/@+", c)) ||
            c == '\0')
            return false;
    }
    return true;
}

const cm_price *cm_price_at(const cm_price *v, size_t n, int64_t ts)
{
    /* The first version whose from is after ts; the one before it rules. */
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid].from <= ts) lo = mid + 1;
        else hi = mid;
    }
    return lo ? &v[lo - 1] : NULL;
}

int cm_price_rate(const cm_price *p, const cm_tokens *t, int64_t *nanos)
{
    if (t->in < 0 || t->out < 0 || t->cached < 0 || t->cache_write < 0 ||
        (i128)t->cached + t->cache_write > t->in)
        return CM_EINVAL;
    for (int k = 0; k < CM_PRICE_KINDS; k++)
        if (p->per_million[k] < 0 || p->per_million[k] > CM_MONEY_MAX) return CM_EINVAL;
    /* Each term is below 2^63 tokens * 2^50 (CM_MONEY_MAX) = 2^113, so the
     * four of them stay far inside i128 whatever the counts. */
    i128 sum = (i128)(t->in - t->cached - t->cache_write) * p->per_million[CM_PRICE_INPUT] +
               (i128)t->out * p->per_million[CM_PRICE_OUTPUT] +
               (i128)t->cached * p->per_million[CM_PRICE_CACHED] +
               (i128)t->cache_write * p->per_million[CM_PRICE_CACHE_WRITE];
    i128 q = sum / 1000000, r = sum % 1000000;
    if (r > 500000 || (r == 500000 && (q & 1))) q++;
    if (q > CM_MONEY_MAX) return CM_ERANGE;
    *nanos = (int64_t)q;
    return CM_OK;
}

bool cm_price_discrepant(int64_t client, int64_t server, int64_t tolerance_pct_nanos)
{
    i128 diff = (i128)client - server;
    if (diff < 0) diff = -diff;
    /* diff / server > tolerance / (100 * 1e9), without dividing. */
    return diff * 100 * CM_NANOS_PER_USD > (i128)tolerance_pct_nanos * server;
}
