/* hot_internal.h - between hot.c and the files that make more of hot.h's
 * typed calls (hot_queue.c): the scripts they run and what to do when one
 * finds Redis emptied. */
#ifndef CM_HOT_INTERNAL_H
#define CM_HOT_INTERNAL_H

#include "hot.h"

/* The queue's scripts, after hot.c's own in the table hot.c loads. */
enum { CM_HOT_ACK = 8, CM_HOT_DRAIN, CM_HOT_DRAINED, CM_HOT_QIDS, CM_HOT_QFLOOR, CM_HOT_NSCRIPTS };

/* Runs a script whose arguments are all NUL-terminated (cm_store_eval). */
int cm_hot_eval(cm_hot *h, int script, int nkeys, int argc, const char *const *argv, cm_store_cb cb, void *arg);

/* The same, answered as a cm_hot_done_cb (cb may be NULL). */
int cm_hot_eval_done(cm_hot *h, int script, int nkeys, int argc, const char *const *argv, cm_hot_done_cb cb,
                     void *arg);

/* A script found the epoch key missing: Redis lost its data, rebuild it
 * (unless a rebuild is what runs). */
void cm_hot_epoch_missing(cm_hot *h);

#endif
