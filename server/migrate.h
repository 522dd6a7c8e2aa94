/* migrate.h - brings the database up to date before costmeshd serves.
 *
 * Blocking, on the main thread at start-up, through pg.h's blocking
 * connection. */
#ifndef CM_MIGRATE_H
#define CM_MIGRATE_H

#include <stddef.h>

/* Applies the schema migrations embedded at build time (schema/NNN_name.sql,
 * in name order) that the database has not recorded yet, each in its own
 * transaction, under an advisory lock so replicas starting together apply
 * each one once. Then, when key_bytea is non-NULL, ensures an admin key with
 * that SHA-256 (as cm_auth_bytea text) exists for org, and records
 * max_agents_per_org as every org's default agent quota. CM_OK, or
 * CM_ESTORE with a one-line reason in err. */
int cm_migrate_run(const char *conninfo, const char *key_bytea, const char *org, int max_agents_per_org,
                   char *err, size_t errsz);

#endif
