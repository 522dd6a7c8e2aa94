/* tests/sdk/unit.c - SDK unit tests, no costmeshd needed: money, ids,
 * backoff, the coalescing table, JSON encoding, reply parsing, the public
 * API's argument checks, and the delivery rules (a frozen batch is resent
 * byte for byte, newer reports go to a later batch) against a scripted
 * fake HTTP server on loopback. Prints "N passed, M failed". */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "costmesh.h"
#include "internal.h"

static int passed, failed;

#define CHECK(cond)                                                                                                   \
    do {                                                                                                              \
        if (cond) {                                                                                                   \
            passed++;                                                                                                 \
        } else {                                                                                                      \
            failed++;                                                                                                 \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                                          \
        }                                                                                                             \
    } while (0)
#define CHECK_EQ_I(a, b)                                                                                              \
    do {                                                                                                              \
        long long a_ = (long long)(a), b_ = (long long)(b);                                                           \
        if (a_ == b_) {                                                                                               \
            passed++;                                                                                                 \
        } else {                                                                                                      \
            failed++;                                                                                                 \
            fprintf(stderr, "FAIL %s:%d: %s == %s: %lld != %lld\n", __FILE__, __LINE__, #a, #b, a_, b_);            \
        }                                                                                                             \
    } while (0)
#define CHECK_EQ_S(a, b)                                                                                              \
    do {                                                                                                              \
        const char *a_ = (a), *b_ = (b);                                                                              \
        if (a_ && b_ && strcmp(a_, b_) == 0) {                                                                        \
            passed++;                                                                                                 \
        } else {                                                                                                      \
            failed++;                                                                                                 \
            fprintf(stderr, "FAIL %s:%d: %s == %s:\n  got  %s\n  want %s\n", __FILE__, __LINE__, #a, #b,            \
                    a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                                          \
        }                                                                                                             \
    } while (0)

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------ money */

static int64_t nanos_of(double usd)
{
    int64_t n = -42;
    return cm__money_from_double(usd, &n) == CM_OK ? n : -1;
}

static void test_money(void)
{
    int64_t n;
    CHECK_EQ_I(nanos_of(0.001), 1000000);
    CHECK_EQ_I(nanos_of(0.1), 100000000);
    CHECK_EQ_I(nanos_of(0.03), 30000000);
    CHECK_EQ_I(nanos_of(0), 0);
    CHECK_EQ_I(nanos_of(-0.0), 0);
    CHECK_EQ_I(nanos_of(1e-9), 1);
    CHECK_EQ_I(nanos_of(4e-10), 0);
    CHECK_EQ_I(nanos_of(19.929999999), 19929999999LL);
    CHECK_EQ_I(nanos_of(1e6), 1000000000000000LL);
    CHECK_EQ_I(cm__money_from_double(1e6 + 0.01, &n), CM_ERANGE);
    CHECK_EQ_I(cm__money_from_double(1e300, &n), CM_ERANGE);
    CHECK_EQ_I(cm__money_from_double(-1e-12, &n), CM_EINVAL);
    CHECK_EQ_I(cm__money_from_double(NAN, &n), CM_EINVAL);
    CHECK_EQ_I(cm__money_from_double(INFINITY, &n), CM_EINVAL);

    /* 100000 reports of 0.001 sum to exactly 100 (the double sum would not). */
    int64_t sum = 0;
    double dsum = 0;
    for (int i = 0; i < 100000; i++) {
        sum += nanos_of(0.001);
        dsum += 0.001;
    }
    char buf[CM__MONEY_BUFSZ];
    cm__money_format(sum, buf);
    CHECK_EQ_S(buf, "100");
    CHECK(dsum != 100.0); /* why integers: the double drifts */

    struct {
        int64_t n;
        const char *s;
    } fm[] = {{0, "0"},
              {1, "0.000000001"},
              {1000000, "0.001"},
              {100000000000LL, "100"},
              {1234567890123LL, "1234.567890123"},
              {50120000000LL, "50.12"},
              {1000000000000000LL, "1000000"},
              {INT64_MAX, "9223372036.854775807"}};
    for (size_t i = 0; i < sizeof fm / sizeof fm[0]; i++) {
        size_t len = cm__money_format(fm[i].n, buf);
        CHECK_EQ_S(buf, fm[i].s);
        CHECK_EQ_I(len, strlen(fm[i].s));
    }

    struct {
        const char *s;
        int rc;
        int64_t n;
    } ps[] = {{"50.12", CM_OK, 50120000000LL},
              {"0", CM_OK, 0},
              {"50", CM_OK, 50000000000LL},
              {"0.0000000015", CM_OK, 2},       /* half-even: 1.5 -> 2 */
              {"0.0000000025", CM_OK, 2},       /* 2.5 -> 2 */
              {"0.00000000250001", CM_OK, 3},   /* above the half */
              {"0.0000000024999", CM_OK, 2},
              {"-1.5", CM_OK, -1500000000LL},
              {"50.130000001", CM_OK, 50130000001LL},
              {"1e5", CM_EINVAL, 0},
              {"", CM_EINVAL, 0},
              {".5", CM_EINVAL, 0},
              {"5.", CM_EINVAL, 0},
              {"99999999999999999999", CM_ERANGE, 0}};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        int64_t v = 0;
        int rc = cm__money_parse(ps[i].s, strlen(ps[i].s), &v);
        CHECK_EQ_I(rc, ps[i].rc);
        if (rc == CM_OK) CHECK_EQ_I(v, ps[i].n);
    }
    char u[24];
    cm__u64_format(UINT64_MAX, u);
    CHECK_EQ_S(u, "18446744073709551615");
}

/* ------------------------------------------------------------------ ids, backoff */

static void test_ids(void)
{
    char a[CM__ID_PREFIX_LEN + 1], b[CM__ID_PREFIX_LEN + 1];
    cm__id_prefix(a);
    cm__id_prefix(b);
    CHECK_EQ_I(strlen(a), CM__ID_PREFIX_LEN);
    CHECK(strspn(a, "0123456789abcdef") == CM__ID_PREFIX_LEN);
    CHECK(strcmp(a, b) != 0);
    char id[CM__ID_BUFSZ];
    CHECK_EQ_I(cm__id_format("abc", 255, id, sizeof id), 9);
    CHECK_EQ_S(id, "cm-abc-ff");
    cm__id_format("abc", 0, id, sizeof id);
    CHECK_EQ_S(id, "cm-abc-0");
    size_t n = cm__id_format(a, UINT64_MAX, id, sizeof id);
    CHECK(n <= CM_INTENT_ID_MAX && n == strlen(id));
    CHECK(strstr(id, "-ffffffffffffffff") != NULL);
    CHECK_EQ_I(cm__id_format(a, 1, id, 10), 0); /* too small: refused, not truncated */
    /* Counter ids of one client are distinct. */
    char prev[CM__ID_BUFSZ] = "";
    int distinct = 1;
    for (uint64_t i = 1; i < 1000; i++) {
        cm__id_format(a, i, id, sizeof id);
        if (strcmp(id, prev) == 0) distinct = 0;
        memcpy(prev, id, sizeof id);
    }
    CHECK(distinct);
}

static void test_backoff(void)
{
    CHECK_EQ_I(cm__backoff_ms(1, 100, 10000, 0, 0), 50);     /* d=100: [50,100] */
    CHECK_EQ_I(cm__backoff_ms(1, 100, 10000, 0, 50), 100);
    CHECK_EQ_I(cm__backoff_ms(1, 100, 10000, 0, 51), 50);    /* rnd % 51 */
    CHECK_EQ_I(cm__backoff_ms(2, 100, 10000, 0, 0), 100);    /* d=200 */
    CHECK_EQ_I(cm__backoff_ms(5, 100, 10000, 0, 0), 800);    /* d=1600 */
    CHECK_EQ_I(cm__backoff_ms(30, 100, 10000, 0, 0), 5000);  /* capped */
    CHECK_EQ_I(cm__backoff_ms(30, 100, 10000, 0, 5000), 10000);
    CHECK_EQ_I(cm__backoff_ms(1000000, 100, 10000, 0, 1), 5001); /* no overflow */
    CHECK_EQ_I(cm__backoff_ms(1, 100, 10000, 20000, 0), 20000);  /* Retry-After wins over the cap */
    CHECK_EQ_I(cm__backoff_ms(1, 100, 10000, 30, 0), 50);        /* ...but never shortens */
    CHECK_EQ_I(cm__backoff_ms(1, 100, 10000, 999999999, 0), 3600000);
    /* Growth and jitter over random draws: always within [d/2, d]. */
    uint64_t rng = 12345;
    int ok = 1;
    for (int attempt = 1; attempt < 12; attempt++) {
        int64_t d = 100LL << (attempt - 1);
        if (d > 10000) d = 10000;
        for (int i = 0; i < 200; i++) {
            int64_t v = cm__backoff_ms(attempt, 100, 10000, 0, cm__rand_next(&rng));
            if (v < d / 2 || v > d) ok = 0;
        }
    }
    CHECK(ok);
    CHECK_EQ_I(cm__parse_retry_after("5", 1), 5);
    CHECK_EQ_I(cm__parse_retry_after(" 120\r\n", 6), 120);
    CHECK_EQ_I(cm__parse_retry_after("Wed, 21 Oct 2015", 16), -1);
    CHECK_EQ_I(cm__parse_retry_after("", 0), -1);
    CHECK_EQ_I(cm__parse_retry_after("-3", 2), -1);
}

/* ------------------------------------------------------------------ table */

static int merge(cm__table *t, const char *intent, int64_t cost, int64_t tin)
{
    cm__delta d = {.cost_nanos = cost, .tokens_in = tin, .llm_calls = 1};
    return cm__table_merge(t, intent, (uint32_t)strlen(intent), cm__hash(intent, strlen(intent)), &d);
}

static void test_table(void)
{
    cm__table t;
    CHECK_EQ_I(cm__table_init(&t, 3), CM_OK);
    CHECK_EQ_I(merge(&t, "a", 10, 1), CM_OK);
    CHECK_EQ_I(merge(&t, "a", 5, 2), CM_OK);
    CHECK_EQ_I(merge(&t, "", 7, 0), CM_OK);
    CHECK_EQ_I(merge(&t, "b", 1, 0), CM_OK);
    CHECK_EQ_I(t.n, 3);
    const cm__entry *e = cm__table_find(&t, "a", 1);
    CHECK(e && e->cost_nanos == 15 && e->tokens_in == 3 && e->llm_calls == 2);
    /* Full: a new intent is refused, known ones still merge. */
    CHECK_EQ_I(merge(&t, "c", 1, 0), CM_EFULL);
    CHECK(cm__table_find(&t, "c", 1) == NULL);
    CHECK_EQ_I(merge(&t, "b", 1, 0), CM_OK);
    CHECK_EQ_I(cm__table_find(&t, "b", 1)->cost_nanos, 2);
    /* Overflow: refused, nothing changes. */
    CHECK_EQ_I(merge(&t, "b", INT64_MAX, 0), CM_ERANGE);
    CHECK_EQ_I(cm__table_find(&t, "b", 1)->cost_nanos, 2);
    cm__table_clear(&t);
    CHECK_EQ_I(t.n, 0);
    CHECK(cm__table_find(&t, "a", 1) == NULL);
    CHECK_EQ_I(merge(&t, "c", 1, 0), CM_OK);
    cm__table_free(&t);

    /* Many intents, collisions, both clear paths, reuse. */
    CHECK_EQ_I(cm__table_init(&t, 5000), CM_OK);
    int ok = 1;
    for (int round = 0; round < 3; round++) {
        int count = round == 1 ? 10 : 5000;
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < count; i++) {
                char id[32];
                snprintf(id, sizeof id, "intent-%d", i);
                if (merge(&t, id, i, 1) != CM_OK) ok = 0;
            }
        if (t.n != (uint32_t)count) ok = 0;
        for (int i = 0; i < count; i++) {
            char id[32];
            snprintf(id, sizeof id, "intent-%d", i);
            const cm__entry *x = cm__table_find(&t, id, (uint32_t)strlen(id));
            if (!x || x->cost_nanos != 3LL * i || x->tokens_in != 3) ok = 0;
        }
        cm__table_clear(&t);
        for (uint32_t s = 0; s <= t.mask; s++)
            if (t.slot[s] != -1) ok = 0;
    }
    CHECK(ok);
    cm__table_free(&t);
}

