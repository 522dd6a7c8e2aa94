/* fuzz_price.c - cm_codec_price on arbitrary bodies, then cm_price_rate of
 * the card with token counts taken from the input's last 32 bytes; and
 * cm_codec_bill_card on the same bodies.
 *
 * Checks: an accepted card has every price in [0, CM_MONEY_MAX] and an
 * effective_from from 2000 to 9998; a refusal is a 400 naming a field;
 * a rating is refused exactly when the cache tokens exceed the input, and
 * otherwise equals a second computation (floor division, then the tie
 * rule by comparing twice the remainder with a million), or is CM_ERANGE
 * exactly when that is above CM_MONEY_MAX. An accepted billing card has
 * every price in [0, CM_MONEY_MAX] and an effective_from on a whole hour
 * from 2000 to 9998; anything else is refused with a 4xx. */
#include "codec.h"
#include "error.h"
#include "fuzz.h"
#include "money.h"
#include "pricing.h"

#include <string.h>

static int64_t count_of(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return (int64_t)(v % (uint64_t)(CM_COUNT_MAX + 1));
}

static void rate(const cm_price *p, const uint8_t *tail)
{
    cm_tokens t = {count_of(tail), count_of(tail + 8), count_of(tail + 16), count_of(tail + 24)};
    int64_t n = -1;
    int rc = cm_price_rate(p, &t, &n);
    if (t.cached + t.cache_write > t.in) {
        FUZZ_CHECK(rc == CM_EINVAL);
        return;
    }
    __int128 sum = (__int128)(t.in - t.cached - t.cache_write) * p->per_million[CM_PRICE_INPUT] +
                   (__int128)t.out * p->per_million[CM_PRICE_OUTPUT] +
                   (__int128)t.cached * p->per_million[CM_PRICE_CACHED] +
                   (__int128)t.cache_write * p->per_million[CM_PRICE_CACHE_WRITE];
    __int128 q = sum / 1000000, twice_r = 2 * (sum - q * 1000000);
    if (twice_r > 1000000 || (twice_r == 1000000 && q % 2 == 1)) q++;
    if (q > CM_MONEY_MAX) {
        FUZZ_CHECK(rc == CM_ERANGE);
    } else {
        FUZZ_CHECK(rc == CM_OK);
        FUZZ_CHECK(n == (int64_t)q);
    }
}

static void bill_card(const uint8_t *data, size_t size)
{
    cm_bill_card c;
    cm_apierr e;
    memset(&e, 0, sizeof e);
    if (cm_codec_bill_card((const char *)data, size, &c, &e) != CM_OK) {
        FUZZ_CHECK(e.status == 400 || e.status == 413 || e.status == 500);
        return;
    }
    for (int k = 0; k < CM_BILL_ITEMS; k++) FUZZ_CHECK(c.unit_price[k] >= 0 && c.unit_price[k] <= CM_MONEY_MAX);
    FUZZ_CHECK(c.from >= 946684800 && c.from < 253370764800LL && c.from % 3600 == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bill_card(data, size);
    cm_price p;
    cm_apierr e;
    memset(&e, 0, sizeof e);
    int rc = cm_codec_price((const char *)data, size, &p, &e);
    if (rc != CM_OK) {
        FUZZ_CHECK(e.status == 400 || e.status == 413 || e.status == 500);
        return 0;
    }
    for (int k = 0; k < CM_PRICE_KINDS; k++) FUZZ_CHECK(p.per_million[k] >= 0 && p.per_million[k] <= CM_MONEY_MAX);
    FUZZ_CHECK(p.from >= 946684800 && p.from < 253370764800LL);
    static const uint8_t zeros[32];
    rate(&p, size >= 32 ? data + size - 32 : zeros);
    return 0;
}
