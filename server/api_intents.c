/* api_intents.c - intent admission: an agent asks to start an intent; Redis
 * checks the agent's policy and kill flag and counts the intent atomically
 * (ADMIT), PostgreSQL records it, and the answer is kept for repeats of the
 * Idempotency-Key. */
#include "api_routes.h"
#include "error.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    cm_api_call base;
    int64_t win[CM_WIN3];  /* window starts of the admission */
    bool counted;          /* ADMIT counted it (and reserved its Idempotency-Key) */
    char idem[CM_ID_MAX + CM_ADDR_SEG_MAX + 8]; /* its Redis idempotency key, "" if none */
} admit_call;

static void breach_events(admit_call *c, unsigned fresh, const cm_store_reply *r, bool refused)
{
    for (int i = 0; i < CM_LIM_COUNT; i++) {
        if (!(fresh & (1u << i))) continue;
        char tmp[32];
        cm_buf d;
        cm_buf_init(&d);
        cm_buf_adds(&d, "{");
        cm_api_jfield(&d, "limit", cm_limit_name(i), 1);
        cm_buf_adds(&d, ",\"limit_value\":");
        cm_policy_value_json(i, strtoll(cm_store_reply_str(r, 8 + i, tmp, sizeof tmp), NULL, 10), &d);
        cm_buf_adds(&d, ",\"current\":");
        cm_policy_value_json(i, strtoll(cm_store_reply_str(r, 3 + i, tmp, sizeof tmp), NULL, 10), &d);
        cm_buf_adds(&d, refused ? ",\"action\":\"block\"}" : ",\"action\":\"alert\"}");
        char *details = cm_buf_take(&d, NULL);
        if (details)
            cm_notify_event(c->base.api->notify, c->base.who.org, c->base.job->req.intent.body.agent,
                            "policy_breached", details, true, NULL, NULL);
        free(details);
    }
}

/* Keeps the answer for repeats of the Idempotency-Key: "status retry body". */
static void remember(admit_call *c)
{
    cm_job *j = c->base.job;
    if (!c->idem[0]) return;
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_addf(&b, "%d %ld ", j->status, j->retry_after);
    cm_buf_adds(&b, j->body ? j->body : "");
    char *v = cm_buf_take(&b, NULL);
    if (v) cm_store_set(c->base.api->store, c->idem, v, 86400);
    free(v);
}

/* Answers with the reply already set on the job, keeping it for repeats. */
static void finish(admit_call *c)
{
    cm_job *j = c->base.job;
    remember(c);
    free(c);
    cm_api_answer(j);
}

static void fail_plain(admit_call *c, int status, const char *code, const char *field, const char *msg)
{
    cm_job *j = c->base.job;
    free(c);
    cm_api_error(j, status, code, field, msg);
}

static void undo_admission(admit_call *c)
{
    /* Admitted unchecked (fail open): Redis counted nothing to give back. */
    if (!c->counted) return;
    char key[CM_STORE_KEY_MAX];
    for (int w = 0; w < CM_WIN3; w++) {
        cm_store_key_window(c->base.job->req.intent.body.agent, CM_STORE_GRAINS[w], c->win[w], key);
        cm_store_hincrby(c->base.api->store, key, "intents", -1);
    }
    if (c->idem[0]) cm_store_del(c->base.api->store, c->idem);
}

