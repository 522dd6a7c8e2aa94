/* rollup.h - the rollups that are not on the acknowledged path.
 *
 * A group commit (ingest.c) writes the raw heartbeats and the agent's own
 * hour/day/month rows, which Redis mirrors for policy checks. Every other
 * grouping is summed here, in batches, from the raw rows past a watermark
 * (schema/011_rollup_worker.sql says why the watermark is a transaction id).
 * One replica at a time moves it: the others skip the locked watermark row.
 *
 * Reads stay exact without waiting for the worker: a reply sums the rollup
 * rows and the raw rows past the watermark, in one statement, so one
 * snapshot sees both sides of any move (CM_TAIL_CTE_SQL).
 *
 * Adding a grouping: a table, one CTE in rollup.c's statement, and its read
 * as rollup + tail. Nothing changes in ingest.c. */
#ifndef CM_ROLLUP_H
#define CM_ROLLUP_H

#include "hot.h"
#include "notify.h"
#include "pg.h"

#include <uv.h>

/* The raw heartbeats not yet in the rollups: cm_rollup_tail() every
 * agent's, cm_org_tail(org) an org's, cm_agent_tail(address) one agent's;
 * the last two keep those rows themselves, so the rest of the tail is not
 * copied out (schema/025_agent_tail.sql), but they still check every row
 * of the tail. A statement that needs its tail rows more than once reads
 * them once (schema/026_spend_reads.sql), into the CTE
 * CM_TAIL_CTE_SQL("cm_agent_tail($1) h") (source: raw rows called h), then
 * uses CM_TAIL_ARRAY_SQL (the rows as heartbeats[]) or CM_TAIL_ROWS_SQL (a
 * row source). No rows make '{}', not NULL, which cm_unit_outcomes() would
 * take as "read the tail here". */
#define CM_TAIL_CTE_SQL(source) "tail AS (SELECT coalesce(array_agg(h), '{}') AS rows FROM " source ")"
#define CM_TAIL_ARRAY_SQL "(SELECT rows FROM tail)"
#define CM_TAIL_ROWS_SQL "unnest(" CM_TAIL_ARRAY_SQL ")"

/* A tail row's units (kind, unit), as a LATERAL row source over the raw
 * row h: CM_HB_UNITS for every kind, as the worker attributes it, or
 * CM_HB_AGENT_UNIT for a read of one agent's own (no intent lookup per
 * row). */
#define CM_HB_UNITS "cm_hb_units(h.address, h.intent_id, h.run_id, h.session_id, h.workflow, h.customer)"
#define CM_HB_AGENT_UNIT "(VALUES ('agent', h.address))"

/* Every unit's rollup rows and its tail (schema/016_units.sql), as one row
 * source with rollup_unit's columns: `SELECT ... FROM `
 * CM_ROLLUP_UNITS_SQL("$1") ` WHERE org = $1 AND kind = 'run' AND unit = $2`.
 * The conditions reach the rollup through its indexes; the tail is the
 * org's (org: an SQL expression, the one the WHERE names), whose rows
 * are attributed as the worker will (cm_hb_units). CM_ROLLUP_UNITS_OF is
 * the same over another tail and attribution, named as for
 * CM_ROLLUP_MODELS_SQL below. */
#define CM_ROLLUP_UNITS_OF(units, tail)                                                            \
    "(SELECT org, kind, unit, address, bucket, cost_nanos, tokens_in, tokens_out, tokens_cached,"  \
    " llm_calls, tool_calls, heartbeats, revenue_nanos, refund_nanos, external_nanos, fees_nanos"  \
    " FROM rollup_unit UNION ALL SELECT split_part(h.address, '/', 3), u.kind, u.unit, h.address," \
    " date_trunc('hour', h.ts, 'UTC'), h.cost_nanos, h.tokens_in, h.tokens_out, h.tokens_cached,"  \
    " h.llm_calls, h.tool_calls, 1, h.revenue_nanos, h.refund_nanos, h.external_nanos,"            \
    " h.fees_nanos FROM " tail " h CROSS JOIN LATERAL " units " AS u(kind, unit)) AS units"
#define CM_ROLLUP_UNITS_SQL(org) CM_ROLLUP_UNITS_OF(CM_HB_UNITS, "cm_org_tail(" org ")")

/* Spend per model (rollup_model, schema/019_billing.sql) and its tail, as
 * one row source with rollup_model's columns, filtered like
 * CM_ROLLUP_UNITS_SQL. units attributes a tail row (CM_HB_UNITS,
 * CM_HB_AGENT_UNIT, or any (kind, unit) row source over h). tail is the raw
 * rows the read can use, a row source called h, before any is attributed
 * or rated: "cm_agent_tail($1)" for one agent's, "cm_org_tail($1)" for an
 * org's, or rows a statement has read once. A priced row's tokens are
 * rated as the worker rates them (cm_hb_rated). */
