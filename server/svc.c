#include "svc.h"
#include "address.h"
#include "auth.h"
#include "error.h"
#include "log.h"
#include "money.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_SLOTS 1024

/* Who a key is. */
typedef struct {
    char id[48];
    char org[CM_ADDR_SEG_MAX + 1];
    bool admin;
    char agent[CM_ADDR_MAX]; /* bound address or "" */
} ident;

typedef struct {
    unsigned char hash[CM_KEY_HASH_LEN];
    uint64_t expires_ms; /* 0: empty slot */
    bool found;          /* false: a cached "no such key" */
    ident who;
} cache_slot;

struct cm_svc {
    cm_pg_pool *reader;
    cm_ingest *ingest;
    cm_hot *hot;
    cm_notify *notify;
    uv_loop_t *loop;
    int ttl_ms;
    bool fail_open;
    cache_slot cache[CACHE_SLOTS];
};

/* A job waiting for a query, with the identity that asked. */
typedef struct {
    cm_svc *svc;
    cm_job *job;
    ident who;
    char key[CM_KEY_LEN + 1]; /* a created key, shown once */
    char key_id[32];
    int64_t from, to, step;
    cm_hot_admission adm;  /* an intent's: its agent, windows and Idempotency-Key */
    bool counted;          /* ADMIT counted it (and reserved its Idempotency-Key) */
} pending;

int cm_svc_new(const cm_svc_deps *d, cm_svc **out)
{
    cm_svc *s = calloc(1, sizeof *s);
    if (!s) return CM_ENOMEM;
    s->reader = d->reader;
    s->ingest = d->ingest;
    s->hot = d->hot;
    s->notify = d->notify;
    s->loop = d->loop;
    s->ttl_ms = d->key_cache_ms;
    s->fail_open = d->fail_open;
    *out = s;
    return CM_OK;
}

void cm_svc_free(cm_svc *s)
{
    free(s);
}

static cache_slot *slot_of(cm_svc *s, const unsigned char *hash)
{
    unsigned idx = ((unsigned)hash[0] | (unsigned)hash[1] << 8) % CACHE_SLOTS;
    return &s->cache[idx];
}

static void fail(cm_job *j, int status, const char *code, const char *field, const char *msg)
{
    cm_job_fail(j, status, code, field, msg);
    j->done(j);
}

static void fail_store(cm_job *j)
{
    fail(j, 503, "store_unavailable", NULL, "PostgreSQL is unavailable; retry");
}

static pending *pending_new(cm_svc *s, cm_job *j, const ident *who)
{
    pending *p = calloc(1, sizeof *p);
    if (!p) {
        fail(j, 500, "internal", NULL, "out of memory");
        return NULL;
    }
    p->svc = s;
    p->job = j;
    p->who = *who;
    return p;
}

/* The common start of a query callback: frees p and hands back its job,
 * or answers 503 and returns NULL when the query failed. */
static cm_job *take(void *arg, int rc)
{
    pending *p = arg;
    cm_job *j = p->job;
    free(p);
    if (rc == CM_OK) return j;
    fail_store(j);
    return NULL;
}

/* Appends ,"name":"value" (the leading comma unless first). */
static void jfield(cm_buf *b, const char *name, const char *value, int first)
{
    cm_buf_adds(b, first ? "\"" : ",\"");
    cm_buf_adds(b, name);
    cm_buf_adds(b, "\":");
    cm_buf_add_jstr(b, value);
}

/* Runs sql; on failure to queue, answers 503 and frees p. */
static void query(pending *p, const char *sql, int n, const char *const *params, cm_pg_cb cb)
{
    if (cm_pg_query(p->svc->reader, sql, n, params, cb, p) != CM_OK) {
        fail_store(p->job);
        free(p);
    }
}

/* May `who` act for `address`? Answers 403 itself when not. */
static int may_act_for(cm_job *j, const ident *who, const char *address, const char *field)
{
    char org[CM_ADDR_SEG_MAX + 1];
    if (cm_addr_org(address, org) != CM_OK) {
        fail(j, 400, "invalid_field", field, "not an agent address agent://ORG/ENV/NAME");
        return CM_EINVAL;
    }
    if (strcmp(org, who->org) != 0) {
        fail(j, 403, "forbidden_org", field, "the agent belongs to another org than this API key");
        return CM_EFORBIDDEN;
    }
    if (who->agent[0] && strcmp(who->agent, address) != 0) {
        fail(j, 403, "forbidden_agent", field, "this API key is bound to another agent");
        return CM_EFORBIDDEN;
    }
    return CM_OK;
}

/* The agent a request names, or the key's bound agent when it names none;
 * then may_act_for. Answers the job itself (400 or 403) when not. */
static int resolve_agent(cm_job *j, const ident *who, char agent[CM_ADDR_MAX], const char *field)
{
    if (!agent[0]) {
        if (!who->agent[0]) {
            fail(j, 400, "invalid_field", field, "agent is required unless the API key is bound to an agent");
            return CM_EINVAL;
        }
        memcpy(agent, who->agent, CM_ADDR_MAX);
    }
    return may_act_for(j, who, agent, field);
}

static int need_admin(cm_job *j, const ident *who)
{
    if (who->admin) return CM_OK;
    fail(j, 403, "forbidden_role", NULL, "this route needs an admin API key");
    return CM_EFORBIDDEN;
}

/* ---- heartbeats ---- */

static void run_heartbeat(cm_svc *s, cm_job *j, const ident *who)
{
    for (size_t i = 0; i < j->nhb; i++) {
        cm_hb *hb = &j->hbs[i];
        char field[48];
        if (j->nhb > 1) snprintf(field, sizeof field, "heartbeats[%zu].agent", i);
        else snprintf(field, sizeof field, "agent");
        if (resolve_agent(j, who, hb->agent, field) != CM_OK) return;
    }
    cm_ingest_submit(s->ingest, j);
}

