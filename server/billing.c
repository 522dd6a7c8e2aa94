#include "billing.h"

static const char *const fields[CM_BILL_ITEMS] = {"per_run_usd", "per_step_usd", "per_compute_second_usd",
                                                  "per_outcome_usd"};
static const char *const names[CM_BILL_ITEMS] = {"runs", "steps", "compute_seconds", "outcomes"};
static const char *const units[CM_BILL_ITEMS] = {"run", "step", "second", "outcome"};

const char *cm_bill_field(cm_bill_item k)
{
    return (unsigned)k < CM_BILL_ITEMS ? fields[k] : "";
}

const char *cm_bill_item_name(cm_bill_item k)
{
    return (unsigned)k < CM_BILL_ITEMS ? names[k] : "";
}

const char *cm_bill_unit(cm_bill_item k)
{
    return (unsigned)k < CM_BILL_ITEMS ? units[k] : "";
}
