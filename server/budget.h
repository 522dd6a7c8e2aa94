/* budget.h - the scopes a cost policy is set on: an agent, and beside it
 * the org, an environment (the ENV of agent://ORG/ENV/NAME), a customer, a
 * workflow and a run. Which scopes an intent counts in, their names in
 * replies, and the tag that keys a scope's state in Redis.
 *
 * Pure (no I/O, no allocation), thread-safe. */
#ifndef CM_BUDGET_H
#define CM_BUDGET_H

#include "address.h"
#include "buf.h"
#include "forecast.h"

#include <stdbool.h>
#include <stdint.h>

/* Narrowest first: of two breached limits whose windows end together, the
 * narrower scope is named in the 429. */
typedef enum {
    CM_SCOPE_AGENT = 0,
    CM_SCOPE_RUN,
    CM_SCOPE_WORKFLOW,
    CM_SCOPE_CUSTOMER,
    CM_SCOPE_ENV,
    CM_SCOPE_ORG,
    CM_SCOPE_KINDS
} cm_scope_kind;

/* Bytes of a scope id: an address, or a customer/workflow/run id (at most
 * 128 bytes), or an ENV; "" for the org. */
#define CM_SCOPE_ID_MAX CM_ADDR_MAX

typedef struct {
    cm_scope_kind kind;
    char id[CM_SCOPE_ID_MAX];
} cm_scope;

/* "agent", "run", "workflow", "customer", "env", "org"; never NULL. */
const char *cm_scope_name(cm_scope_kind kind);
/* The kind of a name above: CM_OK or CM_EINVAL. */
int cm_scope_parse(const char *name, cm_scope_kind *kind);

/* The scopes an intent of `address` counts in, narrowest first: the agent,
 * then the run, workflow and customer it names (each "" when it names
 * none), its environment and its org. Returns how many (at most
 * CM_SCOPE_KINDS); CM_EINVAL-free: address must be a valid address. */
int cm_budget_scopes(const char *address, const char *run_id, const char *workflow, const char *customer,
                     cm_scope out[CM_SCOPE_KINDS]);

/* What keys a scope's state in Redis (hot_layout.h): an agent's address
 * itself (the agent keys predate scopes), else "s:<org>:<kind>:<id>",
 * which no address starts with. Fits in CM_ADDR_MAX. */
void cm_budget_tag(const char *org, const cm_scope *s, char out[CM_ADDR_MAX]);

/* The scope and org of a tag cm_budget_tag made for a scope (not an
 * agent's address). CM_OK, or CM_EINVAL when it is no scope's tag. */
int cm_budget_untag(const char *tag, char org[CM_ADDR_SEG_MAX + 1], cm_scope *out);

/* cm_budget_tag in SQL, for statements that key Redis by scope: each
 * argument an SQL expression (org, kind name, id). */
#define CM_BUDGET_TAG_SQL(org, kind, id) "('s:' || " org " || ':' || " kind " || ':' || " id ")"

/* The intents holding an open reservation, as a row source (to be
 * aliased): every column of intents, and held, what is left of the
 * reservation (its estimate less what its agent spent on it, rollup and
 * tail, never below 0). tail: the heartbeats past the watermark to count
 * (cm_org_tail for one org, cm_rollup_tail for all), summed per intent once
 * per statement, not rescanned once per intent as a correlated sum would
 * be. The Redis rebuild holds what is left again; GET /v1/mesh/policies
 * shows it. */
#define CM_BUDGET_OPEN_SQL(tail)                                                                             \
    "(SELECT i.*, greatest(0, i.estimated_cost_nanos - coalesce((SELECT sum(r.cost_nanos) FROM rollup_intent r" \
    " WHERE r.address = i.address AND r.intent_id = i.intent_id), 0) - coalesce(t.cost, 0)) AS held"          \
    " FROM intents i LEFT JOIN (SELECT address, intent_id, sum(cost_nanos) AS cost FROM " tail                 \
    " WHERE intent_id IS NOT NULL GROUP BY 1, 2) t ON t.address = i.address AND t.intent_id = i.intent_id"    \
    " WHERE i.estimated_cost_nanos > 0 AND i.ended_at IS NULL AND i.reserved_until > now())"

/* Appends "scope":"<name>","scope_id":<id or null for the org>. */
void cm_budget_scope_json(const cm_scope *s, cm_buf *b);

/* The details of an event of a mark newly reached in its window
 * (cm_policy_mark_json): an agent's as they always were, a scope's with
 * "scope" and "scope_id" first. */
void cm_budget_mark_json(const cm_scope *s, int lim, int64_t limit_value, int64_t current, int64_t fraction,
                         cm_buf *b);

/* The event of a mark of the heartbeat CHECK (hot.h): its type
 * (threshold_crossed for fraction > 0, policy_breached for 0,
 * exhaustion_predicted for a negative one) and its details into b; a
 * predicted exhaustion's add "burn_rate_usd_per_hour" and "predicted_at"
 * from f (the burn of the mark's agent or scope) at `now`. */
const char *cm_budget_mark_event(const cm_scope *s, int lim, int64_t limit_value, int64_t current,
                                 int64_t fraction, const cm_forecast *f, int64_t now, cm_buf *b);

#endif
