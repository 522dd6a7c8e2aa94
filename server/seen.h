/* seen.h - the agents whose row in `agents` this replica wrote during the
 * current second, so a group commit registers an agent and moves its
 * last_heartbeat at most once a second instead of once per commit (each
 * such UPDATE leaves a dead tuple behind, per agent per commit).
 *
 * A fixed table indexed by a hash of the address; a newer entry evicts an
 * older one in its slot, which only costs one more write. No I/O, no
 * locking: one owner thread. */
#ifndef CM_SEEN_H
#define CM_SEEN_H

#include <stdbool.h>
#include <stdint.h>

typedef struct cm_seen cm_seen;

int cm_seen_new(cm_seen **out);
void cm_seen_free(cm_seen *s);

/* True when cm_seen_put(address, sec) was the last put in its slot: the
 * agent is registered and its last_heartbeat is already within second sec. */
bool cm_seen_written(const cm_seen *s, const char *address, int64_t sec);
/* Remembers that the agent's row was written (committed) in second sec. */
void cm_seen_put(cm_seen *s, const char *address, int64_t sec);

#endif
