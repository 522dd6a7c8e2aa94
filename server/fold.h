/* fold.h - rollups past the hours kept: the hour rows of rollup_agent,
 * rollup_scope, rollup_intent and rollup_unit older than
 * COSTMESH_ROLLUP_HOURS_DAYS folded into days by cm_rollup_fold() of
 * schema/020_rollup_days.sql (one replica at a time, bounded batches), and
 * the first time a spend read may rely on hours (cm_fold_horizon).
 *
 * Loop thread only, except cm_fold_hours_from. */
#ifndef CM_FOLD_H
#define CM_FOLD_H

#include "pg.h"

#include <stdint.h>
#include <uv.h>

/* The smallest setting but 0: the Redis rebuild reads 49 hours of hours. */
#define CM_FOLD_MIN_DAYS 2

typedef struct cm_fold cm_fold;

/* Folds every interval_ms on db, and again at once while a batch was full;
 * with hours_days 0 it folds nothing and only reads how far hours were
 * folded before (rollup_fold). Returns CM_OK, CM_ENOMEM or CM_EIO. */
int cm_fold_new(uv_loop_t *loop, cm_pg_pool *db, int hours_days, int interval_ms, cm_fold **out);
/* Free db first (see chore.h). NULL is a no-op. */
void cm_fold_free(cm_fold *f);

/* The earliest time whose hours a read at `now` may rely on: the later of
 * cm_fold_hours_from(its hours_days, now) and how far the database says
 * hours were folded, as of its last run (the first comes a second after
 * the start; before it, its own setting only). */
int64_t cm_fold_horizon(const cm_fold *f, int64_t now);

/* 00:00 UTC hours_days days before now's day (the fold keeps a day more).
 * 0 (no heartbeat is older: timeutil.h reads years from 1970) when
 * hours_days is 0. Pure, any thread. */
int64_t cm_fold_hours_from(int hours_days, int64_t now);

#endif
