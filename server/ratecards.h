/* ratecards.h - each org's rate cards in memory, so pricing a heartbeat
 * costs no PostgreSQL query.
 *
 * Loop thread only. An org's cards are loaded from PostgreSQL (price_cards)
 * the first time a heartbeat of it needs them, in one statement however
 * many jobs wait for it, and kept until they change: a write of a card
 * sends CM_PRICING_CHANNEL with the org as payload (in the same
 * transaction), every replica's listener forgets that org's cards, and the
 * next heartbeat loads them again. A load that a change overtook is done
 * again before anyone is priced by it, so no job is priced by cards older
 * than the last change this replica heard of before the job arrived. */
#ifndef CM_RATECARDS_H
#define CM_RATECARDS_H

#include "job.h"
#include "pg.h"
#include "pricing.h"

/* The PostgreSQL NOTIFY channel of rate card changes; the payload is the org. */
#define CM_PRICING_CHANNEL "cm_pricing_changed"

typedef struct cm_ratecards cm_ratecards;
/* One org's cards: every model's versions. */
typedef struct cm_ratecard_set cm_ratecard_set;

/* What a job waiting for its org's cards gets: the org, rc CM_OK and the cards
 * (borrowed, valid during the call only), or CM_ESTORE and NULL when they
 * could not be loaded (or the cache is being freed). */
typedef void (*cm_ratecards_cb)(void *arg, const char *org, cm_job *j, int rc, const cm_ratecard_set *cards);

/* db is borrowed (the API pool) and must outlive the cache; cb(arg, ...)
 * is called for every job given to cm_ratecards_get. */
int cm_ratecards_new(cm_pg_pool *db, cm_ratecards_cb cb, void *arg, cm_ratecards **out);
/* Calls cb with CM_ESTORE for every job still waiting, then frees. Loads
 * in flight finish into nothing. NULL is a no-op. */
void cm_ratecards_free(cm_ratecards *c);

/* Calls cb for j with org's cards: at once when they are in memory, else
 * once they are loaded. */
void cm_ratecards_get(cm_ratecards *c, const char *org, cm_job *j);
/* org's cards changed (a NOTIFY, or this replica's own write): the next
 * job loads them again. */
void cm_ratecards_forget(cm_ratecards *c, const char *org);
/* Every org's cards may have changed (the listener reconnected and may
 * have missed notifications). */
void cm_ratecards_forget_all(cm_ratecards *c);

/* The version of model's card in force at ts, NULL when the org has no
 * card for model or none in force then. Borrowed from cards. */
const cm_price *cm_ratecards_price(const cm_ratecard_set *cards, const char *model, int64_t ts);

#endif
