/* hbrow.h - heartbeats as the statements that store them take them: the
 * column arrays of the group commit and of the persister's batch, both
 * statements, a group's duplicate pairs, and the text a heartbeat has as an
 * entry of the Redis queue (COSTMESH_DURABLE=redis, persist.h).
 *
 * Pure (no I/O); the entry decoder is fuzzed (tests/fuzz/fuzz_hbrow.c). */
#ifndef CM_HBROW_H
#define CM_HBROW_H

#include "buf.h"
#include "codec.h"

#include <stddef.h>
#include <stdint.h>

/* The row columns: $1..$20, then two scalars of the statement ($21, $22),
 * then the columns added later, $23..$32. */
enum { CM_HBROW_COLS = 30, CM_HBROW_PARAMS = 32, CM_HBROW_FIRST_LATE = 20 };

/* The parameter index (0-based) of row column col. */
int cm_hbrow_param(int col);

/* The CM_HBROW_COLS column arrays of hbs[0..n), the rows whose skip[i] is
 * set left out (skip may be NULL), each row's idx its i: cols are
 * initialised here, the caller frees them. CM_ENOMEM when any failed. */
int cm_hbrow_columns(const cm_hb *const *hbs, const unsigned char *skip, size_t n, cm_buf cols[CM_HBROW_COLS]);

/* The group commit (ingest.c), $1..$32: $21 now (Unix seconds), $22 the
 * agents to register or whose last_heartbeat to move. Its result rows, all
 * text: 'n' idx (a row that was new), 'r' address grain bucket cost tin tout
 * calls heartbeats (a rollup's absolute totals after the commit), 't'
 * address cost (the agent's cost today before the statement). */
extern const char cm_hbrow_group_sql[];

/* $1 a text array of agents: each registered (the org's quota checked),
 * or its last_heartbeat moved to now. */
extern const char cm_hbrow_register_sql[];

/* The persister's batch (persist.c): the group commit's columns and $22;
 * $21 and $35 the batch's last entry (milliseconds, sequence); $33 and $34
 * each row's entry; $36 and $37 the entries left out as duplicates of an
 * earlier row of the batch. Rows at or below persist_mark are skipped, the
 * mark moves to the batch's last entry. Result rows, nine text columns:
 * 'd' idx, an entry found a duplicate (now, or by an earlier run of the same
 * batch) whose hot increments are to be taken back; 'r' rows as the group
 * commit's, only when $38 is true (a few thousand rows a batch that only a
 * merge after a rebuild reads). */
extern const char cm_hbrow_persist_sql[];
enum { CM_HBROW_PERSIST_PARAMS = 38 };

/* Marks dup[i] = 1 for each hbs[i] whose (agent, id) an earlier item of
 * hbs has (rows without an id never are); dup is zeroed first. CM_ENOMEM
 * leaves dup all zero. */
int cm_hbrow_mark_dups(const cm_hb *const *hbs, size_t n, unsigned char *dup);

/* Sorts names and leaves each once at the front; returns how many: the
 * distinct agents a statement registers ($22) in the order that keeps
 * replicas' row locks from deadlocking. */
size_t cm_hbrow_distinct(const char **names, size_t n);

/* A heartbeat as a queue entry's text (JSON), and back. decode is strict:
 * CM_EINVAL for anything encode does not make (unknown or missing fields,
 * strings too long for their buffer, numbers out of range). */
void cm_hbrow_encode(const cm_hb *h, cm_buf *out);
int cm_hbrow_decode(const char *text, size_t len, cm_hb *out);

#endif
