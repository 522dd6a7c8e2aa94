/* test_seen.c - the agents written this second: a put is found for its own
 * second only, another address in the same slot is not taken for it, and a
 * newer put evicts the older. */
#include "error.h"
#include "seen.h"
#include "unit.h"

#include <stdio.h>

void test_seen(void)
{
    cm_seen *s;
    CHECK(cm_seen_new(&s) == CM_OK);
    const char *a = "agent://acme/prod/a", *b = "agent://acme/prod/b";
    CHECK(!cm_seen_written(s, a, 100));
    cm_seen_put(s, a, 100);
    CHECK(cm_seen_written(s, a, 100));
    CHECK(!cm_seen_written(s, a, 101)); /* a new second: written again */
    CHECK(!cm_seen_written(s, b, 100));
    /* Many addresses: some share a slot with a, and evict it. */
    char other[64];
    int evicted = 0;
    for (int i = 0; i < 20000 && !evicted; i++) {
        snprintf(other, sizeof other, "agent://acme/prod/x%d", i);
        cm_seen_put(s, other, 100);
        CHECK(cm_seen_written(s, other, 100));
        evicted = !cm_seen_written(s, a, 100);
    }
    CHECK(evicted);
    cm_seen_free(s);
}
