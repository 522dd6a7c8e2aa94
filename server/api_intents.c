/* api_intents.c - intent admission: an agent asks to start an intent; Redis
 * checks the policies of every scope it counts in (its agent, run,
 * workflow, customer, environment and org: budget.h) and the agent's kill
 * flag, and counts the intent atomically (ADMIT), PostgreSQL records it,
 * and the answer is kept for repeats of the Idempotency-Key.
 *
 * An intent under a parent joins a delegation tree. When the agent's policy
 * caps trees, the tree's root and cost are read from PostgreSQL first
 * (rollup + tail: every heartbeat answered 202 before the read counts) and
 * handed to ADMIT as one more level, "intent_tree", which keeps the largest
 * cost read for the root and refuses once it reaches the cap, in the same
 * script as every other limit. */
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
    char root[CM_ID_MAX + 1]; /* its tree's root, when the policy caps trees */
    char tree_cost[48], tree_cap[24];
} admit_call;

/* The details of a tree cap's policy_breached event and 429, shaped like a
 * scope's (the tree is the level "intent_tree", its id the root): the cap,
 * the cost that reached it, and the root again as root_intent_id. */
static void tree_mark_json(const admit_call *c, const cm_hot_admit_result *r, cm_buf *b)
{
    cm_api_jfield(b, "scope", "intent_tree", 1);
    cm_api_jfield(b, "scope_id", c->root, 0);
    cm_buf_adds(b, ",\"limit\":\"" CM_POLICY_TREE_NAME "\",\"limit_value\":");
    cm_buf_add_money_text(b, c->tree_cap);
    cm_buf_adds(b, ",\"current\":");
    cm_buf_add_money_text(b, r->tree_cost);
    cm_buf_adds(b, ",");
    cm_api_jfield(b, "root_intent_id", c->root, 1);
}

static void breach_events(admit_call *c, const cm_hot_admit_result *r)
{
    if (r->tree_newly) {
        cm_buf d;
        cm_buf_init(&d);
        cm_buf_adds(&d, "{");
        tree_mark_json(c, r, &d);
        cm_buf_adds(&d, "}");
        char *details = cm_buf_take(&d, NULL);
        if (details)
            cm_notify_event(c->base.api->notify, c->base.who.org, c->base.job->req.intent.body.agent,
                            "policy_breached", details, true, NULL, NULL);
        free(details);
    }
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
                       .parent_intent_id = q->body.parent_intent_id,
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
    /* A refused tree is named before any window's limit: a tree's cost
     * never goes down, so no window ends its refusal (no Retry-After); a
     * new root is a new tree. */
    if (r->code == CM_HOT_REFUSED && r->tree_reached && r->nlevels > 0 && r->level[0].blocks) {
        cm_buf b;
        cm_buf_init(&b);
        cm_buf_adds(&b, "{\"error\":{\"code\":\"cost_policy_breached\",\"message\":");
        char msg[CM_ID_MAX + 120];
        snprintf(msg, sizeof msg, "the delegation tree under root intent %s has reached the agent's %s", c->root,
                 CM_POLICY_TREE_NAME);
        cm_buf_add_jstr(&b, msg);
        cm_buf_adds(&b, ",");
        tree_mark_json(c, r, &b);
        cm_buf_adds(&b, ",\"retry_after_s\":null}}");
        cm_job_reply(j, 429, &b);
        finish(c);
        return;
    }
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

static void admit(admit_call *c)
{
    cm_hot *hot = c->base.api->hot;
    c->adm.generation = cm_hot_generation(hot);
    if (cm_hot_admit(hot, &c->adm, on_admit, c) != CM_OK) unavailable(c, "redis_down");
}

static void on_tree_read(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    admit_call *c = arg;
    if (rc != CM_OK || cm_pgres_rows(res) != 1) {
        /* Nothing counted yet: the client retries. */
        fail_plain(c, 503, "store_unavailable", NULL, "PostgreSQL is unavailable; retry");
        return;
    }
    snprintf(c->root, sizeof c->root, "%s", cm_pgres_get(res, 0, 0));
    if (!cm_pgres_isnull(res, 0, 1)) {
        snprintf(c->tree_cap, sizeof c->tree_cap, "%s", cm_pgres_get(res, 0, 1));
        snprintf(c->tree_cost, sizeof c->tree_cost, "%s", cm_pgres_get(res, 0, 2));
        c->adm.tree_root = c->root;
        c->adm.tree_cost = c->tree_cost;
        c->adm.tree_cap = c->tree_cap;
    }
    admit(c);
}

/* The root of the parent's tree and, when the agent's policy caps trees,
 * the cap and the tree's cost. */
static void read_tree(void *arg, bool ok)
{
    admit_call *c = arg;
    const cm_req_intent *q = &c->base.job->req.intent;
    const char *params[] = {c->base.who.org, q->body.parent_intent_id, q->body.agent};
    if (!ok || cm_pg_query(c->base.api->db,
                           "SELECT r.root, c.cap::text, CASE WHEN c.cap IS NOT NULL THEN"
                           " cm_intent_tree_cost($1, r.root)::text END"
                           " FROM (SELECT cm_intent_root($1, $2) AS root) r LEFT JOIN"
                           " (SELECT max_cost_per_intent_tree AS cap FROM cost_policies WHERE address = $3) c ON true",
                           3, params, on_tree_read, c) != CM_OK)
        on_tree_read(c, CM_ESTORE, NULL, "");
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
    if (!q->body.parent_intent_id[0]) {
        admit(c);
        return CM_OK;
    }
    /* The tree's cost is PostgreSQL's: with Redis as the durable point the
     * read waits for what was acknowledged before it (persist.h). */
    if (api->persist) cm_persist_wait(api->persist, read_tree, c);
    else read_tree(c, true);
    return CM_OK;
}
