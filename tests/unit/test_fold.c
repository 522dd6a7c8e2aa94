/* test_fold.c - the first time whose hours a spend read relies on, and the
 * setting that gives it. Expected instants from Python's calendar.timegm. */
#include "unit.h"

#include "config.h"
#include "error.h"
#include "fold.h"

#include <stdlib.h>

void test_fold(void)
{
    /* 2026-11-30T17:04:05Z; its day starts at 1795996800. */
    CHECK_EQ_I64(cm_fold_hours_from(0, 1796058245), 0);
    CHECK_EQ_I64(cm_fold_hours_from(2, 1796058245), 1795996800 - 2 * 86400);
    CHECK_EQ_I64(cm_fold_hours_from(2, 1795996800), 1795996800 - 2 * 86400); /* 00:00 itself */
    CHECK_EQ_I64(cm_fold_hours_from(2, 1795996799), 1795910400 - 2 * 86400); /* a second before */
    CHECK_EQ_I64(cm_fold_hours_from(36500, 1796058245), 1795996800 - 36500LL * 86400);

    cm_config c;
    char err[256];
    unsetenv("COSTMESH_ROLLUP_HOURS_DAYS");
    char *none[] = {(char *)"costmeshd", NULL};
    CHECK_EQ_I64(cm_config_load(&c, 1, none, err, sizeof err), CM_OK);
    CHECK_EQ_I64(c.rollup_hours_days, 0);
    char *two[] = {(char *)"costmeshd", (char *)"--rollup-hours-days=2", NULL};
    CHECK_EQ_I64(cm_config_load(&c, 2, two, err, sizeof err), CM_OK);
    CHECK_EQ_I64(c.rollup_hours_days, 2);
    /* 1 would fold hours the Redis rebuild reads; the others are no count of days. */
    static const char *const bad[] = {"--rollup-hours-days=1", "--rollup-hours-days=-1",
                                      "--rollup-hours-days=36501", "--rollup-hours-days=2d"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *argv[] = {(char *)"costmeshd", (char *)bad[i], NULL};
        err[0] = '\0';
        CHECK_EQ_I64(cm_config_load(&c, 2, argv, err, sizeof err), CM_EINVAL);
        CHECK(strstr(err, "rollup-hours-days") != NULL);
    }
}
