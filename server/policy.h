/* policy.h - cost policies as data, and the pure arithmetic of enforcing
 * them: which limits exist, which window each counts in, which breached
 * limit binds, how long until it lifts, and threshold amounts.
 *
 * No I/O, no allocation, thread-safe. The check-and-increment itself runs
 * atomically inside Redis (hot.h, cm_hot_admit); how a policy is stored
 * there is hot_layout.h's. */
#ifndef CM_POLICY_H
#define CM_POLICY_H

#include "buf.h"
#include "timeutil.h"

#include <stdbool.h>
#include <stdint.h>

/* Limits, in the order Redis reports them as bit i of a breach mask. */
enum {
    CM_LIM_INTENTS_HOUR = 0,
    CM_LIM_INTENTS_DAY,
    CM_LIM_COST_HOUR,
    CM_LIM_COST_DAY,
    CM_LIM_COST_MONTH,
    CM_LIM_COUNT
};

#define CM_THRESH_MAX 8
#define CM_FRACTION_ONE 1000000000LL /* thresholds are fractions in 1e-9 units */

typedef struct {
    bool has[CM_LIM_COUNT];         /* false: unlimited */
    int64_t limit[CM_LIM_COUNT];    /* intents: a count; cost: nano-dollars */
    bool block;                     /* "block", else "alert" */
    int nthresh;
    int64_t thresh[CM_THRESH_MAX];  /* ascending fractions of each cost limit */
    /* The cost of a whole delegation tree at which new intents under its
     * root are refused (nano-dollars). Not a windowed limit: a tree's cost
     * only grows, so it has no window, threshold or Retry-After. */
    bool has_tree_cap;
    int64_t tree_cap;
} cm_policy;

#define CM_POLICY_TREE_NAME "max_cost_per_intent_tree_usd"

/* The policy every agent has when none was set: unlimited, block, the
 * default thresholds [0.5, 0.75, 0.9, 1.0]. */
void cm_policy_init(cm_policy *p);

/* Limits and the Redis mirror count in three windows; this is their
 * order wherever they come as a triple. */
enum { CM_WIN3_HOUR = 0, CM_WIN3_DAY, CM_WIN3_MONTH, CM_WIN3 };
/* Start of the hour, day and month windows containing `now`. */
void cm_policy_window_starts(int64_t now, int64_t starts[CM_WIN3]);

/* The JSON field name of a limit, e.g. "max_cost_per_day_usd"; never NULL. */
const char *cm_limit_name(int lim);
bool cm_limit_is_cost(int lim);
/* Whether p has any windowed limit (intents or cost; a tree cap is not). */
bool cm_policy_has_limit(const cm_policy *p);
cm_window cm_limit_window(int lim);

/* Of the limits set in `mask` (bit i = limit i), the binding one: the one
 * whose window ends last (a refusal lasts until every breached window has
 * ended), the lower index on ties. *retry_after is the seconds from `now`
 * until that window ends (at least 1). Returns -1 when mask is 0. */
int cm_policy_binding(unsigned mask, int64_t now, int64_t *retry_after);

/* The smallest amount that reaches `fraction` of `limit`: ceil(limit *
 * fraction / 1e9), exact for all int64 inputs >= 0. */
int64_t cm_policy_threshold(int64_t limit, int64_t fraction);

/* Appends the policy as the JSON object GET answers. */
void cm_policy_json(const cm_policy *p, cm_buf *b);

/* The thresholds as stored in PostgreSQL ("500000000,750000000") and back.
 * cm_policy_thresh_parse returns CM_OK or CM_EINVAL. The text holds at
 * most CM_THRESH_MAX fractions of at most 10 digits, commas and a NUL. */
#define CM_POLICY_THRESH_TEXT (CM_THRESH_MAX * 11 + 1)
void cm_policy_thresh_text(const cm_policy *p, char out[CM_POLICY_THRESH_TEXT]);
int cm_policy_thresh_parse(const char *text, cm_policy *p);

/* Appends a limit's value as JSON (money for cost limits). */
void cm_policy_value_json(int lim, int64_t v, cm_buf *b);

/* Appends the details of the event of a mark newly reached in its window:
 * {"limit","limit_value","current"}, plus "threshold" for a threshold
 * (fraction > 0, threshold_crossed) rather than the limit itself (0,
 * policy_breached; a negative fraction adds nothing either). A breach is recorded by whichever of the heartbeat
 * check and admission sees it first, so both build it here: one shape. */
void cm_policy_mark_json(int lim, int64_t limit_value, int64_t current, int64_t fraction, cm_buf *b);

#endif
