#include "budget.h"
#include "error.h"
#include "policy.h"
#include "timeutil.h"

#include <stdio.h>
#include <string.h>

static const char *const names[CM_SCOPE_KINDS] = {"agent", "run", "workflow", "customer", "env", "org"};

const char *cm_scope_name(cm_scope_kind kind)
{
    return (unsigned)kind < CM_SCOPE_KINDS ? names[kind] : "unknown";
}

int cm_scope_parse(const char *name, cm_scope_kind *kind)
{
    for (int i = 0; i < CM_SCOPE_KINDS; i++)
        if (strcmp(name, names[i]) == 0) {
            *kind = (cm_scope_kind)i;
            return CM_OK;
        }
    return CM_EINVAL;
}

static void add(cm_scope *out, int *n, cm_scope_kind kind, const char *id, size_t len)
{
    out[*n].kind = kind;
    snprintf(out[*n].id, sizeof out[*n].id, "%.*s", (int)len, id);
    (*n)++;
}

int cm_budget_scopes(const char *address, const char *run_id, const char *workflow, const char *customer,
                     cm_scope out[CM_SCOPE_KINDS])
{
    cm_addr a;
    int n = 0;
    add(out, &n, CM_SCOPE_AGENT, address, strlen(address));
    if (run_id[0]) add(out, &n, CM_SCOPE_RUN, run_id, strlen(run_id));
    if (workflow[0]) add(out, &n, CM_SCOPE_WORKFLOW, workflow, strlen(workflow));
    if (customer[0]) add(out, &n, CM_SCOPE_CUSTOMER, customer, strlen(customer));
    if (cm_addr_parse(address, strlen(address), &a) != CM_OK) return n;
    add(out, &n, CM_SCOPE_ENV, a.env, a.env_len);
    add(out, &n, CM_SCOPE_ORG, "", 0);
    return n;
}

void cm_budget_tag(const char *org, const cm_scope *s, char out[CM_ADDR_MAX])
{
    if (s->kind == CM_SCOPE_AGENT) snprintf(out, CM_ADDR_MAX, "%s", s->id);
    else snprintf(out, CM_ADDR_MAX, "s:%s:%s:%s", org, names[s->kind], s->id);
}

void cm_budget_scope_json(const cm_scope *s, cm_buf *b)
{
    cm_buf_addf(b, "\"scope\":\"%s\",\"scope_id\":", cm_scope_name(s->kind));
    if (s->kind == CM_SCOPE_ORG) cm_buf_adds(b, "null");
    else cm_buf_add_jstr(b, s->id);
}

int cm_budget_untag(const char *tag, char org[CM_ADDR_SEG_MAX + 1], cm_scope *out)
{
    if (strncmp(tag, "s:", 2) != 0) return CM_EINVAL;
    const char *o = tag + 2, *k = strchr(o, ':');
    const char *id = k ? strchr(k + 1, ':') : NULL;
    if (!id || (size_t)(k - o) > CM_ADDR_SEG_MAX || strlen(id + 1) >= sizeof out->id) return CM_EINVAL;
    char kind[16];
    snprintf(kind, sizeof kind, "%.*s", (int)(id - k - 1), k + 1);
    if (cm_scope_parse(kind, &out->kind) != CM_OK || out->kind == CM_SCOPE_AGENT) return CM_EINVAL;
    snprintf(org, CM_ADDR_SEG_MAX + 1, "%.*s", (int)(k - o), o);
    snprintf(out->id, sizeof out->id, "%s", id + 1);
    return CM_OK;
}

void cm_budget_mark_json(const cm_scope *s, int lim, int64_t limit_value, int64_t current, int64_t fraction,
                         cm_buf *b)
{
    if (s->kind == CM_SCOPE_AGENT) {
        cm_policy_mark_json(lim, limit_value, current, fraction, b);
        return;
    }
    cm_buf mark;
    cm_buf_init(&mark);
    cm_policy_mark_json(lim, limit_value, current, fraction, &mark);
    cm_buf_adds(b, "{");
    cm_budget_scope_json(s, b);
    cm_buf_adds(b, ",");
    if (!mark.failed && mark.len > 1) cm_buf_add(b, mark.data + 1, mark.len - 1);
    else b->failed = 1;
    cm_buf_free(&mark);
}

const char *cm_budget_mark_event(const cm_scope *s, int lim, int64_t limit_value, int64_t current,
                                 int64_t fraction, const cm_forecast *f, int64_t now, cm_buf *b)
{
    cm_budget_mark_json(s, lim, limit_value, current, fraction, b);
    if (fraction > 0) return "threshold_crossed";
    if (fraction == 0) return "policy_breached";
    int64_t from, to, at;
    cm_window_bounds(cm_limit_window(lim), now, &from, &to);
    if (b->len > 0 && !b->failed) b->len--; /* reopen the object */
    cm_buf_adds(b, ",\"burn_rate_usd_per_hour\":");
    cm_buf_add_money(b, f->burn);
    cm_buf_adds(b, ",\"predicted_at\":");
    if (cm_forecast_exhaustion(current, limit_value, f->burn, now, to, &at)) cm_buf_add_jtime(b, at);
    else cm_buf_adds(b, "null");
    cm_buf_adds(b, "}");
    return "exhaustion_predicted";
}
