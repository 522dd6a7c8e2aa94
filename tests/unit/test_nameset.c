/* test_nameset.c - the set of names ingest.c keeps of the agents it knows
 * are registered: every name added is found (through growth), others are
 * not, and past its bound it starts over. */
#include "error.h"
#include "nameset.h"
#include "unit.h"

#include <stdio.h>

void test_nameset(void)
{
    cm_nameset *s;
    CHECK(cm_nameset_new(100000, &s) == CM_OK);
    char name[64];
    CHECK(!cm_nameset_has(s, "agent://acme/prod/a"));
    /* Many names with a long shared prefix: all found after every growth. */
    for (int i = 0; i < 50000; i++) {
        snprintf(name, sizeof name, "agent://acme/prod/a%d", i);
        CHECK(cm_nameset_add(s, name) == CM_OK);
    }
    CHECK_EQ_I64((long long)cm_nameset_size(s), 50000);
    int missing = 0;
    for (int i = 0; i < 50000; i++) {
        snprintf(name, sizeof name, "agent://acme/prod/a%d", i);
        missing += !cm_nameset_has(s, name);
    }
    CHECK_EQ_I64(missing, 0);
    int found = 0;
    for (int i = 50000; i < 60000; i++) {
        snprintf(name, sizeof name, "agent://acme/prod/a%d", i);
        found += cm_nameset_has(s, name);
    }
    CHECK_EQ_I64(found, 0);
    /* Adding a name again changes nothing. */
    CHECK(cm_nameset_add(s, "agent://acme/prod/a7") == CM_OK);
    CHECK_EQ_I64((long long)cm_nameset_size(s), 50000);
    cm_nameset_free(s);

    /* At its bound it empties, then holds the new name. */
    CHECK(cm_nameset_new(3, &s) == CM_OK);
    CHECK(cm_nameset_add(s, "a") == CM_OK);
    CHECK(cm_nameset_add(s, "b") == CM_OK);
    CHECK(cm_nameset_add(s, "c") == CM_OK);
    CHECK(cm_nameset_add(s, "d") == CM_OK);
    CHECK_EQ_I64((long long)cm_nameset_size(s), 1);
    CHECK(cm_nameset_has(s, "d") && !cm_nameset_has(s, "a"));
    cm_nameset_free(s);
}