/* ---- keys ---- */

static void on_key_created(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    pending *p = arg;
    cm_job *j = p->job;
    if (rc != CM_OK) {
        fail_store(j);
    } else {
        cm_buf b;
        cm_buf_init(&b);
        cm_buf_adds(&b, "{");
        jfield(&b, "key", p->key, 1);
        jfield(&b, "id", p->key_id, 0);
        jfield(&b, "role", j->keyreq.admin ? "admin" : "agent", 0);
        jfield(&b, "name", j->keyreq.name, 0);
        jfield(&b, "org", p->who.org, 0);
        if (j->keyreq.agent[0]) jfield(&b, "agent", j->keyreq.agent, 0);
        cm_buf_adds(&b, "}");
        cm_job_reply(j, 201, &b);
        j->done(j);
    }
    explicit_bzero(p->key, sizeof p->key);
    free(p);
}

static void run_key_create(cm_svc *s, cm_job *j, const ident *who)
{
    if (need_admin(j, who) != CM_OK) return;
    if (j->keyreq.agent[0] && may_act_for(j, who, j->keyreq.agent, "agent") != CM_OK) return;
    pending *p = pending_new(s, j, who);
    if (!p) return;
    unsigned char hash[CM_KEY_HASH_LEN];
    char hex[CM_KEY_BYTEA_LEN];
    char rnd[13];
    if (cm_auth_new_key(p->key, sizeof p->key) != CM_OK ||
        cm_auth_hash(p->key, strlen(p->key), hash) != CM_OK || cm_auth_random_hex(rnd, 6) != CM_OK) {
        fail(j, 500, "internal", NULL, "could not generate a key");
        free(p);
        return;
    }
    cm_auth_bytea(hash, hex);
    snprintf(p->key_id, sizeof p->key_id, "key_%s", rnd);
    const char *params[] = {p->key_id, who->org, j->keyreq.admin ? "admin" : "agent",
                            j->keyreq.name, j->keyreq.agent[0] ? j->keyreq.agent : NULL, hex};
    query(p,
          "INSERT INTO api_keys (id, org, role, name, agent, key_hash) "
          "VALUES ($1, $2, $3, $4, $5, $6::bytea)",
          6, params, on_key_created);
}

static void on_key_list(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = take(arg, rc);
    if (!j) return;
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{\"keys\":[");
    for (int i = 0; i < cm_pgres_rows(res); i++) {
        if (i) cm_buf_add(&b, ",", 1);
        cm_buf_adds(&b, "{");
        jfield(&b, "id", cm_pgres_get(res, i, 0), 1);
        jfield(&b, "role", cm_pgres_get(res, i, 1), 0);
        jfield(&b, "name", cm_pgres_get(res, i, 2), 0);
        if (!cm_pgres_isnull(res, i, 3)) jfield(&b, "agent", cm_pgres_get(res, i, 3), 0);
        cm_buf_adds(&b, ",\"created_at\":");
        cm_buf_add_jtime(&b, strtoll(cm_pgres_get(res, i, 4), NULL, 10));
        cm_buf_adds(&b, "}");
    }
    cm_buf_adds(&b, "]}");
    cm_job_reply(j, 200, &b);
    j->done(j);
}

static void run_key_list(cm_svc *s, cm_job *j, const ident *who)
{
    if (need_admin(j, who) != CM_OK) return;
    pending *p = pending_new(s, j, who);
    if (!p) return;
    const char *params[] = {who->org};
    query(p,
          "SELECT id, role, name, agent, extract(epoch FROM created_at)::bigint FROM api_keys "
          "WHERE org = $1 AND revoked_at IS NULL ORDER BY created_at, id",
          1, params, on_key_list);
}

static void on_key_revoked(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    pending *p = arg;
    cm_job *j = p->job;
    cm_svc *s = p->svc;
    if (rc != CM_OK) {
        fail_store(j);
    } else if (cm_pgres_affected(res) == 0) {
        fail(j, 404, "not_found", NULL, "no such key in this org");
    } else {
        /* Revocation is immediate here; other replicas trust their cache
         * for at most key_cache_ms. */
        for (int i = 0; i < CACHE_SLOTS; i++)
            if (s->cache[i].found && strcmp(s->cache[i].who.id, j->target) == 0) s->cache[i].expires_ms = 0;
        j->status = 204;
        j->done(j);
    }
    free(p);
}

static void run_key_revoke(cm_svc *s, cm_job *j, const ident *who)
{
    if (need_admin(j, who) != CM_OK) return;
    pending *p = pending_new(s, j, who);
    if (!p) return;
    const char *params[] = {j->target, who->org};
    query(p,
          "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND org = $2 AND revoked_at IS NULL",
          2, params, on_key_revoked);
}

/* ---- agents ---- */

static void on_agent_list(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = take(arg, rc);
    if (!j) return;
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{\"agents\":[");
    for (int i = 0; i < cm_pgres_rows(res); i++) {
        if (i) cm_buf_add(&b, ",", 1);
        cm_buf_adds(&b, "{");
        jfield(&b, "address", cm_pgres_get(res, i, 0), 1);
        jfield(&b, "health", cm_pgres_get(res, i, 1), 0);
        cm_buf_adds(&b, ",\"last_heartbeat\":");
        if (cm_pgres_isnull(res, i, 2)) cm_buf_adds(&b, "null");
        else cm_buf_add_jtime(&b, strtoll(cm_pgres_get(res, i, 2), NULL, 10));
        cm_buf_addf(&b, ",\"intents_today\":%s,\"cost_today_usd\":", cm_pgres_get(res, i, 8));
        cm_buf_add_money(&b, strtoll(cm_pgres_get(res, i, 5), NULL, 10));
        jfield(&b, "state", cm_pgres_get(res, i, 3), 0);
        cm_buf_adds(&b, "}");
    }
    cm_buf_adds(&b, "]}");
    cm_job_reply(j, 200, &b);
    j->done(j);
}