/* ------------------------------------------------------------------ encoding */

static void test_encode(void)
{
    cm__table t;
    cm__table_init(&t, 8);
    cm__delta d1 = {.cost_nanos = 1000000, .tokens_in = 1, .tokens_out = 2, .llm_calls = 3};
    cm__delta d2 = {.cost_nanos = 100000000000LL, .llm_calls = 1, .tool_calls = 4, .tokens_cached = 5};
    cm__table_merge(&t, "a", 1, cm__hash("a", 1), &d1);
    cm__table_merge(&t, "", 0, cm__hash("", 0), &d2);
    cm__buf b;
    cm__buf_init(&b);
    cm__ids ids = {"p", 1};
    cm__cursor cur = {0, 0};
    int nhb;
    int64_t cost;
    CHECK_EQ_I(cm__encode_batch(&t, &cur, "agent://o/e/n", &ids, 500, &b, &nhb, &cost), CM_OK);
    CHECK_EQ_S(b.p, "{\"heartbeats\":["
                    "{\"agent\":\"agent://o/e/n\",\"id\":\"cm-p-1\",\"intent_id\":\"a\",\"metrics\":{\"cost_usd\":0.001,"
                    "\"tokens_in\":1,\"tokens_out\":2,\"llm_calls\":3}},"
                    "{\"agent\":\"agent://o/e/n\",\"id\":\"cm-p-2\",\"metrics\":{\"cost_usd\":100,"
                    "\"tokens_in\":0,\"tokens_out\":0,\"llm_calls\":1,\"tool_calls\":4,\"tokens_cached\":5}}]}");
    CHECK_EQ_I(nhb, 2);
    CHECK_EQ_I(cost, 100001000000LL);
    CHECK_EQ_I(cur.entry, 2);
    CHECK_EQ_I(ids.next, 3);
    /* The frozen table is untouched by encoding. */
    CHECK_EQ_I(cm__table_find(&t, "a", 1)->cost_nanos, 1000000);

    /* No agent (bound key), escaping. */
    cm__table_clear(&t);
    const char *odd = "q\"b\\c\nd\x01\xc3\xa9";
    cm__delta z = {0};
    cm__table_merge(&t, odd, (uint32_t)strlen(odd), cm__hash(odd, strlen(odd)), &z);
    cur = (cm__cursor){0, 0};
    cm__encode_batch(&t, &cur, NULL, &ids, 500, &b, &nhb, &cost);
    CHECK_EQ_S(b.p, "{\"heartbeats\":[{\"id\":\"cm-p-3\",\"intent_id\":\"q\\\"b\\\\c\\nd\\u0001\xc3\xa9\","
                    "\"metrics\":{\"cost_usd\":0,\"tokens_in\":0,\"tokens_out\":0,\"llm_calls\":0}}]}");

    /* max_batch splits the table into several bodies, ids continuing. */
    cm__table_clear(&t);
    for (int i = 0; i < 5; i++) {
        char id[8] = {'i', (char)('0' + i), 0};
        cm__table_merge(&t, id, 2, cm__hash(id, 2), &d1);
    }
    cur = (cm__cursor){0, 0};
    ids.next = 10;
    int sizes[4] = {0}, bodies = 0;
    while (cur.entry < t.n && bodies < 4) {
        cm__encode_batch(&t, &cur, NULL, &ids, 2, &b, &nhb, &cost);
        sizes[bodies++] = nhb;
    }
    CHECK_EQ_I(bodies, 3);
    CHECK(sizes[0] == 2 && sizes[1] == 2 && sizes[2] == 1);
    CHECK(strstr(b.p, "\"id\":\"cm-p-e\"") != NULL); /* 10..14: the last one is 14 = 0xe */
    CHECK_EQ_I(ids.next, 15);

    /* An entry above the per-heartbeat limits is split over heartbeats. */
    cm__table_clear(&t);
    cm__delta big = {.cost_nanos = 2500000000000000LL, .tokens_in = 1500000000000000LL, .llm_calls = 1};
    cm__table_merge(&t, "x", 1, cm__hash("x", 1), &big);
    cur = (cm__cursor){0, 0};
    ids.next = 1;
    cm__encode_batch(&t, &cur, NULL, &ids, 500, &b, &nhb, &cost);
    CHECK_EQ_I(nhb, 3);
    CHECK_EQ_I(cost, 2500000000000000LL);
    CHECK_EQ_S(b.p, "{\"heartbeats\":["
                    "{\"id\":\"cm-p-1\",\"intent_id\":\"x\",\"metrics\":{\"cost_usd\":1000000,\"tokens_in\":"
                    "1000000000000000,\"tokens_out\":0,\"llm_calls\":1}},"
                    "{\"id\":\"cm-p-2\",\"intent_id\":\"x\",\"metrics\":{\"cost_usd\":1000000,\"tokens_in\":"
                    "500000000000000,\"tokens_out\":0,\"llm_calls\":0}},"
                    "{\"id\":\"cm-p-3\",\"intent_id\":\"x\",\"metrics\":{\"cost_usd\":500000,\"tokens_in\":0,"
                    "\"tokens_out\":0,\"llm_calls\":0}}]}");
    /* ...and the split respects max_batch too. */
    cur = (cm__cursor){0, 0};
    cm__encode_batch(&t, &cur, NULL, &ids, 2, &b, &nhb, &cost);
    CHECK(nhb == 2 && cur.entry == 0 && cur.part == 2);
    cm__encode_batch(&t, &cur, NULL, &ids, 2, &b, &nhb, &cost);
    CHECK(nhb == 1 && cur.entry == 1 && cost == 500000000000000LL);

    /* Reports of one intent merge per model and per pricing: a model's calls
     * with a cost, the same model's left to the rate card (no cost_usd sent),
     * another model's, and the intent's without a model are four heartbeats. */
    cm__table_clear(&t);
    cm__delta own = {.cost_nanos = 5, .tokens_in = 10, .model = "m-1", .mlen = 3};
    cm__delta card = {.tokens_in = 100, .tokens_out = 7, .llm_calls = 1, .tokens_cached = 40,
                      .tokens_cache_write = 10, .model = "m-1", .mlen = 3, .by_card = true};
    cm__delta other = {.tokens_in = 1, .model = "m-2", .mlen = 3, .by_card = true};
    cm__delta none = {.cost_nanos = 1};
    uint32_t h = cm__hash("i", 1);
    CHECK_EQ_I(cm__table_merge(&t, "i", 1, h, &own), CM_OK);
    CHECK_EQ_I(cm__table_merge(&t, "i", 1, h, &card), CM_OK);
    CHECK_EQ_I(cm__table_merge(&t, "i", 1, h, &card), CM_OK);
    CHECK_EQ_I(cm__table_merge(&t, "i", 1, h, &other), CM_OK);
    CHECK_EQ_I(cm__table_merge(&t, "i", 1, h, &none), CM_OK);
    CHECK_EQ_I(t.n, 4);
    CHECK_EQ_I(cm__table_find(&t, "i", 1)->cost_nanos, 1);
    cur = (cm__cursor){0, 0};
    ids.next = 1;
    CHECK_EQ_I(cm__encode_batch(&t, &cur, NULL, &ids, 500, &b, &nhb, &cost), CM_OK);
    CHECK_EQ_S(b.p, "{\"heartbeats\":["
                    "{\"id\":\"cm-p-1\",\"intent_id\":\"i\",\"model\":\"m-1\",\"metrics\":{\"cost_usd\":0.000000005,"
                    "\"tokens_in\":10,\"tokens_out\":0,\"llm_calls\":0}},"
                    "{\"id\":\"cm-p-2\",\"intent_id\":\"i\",\"model\":\"m-1\",\"metrics\":{\"tokens_in\":200,"
                    "\"tokens_out\":14,\"llm_calls\":2,\"tokens_cached\":80,\"tokens_cache_write\":20}},"
                    "{\"id\":\"cm-p-3\",\"intent_id\":\"i\",\"model\":\"m-2\",\"metrics\":{\"tokens_in\":1,"
                    "\"tokens_out\":0,\"llm_calls\":0}},"
                    "{\"id\":\"cm-p-4\",\"intent_id\":\"i\",\"metrics\":{\"cost_usd\":0.000000001,\"tokens_in\":0,"
                    "\"tokens_out\":0,\"llm_calls\":0}}]}");
    CHECK_EQ_I(nhb, 4);
    CHECK_EQ_I(cost, 6);
    /* Money in and out is sent when non-zero, split like the cost, and
     * summed per intent. */
    cm__table_clear(&t);
    cm__delta paid = {.cost_nanos = 1, .money = {1500000000000000LL, 0, 3, 0}};
    CHECK_EQ_I(cm__table_merge(&t, "m", 1, cm__hash("m", 1), &paid), CM_OK);
    CHECK_EQ_I(cm__table_merge(&t, "m", 1, cm__hash("m", 1), &paid), CM_OK);
    cur = (cm__cursor){0, 0};
    ids.next = 1;
    cm__encode_batch(&t, &cur, NULL, &ids, 500, &b, &nhb, &cost);
    CHECK_EQ_S(b.p, "{\"heartbeats\":["
                    "{\"id\":\"cm-p-1\",\"intent_id\":\"m\",\"metrics\":{\"cost_usd\":0.000000002,\"tokens_in\":0,"
                    "\"tokens_out\":0,\"llm_calls\":0,\"revenue_usd\":1000000,\"external_spend_usd\":0.000000006}},"
                    "{\"id\":\"cm-p-2\",\"intent_id\":\"m\",\"metrics\":{\"cost_usd\":0,\"tokens_in\":0,"
                    "\"tokens_out\":0,\"llm_calls\":0,\"revenue_usd\":1000000}},"
                    "{\"id\":\"cm-p-3\",\"intent_id\":\"m\",\"metrics\":{\"cost_usd\":0,\"tokens_in\":0,"
                    "\"tokens_out\":0,\"llm_calls\":0,\"revenue_usd\":1000000}}]}");
    cm__delta huge = {.money = {0, INT64_MAX, 0, 0}};
    CHECK_EQ_I(cm__table_merge(&t, "m", 1, cm__hash("m", 1), &huge), CM_OK);
    CHECK_EQ_I(cm__table_merge(&t, "m", 1, cm__hash("m", 1), &huge), CM_ERANGE);

    /* Intents body. */
    cm__encode_intent("agent://o/e/n", "i-1", NULL, &b);
    CHECK_EQ_S(b.p, "{\"agent\":\"agent://o/e/n\",\"intent_id\":\"i-1\"}");
    cm__encode_intent(NULL, NULL, NULL, &b);
    CHECK_EQ_S(b.p, "{}");
    cm_intent_attrs attrs = {"run-1", NULL, "", "acme \"x\""};
    cm__encode_intent(NULL, "i-2", &attrs, &b);
    CHECK_EQ_S(b.p, "{\"intent_id\":\"i-2\",\"run_id\":\"run-1\",\"customer\":\"acme \\\"x\\\"\"}");
    cm__buf_free(&b);
    cm__table_free(&t);
}

