/* unit.h - a tiny check harness for tests that need no server.
 *
 * A failed check prints file:line and what differed, then the suite goes on,
 * so one run shows every broken case. main.c prints the totals. */
#ifndef CM_UNIT_H
#define CM_UNIT_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

extern int unit_passed;
extern int unit_failed;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (cond) {                                                          \
            unit_passed++;                                                   \
        } else {                                                             \
            unit_failed++;                                                   \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, \
                    #cond);                                                  \
        }                                                                    \
    } while (0)

#define CHECK_EQ_I64(a, b)                                                   \
    do {                                                                     \
        int64_t unit_a_ = (int64_t)(a), unit_b_ = (int64_t)(b);              \
        if (unit_a_ == unit_b_) {                                            \
            unit_passed++;                                                   \
        } else {                                                             \
            unit_failed++;                                                   \
            fprintf(stderr, "%s:%d: %s == %s failed: %" PRId64 " != %" PRId64 \
                    "\n", __FILE__, __LINE__, #a, #b, unit_a_, unit_b_);      \
        }                                                                    \
    } while (0)

#define CHECK_STR(a, b)                                                      \
    do {                                                                     \
        const char *unit_a_ = (a), *unit_b_ = (b);                           \
        if (unit_a_ != NULL && unit_b_ != NULL &&                            \
            strcmp(unit_a_, unit_b_) == 0) {                                 \
            unit_passed++;                                                   \
        } else {                                                             \
            unit_failed++;                                                   \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n",    \
                    __FILE__, __LINE__, #a, #b,                              \
                    unit_a_ ? unit_a_ : "(null)",                            \
                    unit_b_ ? unit_b_ : "(null)");                           \
        }                                                                    \
    } while (0)

void test_error(void);
void test_budget(void);
void test_forecast(void);
void test_money(void);
void test_pricing(void);
void test_time(void);
void test_address(void);
void test_buf(void);
void test_routes(void);
void test_codec(void);
void test_policy(void);
void test_keycache(void);
void test_queue(void);
void test_backoff(void);
void test_health(void);
void test_hot_layout(void);
void test_decode(void);
void test_egress(void);
void test_ingest(void);
void test_seen(void);
void test_nameset(void);
void test_config(void);
void test_fold(void);
void test_auth(void);
void test_hbrow(void);

#endif
