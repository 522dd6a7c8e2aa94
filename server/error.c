/* error.c - the one table behind cm_strerror(). */
#include "error.h"

#include <stddef.h>

/* Indexed by -rc; codes are only appended, so entries are too. */
static const char *const messages[] = {
    "success",                                  /* CM_OK */
    "out of memory",                            /* CM_ENOMEM */
    "malformed input",                          /* CM_EINVAL */
    "value out of range",                       /* CM_ERANGE */
    "over a size or count limit",               /* CM_ETOOBIG */
    "system call failed",                       /* CM_EIO */
    "store unavailable or failed",              /* CM_ESTORE */
    "not found",                                /* CM_ENOTFOUND */
    "missing or unknown API key",               /* CM_EAUTH */
    "forbidden for this key",                   /* CM_EFORBIDDEN */
    "bad configuration",                        /* CM_ECONFIG */
    "server is shutting down",                  /* CM_ESHUTDOWN */
};

const char *cm_strerror(int rc)
{
    /* Compare before negating: -INT_MIN would overflow. */
    if (rc > 0 || rc < -(int)(sizeof messages / sizeof messages[0] - 1))
        return "unknown error";
    return messages[-rc];
}
