/* cloudevents.h - OpenMeter-style CloudEvents (POST /api/v1/events) and the
 * meters that make them heartbeats.
 *
 * A body is one event (application/cloudevents+json) or a JSON array of
 * them (application/cloudevents-batch+json, what @openmeter/sdk sends),
 * each with specversion "1.0", id, source, type and subject, optionally
 * time (RFC 3339, default: arrival) and data. An org's meter for the event's
 * type says where in data the cost (USD), the tokens and the agent's NAME
 * are; without an agent path the subject (OpenMeter's customer) is the
 * agent. The subject is also kept as the heartbeat's session_id.
 *
 * Pure, thread-safe. */
#ifndef CM_CLOUDEVENTS_H
#define CM_CLOUDEVENTS_H

#include "codec.h"

#include <stddef.h>
#include <stdint.h>

#define CM_CE_PATH_MAX 128 /* bytes in a meter's data path */

/* One org's meter of one event type; a path is "" when not metered. */
typedef struct {
    char event_type[CM_ID_MAX + 1];
    char cost_usd[CM_CE_PATH_MAX + 1];
    char tokens_in[CM_CE_PATH_MAX + 1];
    char tokens_out[CM_CE_PATH_MAX + 1];
    char agent[CM_CE_PATH_MAX + 1];
} cm_meter;

/* One event as received. */
typedef struct {
    char id[CM_ID_MAX + 1];
    char source[CM_ID_MAX + 1];
    char type[CM_ID_MAX + 1];
    char subject[CM_ID_MAX + 1];
    int64_t ts;  /* Unix seconds */
    char *data;  /* data's JSON text, malloc'd; NULL when the event has none */
} cm_ce_event;

/* Decodes a body of content_type (see above; application/json takes either
 * form). On CM_OK *evs is a malloc'd array of *n (1..CM_BATCH_MAX) events,
 * freed with cm_ce_free. Else e: 415, 400 naming the field
 * ("[3].subject"), 413 past CM_BATCH_MAX. */
int cm_ce_decode(const char *content_type, const char *body, size_t len, int64_t now, cm_ce_event **evs, size_t *n,
                 cm_apierr *e);
void cm_ce_free(cm_ce_event *evs, size_t n);

/* PUT /v1/mesh/meters/{event_type} body: {"cost_usd","tokens_in",
 * "tokens_out","agent"}, each a path "$.key(.key)*" or absent; at least
 * one of the first three. event_type is the caller's. */
int cm_ce_meter_decode(const char *body, size_t len, cm_meter *m, cm_apierr *e);

/* The heartbeat of ev under meter m: cost, tokens, ts, session_id (the
 * subject) and agent (the NAME: the agent path's value, else the subject).
 * id is left to the caller. CM_OK, or CM_EINVAL with e naming the event
 * `index` and the value that is missing or not what its path promises. */
int cm_ce_apply(const cm_ce_event *ev, size_t index, const cm_meter *m, cm_hb *hb, cm_apierr *e);

#endif
