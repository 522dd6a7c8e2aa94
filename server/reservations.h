/* reservations.h - the deadline of intents' reservations: every second,
 * what is left of each reservation past its deadline (COSTMESH_RESERVATION_TTL
 * after its admission, unless the intent ended first) is released in Redis
 * and recorded as a reservation_expired event.
 *
 * Loop thread only. Every replica sweeps; the release is one script, so
 * each reservation is released, and its event recorded, by one of them. */
#ifndef CM_RESERVATIONS_H
#define CM_RESERVATIONS_H

#include "hot.h"
#include "notify.h"

#include <uv.h>

typedef struct cm_reservations cm_reservations;

/* hot and notify are borrowed. CM_OK or CM_ENOMEM. */
int cm_reservations_new(uv_loop_t *loop, cm_hot *hot, cm_notify *notify, cm_reservations **out);
/* Stops the timer; memory is freed once libuv has closed it (run the loop
 * after). NULL is a no-op. */
void cm_reservations_free(cm_reservations *r);

#endif