/* ---- spend ---- */

static void on_spend(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    pending *p = arg;
    cm_job *j = p->job;
    int64_t from = p->from, to = p->to;
    free(p);
    if (rc != CM_OK) {
        fail_store(j);
        return;
    }
    int rows = cm_pgres_rows(res);
    if (rows == 0 || strcmp(cm_pgres_get(res, 0, 7), "0") == 0) {
        fail(j, 404, "agent_not_found", NULL, "no such agent: it registers with its first heartbeat");
        return;
    }
    int64_t tot[6] = {0};
    for (int i = 0; i < rows; i++)
        for (int k = 0; k < 6; k++) tot[k] += strtoll(cm_pgres_get(res, i, 1 + k), NULL, 10);
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{");
    jfield(&b, "agent", j->target, 1);
    jfield(&b, "window", cm_window_name(j->window), 0);
    cm_buf_adds(&b, ",\"from\":");
    cm_buf_add_jtime(&b, from);
    cm_buf_adds(&b, ",\"to\":");
    cm_buf_add_jtime(&b, to);
    cm_buf_adds(&b, ",\"cost_usd\":");
    cm_buf_add_money(&b, tot[0]);
    cm_buf_addf(&b,
                ",\"tokens_in\":%lld,\"tokens_out\":%lld,\"llm_calls\":%lld,\"tool_calls\":%lld,"
                "\"heartbeats\":%lld,\"intents\":0,\"series\":[",
                (long long)tot[1], (long long)tot[2], (long long)tot[3], (long long)tot[4],
                (long long)tot[5]);
    for (int i = 0; i < rows; i++) {
        if (i) cm_buf_add(&b, ",", 1);
        cm_buf_adds(&b, "{\"from\":");
        cm_buf_add_jtime(&b, strtoll(cm_pgres_get(res, i, 0), NULL, 10));
        cm_buf_adds(&b, ",\"cost_usd\":");
        cm_buf_add_money(&b, strtoll(cm_pgres_get(res, i, 1), NULL, 10));
        cm_buf_addf(&b, ",\"tokens_in\":%s,\"tokens_out\":%s,\"llm_calls\":%s}",
                    cm_pgres_get(res, i, 2), cm_pgres_get(res, i, 3), cm_pgres_get(res, i, 4));
    }
    cm_buf_adds(&b, "]}");
    cm_job_reply(j, 200, &b);
    j->done(j);
}

static void run_spend_agent(cm_svc *s, cm_job *j, const ident *who)
{
    if (may_act_for(j, who, j->target, NULL) != CM_OK) return;
    pending *p = pending_new(s, j, who);
    if (!p) return;
    cm_window_bounds(j->window, j->at, &p->from, &p->to);
    p->step = cm_window_bucket(j->window) == CM_WIN_HOUR ? 3600 : 86400;
    char from[24], to[24], step[16];
    snprintf(from, sizeof from, "%lld", (long long)p->from);
    snprintf(to, sizeof to, "%lld", (long long)p->to);
    snprintf(step, sizeof step, "%lld", (long long)p->step);
    const char *params[] = {j->target, from, to, step};
    /* Buckets as Unix seconds: UTC days are always 86400 s, whatever the
     * session's time zone. */
    query(p,
          "SELECT s::text, coalesce(sum(r.cost_nanos), 0)::text, coalesce(sum(r.tokens_in), 0)::text,"
          " coalesce(sum(r.tokens_out), 0)::text, coalesce(sum(r.llm_calls), 0)::text,"
          " coalesce(sum(r.tool_calls), 0)::text, coalesce(sum(r.heartbeats), 0)::text,"
          " (SELECT count(*) FROM agents WHERE address = $1)::text"
          " FROM generate_series($2::bigint, $3::bigint - 1, $4::bigint) s"
          " LEFT JOIN rollup_agent r ON r.address = $1 AND r.grain = 'h'"
          " AND r.bucket >= to_timestamp(s) AND r.bucket < to_timestamp(s + $4::bigint)"
          " GROUP BY s ORDER BY s",
          4, params, on_spend);
}

static void on_spend_intent(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = take(arg, rc);
    if (!j) return;
    if (cm_pgres_rows(res) == 0 || cm_pgres_isnull(res, 0, 0)) {
        fail(j, 404, "intent_not_found", NULL, "no heartbeats of this intent for this agent");
        return;
    }
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{");
    jfield(&b, "intent_id", j->target, 1);
    jfield(&b, "agent", j->agent, 0);
    cm_buf_adds(&b, ",\"from\":");
    cm_buf_add_jtime(&b, strtoll(cm_pgres_get(res, 0, 0), NULL, 10));
    cm_buf_adds(&b, ",\"to\":");
    cm_buf_add_jtime(&b, strtoll(cm_pgres_get(res, 0, 1), NULL, 10));
    cm_buf_adds(&b, ",\"cost_usd\":");
    cm_buf_add_money(&b, strtoll(cm_pgres_get(res, 0, 2), NULL, 10));
    cm_buf_addf(&b,
                ",\"tokens_in\":%s,\"tokens_out\":%s,\"tokens_cached\":%s,\"llm_calls\":%s,"
                "\"tool_calls\":%s,\"heartbeats\":%s}",
                cm_pgres_get(res, 0, 3), cm_pgres_get(res, 0, 4), cm_pgres_get(res, 0, 5),
                cm_pgres_get(res, 0, 6), cm_pgres_get(res, 0, 7), cm_pgres_get(res, 0, 8));
    cm_job_reply(j, 200, &b);
    j->done(j);
}

static void run_spend_intent(cm_svc *s, cm_job *j, const ident *who)
{
    if (resolve_agent(j, who, j->agent, "agent") != CM_OK) return;
    pending *p = pending_new(s, j, who);
    if (!p) return;
    const char *params[] = {j->agent, j->target};
    query(p,
          "SELECT extract(epoch FROM min(bucket))::bigint::text,"
          " (extract(epoch FROM max(bucket))::bigint + 3600)::text, sum(cost_nanos)::text,"
          " sum(tokens_in)::text, sum(tokens_out)::text, sum(tokens_cached)::text,"
          " sum(llm_calls)::text, sum(tool_calls)::text, sum(heartbeats)::text"
          " FROM rollup_intent_hour WHERE address = $1 AND intent_id = $2",
          2, params, on_spend_intent);
}

/* ---- cost policies ---- */

static void on_policy_mirrored(void *arg, int rc)
{
    pending *p = arg;
    cm_job *j = p->job;
    if (rc != CM_OK) {
        /* PostgreSQL has it; the next Redis rebuild applies it. */
        fail(j, 503, "store_unavailable", NULL, "the policy is saved but Redis did not confirm it; retry");
    } else if (j->op == CM_OP_POLICY_DELETE) {
        j->status = 204;
        j->done(j);
    } else {
        cm_buf b;
        cm_buf_init(&b);
        cm_policy_json(&j->policy, &b);
        cm_job_reply(j, 200, &b);
        j->done(j);
    }
    free(p);
}

/* Mirrors the job's policy (or its absence) into Redis, then answers. */
static void mirror_policy(pending *p)
{
    cm_job *j = p->job;
    if (cm_hot_put_policy(p->svc->hot, j->target, j->op == CM_OP_POLICY_DELETE ? NULL : &j->policy,
                          on_policy_mirrored, p) != CM_OK)
        on_policy_mirrored(p, CM_ESTORE);
}

static void mirror_policy_after(void *arg, int rc)
{
    (void)rc; /* a lost event is logged; the policy itself is saved */
    mirror_policy(arg);
}

static void on_policy_saved(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    pending *p = arg;
    cm_job *j = p->job;
    if (rc != CM_OK) {
        fail_store(j);
        free(p);
        return;
    }
    if (j->op == CM_OP_POLICY_DELETE && cm_pgres_affected(res) == 0) {
        fail(j, 404, "policy_not_found", NULL, "this agent has no cost policy");
        free(p);
        return;
    }
    cm_buf d;
    cm_buf_init(&d);
    cm_buf_adds(&d, "{\"policy\":");
    if (j->op == CM_OP_POLICY_DELETE) cm_buf_adds(&d, "null");
    else cm_policy_json(&j->policy, &d);
    cm_buf_adds(&d, "}");
    char *details = cm_buf_take(&d, NULL);
    /* Answer once the event is readable, so a client that lists events
     * right after sees it. */
    if (details) cm_notify_event(p->svc->notify, p->who.org, j->target, "policy_changed", details, false,
                                 mirror_policy_after, p);
    else mirror_policy(p);
    free(details);
}

static void run_policy_put(cm_svc *s, cm_job *j, const ident *who)
{
    if (need_admin(j, who) != CM_OK || may_act_for(j, who, j->target, "address_id") != CM_OK) return;
    pending *p = pending_new(s, j, who);
    if (!p) return;
    char lim[CM_LIM_COUNT][24];
    const char *params[9];
    params[0] = j->target;
    params[1] = who->org;
    for (int i = 0; i < CM_LIM_COUNT; i++) {
        snprintf(lim[i], sizeof lim[i], "%lld", (long long)j->policy.limit[i]);
        params[2 + i] = j->policy.has[i] ? lim[i] : NULL;
    }
    params[7] = j->policy.block ? "block" : "alert";
    cm_buf t;
    cm_buf_init(&t);
    cm_policy_thresh_text(&j->policy, &t);
    char *thresh = cm_buf_take(&t, NULL);
    params[8] = thresh ? thresh : "";
    query(p,
          "INSERT INTO cost_policies AS c (address, org, max_intents_per_hour, max_intents_per_day,"
          " max_cost_per_hour, max_cost_per_day, max_cost_per_month, action_on_breach, alert_thresholds)"
          " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (address) DO UPDATE SET"
          " max_intents_per_hour = excluded.max_intents_per_hour,"
          " max_intents_per_day = excluded.max_intents_per_day,"
          " max_cost_per_hour = excluded.max_cost_per_hour, max_cost_per_day = excluded.max_cost_per_day,"
          " max_cost_per_month = excluded.max_cost_per_month,"
          " action_on_breach = excluded.action_on_breach, alert_thresholds = excluded.alert_thresholds,"
          " updated_at = now()",
          9, params, on_policy_saved);
    free(thresh);
}

static void run_policy_delete(cm_svc *s, cm_job *j, const ident *who)
{
    if (need_admin(j, who) != CM_OK || may_act_for(j, who, j->target, "address_id") != CM_OK) return;
    pending *p = pending_new(s, j, who);
    if (!p) return;
    const char *params[] = {j->target};
    query(p, "DELETE FROM cost_policies WHERE address = $1", 1, params, on_policy_saved);
}

static void on_policy_get(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = take(arg, rc);
    if (!j) return;
    if (cm_pgres_rows(res) == 0) {
        fail(j, 404, "policy_not_found", NULL, "this agent has no cost policy");
        return;
    }
    cm_pg_policy(res, 0, 0, &j->policy);
    cm_buf b;
    cm_buf_init(&b);
    cm_policy_json(&j->policy, &b);
    cm_job_reply(j, 200, &b);
    j->done(j);
}

static void run_policy_get(cm_svc *s, cm_job *j, const ident *who)
{
    if (may_act_for(j, who, j->target, "address_id") != CM_OK) return;
    pending *p = pending_new(s, j, who);
    if (!p) return;
    const char *params[] = {j->target};
    query(p, "SELECT " CM_PG_POLICY_COLS " FROM cost_policies WHERE address = $1", 1, params, on_policy_get);
}

/* ---- intents ---- */

static void breach_events(cm_svc *s, const pending *p, const cm_hot_admit_result *r)
{
    for (int i = 0; i < CM_LIM_COUNT; i++) {
        if (!(r->newly & (1u << i))) continue;
        cm_buf d;
        cm_buf_init(&d);
        cm_buf_adds(&d, "{");
        jfield(&d, "limit", cm_limit_name(i), 1);
        cm_buf_adds(&d, ",\"limit_value\":");
        cm_policy_value_json(i, r->limit[i], &d);
        cm_buf_adds(&d, ",\"current\":");
        cm_policy_value_json(i, r->current[i], &d);
        cm_buf_adds(&d, r->code == CM_HOT_REFUSED ? ",\"action\":\"block\"}" : ",\"action\":\"alert\"}");
        char *details = cm_buf_take(&d, NULL);
        if (details)
            cm_notify_event(s->notify, p->who.org, p->job->intent.agent, "policy_breached", details, true, NULL, NULL);
        free(details);
    }
}

/* Keeps the answer for repeats of the Idempotency-Key. */
static void remember(pending *p)
{
    cm_job *j = p->job;
    cm_hot_remember(p->svc->hot, &p->adm, j->status, j->retry_after, j->body ? j->body : "");
}

static void admitted_reply(pending *p)
{
    cm_job *j = p->job;
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{");
    jfield(&b, "intent_id", j->intent.intent_id, 1);
    jfield(&b, "agent", j->intent.agent, 0);
    cm_buf_adds(&b, "}");
    cm_job_reply(j, 201, &b);
    remember(p);
    j->done(j);
    free(p);
}

static void undo_admission(pending *p)
{
    /* Admitted unchecked (fail open): Redis counted nothing to give back. */
    if (p->counted) cm_hot_unadmit(p->svc->hot, &p->adm);
}

static void on_intent_recorded(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    pending *p = arg;
    if (rc != CM_OK) {
        /* Not recorded, so not admitted: give the slot back. */
        undo_admission(p);
        fail_store(p->job);
        free(p);
        return;
    }
    admitted_reply(p);
}

static void record_intent(pending *p)
{
    cm_job *j = p->job;
    char at[24];
    snprintf(at, sizeof at, "%lld", (long long)j->now);
    const char *params[] = {j->intent.agent, p->who.org, j->intent.intent_id,
                            j->intent.intent_type[0] ? j->intent.intent_type : NULL,
                            j->idem_key[0] ? j->idem_key : NULL, at};
    if (cm_pg_query(p->svc->reader,
                    "WITH reg AS (INSERT INTO agents (address, org) VALUES ($1, $2) ON CONFLICT (address)"
                    " DO NOTHING) INSERT INTO intents (address, org, intent_id, intent_type, idempotency_key,"
                    " admitted_at) VALUES ($1, $2, $3, $4, $5, to_timestamp($6::bigint))",
                    6, params, on_intent_recorded, p) != CM_OK)
        on_intent_recorded(p, CM_ESTORE, NULL, "");
}

static void unavailable(pending *p, const char *why)
{
    cm_job *j = p->job;
    if (p->svc->fail_open) {
        cm_log(CM_LOG_WARN, "event=admission_unchecked reason=%s", why);
        record_intent(p);
        return;
    }
    fail(j, 503, "store_unavailable", NULL, "intent admission is unavailable (Redis); retry");
    free(p);
}

static void on_admit(void *arg, int rc, const cm_hot_admit_result *r)
{
    pending *p = arg;
    cm_svc *s = p->svc;
    cm_job *j = p->job;
    if (rc != CM_OK) {
        unavailable(p, "redis_error");
        return;
    }
    switch (r->code) {
    case CM_HOT_REBUILDING:
        unavailable(p, "redis_rebuilding");
        return;
    case CM_HOT_IN_FLIGHT:
        fail(j, 409, "idempotency_key_in_use", "Idempotency-Key", "a request with this key is still in flight");
        free(p);
        return;
    case CM_HOT_REPEAT: {
        cm_buf b;
        cm_buf_init(&b);
        cm_buf_adds(&b, r->answer.body);
        cm_job_reply(j, r->answer.status, &b);
        j->retry_after = r->answer.retry_after;
        j->done(j);
        free(p);
        return;
    }
    case CM_HOT_KILLED:
        cm_job_fail(j, 403, "agent_killed", NULL, "this agent is killed; an admin can resume it");
        remember(p);
        j->done(j);
        free(p);
        return;
    case CM_HOT_ADMITTED:
    case CM_HOT_REFUSED:
        break;
    }
    breach_events(s, p, r);
    if (r->code == CM_HOT_ADMITTED) {
        p->counted = true;
        record_intent(p);
        return;
    }
    int64_t retry = 0;
    int lim = cm_policy_binding(r->breached, j->now, &retry);
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{\"error\":{\"code\":\"cost_policy_breached\",\"message\":");
    char msg[160];
    snprintf(msg, sizeof msg, "the agent's %s is reached; new intents are refused until the window ends",
             cm_limit_name(lim));
    cm_buf_add_jstr(&b, msg);
    cm_buf_adds(&b, ",");
    jfield(&b, "limit", cm_limit_name(lim), 1);
    cm_buf_adds(&b, ",\"limit_value\":");
    cm_policy_value_json(lim, r->limit[lim], &b);
    cm_buf_adds(&b, ",\"current\":");
    cm_policy_value_json(lim, r->current[lim], &b);
    cm_buf_addf(&b, ",\"retry_after_s\":%lld}}", (long long)retry);
    cm_job_reply(j, 429, &b);
    j->retry_after = (long)retry;
    remember(p);
    j->done(j);
    free(p);
}

static void run_intent(cm_svc *s, cm_job *j, const ident *who)
{
    if (resolve_agent(j, who, j->intent.agent, j->axme ? "to_agent" : "agent") != CM_OK) return;
    if (!j->intent.intent_id[0]) {
        char rnd[17];
        if (cm_auth_random_hex(rnd, 8) != CM_OK) {
            fail(j, 500, "internal", NULL, "could not generate an intent id");
            return;
        }
        snprintf(j->intent.intent_id, sizeof j->intent.intent_id, "int_%s", rnd);
    }
    pending *p = pending_new(s, j, who);
    if (!p) return;
    p->adm.agent = j->intent.agent;
    cm_policy_window_starts(j->now, p->adm.starts);
    p->adm.org = p->who.org;
    p->adm.idem_key = j->idem_key;
    if (cm_hot_admit(s->hot, &p->adm, on_admit, p) != CM_OK) unavailable(p, "redis_down");
}

/* ---- kill switch ---- */

static void on_kill_mirrored(void *arg, int rc)
{
    pending *p = arg;
    cm_job *j = p->job;
    if (rc != CM_OK) {
        fail(j, 503, "store_unavailable", NULL, "saved, but Redis did not confirm it; retry");
    } else {
        cm_buf b;
        cm_buf_init(&b);
        cm_buf_adds(&b, "{");
        jfield(&b, "address", j->target, 1);
        jfield(&b, "state", j->op == CM_OP_KILL ? "killed" : "active", 0);
        cm_buf_adds(&b, ",\"killed\":");
        cm_buf_adds(&b, j->op == CM_OP_KILL ? "true}" : "false}");
        cm_job_reply(j, 200, &b);
        j->done(j);
    }
    free(p);
}

static void mirror_kill(void *arg, int rc);

static void on_killed(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    pending *p = arg;
    cm_job *j = p->job;
    if (rc != CM_OK || cm_pgres_affected(res) == 0) {
        if (rc != CM_OK) fail_store(j);
        else fail(j, 404, "agent_not_found", NULL, "no such agent: it registers with its first heartbeat");
        free(p);
        return;
    }
    cm_notify_event(p->svc->notify, p->who.org, j->target, j->op == CM_OP_KILL ? "agent_killed" : "agent_resumed",
                    "{}", true, mirror_kill, p);
}

/* After the event is recorded: the kill flag into Redis, then the answer. */
static void mirror_kill(void *arg, int rc)
{
    (void)rc;
    pending *p = arg;
    cm_job *j = p->job;
    if (cm_hot_put_killed(p->svc->hot, j->target, j->op == CM_OP_KILL, on_kill_mirrored, p) != CM_OK)
        on_kill_mirrored(p, CM_ESTORE);
}

static void run_kill(cm_svc *s, cm_job *j, const ident *who)
{
    if (need_admin(j, who) != CM_OK || may_act_for(j, who, j->target, "address_id") != CM_OK) return;
    pending *p = pending_new(s, j, who);
    if (!p) return;
    const char *params[] = {j->target, j->op == CM_OP_KILL ? "true" : "false"};
    query(p, "UPDATE agents SET killed = $2::boolean WHERE address = $1", 2, params, on_killed);
}

/* ---- events ---- */

static void on_events(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = take(arg, rc);
    if (!j) return;
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{\"events\":[");
    for (int i = 0; i < cm_pgres_rows(res); i++) {
        if (i) cm_buf_add(&b, ",", 1);
        cm_buf_addf(&b, "{\"id\":%s,", cm_pgres_get(res, i, 0));
        jfield(&b, "event_type", cm_pgres_get(res, i, 1), 1);
        cm_buf_adds(&b, ",\"agent\":");
        if (cm_pgres_isnull(res, i, 2)) cm_buf_adds(&b, "null");
        else cm_buf_add_jstr(&b, cm_pgres_get(res, i, 2));
        cm_buf_adds(&b, ",\"ts\":");
        cm_buf_add_jtime(&b, strtoll(cm_pgres_get(res, i, 3), NULL, 10));
        cm_buf_adds(&b, ",\"details\":");
        cm_buf_adds(&b, cm_pgres_get(res, i, 4));
        cm_buf_adds(&b, "}");
    }
    cm_buf_adds(&b, "]}");
    cm_job_reply(j, 200, &b);
    j->done(j);
}

static void run_events(cm_svc *s, cm_job *j, const ident *who)
{
    pending *p = pending_new(s, j, who);
    if (!p) return;
    char limit[16];
    snprintf(limit, sizeof limit, "%d", j->limit);
    const char *params[] = {who->org, j->event_type[0] ? j->event_type : NULL, limit,
                            who->agent[0] ? who->agent : NULL};
    query(p,
          "SELECT id::text, event_type, address, extract(epoch FROM ts)::bigint, details::text FROM events"
          " WHERE org = $1 AND ($2::text IS NULL OR event_type = $2) AND ($4::text IS NULL OR address = $4)"
          " ORDER BY events.id DESC LIMIT $3::int",
          4, params, on_events);
}

/* ---- one agent ---- */

static void on_agent_get(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = take(arg, rc);
    if (!j) return;
    if (cm_pgres_rows(res) == 0) {
        fail(j, 404, "agent_not_found", NULL, "no such agent: it registers with its first heartbeat");
        return;
    }
    /* Columns: address, health, last_heartbeat, state, cost_hour, cost_day,
     * cost_month, intents_hour, intents_day, has_policy, policy columns. */
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{");
    jfield(&b, "address", cm_pgres_get(res, 0, 0), 1);
    jfield(&b, "health", cm_pgres_get(res, 0, 1), 0);
    cm_buf_adds(&b, ",\"last_heartbeat\":");
    if (cm_pgres_isnull(res, 0, 2)) cm_buf_adds(&b, "null");
    else cm_buf_add_jtime(&b, strtoll(cm_pgres_get(res, 0, 2), NULL, 10));
    jfield(&b, "state", cm_pgres_get(res, 0, 3), 0);
    cm_buf_adds(&b, ",\"hour\":{\"cost_usd\":");
    cm_buf_add_money(&b, strtoll(cm_pgres_get(res, 0, 4), NULL, 10));
    cm_buf_addf(&b, ",\"intents\":%s},\"today\":{\"cost_usd\":", cm_pgres_get(res, 0, 7));
    cm_buf_add_money(&b, strtoll(cm_pgres_get(res, 0, 5), NULL, 10));
    cm_buf_addf(&b, ",\"intents\":%s},\"month\":{\"cost_usd\":", cm_pgres_get(res, 0, 8));
    cm_buf_add_money(&b, strtoll(cm_pgres_get(res, 0, 6), NULL, 10));
    cm_buf_adds(&b, "},\"policy\":");
    if (strcmp(cm_pgres_get(res, 0, 9), "t") == 0) {
        cm_policy pol;
        cm_pg_policy(res, 0, 10, &pol);
        cm_policy_json(&pol, &b);
    } else {
        cm_buf_adds(&b, "null");
    }
    cm_buf_adds(&b, ",\"recent_events\":");
    cm_buf_adds(&b, cm_pgres_get(res, 0, 17));
    cm_buf_adds(&b, "}");
    cm_job_reply(j, 200, &b);
    j->done(j);
}

/* One agent's view, shared by the list and the single agent. Parameters:
 * $1 org, $2 now, $3/$4/$5 hour/day/month start, $6 one address or NULL.
 * Columns: 0 address, 1 health, 2 last heartbeat, 3 state, 4..6 cost of
 * hour/day/month, 7..8 intents of hour/day, 9 has a policy, 10..16 the
 * policy (CM_PG_POLICY_COLS), 17 its ten latest events as JSON. Health comes
 * from the last heartbeat's age (< 90 s healthy, <= 300 s degraded). */
#define AGENT_VIEW_SQL                                                                             \
    "SELECT a.address, CASE WHEN a.killed THEN 'killed'" \
    " WHEN a.last_heartbeat IS NULL THEN 'unreachable'" \
    " WHEN $2::bigint - extract(epoch FROM a.last_heartbeat) < 90 THEN 'healthy'" \
    " WHEN $2::bigint - extract(epoch FROM a.last_heartbeat) <= 300 THEN 'degraded'" \
    " ELSE 'unreachable' END AS health," \
    " extract(epoch FROM a.last_heartbeat)::bigint," \
    " CASE WHEN a.killed THEN 'killed' WHEN c.action_on_breach = 'block' AND (" \
    "  ih.n >= c.max_intents_per_hour OR idy.n >= c.max_intents_per_day" \
    "  OR coalesce(h.cost_nanos, 0) >= c.max_cost_per_hour OR coalesce(d.cost_nanos, 0) >= c.max_cost_per_day" \
    "  OR coalesce(m.cost_nanos, 0) >= c.max_cost_per_month) THEN 'blocked' ELSE 'active' END," \
    " coalesce(h.cost_nanos, 0), coalesce(d.cost_nanos, 0), coalesce(m.cost_nanos, 0), ih.n, idy.n," \
    " c.address IS NOT NULL, c.max_intents_per_hour, c.max_intents_per_day, c.max_cost_per_hour," \
    " c.max_cost_per_day, c.max_cost_per_month, c.action_on_breach, c.alert_thresholds," \
    " CASE WHEN $6::text IS NULL THEN '[]' ELSE (SELECT coalesce(json_agg(json_build_object('id', e.id," \
    "  'event_type', e.event_type, 'ts', to_char(e.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')," \
    "  'details', e.details) ORDER BY e.id DESC), '[]')::text FROM (SELECT * FROM events" \
    "  WHERE address = a.address ORDER BY id DESC LIMIT 10) e) END" \
    " FROM agents a LEFT JOIN cost_policies c ON c.address = a.address" \
    " LEFT JOIN rollup_agent h ON h.address = a.address AND h.grain = 'h' AND h.bucket = to_timestamp($3::bigint)" \
    " LEFT JOIN rollup_agent d ON d.address = a.address AND d.grain = 'd' AND d.bucket = to_timestamp($4::bigint)" \
    " LEFT JOIN rollup_agent m ON m.address = a.address AND m.grain = 'm' AND m.bucket = to_timestamp($5::bigint)" \
    " CROSS JOIN LATERAL (SELECT count(*) AS n FROM intents i WHERE i.address = a.address" \
    "  AND i.admitted_at >= to_timestamp($3::bigint)) ih" \
    " CROSS JOIN LATERAL (SELECT count(*) AS n FROM intents i WHERE i.address = a.address" \
    "  AND i.admitted_at >= to_timestamp($4::bigint)) idy" \
    " WHERE a.org = $1 AND ($6::text IS NULL OR a.address = $6)"

/* Fills params[0..6) for AGENT_VIEW_SQL; the strings live in `space`. */
static void agent_view_params(const cm_job *j, const ident *who, const char *address,
                              char space[4][24], const char *params[6])
{
    int64_t starts[CM_WIN3];
    cm_policy_window_starts(j->now, starts);
    snprintf(space[0], 24, "%lld", (long long)j->now);
    for (int w = 0; w < CM_WIN3; w++) snprintf(space[1 + w], 24, "%lld", (long long)starts[w]);
    params[0] = who->org;
    for (int i = 0; i < 4; i++) params[1 + i] = space[i];
    params[5] = address;
}

static void run_agent_get(cm_svc *s, cm_job *j, const ident *who)
{
    if (may_act_for(j, who, j->target, "address_id") != CM_OK) return;
    pending *p = pending_new(s, j, who);
    if (!p) return;
    char space[4][24];
    const char *params[6];
    agent_view_params(j, who, j->target, space, params);
    query(p, AGENT_VIEW_SQL, 6, params, on_agent_get);
}

/* ---- webhook ---- */

static void on_webhook_saved(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = take(arg, rc);
    if (!j) return;
    if (j->op == CM_OP_WEBHOOK_GET && cm_pgres_rows(res) == 0) {
        fail(j, 404, "webhook_not_found", NULL, "this org has no webhook");
        return;
    }
    /* The secret is write-only: never echoed. */
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{");
    jfield(&b, "url", j->op == CM_OP_WEBHOOK_GET ? cm_pgres_get(res, 0, 0) : j->webhook.url, 1);
    cm_buf_adds(&b, ",\"secret_set\":true}");
    cm_job_reply(j, 200, &b);
    j->done(j);
}

static void run_webhook(cm_svc *s, cm_job *j, const ident *who)
{
    if (need_admin(j, who) != CM_OK) return;
    pending *p = pending_new(s, j, who);
    if (!p) return;
    if (j->op == CM_OP_WEBHOOK_GET) {
        const char *params[] = {who->org};
        query(p, "SELECT url FROM webhooks WHERE org = $1", 1, params, on_webhook_saved);
        return;
    }
    const char *params[] = {who->org, j->webhook.url, j->webhook.secret};
    query(p,
          "INSERT INTO webhooks (org, url, secret) VALUES ($1, $2, $3) ON CONFLICT (org) DO UPDATE"
          " SET url = excluded.url, secret = excluded.secret, updated_at = now()",
          3, params, on_webhook_saved);
}

static void run_agent_list(cm_svc *s, cm_job *j, const ident *who)
{
    pending *p = pending_new(s, j, who);
    if (!p) return;
    char space[4][24], limit[16];
    const char *params[8];
    agent_view_params(j, who, who->agent[0] ? who->agent : NULL, space, params);
    snprintf(limit, sizeof limit, "%d", j->limit);
    params[6] = j->health[0] ? j->health : NULL;
    params[7] = limit;
    query(p, "SELECT * FROM (" AGENT_VIEW_SQL ") v WHERE $7::text IS NULL OR v.health = $7 ORDER BY 1 LIMIT $8::int",
          8, params, on_agent_list);
}

/* ---- dispatch ---- */

static void run_as(cm_svc *s, cm_job *j, const ident *who)
{
    switch (j->op) {
    case CM_OP_HEARTBEAT: run_heartbeat(s, j, who); return;
    case CM_OP_KEY_CREATE: run_key_create(s, j, who); return;
    case CM_OP_KEY_LIST: run_key_list(s, j, who); return;
    case CM_OP_KEY_REVOKE: run_key_revoke(s, j, who); return;
    case CM_OP_AGENT_LIST: run_agent_list(s, j, who); return;
    case CM_OP_SPEND_AGENT: run_spend_agent(s, j, who); return;
    case CM_OP_SPEND_INTENT: run_spend_intent(s, j, who); return;
    case CM_OP_POLICY_PUT: run_policy_put(s, j, who); return;
    case CM_OP_POLICY_GET: run_policy_get(s, j, who); return;
    case CM_OP_POLICY_DELETE: run_policy_delete(s, j, who); return;
    case CM_OP_INTENT: run_intent(s, j, who); return;
    case CM_OP_KILL:
    case CM_OP_RESUME: run_kill(s, j, who); return;
    case CM_OP_AGENT_GET: run_agent_get(s, j, who); return;
    case CM_OP_EVENTS: run_events(s, j, who); return;
    case CM_OP_WEBHOOK_PUT:
    case CM_OP_WEBHOOK_GET: run_webhook(s, j, who); return;
    }
    fail(j, 500, "internal", NULL, "unknown operation");
}

static void unauthorized(cm_job *j)
{
    fail(j, 401, "unauthorized", NULL, "a valid API key is required (x-api-key or Authorization: Bearer)");
}

static void on_key_lookup(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    pending *p = arg;
    cm_svc *s = p->svc;
    cm_job *j = p->job;
    free(p);
    if (rc != CM_OK) {
        fail_store(j);
        return;
    }
    cache_slot *slot = slot_of(s, j->key_hash);
    memcpy(slot->hash, j->key_hash, CM_KEY_HASH_LEN);
    slot->expires_ms = s->ttl_ms ? uv_now(s->loop) + (uint64_t)s->ttl_ms : 0;
    slot->found = cm_pgres_rows(res) == 1;
    memset(&slot->who, 0, sizeof slot->who);
    if (!slot->found) {
        unauthorized(j);
        return;
    }
    snprintf(slot->who.id, sizeof slot->who.id, "%s", cm_pgres_get(res, 0, 0));
    snprintf(slot->who.org, sizeof slot->who.org, "%s", cm_pgres_get(res, 0, 1));
    slot->who.admin = strcmp(cm_pgres_get(res, 0, 2), "admin") == 0;
    snprintf(slot->who.agent, sizeof slot->who.agent, "%s", cm_pgres_get(res, 0, 3));
    ident who = slot->who;
    run_as(s, j, &who);
}

void cm_svc_run(void *svc, cm_job *j)
{
    cm_svc *s = svc;
    cache_slot *slot = slot_of(s, j->key_hash);
    if (slot->expires_ms > uv_now(s->loop) && cm_auth_equal(slot->hash, j->key_hash, CM_KEY_HASH_LEN)) {
        if (!slot->found) {
            unauthorized(j);
            return;
        }
        ident who = slot->who;
        run_as(s, j, &who);
        return;
    }
    ident nobody;
    memset(&nobody, 0, sizeof nobody);
    pending *p = pending_new(s, j, &nobody);
    if (!p) return;
    char hex[CM_KEY_BYTEA_LEN];
    cm_auth_bytea(j->key_hash, hex);
    const char *params[] = {hex};
    query(p,
          "SELECT id, org, role, coalesce(agent, '') FROM api_keys"
          " WHERE key_hash = $1::bytea AND revoked_at IS NULL",
          1, params, on_key_lookup);
}