#define CM_ROLLUP_MODELS_SQL(units, tail)                                                                \
    "(SELECT org, kind, unit, address, model, bucket, cost_nanos, tokens_in, tokens_out,"          \
    " tokens_cached, tokens_cache_write, heartbeats, rated, fresh_e, cached_e, cache_write_e,"     \
    " output_e, cached_as_fresh_e FROM rollup_model UNION ALL SELECT split_part(h.address, '/', 3),"\
    " u.kind, u.unit, h.address, h.model, date_trunc('hour', h.ts, 'UTC'), h.cost_nanos,"          \
    " h.tokens_in, h.tokens_out, h.tokens_cached, h.tokens_cache_write, 1, (p.fresh IS NOT NULL)::int,"\
    " coalesce(p.fresh, 0), coalesce(p.cached, 0), coalesce(p.cache_write, 0), coalesce(p.output, 0),"\
    " coalesce(p.cached_as_fresh, 0) FROM " tail " h CROSS JOIN LATERAL " units                     \
    " AS u(kind, unit) LEFT JOIN LATERAL cm_hb_rated(split_part(h.address, '/', 3), h.model, h.ts,"\
    " h.tokens_in, h.tokens_cached, h.tokens_cache_write, h.tokens_out) p ON h.priced_nanos IS NOT NULL"\
    " WHERE h.model IS NOT NULL) AS models"
/* Every intent's rollup rows and its tail, as one row source with
 * rollup_intent's columns and the org: `SELECT ... FROM `
 * CM_ROLLUP_INTENTS_SQL("$1") ` WHERE org = $1 AND intent_id = $2` (the id
 * reaches rollup_intent's index; an intent spans agents; the tail is the
 * org's, as for CM_ROLLUP_UNITS_SQL). CM_ROLLUP_INTENTS_OF takes the tail
 * from another row source of raw rows (CM_TAIL_ROWS_SQL). */
#define CM_ROLLUP_INTENTS_SQL(org) CM_ROLLUP_INTENTS_OF("cm_org_tail(" org ")")
#define CM_ROLLUP_INTENTS_OF(tail)                                                                 \
    "(SELECT split_part(address, '/', 3) AS org, address, intent_id, bucket, cost_nanos, tokens_in," \
    " tokens_out, tokens_cached, llm_calls, tool_calls, heartbeats, revenue_nanos, refund_nanos,"   \
    " external_nanos, fees_nanos FROM rollup_intent UNION ALL SELECT split_part(address, '/', 3),"  \
    " address, intent_id, date_trunc('hour', ts, 'UTC'), cost_nanos, tokens_in, tokens_out,"        \
    " tokens_cached, llm_calls, tool_calls, 1, revenue_nanos, refund_nanos, external_nanos,"        \
    " fees_nanos FROM " tail " WHERE intent_id IS NOT NULL) AS intent_parts"

/* Each unit's intents (schema/018_intent_tree.sql), rollup and tail, with
 * rollup_unit_intent's columns: `SELECT ... FROM `
 * CM_ROLLUP_UNIT_INTENTS_SQL("$1") ` WHERE org = $1 AND kind = 'run' AND
 * unit = $2` (the tail is the org's, as for CM_ROLLUP_UNITS_SQL).
 * CM_ROLLUP_UNIT_INTENTS_OF takes another tail and attribution, as
 * CM_ROLLUP_UNITS_OF does. */
#define CM_ROLLUP_UNIT_INTENTS_OF(units, tail)                                                      \
    "(SELECT org, kind, unit, intent_id, address, bucket, cost_nanos, last_ts FROM rollup_unit_intent" \
    " UNION ALL SELECT split_part(h.address, '/', 3), u.kind, u.unit, h.intent_id, h.address,"       \
    " date_trunc('hour', h.ts, 'UTC'), h.cost_nanos, h.ts FROM " tail " h CROSS JOIN LATERAL " units \
    " AS u(kind, unit) WHERE h.intent_id IS NOT NULL) AS unit_intents"
#define CM_ROLLUP_UNIT_INTENTS_SQL(org) CM_ROLLUP_UNIT_INTENTS_OF(CM_HB_UNITS, "cm_org_tail(" org ")")

typedef struct cm_rollup cm_rollup;

/* Starts moving the watermark every interval_ms on the loop, on db (a pool
 * of its own is best: a batch may take a while). The scopes' cost totals
 * (rollup_scope, budget.h) it changes are merged into hot (borrowed), where
 * admission reads them: they lag the 202 by one batch. Their thresholds and
 * limits newly crossed become events (notify, borrowed). Returns CM_OK,
 * CM_ENOMEM or CM_EIO. */
int cm_rollup_new(uv_loop_t *loop, cm_pg_pool *db, cm_hot *hot, cm_notify *notify, int interval_ms,
                  cm_rollup **out);
/* Stops the worker (run the loop after, see chore.h). Free db first: a
 * batch in flight calls back. NULL is a no-op. */
void cm_rollup_free(cm_rollup *r);

/* Raw rows this replica summed into the rollups since it started, and its
 * batches that failed (each is tried again from the same watermark). */
unsigned long long cm_rollup_rows(const cm_rollup *r);
unsigned long long cm_rollup_failures(const cm_rollup *r);
/* Seconds since the oldest raw row not yet in the rollups was received, as
 * this replica's last batch saw it (0: none): how far the worker is behind.
 * Replies stay exact while it grows; they read a longer tail. */
long long cm_rollup_lag(const cm_rollup *r);

#endif
