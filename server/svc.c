#include "svc.h"
#include "api_routes.h"
#include "error.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A key asked of PostgreSQL: the cache's generation when it started, and
 * the jobs that wait for the answer (a key the cache does not know: a burst
 * of it costs one lookup), or none (a known key whose entry aged, asked
 * again behind the requests that go on as it was). */
typedef struct key_ask key_ask;
struct key_ask {
    struct cm_svc *svc; /* NULL once the service is freed */
    key_ask *next;
    uint64_t generation;
    unsigned char hash[CM_KEY_HASH_LEN];
    cm_jobq waiters;
};

struct cm_svc {
    cm_api api;
    key_ask *asks; /* in flight, one per key and generation (privileged writes aside) */
    _Atomic unsigned long long lookups_total; /* read by /metrics on the HTTP threads */
};

/* CM_OP_AUTH: the key is known. The HTTP front goes on to read the body;
 * the request itself comes back as its own job. */
static int key_known(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    (void)api;
    (void)who;
    (void)e;
    j->status = 204;
    cm_api_answer(j);
    return CM_OK;
}

/* The route table: which handler runs each operation. */
static const cm_api_handler handlers[CM_OP_COUNT] = {
    [CM_OP_HEARTBEAT] = cm_api_heartbeat,
    [CM_OP_KEY_CREATE] = cm_api_key_create,
    [CM_OP_KEY_LIST] = cm_api_key_list,
    [CM_OP_KEY_REVOKE] = cm_api_key_revoke,
    [CM_OP_AGENT_LIST] = cm_api_agent_list,
    [CM_OP_AGENT_GET] = cm_api_agent_get,
    [CM_OP_SPEND_AGENT] = cm_api_spend_agent,
    [CM_OP_SPEND_INTENT] = cm_api_spend_intent,
    [CM_OP_EVENTS] = cm_api_events,
    [CM_OP_POLICY_PUT] = cm_api_policy_put,
    [CM_OP_POLICY_GET] = cm_api_policy_get,
    [CM_OP_POLICY_DELETE] = cm_api_policy_delete,
    [CM_OP_POLICY_PATCH] = cm_api_policy_put,
    [CM_OP_KILL] = cm_api_kill,
    [CM_OP_RESUME] = cm_api_kill,
    [CM_OP_WEBHOOK_PUT] = cm_api_webhook_put,
    [CM_OP_WEBHOOK_GET] = cm_api_webhook_get,
    [CM_OP_INTENT] = cm_api_intent,
    [CM_OP_WEBHOOK_DELETE] = cm_api_webhook_delete,
    [CM_OP_OTLP_TRACES] = cm_api_otlp_traces,
    [CM_OP_CE_EVENTS] = cm_api_ce_events,
    [CM_OP_METER_PUT] = cm_api_meter_put,
    [CM_OP_METER_LIST] = cm_api_meter_list,
    [CM_OP_METER_DELETE] = cm_api_meter_delete,
    [CM_OP_AUTH] = key_known,
    [CM_OP_INTENT_END] = cm_api_intent_end,
    [CM_OP_PRICE_PUT] = cm_api_price_put,
    [CM_OP_PRICE_LIST] = cm_api_price_list,
    [CM_OP_SPEND_UNIT] = cm_api_spend_unit,
    [CM_OP_TOP] = cm_api_top,
    [CM_OP_BILL_PUT] = cm_api_bill_put,
    [CM_OP_BILL_LIST] = cm_api_bill_list,
    [CM_OP_USAGE] = cm_api_usage,
    [CM_OP_POLICY_LIST] = cm_api_policy_list,
    [CM_OP_INTENT_TREE] = cm_api_intent_tree,
};

/* News from every replica: a key revoked (payload: its id), an org's rate
 * cards changed (payload: the org). */
