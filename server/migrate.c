#include "migrate.h"
#include "error.h"
#include "log.h"
#include "pg.h"

#include <stdio.h>

/* Generated from the schema directory by scripts/embed_schema.sh; NULL-terminated. */
extern const char *const cm_schema_names[];
extern const char *const cm_schema_sql[];

/* Applies migration i unless it is recorded: its SQL and its record commit
 * together, so a failed one is tried again at the next start. */
static int apply(cm_pg_blocking *db, int i, char *err, size_t errsz)
{
    const char *name = cm_schema_names[i];
    int have = cm_pg_blocking_exec(db, "SELECT 1 FROM schema_migrations WHERE name = $1", 1, &name, err, errsz);
    if (have < 0) return CM_ESTORE;
    if (have > 0) return CM_OK;
    if (cm_pg_blocking_exec(db, "BEGIN", 0, NULL, err, errsz) < 0) return CM_ESTORE;
    char why[480];
    int ok = cm_pg_blocking_exec(db, cm_schema_sql[i], 0, NULL, why, sizeof why) >= 0;
    if (!ok) snprintf(err, errsz, "migration %s failed: %s", name, why);
    if (!ok ||
        cm_pg_blocking_exec(db, "INSERT INTO schema_migrations (name) VALUES ($1)", 1, &name, err, errsz) < 0 ||
        cm_pg_blocking_exec(db, "COMMIT", 0, NULL, err, errsz) < 0) {
        cm_pg_blocking_exec(db, "ROLLBACK", 0, NULL, NULL, 0);
        return CM_ESTORE;
    }
    cm_log(CM_LOG_INFO, "event=migration_applied name=%s", name);
    return CM_OK;
}

/* The bootstrap key lets the first admin in. Its id comes from the hash, so
 * every replica names it alike; an existing key of that hash is kept. */
static int ensure_admin_key(cm_pg_blocking *db, const char *key_bytea, const char *org, char *err, size_t errsz)
{
    char id[32];
    snprintf(id, sizeof id, "key_boot_%.8s", key_bytea + 2);
    const char *params[] = {id, org, key_bytea};
    int rows = cm_pg_blocking_exec(db,
                                   "INSERT INTO api_keys (id, org, role, name, key_hash) "
                                   "VALUES ($1, $2, 'admin', 'bootstrap', $3::bytea) ON CONFLICT (key_hash) DO NOTHING",
                                   3, params, err, errsz);
    return rows < 0 ? CM_ESTORE : CM_OK;
}

/* Under the lock: the table of applied migrations, each migration, the
 * default agent quota, the key. */
static int run_locked(cm_pg_blocking *db, const char *key_bytea, const char *org, int max_agents, char *err,
                      size_t errsz)
{
    if (cm_pg_blocking_exec(db,
                            "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, "
                            "applied_at timestamptz NOT NULL DEFAULT now())",
                            0, NULL, err, errsz) < 0)
        return CM_ESTORE;
    for (int i = 0; cm_schema_names[i]; i++)
        if (apply(db, i, err, errsz) != CM_OK) return CM_ESTORE;
    char quota[16];
    snprintf(quota, sizeof quota, "%d", max_agents);
    const char *qp[] = {quota};
    if (cm_pg_blocking_exec(db,
                            "INSERT INTO org_limits (org, max_agents) VALUES ('*', $1::bigint)"
                            " ON CONFLICT (org) DO UPDATE SET max_agents = excluded.max_agents",
                            1, qp, err, errsz) < 0)
        return CM_ESTORE;
    return key_bytea ? ensure_admin_key(db, key_bytea, org, err, errsz) : CM_OK;
}

int cm_migrate_run(const char *conninfo, const char *key_bytea, const char *org, int max_agents_per_org,
                   char *err, size_t errsz)
{
    cm_pg_blocking *db;
    if (cm_pg_blocking_open(conninfo, &db, err, errsz) != CM_OK) return CM_ESTORE;
    /* Keeps the notices of IF NOT EXISTS off stderr. */
    cm_pg_blocking_exec(db, "SET client_min_messages = warning", 0, NULL, NULL, 0);
    int rc = CM_ESTORE;
    if (cm_pg_blocking_exec(db, "SELECT pg_advisory_lock(7366001)", 0, NULL, err, errsz) >= 0) {
        rc = run_locked(db, key_bytea, org, max_agents_per_org, err, errsz);
        if (cm_pg_blocking_exec(db, "SELECT pg_advisory_unlock(7366001)", 0, NULL, err, errsz) < 0) rc = CM_ESTORE;
    }
    cm_pg_blocking_close(db);
    return rc;
}
