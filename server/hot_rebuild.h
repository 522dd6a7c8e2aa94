/* hot_rebuild.h - between hot.c and hot_rebuild.c only: one pass of the
 * rebuild, and the one merge only it needs. hot.c decides when a pass runs
 * (one at a time, retried, then the epoch key); hot_rebuild.c knows which
 * rows of PostgreSQL make the mirror. */
#ifndef CM_HOT_REBUILD_H
#define CM_HOT_REBUILD_H

#include "hot.h"

/* Called once at the end of a pass; ok is false when anything failed. */
typedef void (*cm_hot_pass_cb)(cm_hot *h, bool ok, void *arg);

/* Replaces the policies and kill flags (but those an API change wrote
 * since the pass began: cm_hot_replace_policy), then merges the current
 * windows' rollups and intent counts, from pg into Redis: of every agent when
 * address is NULL, else of that agent alone (address is copied); with
 * windows_only, the rollups and intent counts alone. Returns CM_OK and
 * calls done later, or an error at once. */
int cm_hot_rebuild_pass(cm_hot *h, cm_pg_pool *pg, const char *address, bool windows_only, cm_hot_pass_cb done,
                        void *arg);

/* Whether a whole pass reads every agent's windows (cm_hot_set_all_windows). */
bool cm_hot_all_windows(const cm_hot *h);

/* A policy's and a kill flag's writes, as cm_hot_put_policy (without
 * reading the agent's windows back: a pass reads them itself after its
 * policies step) and cm_hot_put_killed. since is 0 for a change, which
 * marks the hash with the next generation; a pass gives the generation it
 * took before reading PostgreSQL (cm_hot_policy_gen), and its write leaves
 * a hash a change marked since then as it is: the change is newer than
 * the row the pass read. */
int cm_hot_replace_policy(cm_hot *h, const char *tag, const cm_policy *pol, long long since, cm_hot_done_cb cb,
                          void *arg);
int cm_hot_replace_killed(cm_hot *h, const char *address, bool killed, long long since, cm_hot_done_cb cb,
                          void *arg);

/* Takes the next generation of those writes: cb's n. */
int cm_hot_policy_gen(cm_hot *h, cm_hot_number_cb cb, void *arg);

/* While on, the typed calls of hot.h go in the store's bulk lane
 * (cm_store_eval_bulk). A whole pass turns it on around each step's
 * sending, so that an agent's own pass, the admissions and the heartbeats
 * wait behind a few of its writes only. */
void cm_hot_set_bulk(cm_hot *h, bool on);

/* Holds the store's bulk lane, or releases one hold (cm_store_bulk_hold):
 * an agent's own pass holds it from its start until its done callback
 * has returned. */
void cm_hot_hold_bulk(cm_hot *h, bool hold);

#endif
