/* refusal.h - what PostgreSQL refuses for good, as the API answers it: the
 * caps on agents' totals (schema/007_caps.sql) and the agent quota
 * (schema/008_agent_quota.sql) are enforced by the database, and every
 * writer (the group commit, the intent log, the routes) asks here whether a
 * failed statement is worth a retry and what its request is told.
 *
 * Pure: no I/O, no allocation, thread-safe. */
#ifndef CM_REFUSAL_H
#define CM_REFUSAL_H

#include "codec.h"

#include <stdbool.h>

/* The largest total an agent may have of a capped metric (cost, tokens,
 * calls, intents) in one hour, day or month: 10^18, in nano-dollars for cost
 * ($1,000,000,000). PostgreSQL enforces it (schema/007_caps.sql), so every
 * sum the server makes of whole windows stays inside int64. */
#define CM_TOTAL_MAX 1000000000000000000LL

/* Whether a failed statement is one that sending it again cannot fix:
 * SQLSTATE class 22 (data exception) or 23 (integrity constraint
 * violation; constraint: the one named, or ""). Then e is the answer for
 * the request that caused it, once it is found alone: 422
 * total_limit_exceeded naming the metric (error.field) and the cap when a
 * cap of schema/007_caps.sql was hit, 422 agent_quota_exceeded for the
 * agent quota. Other failures (connection, deadlock)
 * are worth a retry: false. */
bool cm_refusal_of(const char *sqlstate, const char *constraint, cm_apierr *e);

#endif
