#include "api.h"
#include "error.h"
#include "refusal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cm_api_may_act_for(const cm_ident *who, const char *address, const char *field, cm_apierr *e)
{
    char org[CM_ADDR_SEG_MAX + 1];
    if (cm_addr_org(address, org) != CM_OK)
        return cm_apierr_set(e, 400, "invalid_field", field, "not an agent address agent://ORG/ENV/NAME");
    if (strcmp(org, who->org) != 0)
        return cm_apierr_set(e, 403, "forbidden_org", field, "the agent belongs to another org than this API key");
    if (who->agent[0] && strcmp(who->agent, address) != 0)
        return cm_apierr_set(e, 403, "forbidden_agent", field, "this API key is bound to another agent");
    return CM_OK;
}

int cm_api_resolve_agent(const cm_ident *who, char agent[CM_ADDR_MAX], const char *field, cm_apierr *e)
{
    if (!agent[0]) {
        if (!who->agent[0])
            return cm_apierr_set(e, 400, "invalid_field", field,
                                 "agent is required unless the API key is bound to an agent");
        memcpy(agent, who->agent, CM_ADDR_MAX);
    }
    return cm_api_may_act_for(who, agent, field, e);
}

const char *cm_api_bound_agent(const cm_ident *who)
{
    return who->agent[0] ? who->agent : NULL;
}

int cm_api_need_admin(const cm_ident *who, cm_apierr *e)
{
    if (who->admin) return CM_OK;
    return cm_apierr_set(e, 403, "forbidden_role", NULL, "this route needs an admin API key");
}

#define STORE_DOWN "PostgreSQL is unavailable; retry"

int cm_api_store_error(cm_apierr *e)
{
    cm_apierr_set(e, 503, "store_unavailable", NULL, STORE_DOWN);
    return CM_ESTORE;
}

void cm_api_answer(cm_job *j)
{
    j->done(j);
}

void cm_api_reply(cm_job *j, int status, cm_buf *b)
{
    cm_job_reply(j, status, b);
    cm_api_answer(j);
}

void cm_api_fail(cm_job *j, const cm_apierr *e)
{
    cm_job_fail(j, e->status, e->code, e->field[0] ? e->field : NULL, e->message);
    cm_api_answer(j);
}

void cm_api_error(cm_job *j, int status, const char *code, const char *field, const char *message)
{
    cm_job_fail(j, status, code, field, message);
    cm_api_answer(j);
}

void cm_api_fail_store(cm_job *j)
{
    cm_api_error(j, 503, "store_unavailable", NULL, STORE_DOWN);
}

void cm_api_fail_statement(cm_job *j, const char *sqlstate, const char *constraint)
{
    cm_apierr e;
    if (cm_refusal_of(sqlstate ? sqlstate : "", constraint ? constraint : "", &e)) cm_api_fail(j, &e);
    else cm_api_fail_store(j);
}

void *cm_api_call_new(cm_api *api, cm_job *j, const cm_ident *who, size_t size, cm_apierr *e)
{
    cm_api_call *c = calloc(1, size);
    if (!c) {
        cm_apierr_set(e, 500, "internal", NULL, "out of memory");
        return NULL;
    }
    c->api = api;
    c->job = j;
    c->who = *who;
    return c;
}

cm_api_spend_call *cm_api_spend_call_new(cm_api *api, cm_job *j, const cm_ident *who, cm_window window, int64_t at,
                                         cm_apierr *e)
{
    cm_api_spend_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return NULL;
    cm_window_bounds(window, at, &c->from, &c->to);
    c->step = cm_window_bucket(window) == CM_WIN_HOUR ? 3600 : 86400;
    c->grain = "h";
    /* Hours before this may be folded into days: a window that reaches
     * back past it is answered in days, which are exact either way. */
    if (c->from < cm_fold_horizon(api->fold, j->now)) {
        if (window == CM_WIN_HOUR) {
            free(c);
            cm_apierr_set(e, 400, "hours_folded", "at",
                          "this hour is folded into its day (rollup-hours-days): ask for window=day");
            return NULL;
        }
        c->step = 86400;
        c->grain = "d";
    }
    snprintf(c->from_s, sizeof c->from_s, "%lld", (long long)c->from);
    snprintf(c->to_s, sizeof c->to_s, "%lld", (long long)c->to);
    snprintf(c->step_s, sizeof c->step_s, "%lld", (long long)c->step);
    return c;
}

void cm_api_window_json(cm_buf *b, cm_window window, int64_t from, int64_t to, int64_t step)
{
    cm_api_jfield(b, "window", cm_window_name(window), 0);
    cm_buf_adds(b, ",\"from\":");
    cm_buf_add_jtime(b, from);
    cm_buf_adds(b, ",\"to\":");
    cm_buf_add_jtime(b, to);
    cm_api_jfield(b, "granularity", step == 3600 ? "hour" : "day", 0);
}

static int query_on(cm_pg_pool *pool, bool prepared, cm_api_call *c, const char *sql, int n,
                    const char *const *params, cm_pg_cb cb, cm_apierr *e)
{
    int rc = prepared ? cm_pg_query_prepared(pool, sql, n, params, cb, c) : cm_pg_query(pool, sql, n, params, cb, c);
    if (rc == CM_OK) return CM_OK;
    free(c);
    return cm_api_store_error(e);
}

int cm_api_query(void *call, const char *sql, int n, const char *const *params, cm_pg_cb cb,
                 cm_apierr *e)
{
    cm_api_call *c = call;
    return query_on(c->api->db, false, c, sql, n, params, cb, e);
}

int cm_api_read(void *call, const char *sql, int n, const char *const *params, cm_pg_cb cb, cm_apierr *e)
{
    cm_api_call *c = call;
    return query_on(c->api->read_db, true, c, sql, n, params, cb, e);
}

int cm_api_read_one_plan(void *call, const char *sql, int n, const char *const *params, cm_pg_cb cb,
                         cm_apierr *e)
{
    cm_api_call *c = call;
    return query_on(c->api->spend_db, true, c, sql, n, params, cb, e);
}

cm_job *cm_api_take(void *call, int rc)
{
    cm_api_call *c = call;
    cm_job *j = c->job;
    free(c);
    if (rc == CM_OK) return j;
    cm_api_fail_store(j);
    return NULL;
}

void cm_api_jfield(cm_buf *b, const char *name, const char *value, int first)
{
    cm_buf_adds(b, first ? "\"" : ",\"");
    cm_buf_adds(b, name);
    cm_buf_adds(b, "\":");
    cm_buf_add_jstr(b, value);
}
