/* api_keys.c - the API keys of an org: create, list, revoke (admin only). */
#include "api_routes.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A key being created: shown once, wiped after. */
typedef struct {
    cm_api_call base;
    char key[CM_KEY_LEN + 1];
    char key_id[32];
} key_call;

static void on_key_created(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)res;
    (void)sqlstate;
    key_call *c = arg;
    cm_job *j = c->base.job;
    const cm_keyreq *kr = &j->req.key_create;
    if (rc != CM_OK) {
        cm_api_fail_store(j);
    } else {
        cm_buf b;
        cm_buf_init(&b);
        cm_buf_adds(&b, "{");
        cm_api_jfield(&b, "key", c->key, 1);
        cm_api_jfield(&b, "id", c->key_id, 0);
        cm_api_jfield(&b, "role", kr->admin ? "admin" : "agent", 0);
        cm_api_jfield(&b, "name", kr->name, 0);
        cm_api_jfield(&b, "org", c->base.who.org, 0);
        if (kr->agent[0]) cm_api_jfield(&b, "agent", kr->agent, 0);
        if (kr->interop_env[0]) cm_api_jfield(&b, "interop_env", kr->interop_env, 0);
        cm_buf_adds(&b, "}");
        cm_api_reply(j, 201, &b);
    }
    explicit_bzero(c->key, sizeof c->key);
    free(c);
}

int cm_api_key_create(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    const cm_keyreq *kr = &j->req.key_create;
    if (cm_api_need_admin(who, e) != CM_OK) return CM_EFORBIDDEN;
    if (kr->agent[0] && cm_api_may_act_for(who, kr->agent, "agent", e) != CM_OK) return CM_EFORBIDDEN;
    key_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    unsigned char hash[CM_KEY_HASH_LEN];
    char hex[CM_KEY_BYTEA_LEN];
    char rnd[13];
    if (cm_auth_new_key(c->key, sizeof c->key) != CM_OK ||
        cm_auth_hash(c->key, strlen(c->key), hash) != CM_OK || cm_auth_random_hex(rnd, 6) != CM_OK) {
        free(c);
        return cm_apierr_set(e, 500, "internal", NULL, "could not generate a key");
    }
    cm_auth_bytea(hash, hex);
    snprintf(c->key_id, sizeof c->key_id, "key_%s", rnd);
    const char *params[] = {c->key_id, who->org, kr->admin ? "admin" : "agent", kr->name,
                            kr->agent[0] ? kr->agent : NULL, hex, kr->interop_env[0] ? kr->interop_env : NULL};
    return cm_api_query(c,
                        "INSERT INTO api_keys (id, org, role, name, agent, key_hash, interop_env) "
                        "VALUES ($1, $2, $3, $4, $5, $6::bytea, $7)",
                        7, params, on_key_created, e);
}

static void on_key_list(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = cm_api_take(arg, rc);
    if (!j) return;
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{\"keys\":[");
    for (int i = 0; i < cm_pgres_rows(res); i++) {
        if (i) cm_buf_add(&b, ",", 1);
        cm_buf_adds(&b, "{");
        cm_api_jfield(&b, "id", cm_pgres_get(res, i, 0), 1);
        cm_api_jfield(&b, "role", cm_pgres_get(res, i, 1), 0);
        cm_api_jfield(&b, "name", cm_pgres_get(res, i, 2), 0);
        if (!cm_pgres_isnull(res, i, 3)) cm_api_jfield(&b, "agent", cm_pgres_get(res, i, 3), 0);
        if (!cm_pgres_isnull(res, i, 5)) cm_api_jfield(&b, "interop_env", cm_pgres_get(res, i, 5), 0);
        cm_buf_adds(&b, ",\"created_at\":");
        cm_buf_add_jtime(&b, strtoll(cm_pgres_get(res, i, 4), NULL, 10));
        cm_buf_adds(&b, "}");
    }
    cm_buf_adds(&b, "]}");
    cm_api_reply(j, 200, &b);
}

int cm_api_key_list(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    if (cm_api_need_admin(who, e) != CM_OK) return CM_EFORBIDDEN;
    cm_api_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    const char *params[] = {who->org};
    return cm_api_query(c,
                        "SELECT id, role, name, agent, " CM_PG_EPOCH("created_at") ", interop_env FROM api_keys "
                        "WHERE org = $1 AND revoked_at IS NULL ORDER BY created_at, id",
                        1, params, on_key_list, e);
}

static void on_key_revoked(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_api_call *c = arg;
    cm_keycache *keys = c->api->keys;
    cm_job *j = cm_api_take(c, rc);
    if (!j) return;
    if (cm_pgres_rows(res) == 0) {
        cm_api_error(j, 404, "not_found", NULL, "no such key in this org");
        return;
    }
    /* Other replicas forget it when PostgreSQL tells them (svc.c). */
    cm_keycache_forget(keys, j->req.key_revoke.id);
    j->status = 204;
    cm_api_answer(j);
}

int cm_api_key_revoke(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    if (cm_api_need_admin(who, e) != CM_OK) return CM_EFORBIDDEN;
    cm_api_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    const char *params[] = {j->req.key_revoke.id, who->org};
    return cm_api_query(c,
                        "WITH r AS (UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND org = $2"
                        " AND revoked_at IS NULL RETURNING id)"
                        " SELECT pg_notify('" CM_KEY_REVOKED_CHANNEL "', id) FROM r",
                        2, params, on_key_revoked, e);
}
