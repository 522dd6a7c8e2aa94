/* api_intents.c - intent admission: an agent asks to start an intent; Redis
 * checks the policies of every scope it counts in (its agent, run,
 * workflow, customer, environment and org: budget.h) and the agent's kill
 * flag, and counts the intent atomically (ADMIT), PostgreSQL records it,
 * and the answer is kept for repeats of the Idempotency-Key. */
#include "api_routes.h"
#include "error.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    cm_api_call base;
    cm_hot_admission adm;  /* its agent, levels, windows and Idempotency-Key */
    cm_scope scopes[CM_SCOPE_KINDS]; /* the levels, narrowest first */
    char tags[CM_SCOPE_KINDS][CM_ADDR_MAX];
    const char *tagv[CM_SCOPE_KINDS];
    bool counted;          /* ADMIT counted it (and reserved its Idempotency-Key) */
} admit_call;

static void breach_events(admit_call *c, const cm_hot_admit_result *r)
{
    for (int l = 0; l < r->nlevels; l++)
        for (int i = 0; i < CM_LIM_COUNT; i++) {
            if (!(r->level[l].newly & (1u << i))) continue;
            cm_buf d;
            cm_buf_init(&d);
            cm_budget_mark_json(&c->scopes[l], i, r->level[l].limit[i], r->level[l].current[i], 0, &d);
            char *details = cm_buf_take(&d, NULL);
            if (details)
                cm_notify_event(c->base.api->notify, c->base.who.org, c->base.job->req.intent.body.agent,
                                "policy_breached", details, true, NULL, NULL);
            free(details);
        }
}

/* Of the limits breached at blocking levels, the one the 429 names: the
 * one whose window ends last (the refusal lasts until every breached
 * window has ended), on ties the narrower scope, then the lower limit.
 * Returns its level, or -1; *lim and *retry_after are set with it. */
static int binding_level(const cm_hot_admit_result *r, int64_t now, int *lim, int64_t *retry_after)
{
    int best = -1;
    for (int l = 0; l < r->nlevels; l++) {
        int64_t retry = 0;
        int i = r->level[l].blocks ? cm_policy_binding(r->level[l].breached, now, &retry) : -1;
        if (i < 0 || (best >= 0 && retry <= *retry_after)) continue;
        best = l;
        *lim = i;
        *retry_after = retry;
    }
    return best;
}

/* Answers with the reply already set on the job, keeping it for repeats
 * of the Idempotency-Key. */
static void finish(admit_call *c)
{
    cm_job *j = c->base.job;
    cm_hot_remember(c->base.api->hot, &c->adm, j->status, j->retry_after, j->body ? j->body : "");
    free(c);
    cm_api_answer(j);
}

static void fail_plain(admit_call *c, int status, const char *code, const char *field, const char *msg)
{
    cm_job *j = c->base.job;
    free(c);
    cm_api_error(j, status, code, field, msg);
}