/* ------------------------------------------------------------------ replies */

static void test_replies(void)
{
    const char *r1 = "{\"accepted\":2,\"duplicates\":1,\"agents\":{\"agent://o/e/x\":{\"state\":\"active\","
                     "\"cost_today_usd\":1},\"agent://o/e/n\":{\"state\":\"blocked\",\"cost_today_usd\":50.12}}}";
    cm__hb_reply r;
    CHECK_EQ_I(cm__parse_hb_reply(r1, strlen(r1), "agent://o/e/n", &r), CM_OK);
    CHECK(r.accepted == 2 && r.duplicates == 1 && r.state == CM_STATE_BLOCKED && r.cost_today_nanos == 50120000000LL);
    const char *r2 = "{\"accepted\":1,\"duplicates\":0,\"agents\":{\"agent://o/e/n\":{\"state\":\"killed\","
                     "\"cost_today_usd\":0.000000001}}}";
    CHECK_EQ_I(cm__parse_hb_reply(r2, strlen(r2), NULL, &r), CM_OK);
    CHECK(r.state == CM_STATE_KILLED && r.cost_today_nanos == 1);
    CHECK_EQ_I(cm__parse_hb_reply(r2, strlen(r2), "agent://o/e/other", &r), CM_OK);
    CHECK(r.state == CM_STATE_UNKNOWN && r.cost_today_nanos == -1);
    CHECK_EQ_I(cm__parse_hb_reply("{\"accepted\":", 12, NULL, &r), CM_EPROTO);
    CHECK_EQ_I(cm__parse_hb_reply("", 0, NULL, &r), CM_EPROTO);

    cm_decision d;
    const char *b429 = "{\"error\":{\"code\":\"cost_policy_breached\",\"message\":\"m\",\"limit\":\"max_cost_per_day_usd\","
                       "\"limit_value\":50.130000001,\"current\":50.13,\"retry_after_s\":3600}}";
    memset(&d, 0, sizeof d);
    CHECK_EQ_I(cm__parse_intent_reply(429, b429, strlen(b429), &d), CM_EBUDGET);
    CHECK_EQ_S(d.limit, "max_cost_per_day_usd");
    CHECK_EQ_S(d.error_code, "cost_policy_breached");
    CHECK_EQ_I(d.limit_value_exact, 50130000001LL);
    CHECK_EQ_I(d.current_exact, 50130000000LL);
    CHECK(fabs(d.limit_value - 50.130000001) < 1e-9 && fabs(d.current - 50.13) < 1e-9);
    CHECK_EQ_I(d.retry_after_s, 3600);
    const char *b429i = "{\"error\":{\"code\":\"cost_policy_breached\",\"message\":\"m\",\"limit\":\"max_intents_per_hour\","
                        "\"limit_value\":1,\"current\":1,\"retry_after_s\":7}}";
    memset(&d, 0, sizeof d);
    CHECK_EQ_I(cm__parse_intent_reply(429, b429i, strlen(b429i), &d), CM_EBUDGET);
    CHECK(d.limit_value_exact == 1 && d.current_exact == 1 && d.limit_value == 1.0);
    const char *b403 = "{\"error\":{\"code\":\"agent_killed\",\"message\":\"m\"}}";
    memset(&d, 0, sizeof d);
    CHECK_EQ_I(cm__parse_intent_reply(403, b403, strlen(b403), &d), CM_EKILLED);
    const char *b403o = "{\"error\":{\"code\":\"forbidden\",\"message\":\"m\"}}";
    memset(&d, 0, sizeof d);
    CHECK_EQ_I(cm__parse_intent_reply(403, b403o, strlen(b403o), &d), CM_EAUTH);
    memset(&d, 0, sizeof d);
    CHECK_EQ_I(cm__parse_intent_reply(401, b403o, strlen(b403o), &d), CM_EAUTH);
    const char *b201 = "{\"intent_id\":\"int_42\",\"agent\":\"agent://o/e/n\"}";
    memset(&d, 0, sizeof d);
    CHECK_EQ_I(cm__parse_intent_reply(201, b201, strlen(b201), &d), CM_OK);
    CHECK_EQ_S(d.intent_id, "int_42");
    memset(&d, 0, sizeof d);
    CHECK_EQ_I(cm__parse_intent_reply(201, "nope", 4, &d), CM_EPROTO);
    memset(&d, 0, sizeof d);
    CHECK_EQ_I(cm__parse_intent_reply(503, "", 0, &d), CM_EHTTP);
    memset(&d, 0, sizeof d);
    CHECK_EQ_I(cm__parse_intent_reply(429, "{\"error\":{\"code\":\"rate_limited\"}}", 33, &d), CM_EHTTP);
}

