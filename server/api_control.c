/* api_control.c - controlling agents: cost policies, the kill switch, and
 * the org's webhook. Each change is recorded in PostgreSQL, then mirrored
 * into Redis (where admission reads it), then answered. */
#include "api_routes.h"
#include "error.h"
#include "policy_row.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Answers a change PostgreSQL holds but Redis did not confirm: the next
 * Redis rebuild applies it, and a retry is harmless. */
static void fail_unmirrored(cm_job *j, const char *what)
{
    cm_api_error(j, 503, "store_unavailable", NULL, what);
}

/* ---- cost policies ---- */

/* An agent's policy (cost_policies) or a scope's (scope_policies,
 * budget.h): the same body, the same answers. A policy registers its
 * agent, as a first heartbeat or intent does, so the agent is listed
 * (health "unknown") before it ever reports. Scopes are the org's: only
 * its admin keys read or change their policies. */

static bool is_agent(const cm_req_policy *q)
{
    return q->kind == CM_SCOPE_AGENT;
}

/* Who may touch this policy: an agent's as before, a scope's admins. */
static int may_touch_policy(const cm_req_policy *q, const cm_ident *who, bool write, cm_apierr *e)
{
    if ((write || !is_agent(q)) && cm_api_need_admin(who, e) != CM_OK) return CM_EFORBIDDEN;
    if (is_agent(q) && cm_api_may_act_for(who, q->address, "address_id", e) != CM_OK) return CM_EFORBIDDEN;
    return CM_OK;
}

static void policy_not_found(cm_job *j)
{
    char msg[64];
    snprintf(msg, sizeof msg, "this %s has no cost policy", cm_scope_name(j->req.policy.kind));
    cm_api_error(j, 404, "policy_not_found", NULL, msg);
}

static void on_policy_mirrored(void *arg, int rc)
{
    cm_api_call *c = arg;
    cm_job *j = c->job;
    free(c);
    if (rc != CM_OK) {
        fail_unmirrored(j, "the policy is saved but Redis did not confirm it; retry");
    } else if (j->op == CM_OP_POLICY_DELETE) {
        j->status = 204;
        cm_api_answer(j);
    } else {
        cm_buf b;
        cm_buf_init(&b);
        cm_policy_json(&j->req.policy.policy, &b);
        cm_api_reply(j, 200, &b);
    }
}

/* Mirrors the job's policy (or its absence) into Redis, then answers. */
static void mirror_policy(cm_api_call *c)
{
    cm_job *j = c->job;
    const cm_req_policy *q = &j->req.policy;
    cm_scope s = {.kind = q->kind};
    snprintf(s.id, sizeof s.id, "%s", q->address);
    char tag[CM_ADDR_MAX];
    cm_budget_tag(c->who.org, &s, tag);
    if (cm_hot_put_policy(c->api->hot, tag, j->op == CM_OP_POLICY_DELETE ? NULL : &q->policy, on_policy_mirrored,
                          c) != CM_OK)
        on_policy_mirrored(c, CM_ESTORE);
}

static void mirror_policy_after(void *arg, int rc)
{
    (void)rc; /* a lost event is logged; the policy itself is saved */
    mirror_policy(arg);
}

static void on_policy_saved(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    cm_api_call *c = arg;
    cm_job *j = c->job;
    const cm_req_policy *q = &j->req.policy;
    if (rc != CM_OK) {
        free(c);
        cm_api_fail_statement(j, sqlstate, cm_pgres_constraint(res));
        return;
    }
    if ((j->op == CM_OP_POLICY_DELETE ? cm_pgres_affected(res) : cm_pgres_rows(res)) == 0) {
        free(c);
        policy_not_found(j);
        return;
    }
    /* The policy as saved: a PATCH merged into what was there. */
    if (j->op != CM_OP_POLICY_DELETE) cm_policy_row_read(res, 0, 0, &j->req.policy.policy);
    cm_buf d;
    cm_buf_init(&d);
    cm_buf_adds(&d, "{");
    if (!is_agent(q)) {
        cm_scope s = {.kind = q->kind};
        snprintf(s.id, sizeof s.id, "%s", q->address);
        cm_budget_scope_json(&s, &d);
        cm_buf_adds(&d, ",");
    }
    cm_buf_adds(&d, "\"policy\":");
    if (j->op == CM_OP_POLICY_DELETE) cm_buf_adds(&d, "null");
    else cm_policy_json(&j->req.policy.policy, &d);
    cm_buf_adds(&d, "}");
    char *details = cm_buf_take(&d, NULL);
    /* Answer once the event is readable, so a client that lists events
     * right after sees it. */
    if (details)
        cm_notify_event(c->api->notify, c->who.org, is_agent(q) ? q->address : NULL, "policy_changed", details,
                        false, mirror_policy_after, c);
    else mirror_policy(c);
    free(details);
}

