/* error.h - costmeshd's error codes.
 *
 * CM_OK is 0; failures are negative and only ever appended to, never
 * renumbered, so a code seen in a log means the same thing in every build. */
#ifndef CM_ERROR_H
#define CM_ERROR_H

enum {
    CM_OK = 0,
    CM_ENOMEM = -1,     /* allocation failed */
    CM_EINVAL = -2,     /* malformed input */
    CM_ERANGE = -3,     /* well-formed but out of the accepted range */
    CM_ETOOBIG = -4,    /* over a size or count limit */
    CM_EIO = -5,        /* system call failed */
    CM_ESTORE = -6,     /* Redis or PostgreSQL failed or is unreachable */
    CM_ENOTFOUND = -7,  /* no such thing */
    CM_EAUTH = -8,      /* missing or unknown API key */
    CM_EFORBIDDEN = -9, /* key may not do this */
    CM_ECONFIG = -10,   /* bad configuration */
    CM_ESHUTDOWN = -11, /* the server is stopping */
};

/* Static English sentence for a code; never NULL, also for unknown codes. */
const char *cm_strerror(int rc);

#endif