/* ------------------------------------------------------------------ public API */

static void test_api_args(void)
{
    cm_options o;
    cm_options_init(&o);
    CHECK(o.flush_interval_ms == 30000 && o.max_batch == 500 && o.url == NULL && o.max_pending_intents > 0);
    cm_client *c = (cm_client *)&o; /* garbage: must be overwritten */
    CHECK_EQ_I(cm_client_new(&o, &c), CM_EINVAL); /* no url */
    CHECK(c == NULL);
    CHECK_EQ_I(cm_client_new(NULL, &c), CM_EINVAL);
    o.url = "http://127.0.0.1:1";
    o.api_key = "k";
    CHECK_EQ_I(cm_client_new(&o, NULL), CM_EINVAL);
    o.agent = "agnt://x";
    CHECK_EQ_I(cm_client_new(&o, &c), CM_EINVAL);
    o.agent = "agent://o/e/n";
    o.max_batch = 1001;
    CHECK_EQ_I(cm_client_new(&o, &c), CM_EINVAL);
    o.max_batch = 0;
    CHECK_EQ_I(cm_client_new(&o, &c), CM_EINVAL);
    o.max_batch = 500;
    o.api_key = "bad key";
    CHECK_EQ_I(cm_client_new(&o, &c), CM_EINVAL);
    o.api_key = "k";
    o.url = "ftp://x";
    CHECK_EQ_I(cm_client_new(&o, &c), CM_EINVAL);
    cm_client_free(NULL); /* harmless */

    const char *seen[20];
    int distinct = 1;
    for (int rc = 0; rc >= CM_EREJECTED; rc--) {
        seen[-rc] = cm_strerror(rc);
        for (int k = 0; k < -rc; k++)
            if (strcmp(seen[k], seen[-rc]) == 0) distinct = 0;
        if (strcmp(seen[-rc], "unknown error") == 0) distinct = 0;
    }
    CHECK(distinct);
    CHECK_EQ_S(cm_strerror(-999), "unknown error");
    CHECK_EQ_S(cm_strerror(CM_OK), "success");
    CHECK_EQ_S(cm_version(), CM_VERSION_STRING);
    CHECK_EQ_I(CM_VERSION_NUM, (CM_VERSION_MAJOR << 16) | (CM_VERSION_MINOR << 8) | CM_VERSION_PATCH);
}

