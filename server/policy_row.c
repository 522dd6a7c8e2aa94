#include "policy_row.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cm_policy_row_read(const cm_pgres *r, int row, int col, cm_policy *out)
{
    cm_policy_init(out);
    for (int i = 0; i < CM_LIM_COUNT; i++) {
        out->has[i] = !cm_pgres_isnull(r, row, col + i);
        if (out->has[i]) out->limit[i] = strtoll(cm_pgres_get(r, row, col + i), NULL, 10);
    }
    out->block = strcmp(cm_pgres_get(r, row, col + CM_LIM_COUNT), "alert") != 0;
    cm_policy_thresh_parse(cm_pgres_get(r, row, col + CM_LIM_COUNT + 1), out);
    out->has_tree_cap = !cm_pgres_isnull(r, row, col + CM_LIM_COUNT + 2);
    if (out->has_tree_cap) out->tree_cap = strtoll(cm_pgres_get(r, row, col + CM_LIM_COUNT + 2), NULL, 10);
}

void cm_policy_row_write(const cm_policy *p, cm_policy_row *out)
{
    for (int i = 0; i < CM_LIM_COUNT; i++) {
        snprintf(out->space[i], sizeof out->space[i], "%lld", (long long)p->limit[i]);
        out->params[i] = p->has[i] ? out->space[i] : NULL;
    }
    out->params[CM_LIM_COUNT] = p->block ? "block" : "alert";
    cm_policy_thresh_text(p, out->thresholds);
    out->params[CM_LIM_COUNT + 1] = out->thresholds;
    snprintf(out->space[CM_LIM_COUNT], sizeof out->space[CM_LIM_COUNT], "%lld", (long long)p->tree_cap);
    out->params[CM_LIM_COUNT + 2] = p->has_tree_cap ? out->space[CM_LIM_COUNT] : NULL;
}
