/* pricing.h - rate cards as data: a model's price versions, the version in
 * force at a time, and the exact rating of a model call's tokens.
 *
 * Pure functions, no allocation, thread-safe; unit-tested without servers.
 * Prices are integer nano-dollars per million tokens, amounts integer
 * nano-dollars (money.h); the arithmetic is __int128, so no token count and
 * price a request can carry overflows before the result is checked. */
#ifndef CM_PRICING_H
#define CM_PRICING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of a model name: a path segment of PUT /v1/mesh/pricing/models/{model}. */
#define CM_MODEL_MAX 128

/* The four prices of a card, in the order of the API's fields. */
typedef enum {
    CM_PRICE_INPUT = 0,   /* input_per_million_usd: fresh input tokens */
    CM_PRICE_OUTPUT,      /* output_per_million_usd */
    CM_PRICE_CACHED,      /* cached_input_per_million_usd: tokens read from the cache */
    CM_PRICE_CACHE_WRITE, /* cache_write_per_million_usd: input tokens written to the cache */
    CM_PRICE_KINDS
} cm_price_kind;

/* One version of a model's card. */
typedef struct {
    int64_t from; /* effective_from, Unix seconds */
    int64_t per_million[CM_PRICE_KINDS]; /* nano-dollars per million tokens, >= 0 */
} cm_price;

/* The API field name of a price ("input_per_million_usd"); static. */
const char *cm_price_field(cm_price_kind k);

/* A model call's tokens as a heartbeat counts them. cached and cache_write
 * are PART of in, as in the OpenTelemetry GenAI convention: the fresh
 * input is in - cached - cache_write. */
typedef struct {
    int64_t in, out, cached, cache_write;
} cm_tokens;

/* Whether a model name is 1..CM_MODEL_MAX bytes of A-Z a-z 0-9 and
 * . _ - : / @ + (what providers' names use: "gpt-4o-mini",
 * "anthropic.claude-3-5-sonnet-20241022-v2:0", "meta-llama/Llama-3.1-8B"). */
bool cm_model_valid(const char *s, size_t len);

/* The version of v (n versions ascending by from, no two equal) in force
 * at ts: the last whose from <= ts. NULL when ts is before all of them. */
const cm_price *cm_price_at(const cm_price *v, size_t n, int64_t ts);

/* Rates t by p into *nanos: the exact sum of each kind's tokens times its
 * price, divided by a million once, rounded half-even to a nano-dollar.
 * Returns CM_OK; CM_EINVAL when cached + cache_write exceed in (or a count
 * or a price is negative or above CM_MONEY_MAX); CM_ERANGE when the amount is above CM_MONEY_MAX. */
int cm_price_rate(const cm_price *p, const cm_tokens *t, int64_t *nanos);

/* Whether a client's figure differs from the server's by more than
 * tolerance, given as a percent of the server's figure in nano-percent
 * (money.h units: 1% is 1000000000). Exact; a difference from a server
 * figure of 0 is always one, since no percent of 0 covers it. */
bool cm_price_discrepant(int64_t client, int64_t server, int64_t tolerance_pct_nanos);

#endif
