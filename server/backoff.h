/* backoff.h - how long to wait before reconnecting to PostgreSQL or Redis.
 *
 * CM_BACKOFF_FIRST_MS after the first failure, doubling with each further
 * one up to CM_BACKOFF_MAX_MS, and back to the start once a connection
 * comes up: short enough that a restarted server is found again at once,
 * capped so a long outage costs one attempt every few seconds. */
#ifndef CM_BACKOFF_H
#define CM_BACKOFF_H

#include <stdint.h>

#define CM_BACKOFF_FIRST_MS 100
#define CM_BACKOFF_MAX_MS 5000

/* One connection's backoff; zero-initialised: no failure yet. */
typedef struct {
    int ms; /* the delay last returned, 0 before the first failure */
} cm_backoff;

/* Records a failure; returns the delay before the next attempt in ms. */
uint64_t cm_backoff_next(cm_backoff *b);
/* Records a success: the next failure waits CM_BACKOFF_FIRST_MS again. */
void cm_backoff_reset(cm_backoff *b);

#endif