static void on_notify(void *arg, const char *channel, const char *payload)
{
    cm_svc *s = arg;
    if (strcmp(channel, CM_KEY_REVOKED_CHANNEL) == 0) cm_keycache_forget(s->api.keys, payload);
    else if (strcmp(channel, CM_PRICING_CHANNEL) == 0) cm_ratecards_forget(s->api.cards, payload);
}

static void on_listening(void *arg)
{
    cm_svc *s = arg;
    cm_keycache_clear(s->api.keys);
    cm_ratecards_forget_all(s->api.cards);
}

int cm_svc_new(const cm_svc_deps *d, cm_svc **out)
{
    cm_svc *s = calloc(1, sizeof *s);
    if (!s) return CM_ENOMEM;
    if (cm_keycache_new(d->key_cache_ms, &s->api.keys) != CM_OK) {
        free(s);
        return CM_ENOMEM;
    }
    if (cm_ratecards_new(d->db, cm_api_priced, &s->api, &s->api.cards) != CM_OK) {
        cm_svc_free(s);
        return CM_ENOMEM;
    }
    s->api.price_tolerance = d->price_tolerance;
    s->api.persist = d->persist;
    s->api.loop = d->loop;
    s->api.db = d->db;
    s->api.read_db = d->read_db;
    s->api.spend_db = d->spend_db;
    s->api.ingest = d->ingest;
    s->api.intents = d->intents;
    s->api.hot = d->hot;
    s->api.notify = d->notify;
    s->api.fail_open = d->fail_open;
    s->api.reservation_ttl_s = d->reservation_ttl_s;
    s->api.intent_abandon_s = d->intent_abandon_s;
    s->api.fold = d->fold;
    s->api.interop_env = d->interop_env;
    snprintf(s->api.interop_faults, sizeof s->api.interop_faults, "%s", d->interop_faults ? d->interop_faults : "");
    static const char *const channels[] = {CM_KEY_REVOKED_CHANNEL, CM_PRICING_CHANNEL, NULL};
    if (cm_pg_listen(d->listen_db, channels, on_notify, on_listening, s) != CM_OK) {
        cm_svc_free(s);
        return CM_ENOMEM;
    }
    *out = s;
    return CM_OK;
}

void cm_svc_free(cm_svc *s)
{
    if (!s) return;
    /* Lookups still in flight fail as the pool closes, after this. */
    for (key_ask *k = s->asks; k; k = k->next) k->svc = NULL;
    cm_ratecards_free(s->api.cards);
    cm_keycache_free(s->api.keys);
    free(s);
}

/* The operations that read what heartbeats add up to from PostgreSQL: with
 * Redis as the durable point (persist.h) they wait until the heartbeats
 * acknowledged before them are there, so a read after a 202 sees it. An
 * intent's admission does not wait: its budgets are Redis's. */
static const bool reads_heartbeats[CM_OP_COUNT] = {
    [CM_OP_AGENT_LIST] = true,  [CM_OP_AGENT_GET] = true, [CM_OP_SPEND_AGENT] = true,
    [CM_OP_SPEND_INTENT] = true, [CM_OP_EVENTS] = true,   [CM_OP_SPEND_UNIT] = true,
    [CM_OP_TOP] = true,         [CM_OP_USAGE] = true,     [CM_OP_POLICY_LIST] = true,
    [CM_OP_INTENT_TREE] = true, [CM_OP_INTENT_END] = true,
};

static void run_now(cm_svc *s, cm_job *j, const cm_ident *who)
{
    cm_apierr e;
    cm_api_handler h = (unsigned)j->op < CM_OP_COUNT ? handlers[j->op] : NULL;
    if (!h) cm_apierr_set(&e, 500, "internal", NULL, "unknown operation");
    if (!h || h(&s->api, j, who, &e) != CM_OK) cm_api_fail(j, &e);
}

typedef struct {
    cm_svc *s;
    cm_job *j;
    cm_ident who;
} waiting_read;