/* CM_OP_POLICY_PUT replaces the policy; CM_OP_POLICY_PATCH changes only the
 * fields its body names (null: back to unlimited or the default), and
 * creates the policy from the defaults when there is none. */
int cm_api_policy_put(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    const cm_req_policy *q = &j->req.policy;
    if (may_touch_policy(q, who, true, e) != CM_OK) return CM_EFORBIDDEN;
    /* A tree is capped by the policy of the agent that asks for an intent
     * under it (api_intents.c), not by a scope's. */
    if (!is_agent(q) && q->policy.has_tree_cap)
        return cm_apierr_set(e, 400, "invalid_field", CM_POLICY_TREE_NAME,
                             CM_POLICY_TREE_NAME " is set on an agent's policy, not a %s's", cm_scope_name(q->kind));
    cm_api_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    cm_policy_row row;
    cm_policy_row_write(&q->policy, &row);
    char set[CM_POLICY_ROW_NCOLS + 1];
    for (int i = 0; i < CM_POLICY_ROW_NCOLS; i++)
        set[i] = j->op == CM_OP_POLICY_PUT || (q->present & (1u << i)) ? '1' : '0';
    set[CM_POLICY_ROW_NCOLS] = '\0';
    if (is_agent(q)) {
        const char *params[3 + CM_POLICY_ROW_NCOLS] = {q->address, who->org};
        memcpy(params + 2, row.params, sizeof row.params);
        params[2 + CM_POLICY_ROW_NCOLS] = set;
        return cm_api_query(c,
                            "WITH reg AS (INSERT INTO agents (address, org) VALUES ($1, $2)"
                            " ON CONFLICT (address) DO NOTHING)"
                            " INSERT INTO cost_policies AS c (address, org, " CM_POLICY_ROW_COLS ")"
                            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (address) DO UPDATE SET"
                            CM_POLICY_ROW_SET("$11") ", updated_at = now() RETURNING " CM_POLICY_ROW_COLS,
                            3 + CM_POLICY_ROW_NCOLS, params, on_policy_saved, e);
    }
    const char *params[4 + CM_POLICY_ROW_NCOLS] = {who->org, cm_scope_name(q->kind), q->address};
    memcpy(params + 3, row.params, sizeof row.params);
    params[3 + CM_POLICY_ROW_NCOLS] = set;
    return cm_api_query(c,
                        "INSERT INTO scope_policies AS c (org, kind, scope, " CM_POLICY_ROW_COLS ")"
                        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (org, kind, scope) DO UPDATE"
                        " SET" CM_POLICY_ROW_SET("$12") ", updated_at = now() RETURNING " CM_POLICY_ROW_COLS,
                        4 + CM_POLICY_ROW_NCOLS, params, on_policy_saved, e);
}

int cm_api_policy_delete(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    const cm_req_policy *q = &j->req.policy;
    if (may_touch_policy(q, who, true, e) != CM_OK) return CM_EFORBIDDEN;
    cm_api_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    if (is_agent(q)) {
        const char *params[] = {q->address};
        return cm_api_query(c, "DELETE FROM cost_policies WHERE address = $1", 1, params, on_policy_saved, e);
    }
    const char *params[] = {who->org, cm_scope_name(q->kind), q->address};
    return cm_api_query(c, "DELETE FROM scope_policies WHERE org = $1 AND kind = $2 AND scope = $3", 3, params,
                        on_policy_saved, e);
}

static void on_policy_get(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = cm_api_take(arg, rc);
    if (!j) return;
    if (cm_pgres_rows(res) == 0) {
        policy_not_found(j);
        return;
    }
    cm_policy pol;
    cm_policy_row_read(res, 0, 0, &pol);
    cm_buf b;
    cm_buf_init(&b);
    cm_policy_json(&pol, &b);
    cm_api_reply(j, 200, &b);
}

int cm_api_policy_get(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    const cm_req_policy *q = &j->req.policy;
    if (may_touch_policy(q, who, false, e) != CM_OK) return CM_EFORBIDDEN;
    cm_api_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    if (is_agent(q)) {
        const char *params[] = {q->address};
        return cm_api_query(c, "SELECT " CM_POLICY_ROW_COLS " FROM cost_policies WHERE address = $1", 1, params,
                            on_policy_get, e);
    }
    const char *params[] = {who->org, cm_scope_name(q->kind), q->address};
    return cm_api_query(c,
                        "SELECT " CM_POLICY_ROW_COLS " FROM scope_policies WHERE org = $1 AND kind = $2"
                        " AND scope = $3",
                        3, params, on_policy_get, e);
}

