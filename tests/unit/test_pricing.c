/* test_pricing.c - rating tokens by a card version against hand-computed
 * nano-dollars: fresh, cached and cache-write input, output, half-even
 * rounding at the 9th decimal, counts whose products pass int64, the
 * version in force at a time, and the discrepancy rule. */
#include "unit.h"

#include "error.h"
#include "money.h"
#include "pricing.h"

/* A card with prices in nano-dollars per million tokens. */
static cm_price card(int64_t from, int64_t in, int64_t out, int64_t cached, int64_t write)
{
    cm_price p = {from, {0}};
    p.per_million[CM_PRICE_INPUT] = in;
    p.per_million[CM_PRICE_OUTPUT] = out;
    p.per_million[CM_PRICE_CACHED] = cached;
    p.per_million[CM_PRICE_CACHE_WRITE] = write;
    return p;
}

static int64_t rate(const cm_price *p, int64_t in, int64_t out, int64_t cached, int64_t write)
{
    cm_tokens t = {in, out, cached, write};
    int64_t n = -777;
    int rc = cm_price_rate(p, &t, &n);
    return rc == CM_OK ? n : rc;
}

#define USD(x) ((int64_t)((x) * 1000) * 1000000) /* whole thousandths of a dollar, for readability */

static void table(void)
{
    /* 2.5 / 10 / 1.25 / 3.75 USD per million tokens. */
    cm_price p = card(0, USD(2.5), USD(10), USD(1.25), USD(3.75));
    /* Hand-computed, in nano-dollars:
     *   600 fresh x 2.5 + 400 cached x 1.25 + 500 out x 10 = 7000 USD/1e6 = 7000000 nanos */
    CHECK_EQ_I64(rate(&p, 1000, 500, 400, 0), 7000000);
    /* 1000 fresh x 2.5 + 1000 written x 3.75 = 6250 micro-dollars */
    CHECK_EQ_I64(rate(&p, 2000, 0, 0, 1000), 6250000);
    /* all input cached: 1000 x 1.25 = 1250 micro-dollars */
    CHECK_EQ_I64(rate(&p, 1000, 0, 1000, 0), 1250000);
    /* one token of each: 2.5 + 10 = 12.5 micro-dollars = 12500 nanos */
    CHECK_EQ_I64(rate(&p, 1, 1, 0, 0), 12500);
    CHECK_EQ_I64(rate(&p, 0, 0, 0, 0), 0);
    /* Cached and cache-write tokens are part of the input. */
    CHECK_EQ_I64(rate(&p, 10, 0, 8, 3), CM_EINVAL);
    CHECK_EQ_I64(rate(&p, 10, 0, 11, 0), CM_EINVAL);
    CHECK_EQ_I64(rate(&p, -1, 0, 0, 0), CM_EINVAL);
    CHECK_EQ_I64(rate(&p, 10, 0, 5, 5), 5 * 1250 + 5 * 3750);
}

static void rounding(void)
{
    /* 1500 and 2500 nanos per million tokens: a thousand tokens is 1.5 and
     * 2.5 nanos, the ties that half-even sends to 2 both times. */
    cm_price p = card(0, 1500, 2500, 0, 0);
    CHECK_EQ_I64(rate(&p, 1000, 0, 0, 0), 2);    /* 1.5 -> 2 */
    CHECK_EQ_I64(rate(&p, 0, 1000, 0, 0), 2);    /* 2.5 -> 2 */
    CHECK_EQ_I64(rate(&p, 0, 3000, 0, 0), 8);    /* 7.5 -> 8 */
    CHECK_EQ_I64(rate(&p, 333, 0, 0, 0), 0);     /* 0.4995 -> 0 */
    CHECK_EQ_I64(rate(&p, 334, 0, 0, 0), 1);     /* 0.501 -> 1 */
    CHECK_EQ_I64(rate(&p, 1001, 0, 0, 0), 2);    /* 1.5015 -> 2 */
    CHECK_EQ_I64(rate(&p, 0, 1001, 0, 0), 3);    /* 2.5025: above the tie -> 3 */
    /* Rounded once over the sum, not per kind: 1.5 + 2.5 = 4 (per kind it
     * would be 2 + 2, the same here) and 1.5 + 1.5 = 3 (per kind 2 + 2 = 4). */
    CHECK_EQ_I64(rate(&p, 1000, 1000, 0, 0), 4);
    cm_price q = card(0, 1500, 0, 1500, 0);
    CHECK_EQ_I64(rate(&q, 2000, 0, 1000, 0), 3);
}

