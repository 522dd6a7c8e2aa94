#include "billing.h"

const char *const cm_bill_fields[CM_BILL_ITEMS + 2] = {
    [CM_BILL_RUN] = "per_run_usd",
    [CM_BILL_STEP] = "per_step_usd",
    [CM_BILL_COMPUTE_SECOND] = "per_compute_second_usd",
    [CM_BILL_OUTCOME] = "per_outcome_usd",
    [CM_BILL_ITEMS] = "effective_from",
};
static const char *const names[CM_BILL_ITEMS] = {"runs", "steps", "compute_seconds", "outcomes"};
static const char *const units[CM_BILL_ITEMS] = {"run", "step", "second", "outcome"};

const char *cm_bill_item_name(cm_bill_item k)
{
    return (unsigned)k < CM_BILL_ITEMS ? names[k] : "";
}

const char *cm_bill_unit(cm_bill_item k)
{
    return (unsigned)k < CM_BILL_ITEMS ? units[k] : "";
}
