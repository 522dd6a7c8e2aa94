/* billing.h - billing cards as data: what a customer's usage is billed
 * for (the line items), the API field of each item's unit price, and one
 * version of a plan's card.
 *
 * Pure, no allocation, thread-safe. The rating itself is PostgreSQL's, in
 * numeric (api_billing.c, schema/019_billing.sql): a quantity summed over
 * every agent of a customer has no cap, so no int64 holds its amount. */
#ifndef CM_BILLING_H
#define CM_BILLING_H

#include <stdint.h>

/* The line items, in the order of a usage reply. */
typedef enum {
    CM_BILL_RUN = 0,        /* per_run_usd: each run_id, in the hour of its first heartbeat */
    CM_BILL_STEP,           /* per_step_usd: each LLM call or tool call */
    CM_BILL_COMPUTE_SECOND, /* per_compute_second_usd: metrics.compute_ms / 1000 */
    CM_BILL_OUTCOME,        /* per_outcome_usd: each intent of the customer that ended succeeded */
    CM_BILL_ITEMS
} cm_bill_item;

/* One version of a plan's card. */
typedef struct {
    int64_t from;                      /* effective_from, Unix seconds, a whole hour */
    int64_t unit_price[CM_BILL_ITEMS]; /* nano-dollars per unit, >= 0 */
} cm_bill_card;

/* Every field of a card's body: the items' prices in cm_bill_item's order
 * ("per_run_usd"...), then "effective_from", then NULL. */
extern const char *const cm_bill_fields[CM_BILL_ITEMS + 2];
/* The item's name in a usage line ("runs"); static. */
const char *cm_bill_item_name(cm_bill_item k);
/* The unit its quantity counts ("run", "second"); static. */
const char *cm_bill_unit(cm_bill_item k);

#endif
