/* test_error.c - cm_strerror covers every code and never returns NULL. */
#include "unit.h"

#include "error.h"

#include <limits.h>

void test_error(void)
{
    static const int codes[] = {
        CM_OK, CM_ENOMEM, CM_EINVAL, CM_ERANGE, CM_ETOOBIG, CM_EIO, CM_ESTORE,
        CM_ENOTFOUND, CM_EAUTH, CM_EFORBIDDEN, CM_ECONFIG, CM_ESHUTDOWN,
    };
    size_t n = sizeof codes / sizeof codes[0];

    /* Codes are only appended: pin the numbers a log line may carry. */
    CHECK_EQ_I64(CM_OK, 0);
    CHECK_EQ_I64(CM_EINVAL, -2);
    CHECK_EQ_I64(CM_ESHUTDOWN, -11);

    for (size_t i = 0; i < n; i++) {
        const char *msg = cm_strerror(codes[i]);

        CHECK(msg != NULL);
        CHECK(msg != NULL && msg[0] != '\0');
        CHECK(msg != NULL && strcmp(msg, "unknown error") != 0);
        /* Each code has its own sentence. */
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(msg, cm_strerror(codes[j])) != 0);
    }
    CHECK_STR(cm_strerror(CM_ENOMEM), "out of memory");
    CHECK_STR(cm_strerror(CM_EINVAL), "malformed input");

    CHECK_STR(cm_strerror(1), "unknown error");
    CHECK_STR(cm_strerror(-12), "unknown error");
    CHECK_STR(cm_strerror(-1000), "unknown error");
    CHECK_STR(cm_strerror(INT_MIN), "unknown error");
    CHECK_STR(cm_strerror(INT_MAX), "unknown error");
}