static void on_persisted(void *arg, bool ok)
{
    waiting_read *w = arg;
    if (ok) run_now(w->s, w->j, &w->who);
    else cm_api_error(w->j, 503, "shutting_down", NULL, "the server is stopping; retry");
    free(w);
}

static void run_as(cm_svc *s, cm_job *j, const cm_ident *who)
{
    waiting_read *w = NULL;
    if (s->api.persist && (unsigned)j->op < CM_OP_COUNT && reads_heartbeats[j->op]) w = malloc(sizeof *w);
    if (!w) {
        run_now(s, j, who);
        return;
    }
    *w = (waiting_read){s, j, *who};
    cm_persist_wait(s->api.persist, on_persisted, w);
}

static void unauthorized(cm_job *j)
{
    cm_api_error(j, 401, "unauthorized", NULL, "a valid API key is required (x-api-key or Authorization: Bearer)");
}

/* Remembers what PostgreSQL said, unless a key was revoked meanwhile: the
 * answer may be older than the revocation. */
static void remember(cm_svc *s, uint64_t generation, const unsigned char *hash, const cm_ident *who)
{
    if (cm_keycache_generation(s->api.keys) == generation)
        cm_keycache_put(s->api.keys, hash, uv_now(s->api.loop), who);
}

/* Runs j as who, or answers 401 when who is NULL. */
static void run_or_refuse(cm_svc *s, cm_job *j, const cm_ident *who)
{
    if (who) run_as(s, j, who);
    else unauthorized(j);
}

static bool privileged(cm_op op);

/* PostgreSQL could not be asked who j's key is: the identity its last
 * lookup found, unless it was revoked since or j is a privileged write,
 * else 503. With Redis as the durable point this keeps heartbeats of known
 * keys acknowledged through a PostgreSQL outage (guarantees.md section 12). */
static void run_unasked(cm_svc *s, cm_job *j)
{
    cm_ident who;
    /* However old the entry: AGED is the key's identity still. */
    cm_keycache_hit hit = s && !privileged(j->op)
                              ? cm_keycache_get(s->api.keys, j->key_hash, uv_now(s->api.loop), &who)
                              : CM_KEYCACHE_MISS;
    if (hit == CM_KEYCACHE_FOUND || hit == CM_KEYCACHE_AGED) run_as(s, j, &who);
    else cm_api_fail_store(j);
}

static const char key_sql[] = "SELECT id, org, role, coalesce(agent, ''), coalesce(interop_env, '') FROM api_keys"
                              " WHERE key_hash = $1::bytea AND revoked_at IS NULL";

/* The identity key_sql's answer names, into who; NULL for no such key. */
static const cm_ident *ident_of(const cm_pgres *res, cm_ident *who)
{
    if (cm_pgres_rows(res) != 1) return NULL;
    memset(who, 0, sizeof *who);
    snprintf(who->id, sizeof who->id, "%s", cm_pgres_get(res, 0, 0));
    snprintf(who->org, sizeof who->org, "%s", cm_pgres_get(res, 0, 1));
    who->admin = strcmp(cm_pgres_get(res, 0, 2), "admin") == 0;
    snprintf(who->agent, sizeof who->agent, "%s", cm_pgres_get(res, 0, 3));
    snprintf(who->interop_env, sizeof who->interop_env, "%s", cm_pgres_get(res, 0, 4));
    return who;
}

static void on_key_answer(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    key_ask *k = arg;
    cm_svc *s = k->svc;
    if (s) {
        key_ask **p = &s->asks;
        while (*p != k) p = &(*p)->next;
        *p = k->next;
    }
    cm_jobq waiters = k->waiters;
    cm_ident who;
    const cm_ident *found = NULL;
    /* A failed ask of an aged key leaves the entry aged: its next request
     * asks again. */
    if (s && rc == CM_OK) {
        found = ident_of(res, &who);
        remember(s, k->generation, k->hash, found);
    }
    for (cm_job *j; (j = cm_jobq_pop(&waiters));) {
        if (!s || rc != CM_OK) run_unasked(s, j);
        else run_or_refuse(s, j, found);
    }
    free(k);
}

