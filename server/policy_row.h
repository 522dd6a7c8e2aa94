/* policy_row.h - a cost policy as PostgreSQL's cost_policies row holds it:
 * the columns in one order, read from a result and written as statement
 * parameters, so the readers (API routes, the Redis rebuild) and the writer
 * never disagree on that order.
 *
 * Loop thread (it reads cm_pgres results); no I/O of its own. */
#ifndef CM_POLICY_ROW_H
#define CM_POLICY_ROW_H

#include "pg.h"
#include "policy.h"

/* The columns, in the order below: the five limits (NULL: unlimited), the
 * action, the thresholds, the delegation tree's cap (NULL: none). */
#define CM_POLICY_ROW_COLS                                                                 \
    "max_intents_per_hour, max_intents_per_day, max_cost_per_hour, max_cost_per_day,"     \
    " max_cost_per_month, action_on_breach, alert_thresholds, max_cost_per_intent_tree"
#define CM_POLICY_ROW_NCOLS 8
/* A row's policy has a windowed limit (cm_policy_has_limit). */
#define CM_POLICY_ROW_HAS_LIMIT_SQL                                                             \
    "num_nonnulls(max_intents_per_hour, max_intents_per_day, max_cost_per_hour, max_cost_per_day," \
    " max_cost_per_month) > 0"

/* The SET list of an upsert of CM_POLICY_ROW_COLS into a table aliased c
 * (INSERT ... AS c ... ON CONFLICT DO UPDATE SET): each column takes the
 * new row's value when the parameter `mask` (SQL text such as "$10") has a
 * '1' at its position, else keeps the saved one: PUT sends all ones, PATCH
 * the columns its body names. */
#define CM_POLICY_ROW_SET_COL(col, i, mask) \
    " " col " = CASE WHEN substr(" mask ", " #i ", 1) = '1' THEN excluded." col " ELSE c." col " END"
#define CM_POLICY_ROW_SET(mask)                                                                           \
    CM_POLICY_ROW_SET_COL("max_intents_per_hour", 1, mask) "," CM_POLICY_ROW_SET_COL("max_intents_per_day", 2, \
                                                                                         mask) ","         \
    CM_POLICY_ROW_SET_COL("max_cost_per_hour", 3, mask) "," CM_POLICY_ROW_SET_COL("max_cost_per_day", 4, mask) \
    "," CM_POLICY_ROW_SET_COL("max_cost_per_month", 5, mask) "," CM_POLICY_ROW_SET_COL("action_on_breach", 6,  \
                                                                                         mask) ","          \
    CM_POLICY_ROW_SET_COL("alert_thresholds", 7, mask) "," CM_POLICY_ROW_SET_COL("max_cost_per_intent_tree", 8, mask)

/* Reads CM_POLICY_ROW_COLS from row `row` of r, starting at column `col`. */
void cm_policy_row_read(const cm_pgres *r, int row, int col, cm_policy *out);

/* A policy as CM_POLICY_ROW_NCOLS text parameters, in CM_POLICY_ROW_COLS
 * order; params point into the struct itself. */
typedef struct {
    const char *params[CM_POLICY_ROW_NCOLS];
    char space[CM_LIM_COUNT + 1][24];
    char thresholds[CM_POLICY_THRESH_TEXT];
} cm_policy_row;

void cm_policy_row_write(const cm_policy *p, cm_policy_row *out);

#endif
