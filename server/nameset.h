/* nameset.h - a set of names (agents' addresses) that grows with what it
 * holds, up to a bound past which it starts over empty.
 *
 * For facts that stay true once learnt, where forgetting one only costs
 * learning it again: the agents this replica knows are registered
 * (ingest.c, Redis as the durable point). No I/O, no locking: one owner
 * thread. */
#ifndef CM_NAMESET_H
#define CM_NAMESET_H

#include <stdbool.h>
#include <stddef.h>

typedef struct cm_nameset cm_nameset;

/* max: names held before the set is emptied and starts over. */
int cm_nameset_new(size_t max, cm_nameset **out);
void cm_nameset_free(cm_nameset *s);

bool cm_nameset_has(const cm_nameset *s, const char *name);
/* Adds a copy of name; CM_ENOMEM leaves the set as it was. */
int cm_nameset_add(cm_nameset *s, const char *name);
size_t cm_nameset_size(const cm_nameset *s);

#endif