/* The ask in flight for this key since the last revocation, or NULL. */
static key_ask *asking(cm_svc *s, const unsigned char *hash)
{
    uint64_t generation = cm_keycache_generation(s->api.keys);
    for (key_ask *k = s->asks; k; k = k->next)
        if (k->generation == generation && memcmp(k->hash, hash, CM_KEY_HASH_LEN) == 0) return k;
    return NULL;
}

/* Asks PostgreSQL who the key is, for j (which waits) or for the cache
 * alone (j NULL). CM_ESTORE or CM_ENOMEM when it could not be asked (j is
 * the caller's still). */
static int ask(cm_svc *s, const unsigned char *hash, cm_job *j)
{
    key_ask *k = calloc(1, sizeof *k);
    if (!k) return CM_ENOMEM;
    k->svc = s;
    k->generation = cm_keycache_generation(s->api.keys);
    memcpy(k->hash, hash, CM_KEY_HASH_LEN);
    if (j) cm_jobq_push(&k->waiters, j);
    char hex[CM_KEY_BYTEA_LEN];
    cm_auth_bytea(hash, hex);
    const char *params[] = {hex};
    /* Listed before the query, which may answer before it returns. */
    k->next = s->asks;
    s->asks = k;
    int rc = cm_pg_query(s->api.db, key_sql, 1, params, on_key_answer, k);
    if (rc != CM_OK) {
        s->asks = k->next; /* the callback never runs: k is still first */
        free(k);
        return rc;
    }
    atomic_fetch_add(&s->lookups_total, 1);
    return CM_OK;
}

/* Writes that change who may do what, or what is allowed: a key revoked
 * a moment ago on another replica must not make them. */
static bool privileged(cm_op op)
{
    switch (op) {
    case CM_OP_KEY_CREATE:
    case CM_OP_KEY_REVOKE:
    case CM_OP_POLICY_PUT:
    case CM_OP_POLICY_PATCH:
    case CM_OP_POLICY_DELETE:
    case CM_OP_KILL:
    case CM_OP_RESUME:
    case CM_OP_WEBHOOK_PUT:
    case CM_OP_WEBHOOK_DELETE:
    case CM_OP_PRICE_PUT:
    case CM_OP_BILL_PUT:
    case CM_OP_METER_PUT:
    case CM_OP_METER_DELETE: return true;
    default: return false;
    }
}

void cm_svc_run(void *svc, cm_job *j)
{
    cm_svc *s = svc;
    cm_ident who;
    bool fresh = privileged(j->op);
    switch (fresh ? CM_KEYCACHE_MISS : cm_keycache_get(s->api.keys, j->key_hash, uv_now(s->api.loop), &who)) {
    case CM_KEYCACHE_FOUND: run_as(s, j, &who); return;
    case CM_KEYCACHE_UNKNOWN: unauthorized(j); return;
    case CM_KEYCACHE_AGED:
        /* The request goes on as the identity the key had while PostgreSQL
         * is asked again, so a slow or unresponsive PostgreSQL holds up no
         * request of a key this replica knows. A privileged write always
         * asks PostgreSQL itself, after it arrived. */
        if (!asking(s, j->key_hash)) (void)ask(s, j->key_hash, NULL);
        run_as(s, j, &who);
        return;
    case CM_KEYCACHE_MISS: break;
    }
    key_ask *k = fresh ? NULL : asking(s, j->key_hash);
    if (k) cm_jobq_push(&k->waiters, j);
    else if (ask(s, j->key_hash, j) != CM_OK) run_unasked(s, j);
}

const cm_keycache *cm_svc_keys(const cm_svc *s)
{
    return s->api.keys;
}

unsigned long long cm_svc_key_lookups(const cm_svc *s)
{
    return atomic_load(&((cm_svc *)s)->lookups_total);
}