/* No server at all: reports never block, flush times out, the data stays,
 * free is bounded, the buffer bound gives CM_EFULL. */
static void test_unreachable(void)
{
    cm_options o;
    cm_options_init(&o);
    o.url = "http://127.0.0.1:1"; /* nothing listens on port 1 */
    o.api_key = "k";
    o.agent = "agent://o/e/n";
    o.flush_interval_ms = 60000; /* sends only when asked: deterministic */
    o.max_pending_intents = 3;
    o.backoff_initial_ms = 10;
    o.backoff_max_ms = 50;
    o.close_timeout_ms = 300;
    cm_client *c;
    CHECK_EQ_I(cm_client_new(&o, &c), CM_OK);
    cm_usage u = {.intent_id = "a", .cost_usd = 0.001, .tokens_in = 1, .llm_calls = 1};
    int64_t t0 = cm__now_ms();
    int ok = 1;
    for (int i = 0; i < 100000; i++)
        if (cm_report(c, &u) != CM_OK) ok = 0;
    CHECK(ok);
    CHECK(cm__now_ms() - t0 < 2000); /* never waited for the network */
    cm_usage bad = u;
    bad.tokens_in = -1;
    CHECK_EQ_I(cm_report(c, &bad), CM_EINVAL);
    bad = u;
    bad.cost_usd = -0.5;
    CHECK_EQ_I(cm_report(c, &bad), CM_EINVAL);
    bad.cost_usd = 2e6;
    CHECK_EQ_I(cm_report(c, &bad), CM_ERANGE);
    char longid[CM_INTENT_ID_MAX + 2];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = 0;
    bad = u;
    bad.intent_id = longid;
    CHECK_EQ_I(cm_report(c, &bad), CM_EINVAL);
    longid[CM_INTENT_ID_MAX] = 0; /* exactly the limit: fine */
    CHECK_EQ_I(cm_report(c, &bad), CM_OK);
    bad.intent_id = "\xff\xfe";
    CHECK_EQ_I(cm_report(c, &bad), CM_EINVAL);
    CHECK_EQ_I(cm_report(NULL, &u), CM_EINVAL);
    CHECK_EQ_I(cm_report(c, NULL), CM_EINVAL);
    /* A report left to the rate card names its model; a model is a name the
     * server takes; its cache tokens are part of its input. */
    bad = u;
    bad.cost_usd = CM_COST_BY_RATE_CARD;
    CHECK_EQ_I(cm_report(c, &bad), CM_EINVAL);
    bad.model = "gpt 4o";
    CHECK_EQ_I(cm_report(c, &bad), CM_EINVAL);
    bad.model = "gpt-4o";
    bad.tokens_in = 10;
    bad.tokens_cached = 6;
    bad.tokens_cache_write = 5;
    CHECK_EQ_I(cm_report(c, &bad), CM_EINVAL);
    bad.tokens_cache_write = -1;
    CHECK_EQ_I(cm_report(c, &bad), CM_EINVAL);

    /* The sender freezes {a, longid}; they wait for the server. */
    CHECK_EQ_I(cm_flush(c, 0), CM_ETIMEDOUT);
    cm_stats st;
    for (int i = 0; i < 500; i++) {
        cm_client_stats(c, &st);
        if (st.batches_sent >= 1) break;
        sleep_ms(5);
    }
    CHECK(st.batches_sent >= 1);
    u.intent_id = "b";
    CHECK_EQ_I(cm_report(c, &u), CM_OK);
    u.intent_id = NULL;
    CHECK_EQ_I(cm_report(c, &u), CM_OK);
    u.intent_id = "c"; /* the fourth distinct intent in the fresh table (b, "", c): full at 3 */
    CHECK_EQ_I(cm_report(c, &u), CM_OK);
    u.intent_id = "d";
    CHECK_EQ_I(cm_report(c, &u), CM_EFULL);
    u.intent_id = "b";
    CHECK_EQ_I(cm_report(c, &u), CM_OK); /* known intents still merge */

    t0 = cm__now_ms();
    CHECK_EQ_I(cm_flush(c, 200), CM_ETIMEDOUT);
    int64_t took = cm__now_ms() - t0;
    CHECK(took >= 190 && took < 1500);
    CHECK_EQ_I(cm_client_stats(c, &st), CM_OK);
    CHECK_EQ_I(st.reports_full, 1);
    CHECK_EQ_I(st.pending_intents, 5);
    CHECK(st.last_error == CM_ENETWORK && st.last_http_status == 0 && st.batches_acked == 0);
    CHECK(st.retries >= 1);
    int state = -1;
    int64_t today = 0;
    CHECK_EQ_I(cm_agent_state(c, &state, &today), CM_OK);
    CHECK(state == CM_STATE_UNKNOWN && today == -1);
    cm_decision d;
    CHECK_EQ_I(cm_intent_begin(c, "i", &d), CM_ENETWORK);
    CHECK_EQ_I(d.http_status, 0);
    t0 = cm__now_ms();
    cm_client_free(c);
    took = cm__now_ms() - t0;
    CHECK(took < 300 + 1500); /* close_timeout_ms plus a little */
}

