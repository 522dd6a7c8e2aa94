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
    uv_loop_t *loop;
    int ttl_ms;
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
} pending;

int cm_svc_new(cm_pg_pool *reader, cm_ingest *ingest, int key_cache_ms, uv_loop_t *loop,
               cm_svc **out)
{
    cm_svc *s = calloc(1, sizeof *s);
    if (!s) return CM_ENOMEM;
    s->reader = reader;
    s->ingest = ingest;
    s->loop = loop;
    s->ttl_ms = key_cache_ms;
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

/* The org segment of an address into org (CM_ADDR_SEG_MAX + 1 bytes). */
static int addr_org(const char *address, char *org)
{
    cm_addr a;
    if (cm_addr_parse(address, strlen(address), &a) != CM_OK) return CM_EINVAL;
    memcpy(org, a.org, a.org_len);
    org[a.org_len] = '\0';
    return CM_OK;
}

/* May `who` act for `address`? Answers 403 itself when not. */
static int may_act_for(cm_job *j, const ident *who, const char *address, const char *field)
{
    char org[CM_ADDR_SEG_MAX + 1];
    if (addr_org(address, org) != CM_OK) {
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
        if (!hb->agent[0]) {
            if (!who->agent[0]) {
                fail(j, 400, "invalid_field", field, "agent is required unless the API key is bound to an agent");
                return;
            }
            memcpy(hb->agent, who->agent, sizeof hb->agent);
        }
        if (may_act_for(j, who, hb->agent, field) != CM_OK) return;
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
    char hex[2 + 2 * CM_KEY_HASH_LEN + 1] = "\\x";
    char rnd[13];
    if (cm_auth_new_key(p->key, sizeof p->key) != CM_OK ||
        cm_auth_hash(p->key, strlen(p->key), hash) != CM_OK || cm_auth_random_hex(rnd, 6) != CM_OK) {
        fail(j, 500, "internal", NULL, "could not generate a key");
        free(p);
        return;
    }
    cm_auth_hex(hash, CM_KEY_HASH_LEN, hex + 2);
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

static const char *const health_names[] = {"healthy", "degraded", "unreachable", "killed"};

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
        cm_buf_adds(&b, ",\"intents_today\":0,\"cost_today_usd\":");
        cm_buf_add_money(&b, strtoll(cm_pgres_get(res, i, 3), NULL, 10));
        cm_buf_adds(&b, ",\"state\":\"active\"}");
    }
    cm_buf_adds(&b, "]}");
    cm_job_reply(j, 200, &b);
    j->done(j);
}

static void run_agent_list(cm_svc *s, cm_job *j, const ident *who)
{
    pending *p = pending_new(s, j, who);
    if (!p) return;
    char now[24], limit[16], day[24];
    int64_t from, to;
    cm_window_bounds(CM_WIN_DAY, j->now, &from, &to);
    snprintf(now, sizeof now, "%lld", (long long)j->now);
    snprintf(day, sizeof day, "%lld", (long long)from);
    snprintf(limit, sizeof limit, "%d", j->limit);
    const char *health = j->health >= 0 ? health_names[j->health] : NULL;
    const char *params[] = {who->org, now, day, limit, health, who->agent[0] ? who->agent : NULL};
    /* Health from the last heartbeat's age: < 90 s healthy, up to 300 s
     * degraded, older (or never) unreachable. */
    query(p,
          "SELECT * FROM (SELECT a.address, CASE"
          " WHEN a.last_heartbeat IS NULL THEN 'unreachable'"
          " WHEN $2::bigint - extract(epoch FROM a.last_heartbeat) < 90 THEN 'healthy'"
          " WHEN $2::bigint - extract(epoch FROM a.last_heartbeat) <= 300 THEN 'degraded'"
          " ELSE 'unreachable' END AS health,"
          " extract(epoch FROM a.last_heartbeat)::bigint, coalesce(d.cost_nanos, 0)"
          " FROM agents a LEFT JOIN rollup_agent d ON d.address = a.address AND d.grain = 'd'"
          " AND d.bucket = to_timestamp($3::bigint)"
          " WHERE a.org = $1 AND ($6::text IS NULL OR a.address = $6)) x"
          " WHERE $5::text IS NULL OR x.health = $5 ORDER BY 1 LIMIT $4::int",
          6, params, on_agent_list);
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
    if (!j->agent[0]) {
        if (!who->agent[0]) {
            fail(j, 400, "invalid_field", "agent", "the agent query parameter is required");
            return;
        }
        memcpy(j->agent, who->agent, sizeof j->agent);
    }
    if (may_act_for(j, who, j->agent, "agent") != CM_OK) return;
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
    slot->expires_ms = uv_now(s->loop) + (uint64_t)s->ttl_ms + 1;
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
    if (s->ttl_ms == 0) slot->expires_ms = 0;
    run_as(s, j, &who);
}

void cm_svc_run(void *svc, cm_job *j)
{
    cm_svc *s = svc;
    if (!j->has_key) {
        unauthorized(j);
        return;
    }
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
    char hex[2 + 2 * CM_KEY_HASH_LEN + 1] = "\\x";
    cm_auth_hex(j->key_hash, CM_KEY_HASH_LEN, hex + 2);
    const char *params[] = {hex};
    query(p,
          "SELECT id, org, role, coalesce(agent, '') FROM api_keys"
          " WHERE key_hash = $1::bytea AND revoked_at IS NULL",
          1, params, on_key_lookup);
}