static void on_intent_recorded(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    admit_call *c = arg;
    cm_job *j = c->base.job;
    if (rc != CM_OK) {
        /* Not recorded, so not admitted: give the slot back. */
        undo_admission(c);
        free(c);
        cm_api_fail_store(j);
        return;
    }
    const cm_intentreq *in = &j->req.intent.body;
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{");
    cm_api_jfield(&b, "intent_id", in->intent_id, 1);
    cm_api_jfield(&b, "agent", in->agent, 0);
    cm_buf_adds(&b, "}");
    cm_job_reply(j, 201, &b);
    finish(c);
}

static void record_intent(admit_call *c)
{
    cm_job *j = c->base.job;
    const cm_req_intent *q = &j->req.intent;
    char at[24];
    snprintf(at, sizeof at, "%lld", (long long)j->now);
    const char *params[] = {q->body.agent, c->base.who.org, q->body.intent_id,
                            q->body.intent_type[0] ? q->body.intent_type : NULL,
                            q->idem_key[0] ? q->idem_key : NULL, at};
    if (cm_pg_query(c->base.api->db,
                    "WITH reg AS (INSERT INTO agents (address, org) VALUES ($1, $2) ON CONFLICT (address)"
                    " DO NOTHING) INSERT INTO intents (address, org, intent_id, intent_type, idempotency_key,"
                    " admitted_at) VALUES ($1, $2, $3, $4, $5, to_timestamp($6::bigint))",
                    6, params, on_intent_recorded, c) != CM_OK)
        on_intent_recorded(c, CM_ESTORE, NULL, "");
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

static void on_admit(void *arg, int rc, const cm_store_reply *r)
{
    admit_call *c = arg;
    cm_api *api = c->base.api;
    cm_job *j = c->base.job;
    if (rc != CM_OK) {
        unavailable(c, "redis_error");
        return;
    }
    long long code = cm_store_reply_int(r, 0);
    char tmp[32];
    if (code == -1) {
        cm_ingest_rebuild(api->ingest);
        unavailable(c, "redis_rebuilding");
        return;
    }
    if (code == -3) {
        fail_plain(c, 409, "idempotency_key_in_use", "Idempotency-Key", "a request with this key is still in flight");
        return;
    }
    if (code == -2) {
        const char *stored = cm_store_reply_str(r, 1, tmp, sizeof tmp);
        char *end;
        long status = strtol(stored, &end, 10);
        long retry = strtol(end, &end, 10);
        if (*end == ' ') end++;
        cm_buf b;
        cm_buf_init(&b);
        cm_buf_adds(&b, end);
        j->retry_after = retry;
        free(c);
        cm_api_reply(j, (int)status, &b);
        return;
    }
    if (code == 2) {
        cm_job_fail(j, 403, "agent_killed", NULL, "this agent is killed; an admin can resume it");
        finish(c);
        return;
    }
    unsigned mask = (unsigned)cm_store_reply_int(r, 1), fresh = (unsigned)cm_store_reply_int(r, 2);
    breach_events(c, fresh, r, code == 0);
    if (code == 1) {
        c->counted = true;
        record_intent(c);
        return;
    }
    int64_t retry = 0;
    int lim = cm_policy_binding(mask, j->now, &retry);
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{\"error\":{\"code\":\"cost_policy_breached\",\"message\":");
    char msg[160];
    snprintf(msg, sizeof msg, "the agent's %s is reached; new intents are refused until the window ends",
             cm_limit_name(lim));
    cm_buf_add_jstr(&b, msg);
    cm_buf_adds(&b, ",");
    cm_api_jfield(&b, "limit", cm_limit_name(lim), 1);
    cm_buf_adds(&b, ",\"limit_value\":");
    cm_policy_value_json(lim, strtoll(cm_store_reply_str(r, 8 + lim, tmp, sizeof tmp), NULL, 10), &b);
    cm_buf_adds(&b, ",\"current\":");
    cm_policy_value_json(lim, strtoll(cm_store_reply_str(r, 3 + lim, tmp, sizeof tmp), NULL, 10), &b);
    cm_buf_addf(&b, ",\"retry_after_s\":%lld}}", (long long)retry);
    cm_job_reply(j, 429, &b);
    j->retry_after = (long)retry;
    finish(c);
}

int cm_api_intent(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    cm_req_intent *q = &j->req.intent;
    if (cm_api_resolve_agent(who, q->body.agent, q->axme ? "to_agent" : "agent", e) != CM_OK)
        return CM_EFORBIDDEN;
    if (!q->body.intent_id[0]) {
        char rnd[17];
        if (cm_auth_random_hex(rnd, 8) != CM_OK)
            return cm_apierr_set(e, 500, "internal", NULL, "could not generate an intent id");
        snprintf(q->body.intent_id, sizeof q->body.intent_id, "int_%s", rnd);
    }
    admit_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    char keys[6][CM_STORE_KEY_MAX], starts[CM_WIN3][24], ttls[CM_WIN3][24];
    cm_policy_window_starts(j->now, c->win);
    for (int w = 0; w < CM_WIN3; w++) {
        snprintf(starts[w], sizeof starts[w], "%lld", (long long)c->win[w]);
        snprintf(ttls[w], sizeof ttls[w], "%ld", cm_store_window_ttl(CM_STORE_GRAINS[w]));
        cm_store_key_window(q->body.agent, CM_STORE_GRAINS[w], c->win[w], keys[2 + w]);
    }
    snprintf(keys[0], sizeof keys[0], "%s", CM_STORE_EPOCH_KEY);
    cm_store_key_policy(q->body.agent, keys[1]);
    if (q->idem_key[0]) snprintf(c->idem, sizeof c->idem, "cm:i:%s:%s", who->org, q->idem_key);
    snprintf(keys[5], sizeof keys[5], "%s", c->idem[0] ? c->idem : "cm:i:-");
    const char *argv[14];
    size_t lens[14];
    for (int i = 0; i < 6; i++) argv[i] = keys[i];
    argv[6] = c->idem[0] ? "1" : "0";
    for (int w = 0; w < CM_WIN3; w++) argv[7 + w] = ttls[w];
    argv[10] = q->body.agent;
    for (int w = 0; w < CM_WIN3; w++) argv[11 + w] = starts[w];
    for (int i = 0; i < 14; i++) lens[i] = strlen(argv[i]);
    if (cm_store_eval(api->store, CM_SCRIPT_ADMIT, 6, 14, argv, lens, on_admit, c) != CM_OK)
        unavailable(c, "redis_down");
    return CM_OK;
}