/* ------------------------------------------------------------------ fake server */

typedef struct {
    int fd, port;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int nreq;
    char *bodies[16];
    /* Script: per request, how to answer. */
    int statuses[16];  /* 0: no answer, hold then close */
    int hold_ms[16];
    const char *reply;
} fake;

static int read_request(int cfd, char **body_out)
{
    char buf[65536];
    size_t len = 0;
    char *end = NULL;
    while (!end) {
        if (len == sizeof buf - 1) return -1;
        ssize_t r = recv(cfd, buf + len, sizeof buf - 1 - len, 0);
        if (r <= 0) return -1;
        len += (size_t)r;
        buf[len] = 0;
        end = strstr(buf, "\r\n\r\n");
    }
    size_t hdr = (size_t)(end - buf) + 4, clen = 0;
    for (char *p = buf; p < end; p++)
        if ((p == buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) clen = strtoul(p + 15, NULL, 10);
    char *body = malloc(clen + 1);
    size_t have = len - hdr < clen ? len - hdr : clen;
    memcpy(body, buf + hdr, have);
    while (have < clen) {
        ssize_t r = recv(cfd, body + have, clen - have, 0);
        if (r <= 0) {
            free(body);
            return -1;
        }
        have += (size_t)r;
    }
    body[clen] = 0;
    *body_out = body;
    return 0;
}

static void *fake_main(void *arg)
{
    fake *f = arg;
    for (;;) {
        int cfd = accept(f->fd, NULL, NULL);
        if (cfd < 0) return NULL;
        for (;;) {
            char *body;
            if (read_request(cfd, &body) != 0) break;
            pthread_mutex_lock(&f->mu);
            int i = f->nreq < 16 ? f->nreq : 15;
            if (f->nreq < 16) f->bodies[f->nreq] = body;
            else free(body);
            f->nreq++;
            int status = f->statuses[i], hold = f->hold_ms[i];
            pthread_cond_broadcast(&f->cv);
            pthread_mutex_unlock(&f->mu);
            if (hold) sleep_ms(hold);
            if (status == 0) break; /* never answered: the client timed out */
            char resp[1024];
            const char *rb = status == 202 ? f->reply : "{\"error\":{\"code\":\"unavailable\",\"message\":\"m\"}}";
            int n = snprintf(resp, sizeof resp,
                             "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nRetry-After: 0\r\n"
                             "Content-Length: %zu\r\n\r\n%s",
                             status, strlen(rb), rb);
            if (send(cfd, resp, (size_t)n, MSG_NOSIGNAL) != n) break;
        }
        close(cfd);
    }
}

static int fake_start(fake *f)
{
    f->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(f->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(f->fd, 16) != 0 ||
        getsockname(f->fd, (struct sockaddr *)&a, &al) != 0)
        return -1;
    f->port = ntohs(a.sin_port);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    return pthread_create(&f->th, NULL, fake_main, f);
}

static void fake_stop(fake *f)
{
    shutdown(f->fd, SHUT_RDWR);
    close(f->fd);
    pthread_join(f->th, NULL);
    for (int i = 0; i < 16 && i < f->nreq; i++) free(f->bodies[i]);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
}

static int fake_wait(fake *f, int n, int timeout_ms)
{
    int64_t until = cm__now_ms() + timeout_ms;
    pthread_mutex_lock(&f->mu);
    while (f->nreq < n && cm__now_ms() < until) {
        pthread_mutex_unlock(&f->mu);
        sleep_ms(5);
        pthread_mutex_lock(&f->mu);
    }
    int got = f->nreq;
    pthread_mutex_unlock(&f->mu);
    return got;
}

static _Atomic int cb_state, cb_calls;
static void on_state(void *ud, int state, int64_t cost)
{
    (void)ud;
    (void)cost;
    atomic_store(&cb_state, state);
    atomic_fetch_add(&cb_calls, 1);
}

/* A batch in flight is frozen: the timed-out request and the 503'd one are
 * resent byte for byte (same ids); reports made meanwhile go to the next
 * batch, sent only after the frozen one is acknowledged. */
static void test_frozen_resend(void)
{
    fake f;
    memset(&f, 0, sizeof f);
    f.statuses[0] = 0; /* timeout: the client gives up after 300 ms */
    f.hold_ms[0] = 600;
    f.statuses[1] = 503;
    f.statuses[2] = 202;
    f.statuses[3] = 202;
    f.reply = "{\"accepted\":1,\"duplicates\":0,\"agents\":{\"agent://o/e/n\":{\"state\":\"blocked\",\"cost_today_usd\":3}}}";
    if (fake_start(&f) != 0) {
        CHECK(!"fake server start");
        return;
    }
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", f.port);
    cm_options o;
    cm_options_init(&o);
    o.url = url;
    o.api_key = "k";
    o.agent = "agent://o/e/n";
    o.flush_interval_ms = 60000;
    o.request_timeout_ms = 300;
    o.backoff_initial_ms = 20;
    o.backoff_max_ms = 40;
    o.on_state = on_state;
    cm_client *c;
    CHECK_EQ_I(cm_client_new(&o, &c), CM_OK);
    cm_usage u = {.intent_id = "a", .cost_usd = 0.5, .tokens_in = 10, .llm_calls = 1};
    CHECK_EQ_I(cm_report(c, &u), CM_OK);
    CHECK_EQ_I(cm_flush(c, 0), CM_ETIMEDOUT); /* starts the send */
    CHECK_EQ_I(fake_wait(&f, 1, 3000), 1);
    /* Batch 1 is in flight: these go to the next batch. */
    u.cost_usd = 0.25;
    CHECK_EQ_I(cm_report(c, &u), CM_OK);
    u.intent_id = "b";
    CHECK_EQ_I(cm_report(c, &u), CM_OK);
    CHECK_EQ_I(cm_flush(c, 10000), CM_OK);
    CHECK_EQ_I(fake_wait(&f, 4, 1000), 4);
    pthread_mutex_lock(&f.mu);
    CHECK_EQ_I(f.nreq, 4);
    if (f.nreq >= 4) {
        CHECK_EQ_S(f.bodies[1], f.bodies[0]); /* after the timeout: same bytes, same ids */
        CHECK_EQ_S(f.bodies[2], f.bodies[0]); /* after the 503 */
        CHECK(strstr(f.bodies[0], "\"cost_usd\":0.5,") != NULL);
        CHECK(strstr(f.bodies[0], "\"intent_id\":\"b\"") == NULL);
        CHECK(strstr(f.bodies[0], "-1\"") != NULL);
        CHECK(strstr(f.bodies[3], "\"intent_id\":\"a\",\"metrics\":{\"cost_usd\":0.25,") != NULL);
        CHECK(strstr(f.bodies[3], "\"intent_id\":\"b\"") != NULL);
        CHECK(strstr(f.bodies[3], "-1\"") == NULL); /* fresh ids */
        CHECK(strstr(f.bodies[3], "-2\"") != NULL && strstr(f.bodies[3], "-3\"") != NULL);
    }
    pthread_mutex_unlock(&f.mu);
    cm_stats st;
    cm_client_stats(c, &st);
    CHECK_EQ_I(st.retries, 2);
    CHECK_EQ_I(st.batches_sent, 4);
    CHECK_EQ_I(st.batches_acked, 2);
    CHECK_EQ_I(st.cost_acked_nanos, 1000000000LL);
    CHECK_EQ_I(st.pending_intents, 0);
    CHECK_EQ_I(st.last_error, CM_OK);
    int state;
    int64_t today;
    cm_agent_state(c, &state, &today);
    CHECK(state == CM_STATE_BLOCKED && today == 3000000000LL);
    CHECK(atomic_load(&cb_state) == CM_STATE_BLOCKED && atomic_load(&cb_calls) == 1);
    CHECK_EQ_I(cm_flush(c, 1000), CM_OK); /* nothing pending */
    cm_client_free(c);
    fake_stop(&f);
}

/* A 400 would block every later batch if retried: it is dropped and counted. */
static void test_rejected_batch(void)
{
    fake f;
    memset(&f, 0, sizeof f);
    f.statuses[0] = 400;
    f.statuses[1] = 202;
    f.reply = "{\"accepted\":1,\"duplicates\":0,\"agents\":{}}";
    if (fake_start(&f) != 0) {
        CHECK(!"fake server start");
        return;
    }
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", f.port);
    cm_options o;
    cm_options_init(&o);
    o.url = url;
    o.api_key = "k";
    o.agent = "agent://o/e/n";
    cm_client *c;
    CHECK_EQ_I(cm_client_new(&o, &c), CM_OK);
    cm_usage u = {.intent_id = "a", .cost_usd = 0.5};
    cm_report(c, &u);
    CHECK_EQ_I(cm_flush(c, 5000), CM_EREJECTED);
    cm_report(c, &u);
    CHECK_EQ_I(cm_flush(c, 5000), CM_OK);
    cm_stats st;
    cm_client_stats(c, &st);
    CHECK(st.heartbeats_dropped == 1 && st.cost_dropped_nanos == 500000000 && st.batches_acked == 1);
    cm_client_free(c);
    fake_stop(&f);
}

/* cm_client_free sends what is left (bounded). */
static void test_free_flushes(void)
{
    fake f;
    memset(&f, 0, sizeof f);
    f.statuses[0] = 202;
    f.reply = "{\"accepted\":1,\"duplicates\":0,\"agents\":{}}";
    if (fake_start(&f) != 0) {
        CHECK(!"fake server start");
        return;
    }
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", f.port);
    cm_options o;
    cm_options_init(&o);
    o.url = url;
    o.api_key = "k";
    cm_client *c;
    CHECK_EQ_I(cm_client_new(&o, &c), CM_OK);
    cm_usage u = {.intent_id = "z", .cost_usd = 1.25};
    cm_report(c, &u);
    cm_client_free(c);
    CHECK_EQ_I(fake_wait(&f, 1, 100), 1);
    if (f.nreq >= 1) {
        CHECK(strstr(f.bodies[0], "\"cost_usd\":1.25,") != NULL);
        CHECK(strstr(f.bodies[0], "\"agent\"") == NULL); /* bound key: no agent field */
    }
    fake_stop(&f);
}

/* Many threads, one client: every report counted exactly. */
typedef struct {
    cm_client *c;
    int n, id;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    char intent[16];
    snprintf(intent, sizeof intent, "w%d", w->id);
    cm_usage u = {.intent_id = intent, .cost_usd = 0.001, .tokens_in = 2, .llm_calls = 1};
    for (int i = 0; i < w->n; i++) cm_report(w->c, &u);
    return NULL;
}

static void test_threads_coalesce(void)
{
    cm_options o;
    cm_options_init(&o);
    o.url = "http://127.0.0.1:1";
    o.api_key = "k";
    o.close_timeout_ms = 0;
    cm_client *c;
    CHECK_EQ_I(cm_client_new(&o, &c), CM_OK);
    pthread_t th[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){c, 25000, i % 2};
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    cm_stats st;
    cm_client_stats(c, &st);
    CHECK_EQ_I(st.reports, 100000);
    CHECK_EQ_I(st.pending_intents, 2); /* memory by intents, not reports */
    cm_client_free(c);
}

int main(void)
{
    test_money();
    test_ids();
    test_backoff();
    test_table();
    test_encode();
    test_replies();
    test_api_args();
    test_unreachable();
    test_frozen_resend();
    test_rejected_batch();
    test_free_flushes();
    test_threads_coalesce();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
