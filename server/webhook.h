/* webhook.h - delivers the webhook outbox: the events waiting in PostgreSQL
 * (webhook_deliveries, written by notify.c in the statement that records
 * the event) are posted to their org's webhook.
 *
 * The only module that includes libcurl. Loop thread only: libcurl's multi
 * interface runs on the libuv loop, so an attempt never blocks a request
 * and a slow receiver costs a socket, not a thread.
 *
 * Replicas. Every replica delivers from the one outbox. A replica claims due
 * deliveries in one statement: FOR UPDATE SKIP LOCKED keeps two replicas
 * from taking the same row, and the claim counts the attempt and takes a
 * lease (lease_until, and due_at moved to its end). A delivery is thus
 * attempted by one replica at a time and each attempt is made once, not
 * once per replica. When the replica holding a lease dies, the lease runs
 * out and any replica (or the restarted one) takes the delivery again: a
 * delivery is made at least once, so a receiver deduplicates by the body's
 * "id". An outcome is written only while the row's attempt count is the
 * one claimed, so a replica whose lease ran out never overwrites a newer
 * attempt.
 *
 * Fairness. One org's slow or dead webhook never holds another org back: a
 * claim takes the orgs' oldest due deliveries round by round (every org's
 * first, then every org's second, ...), with at most 4 attempts in flight
 * per org (counted from the leases, over all replicas; replicas claiming at
 * the same instant may each take an org's 4) and 32 on a replica. An
 * attempt has 3 s to connect and 10 s in all. Claims run every 500 ms, and
 * at once after cm_webhook_kick or a finished attempt. Nothing is dropped:
 * the outbox has no size limit. Deliveries are not ordered.
 *
 * An attempt POSTs the event's JSON with the headers
 *   X-Costmesh-Timestamp: <Unix seconds of the attempt>
 *   X-Costmesh-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>"
 *                         under the org's secret>
 * so a receiver that refuses old timestamps cannot be made to accept a
 * recorded delivery again. A delivery goes to the URL and secret set when
 * it is attempted. No answer or a non-2xx status is retried after 0.5 s,
 * 1 s, 2 s, 4 s and 8 s; the 6th failure abandons it, logged as
 * event=webhook_abandoned with the event id, the URL's host and the reason.
 *
 * Addresses. The URL's host is resolved by libcurl, and every address it
 * is about to connect to is checked in its open-socket callback, so the
 * address checked is the address used (a DNS answer that changes between
 * a check and the connect cannot slip through). Internal addresses
 * (egress.h) are refused unless allowed; a delivery refused so is abandoned
 * at once, its reason naming the address. Proxies from the environment are
 * not used and redirects are not followed, both for the same reason. */
#ifndef CM_WEBHOOK_H
#define CM_WEBHOOK_H

#include "egress.h"
#include "pg.h"

#include <uv.h>

typedef struct cm_webhook cm_webhook;

/* Starts claiming from pg's outbox on loop; pg is borrowed and must
 * outlive the deliverer, allow is copied. CM_OK, CM_ENOMEM or CM_EIO. */
int cm_webhook_new(uv_loop_t *loop, cm_pg_pool *pg, const cm_egress_allow *allow, cm_webhook **out);
/* Stops claiming and aborts the attempts in flight: their leases run out
 * and they are tried again, here after a restart or by another replica.
 * Memory is freed once the handles and statements are done (run the loop
 * after). NULL is a no-op. */
void cm_webhook_free(cm_webhook *w);
/* A delivery was just added: claim now rather than at the next poll. */
void cm_webhook_kick(cm_webhook *w);

#endif