/* ---- kill switch ---- */

static void on_kill_state(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = cm_api_take(arg, rc);
    if (!j) return;
    if (cm_pgres_rows(res) == 0) {
        cm_api_error(j, 404, "agent_not_found", NULL, "no such agent: it registers with its first heartbeat");
        return;
    }
    /* The state as GET shows it: a resumed agent its policy blocks is
     * "blocked", not "active". */
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{");
    cm_api_jfield(&b, "address", j->req.agent.address, 1);
    cm_api_jfield(&b, "state", cm_pgres_get(res, 0, 3), 0);
    cm_buf_adds(&b, ",\"killed\":");
    cm_buf_adds(&b, strcmp(cm_pgres_get(res, 0, 3), "killed") == 0 ? "true}" : "false}");
    cm_api_reply(j, 200, &b);
}

static void on_kill_mirrored(void *arg, int rc)
{
    cm_api_call *c = arg;
    cm_job *j = c->job;
    if (rc != CM_OK) {
        free(c);
        fail_unmirrored(j, "saved, but Redis did not confirm it; retry");
        return;
    }
    char space[4][24];
    const char *params[6];
    cm_api_agent_view_params(j, &c->who, j->req.agent.address, space, params);
    cm_apierr e;
    if (cm_api_query(c, cm_api_agent_view_sql, 6, params, on_kill_state, &e) != CM_OK) cm_api_fail(j, &e);
}

/* After the event is recorded: the kill flag into Redis, then the answer. */
static void mirror_kill(void *arg, int rc)
{
    (void)rc;
    cm_api_call *c = arg;
    cm_job *j = c->job;
    if (cm_hot_put_killed(c->api->hot, j->req.agent.address, j->op == CM_OP_KILL, on_kill_mirrored, c) != CM_OK)
        on_kill_mirrored(c, CM_ESTORE);
}

static void on_killed(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_api_call *c = arg;
    cm_job *j = c->job;
    if (rc != CM_OK || cm_pgres_rows(res) == 0) {
        cm_apierr e;
        if (rc != CM_OK) cm_api_store_error(&e);
        else cm_apierr_set(&e, 404, "agent_not_found", NULL, "no such agent: it registers with its first heartbeat");
        free(c);
        cm_api_fail(j, &e);
        return;
    }
    /* Killing a killed agent, or resuming an active one, changes nothing
     * and records nothing. */
    bool was_killed = strcmp(cm_pgres_get(res, 0, 0), "t") == 0;
    if (was_killed == (j->op == CM_OP_KILL)) {
        mirror_kill(c, CM_OK);
        return;
    }
    cm_notify_event(c->api->notify, c->who.org, j->req.agent.address,
                    j->op == CM_OP_KILL ? "agent_killed" : "agent_resumed", "{}", true, mirror_kill, c);
}

/* CM_OP_KILL and CM_OP_RESUME. */
int cm_api_kill(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    const char *address = j->req.agent.address;
    if (cm_api_need_admin(who, e) != CM_OK || cm_api_may_act_for(who, address, "address_id", e) != CM_OK)
        return CM_EFORBIDDEN;
    cm_api_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    const char *params[] = {address, j->op == CM_OP_KILL ? "true" : "false"};
    /* FOR UPDATE reads the flag as the last committed change left it, so
     * of two racing kills only one sees it change. */
    return cm_api_query(c,
                        "UPDATE agents a SET killed = $2::boolean FROM (SELECT address, killed FROM agents"
                        " WHERE address = $1 FOR UPDATE) old WHERE a.address = old.address RETURNING old.killed",
                        2, params, on_killed, e);
}

/* ---- webhook ---- */

/* The secret is write-only: no reply shows it. */
static void webhook_head(cm_buf *b, const char *url)
{
    cm_buf_adds(b, "{");
    cm_api_jfield(b, "url", url, 1);
    cm_buf_adds(b, ",\"secret_set\":true");
}

static void on_webhook_put(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    cm_job *j = cm_api_take(arg, rc);
    if (!j) return;
    cm_buf b;
    cm_buf_init(&b);
    webhook_head(&b, j->req.webhook_put.url);
    cm_buf_adds(&b, "}");
    cm_api_reply(j, 200, &b);
}

int cm_api_webhook_put(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    if (cm_api_need_admin(who, e) != CM_OK) return CM_EFORBIDDEN;
    cm_api_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    const char *params[] = {who->org, j->req.webhook_put.url, j->req.webhook_put.secret};
    return cm_api_query(c,
                        "INSERT INTO webhooks (org, url, secret) VALUES ($1, $2, $3) ON CONFLICT (org) DO UPDATE"
                        " SET url = excluded.url, secret = excluded.secret, updated_at = now()",
                        3, params, on_webhook_put, e);
}

/* A time column as JSON: null when NULL. */
static void add_time(cm_buf *b, const cm_pgres *res, int row, int col)
{
    if (cm_pgres_isnull(res, row, col)) cm_buf_adds(b, "null");
    else cm_buf_add_jtime(b, strtoll(cm_pgres_get(res, row, col), NULL, 10));
}

static void on_webhook_get(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = cm_api_take(arg, rc);
    if (!j) return;
    if (cm_pgres_rows(res) == 0) {
        cm_api_error(j, 404, "webhook_not_found", NULL, "this org has no webhook");
        return;
    }
    cm_buf b;
    cm_buf_init(&b);
    webhook_head(&b, cm_pgres_get(res, 0, 0));
    cm_buf_adds(&b, ",\"deliveries\":[");
    /* One row with NULL delivery columns when there is none yet. */
    for (int i = 0; i < cm_pgres_rows(res) && !cm_pgres_isnull(res, i, 1); i++) {
        if (i) cm_buf_adds(&b, ",");
        cm_buf_addf(&b, "{\"event_id\":%s,", cm_pgres_get(res, i, 1));
        cm_api_jfield(&b, "event_type", cm_pgres_get(res, i, 2), 1);
        cm_api_jfield(&b, "status", cm_pgres_get(res, i, 3), 0);
        cm_buf_addf(&b, ",\"attempts\":%s,\"last_status\":%s,\"last_error\":", cm_pgres_get(res, i, 4),
                    cm_pgres_isnull(res, i, 5) ? "null" : cm_pgres_get(res, i, 5));
        if (cm_pgres_isnull(res, i, 6)) cm_buf_adds(&b, "null");
        else cm_buf_add_jstr(&b, cm_pgres_get(res, i, 6));
        cm_buf_adds(&b, ",\"created_at\":");
        add_time(&b, res, i, 7);
        cm_buf_adds(&b, ",\"last_attempt_at\":");
        add_time(&b, res, i, 8);
        cm_buf_adds(&b, ",\"next_attempt_at\":");
        add_time(&b, res, i, 9);
        cm_buf_adds(&b, "}");
    }
    cm_buf_adds(&b, "]}");
    cm_api_reply(j, 200, &b);
}

int cm_api_webhook_get(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    if (cm_api_need_admin(who, e) != CM_OK) return CM_EFORBIDDEN;
    cm_api_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    const char *params[] = {who->org};
    /* The 20 newest deliveries; next_attempt_at is unknown while an attempt
     * runs (a lease is held). */
    return cm_api_query(c,
                        "SELECT w.url, d.event_id, e.event_type, d.status, d.attempts, d.last_status, d.last_error,"
                        " " CM_PG_EPOCH("d.created_at") ", " CM_PG_EPOCH("d.last_attempt_at") ","
                        " CASE WHEN d.status = 'pending' AND d.lease_until IS NULL"
                        "  THEN " CM_PG_EPOCH("d.due_at") " END"
                        " FROM webhooks w LEFT JOIN LATERAL (SELECT * FROM webhook_deliveries x WHERE x.org = w.org"
                        "  ORDER BY x.id DESC LIMIT 20) d ON true"
                        " LEFT JOIN events e ON e.id = d.event_id WHERE w.org = $1 ORDER BY d.id DESC",
                        1, params, on_webhook_get, e);
}

static void on_webhook_deleted(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = cm_api_take(arg, rc);
    if (!j) return;
    if (cm_pgres_affected(res) == 0) {
        cm_api_error(j, 404, "webhook_not_found", NULL, "this org has no webhook");
        return;
    }
    j->status = 204;
    cm_api_answer(j);
}

int cm_api_webhook_delete(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    if (cm_api_need_admin(who, e) != CM_OK) return CM_EFORBIDDEN;
    cm_api_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    const char *params[] = {who->org};
    /* A delivery still in flight finds its row gone and writes nothing. */
    return cm_api_query(c,
                        "WITH d AS (DELETE FROM webhook_deliveries WHERE org = $1)"
                        " DELETE FROM webhooks WHERE org = $1",
                        1, params, on_webhook_deleted, e);
}