/* prev: the intent id's earlier owner, when it was already recorded. */
static void on_intent_recorded(void *arg, int rc, const char *prev, const char *sqlstate, const char *constraint)
{
    admit_call *c = arg;
    cm_job *j = c->base.job;
    const cm_intentreq *in = &j->req.intent.body;
    if (rc != CM_OK || prev) {
        /* Not recorded now, so not admitted now: give the slot back
         * (admitted unchecked, fail open, Redis counted nothing). */
        if (c->counted) cm_hot_unadmit(c->base.api->hot, &c->adm);
    }
    if (rc != CM_OK) {
        free(c);
        cm_api_fail_statement(j, sqlstate, constraint);
        return;
    }
    if (prev && strcmp(prev, in->agent) != 0) {
        free(c);
        cm_api_error(j, 409, "intent_id_in_use", j->req.intent.axme ? "correlation_id" : "intent_id",
                     "another agent of this org already has an intent with this id");
        return;
    }
    /* Counted on a primary a failover has since replaced: count it on this one. */
    if (c->counted && !prev) cm_hot_recorded(c->base.api->hot, &c->adm);
    /* New, or a repeat of this agent's own intent: the same answer, and it
     * counts once. */
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{");
    cm_api_jfield(&b, "intent_id", in->intent_id, 1);
    cm_api_jfield(&b, "agent", in->agent, 0);
    if (in->estimated_cost > 0) {
        cm_buf_adds(&b, ",\"reserved_usd\":");
        cm_buf_add_money(&b, in->estimated_cost);
    }
    cm_buf_adds(&b, "}");
    cm_job_reply(j, 201, &b);
    finish(c);
}

/* Records the intent (group-committed, intent_log.h) unless its id is
 * already the org's. */
static void record_intent(admit_call *c)
{
    const cm_req_intent *q = &c->base.job->req.intent;
    cm_intent_rec r = {.agent = q->body.agent,
                       .org = c->base.who.org,
                       .intent_id = q->body.intent_id,
                       .intent_type = q->body.intent_type,
                       .idem_key = q->idem_key,
                       .run_id = q->body.run_id,
                       .session_id = q->body.session_id,
                       .workflow = q->body.workflow,
                       .customer = q->body.customer,
                       .at = c->base.job->now,
                       .estimate = c->adm.estimate,
                       .reserved_until = c->adm.deadline};
    if (cm_intent_log_record(c->base.api->intents, &r, on_intent_recorded, c) != CM_OK)
        on_intent_recorded(c, CM_ESTORE, NULL, "", "");
}

static void unavailable(admit_call *c, const char *why)
{
    if (c->base.api->fail_open) {
        cm_log(CM_LOG_WARN, "event=admission_unchecked reason=%s", why);
        record_intent(c);
        return;
    }
    fail_plain(c, 503, "store_unavailable", NULL, "intent admission is unavailable (Redis); retry");
}

static void on_admit(void *arg, int rc, const cm_hot_admit_result *r)
{
    admit_call *c = arg;
    cm_job *j = c->base.job;
    if (rc != CM_OK) {
        unavailable(c, "redis_error");
        return;
    }
    switch (r->code) {
    case CM_HOT_REBUILDING:
        unavailable(c, "redis_rebuilding");
        return;
    case CM_HOT_IN_FLIGHT:
        fail_plain(c, 409, "idempotency_key_in_use", "Idempotency-Key", "a request with this key is still in flight");
        return;
    case CM_HOT_REPEAT: {
        cm_buf b;
        cm_buf_init(&b);
        cm_buf_adds(&b, r->answer.body);
        j->retry_after = r->answer.retry_after;
        free(c);
        cm_api_reply(j, r->answer.status, &b);
        return;
    }
    case CM_HOT_KILLED:
        cm_job_fail(j, 403, "agent_killed", NULL, "this agent is killed; an admin can resume it");
        finish(c);
        return;
    case CM_HOT_ADMITTED:
    case CM_HOT_REFUSED:
        break;
    }
    breach_events(c, r);
    if (r->code == CM_HOT_ADMITTED) {
        c->counted = true;
        record_intent(c);
        return;
    }
    int64_t retry = 0;
    int lim = 0, l = binding_level(r, j->now, &lim, &retry);
    if (l < 0) l = 0; /* REFUSED names a blocking breach; never reached */
    const cm_hot_level *v = &r->level[l];
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{\"error\":{\"code\":\"cost_policy_breached\",\"message\":");
    char msg[200];
    snprintf(msg, sizeof msg, "the %s's %s is reached; new intents are refused until the window ends",
             cm_scope_name(c->scopes[l].kind), cm_limit_name(lim));
    cm_buf_add_jstr(&b, msg);
    cm_buf_adds(&b, ",");
    cm_budget_scope_json(&c->scopes[l], &b);
    cm_buf_adds(&b, ",");
    cm_api_jfield(&b, "limit", cm_limit_name(lim), 1);
    cm_buf_adds(&b, ",\"limit_value\":");
    cm_policy_value_json(lim, v->limit[lim], &b);
    cm_buf_adds(&b, ",\"current\":");
    cm_policy_value_json(lim, v->current[lim], &b);
    cm_buf_addf(&b, ",\"retry_after_s\":%lld", (long long)retry);
    /* The binding scope's burn over the last hour, and when each of its
     * cost limits runs out at that pace (forecast.h). */
    cm_forecast f = {.burn = cm_forecast_burn(v->this_hour, v->prev_hour, j->now)};
    for (int i = CM_LIM_COST_HOUR; i < CM_LIM_COUNT; i++) {
        f.has[i] = v->limit[i] > 0 || (v->breached & (1u << i));
        f.limit[i] = v->limit[i];
        f.current[i] = v->current[i];
    }
    cm_buf_adds(&b, ",\"forecast\":");
    cm_forecast_json(&f, j->now, &b);
    cm_buf_adds(&b, "}}");
    cm_job_reply(j, 429, &b);
    j->retry_after = (long)retry;
    finish(c);
}

/* The id of an intent the client did not name. With an Idempotency-Key it
 * follows from the agent and the key, so that a retry whose first attempt
 * was recorded but never answered (its replica killed in between) finds
 * that id in the intents table and counts once; else it is random. */
static int new_intent_id(const cm_req_intent *q, char out[CM_ID_MAX + 1])
{
    char hex[17];
    if (!q->idem_key[0]) {
        if (cm_auth_random_hex(hex, 8) != CM_OK) return CM_EIO;
    } else {
        cm_buf b;
        cm_buf_init(&b);
        cm_buf_addf(&b, "%zu:%s%s", strlen(q->body.agent), q->body.agent, q->idem_key);
        unsigned char h[CM_KEY_HASH_LEN];
        int rc = b.failed ? CM_ENOMEM : cm_auth_hash(b.data, b.len, h);
        cm_buf_free(&b);
        if (rc != CM_OK) return rc;
        for (int i = 0; i < 8; i++) snprintf(hex + 2 * i, 3, "%02x", h[i]);
    }
    snprintf(out, CM_ID_MAX + 1, "int_%s", hex);
    return CM_OK;
}

int cm_api_intent(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    cm_req_intent *q = &j->req.intent;
    if (cm_api_resolve_agent(who, q->body.agent, q->axme ? "to_agent" : "agent", e) != CM_OK)
        return CM_EFORBIDDEN;
    bool client_id = q->body.intent_id[0] != '\0';
    if (!client_id && new_intent_id(q, q->body.intent_id) != CM_OK)
        return cm_apierr_set(e, 500, "internal", NULL, "could not generate an intent id");
    admit_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    c->adm.agent = q->body.agent;
    int n = cm_budget_scopes(q->body.agent, q->body.run_id, q->body.workflow, q->body.customer, c->scopes);
    for (int l = 0; l < n; l++) {
        cm_budget_tag(who->org, &c->scopes[l], c->tags[l]);
        c->tagv[l] = c->tags[l];
    }
    c->adm.tags = c->tagv;
    c->adm.ntags = n;
    c->adm.org = c->base.who.org; /* the call's copy: who is gone once this returns */
    c->adm.intent_id = q->body.intent_id;
    c->adm.estimate = q->body.estimated_cost;
    c->adm.deadline = j->now + api->reservation_ttl_s;
    cm_policy_window_starts(j->now, c->adm.starts);
    /* A client-given intent_id without an Idempotency-Key stands in for
     * one: a retried intent gets the same answer and counts once. */
    c->adm.by_intent_id = !q->idem_key[0] && client_id;
    c->adm.idem_key = c->adm.by_intent_id ? q->body.intent_id : q->idem_key;
    c->adm.generation = cm_hot_generation(api->hot);
    if (cm_hot_admit(api->hot, &c->adm, on_admit, c) != CM_OK) unavailable(c, "redis_down");
    return CM_OK;
}

/* ---- ending an intent: what is left of its reservation is released ---- */

static void on_ended(void *arg, int rc, int found, const cm_hot_released *r, int n)
{
    cm_api_call *c = arg;
    cm_job *j = c->job;
    free(c);
    if (rc != CM_OK) {
        cm_api_error(j, 503, "store_unavailable", NULL, "Redis did not answer; retry");
        return;
    }
    /* Another agent's intent is not this key's to see: the same 404. */
    if (found != 1 || n < 1) {
        cm_api_error(j, 404, "reservation_not_found", NULL,
                     "this intent holds no reservation: none was made, it ended, or it expired");
        return;
    }
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{");
    cm_api_jfield(&b, "intent_id", r[0].intent_id, 1);
    cm_api_jfield(&b, "agent", r[0].agent, 0);
    cm_buf_adds(&b, ",\"released_usd\":");
    cm_buf_add_money(&b, r[0].left);
    cm_buf_adds(&b, "}");
    cm_api_reply(j, 200, &b);
}

/* Recorded as ended (so a Redis rebuild does not bring the reservation
 * back): now release it in Redis. */
static void on_end_recorded(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    cm_api_call *c = arg;
    cm_job *j = c->job;
    if (rc != CM_OK) {
        free(c);
        cm_api_fail_store(j);
        return;
    }
    const cm_req_intent_end *q = &j->req.intent_end;
    if (cm_hot_release(c->api->hot, c->who.org, q->intent_id, q->agent, on_ended, c) != CM_OK)
        on_ended(c, CM_ESTORE, 0, NULL, 0);
}

int cm_api_intent_end(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    cm_req_intent_end *q = &j->req.intent_end;
    /* A key bound to an agent, or a request naming one, ends only that
     * agent's intents; an unbound key any of its org's. */
    if ((q->agent[0] || who->agent[0]) && cm_api_resolve_agent(who, q->agent, "agent", e) != CM_OK)
        return CM_EFORBIDDEN;
    cm_api_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    const char *params[] = {who->org, q->intent_id, q->agent};
    return cm_api_query(c,
                        "UPDATE intents SET ended_at = now() WHERE org = $1 AND intent_id = $2"
                        " AND ($3 = '' OR address = $3) AND estimated_cost_nanos > 0 AND ended_at IS NULL",
                        3, params, on_end_recorded, e);
}