static void large(void)
{
    /* 1e14 tokens at 0.001 USD per million: 1e14 x 1e6 = 1e20 before the
     * division, past int64, and 1e14 nanos after it. */
    cm_price p = card(0, 1000000, 999000, 0, 0);
    CHECK_EQ_I64(rate(&p, 100000000000000LL, 0, 0, 0), 100000000000000LL);
    CHECK_EQ_I64(rate(&p, 100000000000000LL, 30000000000000LL, 0, 0), 100000000000000LL + 29970000000000LL);
    /* The largest counts and prices a request can carry: refused as out of
     * range, not wrapped. */
    cm_price max = card(0, CM_MONEY_MAX, CM_MONEY_MAX, CM_MONEY_MAX, CM_MONEY_MAX);
    CHECK_EQ_I64(rate(&max, INT64_MAX, INT64_MAX, 0, 0), CM_ERANGE);
    /* Exactly CM_MONEY_MAX is still an amount; a nano more is not. */
    cm_price one = card(0, 1000000, 0, 0, 0); /* a nano-dollar a token */
    CHECK_EQ_I64(rate(&one, CM_MONEY_MAX, 0, 0, 0), CM_MONEY_MAX);
    CHECK_EQ_I64(rate(&one, CM_MONEY_MAX + 1, 0, 0, 0), CM_ERANGE);
    cm_price neg = card(0, -1, 0, 0, 0);
    CHECK_EQ_I64(rate(&neg, 1, 0, 0, 0), CM_EINVAL);
}

static void in_force(void)
{
    cm_price v[] = {card(1000, 1, 0, 0, 0), card(2800, 2, 0, 0, 0), card(5000, 3, 0, 0, 0)};
    CHECK(cm_price_at(v, 3, 999) == NULL);
    CHECK(cm_price_at(v, 3, 1000) == &v[0]);
    CHECK(cm_price_at(v, 3, 2799) == &v[0]); /* a second before the change in mid-hour */
    CHECK(cm_price_at(v, 3, 2800) == &v[1]); /* at it */
    CHECK(cm_price_at(v, 3, 4999) == &v[1]);
    CHECK(cm_price_at(v, 3, 5000) == &v[2]);
    CHECK(cm_price_at(v, 3, INT64_MAX) == &v[2]);
    CHECK(cm_price_at(v, 0, 5000) == NULL);
    CHECK(cm_price_at(v, 1, 5000) == &v[0]);
}

static void discrepancy(void)
{
    int64_t pct = CM_NANOS_PER_USD; /* 1% */
    CHECK(!cm_price_discrepant(3000000, 3000000, pct));
    CHECK(!cm_price_discrepant(3030000, 3000000, pct)); /* exactly 1% */
    CHECK(cm_price_discrepant(3030001, 3000000, pct));
    CHECK(!cm_price_discrepant(2970000, 3000000, pct));
    CHECK(cm_price_discrepant(2969999, 3000000, pct));
    CHECK(cm_price_discrepant(1, 0, pct)); /* no percent of 0 covers 1 */
    CHECK(!cm_price_discrepant(0, 0, 0));
    CHECK(cm_price_discrepant(3000001, 3000000, 0));
    CHECK(!cm_price_discrepant(CM_MONEY_MAX, CM_MONEY_MAX / 2, 100 * pct));
    CHECK(cm_price_discrepant(CM_MONEY_MAX, CM_MONEY_MAX / 2 - 1, 100 * pct));
}

static void models(void)
{
    CHECK(cm_model_valid("gpt-4o-mini", 11));
    CHECK(cm_model_valid("anthropic.claude-3-5-sonnet-20241022-v2:0", 41));
    CHECK(cm_model_valid("meta-llama/Llama-3.1-8B@fp8+x", 29));
    CHECK(!cm_model_valid("", 0));
    CHECK(!cm_model_valid("a b", 3));
    CHECK(!cm_model_valid("a\0b", 3));
    CHECK(!cm_model_valid("caf\xc3\xa9", 5));
    char long_name[CM_MODEL_MAX + 2];
    memset(long_name, 'm', sizeof long_name);
    CHECK(cm_model_valid(long_name, CM_MODEL_MAX));
    CHECK(!cm_model_valid(long_name, CM_MODEL_MAX + 1));
    CHECK_STR(cm_price_field(CM_PRICE_CACHE_WRITE), "cache_write_per_million_usd");
}

void test_pricing(void)
{
    table();
    rounding();
    large();
    in_force();
    discrepancy();
    models();
}
