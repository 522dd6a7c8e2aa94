/* chore.h - a statement PostgreSQL runs every so often on the loop, for the
 * background work every replica starts and one at a time does (the
 * statements lock for themselves: rollup.c, retention.c).
 *
 * At most one run in flight: a tick that finds the last run unanswered is
 * skipped, so a slow statement never piles up behind itself. */
#ifndef CM_CHORE_H
#define CM_CHORE_H

#include "pg.h"

#include <uv.h>

typedef struct cm_chore cm_chore;

/* Called after each run, as cm_pg_cb. */
typedef void (*cm_chore_cb)(void *arg, int rc, const cm_pgres *res, const char *sqlstate);

/* Runs sql with the text parameters params[0..n) on db every interval_ms,
 * then cb(arg, ...). sql and params are borrowed and must outlive the chore.
 * Returns CM_OK, CM_ENOMEM or CM_EIO. */
int cm_chore_new(uv_loop_t *loop, cm_pg_pool *db, int interval_ms, const char *sql, int n,
                 const char *const *params, cm_chore_cb cb, void *arg, cm_chore **out);
/* Runs it now (unless a run is in flight): for work known to be left over. */
void cm_chore_run(cm_chore *c);
/* Makes the next run come ms from now, then every interval_ms again: for a
 * chore whose first answer is wanted soon after the start, once the pools
 * are up (cm_chore_run would find them connecting). */
void cm_chore_soon(cm_chore *c, int ms);
/* Stops the timer; memory is freed once libuv has closed it (run the loop
 * after). Free the pool first: a run in flight calls back. NULL is a no-op. */
void cm_chore_free(cm_chore *c);

#endif
