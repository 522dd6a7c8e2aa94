#include "hbrow.h"
#include "auth.h"
#include "error.h"

#include <json-c/json.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cm_hbrow_param(int col)
{
    return col < CM_HBROW_FIRST_LATE ? col : col + 2;
}

/* Appends column col of heartbeat h (PostgreSQL's array-element text) to b;
 * idx is the row's index in its statement, which results name it by. Sets
 * b->failed when h's dedupe key cannot be made. */
static void add_col(cm_buf *b, int col, const cm_hb *h, size_t idx)
{
    switch (col) {
    case 0: cm_buf_add_pg_text(b, h->agent); break;
    case 1: cm_buf_add_pg_text(b, h->id); break;
    case 2: cm_buf_add_pg_text(b, h->intent_id); break;
    case 3: cm_buf_add_pg_text(b, h->run_id); break;
    case 4: cm_buf_add_pg_text(b, h->session_id); break;
    case 5: cm_buf_add_pg_text(b, h->workflow); break;
    case 6: cm_buf_add_pg_text(b, h->parent_intent_id); break;
    case 7: cm_buf_add_pg_text(b, h->status); break;
    case 8: cm_buf_add_int(b, h->ts); break;
    case 9: cm_buf_add_int(b, h->cost_nanos); break;
    case 10: cm_buf_add_int(b, h->tokens_in); break;
    case 11: cm_buf_add_int(b, h->tokens_out); break;
    case 12: cm_buf_add_int(b, h->tokens_cached); break;
    case 13: cm_buf_add_int(b, h->llm_calls); break;
    case 14: cm_buf_add_int(b, h->tool_calls); break;
    case 15: cm_buf_add_int(b, h->intents_total); break;
    case 16: cm_buf_add_int(b, h->intents_succeeded); break;
    case 17: cm_buf_add_int(b, h->intents_failed); break;
    case 18:
        if (h->has_latency) cm_buf_addf(b, "%.17g", h->avg_latency_ms);
        else cm_buf_adds(b, "NULL");
        break;
    case 19: cm_buf_add_int(b, (int64_t)idx); break;
    case 20: cm_buf_add_pg_text(b, h->model); break;
    case 21: cm_buf_add_int(b, h->tokens_cache_write); break;
    case 22:
        if (h->priced) cm_buf_add_int(b, h->priced_nanos);
        else cm_buf_adds(b, "NULL");
        break;
    case 23: cm_buf_add_pg_text(b, h->customer); break;
    case 24: cm_buf_add_int(b, h->revenue_nanos); break;
    case 25: cm_buf_add_int(b, h->refund_nanos); break;
    case 26: cm_buf_add_int(b, h->external_nanos); break;
    case 27: cm_buf_add_int(b, h->fees_nanos); break;
    case 28: {
        char key[CM_HB_KEY_HEX_LEN];
        if (!h->id[0])
            cm_buf_adds(b, "NULL");
        else if (cm_auth_hb_key(h->agent, h->id, key) == CM_OK)
            cm_buf_adds(b, key);
        else
            b->failed = 1;
        break;
    }
    case 29: cm_buf_add_int(b, h->compute_ms); break;
    }
}

int cm_hbrow_columns(const cm_hb *const *hbs, const unsigned char *skip, size_t n, cm_buf cols[CM_HBROW_COLS])
{
    int failed = 0;
    for (int c = 0; c < CM_HBROW_COLS; c++) {
        cm_buf_init(&cols[c]);
        cm_buf_add(&cols[c], "{", 1);
        int first = 1;
        for (size_t i = 0; i < n; i++) {
            if (skip && skip[i]) continue;
            if (!first) cm_buf_add(&cols[c], ",", 1);
            first = 0;
            add_col(&cols[c], c, hbs[i], i);
        }
        cm_buf_add(&cols[c], "}", 1);
        failed |= cols[c].failed;
    }
    return failed ? CM_ENOMEM : CM_OK;
}

/* ---- the statements ----
 *
 * Both are built from the same parts, so the columns a heartbeat is stored
 * with are spelled once. Data-modifying CTEs always run to completion,
 * referenced or not. A row is new when its id is (heartbeat_ids is the 7-day
 * dedupe, schema/012_partitions.sql; each row's key is hashed here,
 * cm_auth_hb_key, and sent as $31); rows without an id always are. Lock order
 * is fixed by the ORDER BY clauses so concurrent replicas do not deadlock
 * each other (and a deadlock that happens anyway is retried). */
#define INPUT_SQL(more_params, more_cols)                                                                    \
    "WITH input AS (SELECT t.*, decode(t.key_hex, 'hex') AS key"                                             \
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"                                           \
    " $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::bigint[],"           \
    " $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[],"             \
    " $18::bigint[], $19::float8[], $20::int[], $23::text[], $24::bigint[], $25::bigint[], $26::text[],"     \
    " $27::bigint[], $28::bigint[], $29::bigint[], $30::bigint[], $31::text[], $32::bigint[]" more_params ")" \
    " AS t(address, hb_id, intent_id, run_id,"                                                               \
    " session_id, workflow, parent_intent_id, status, ts, cost, tin, tout, tcached, calls, tools,"           \
    " itotal, isucc, ifail, lat, idx, model, tcwrite, priced, customer, revenue, refund, external, fees,"    \
    " key_hex, compute_ms" more_cols ")),"

/* The agents of a text array param registered, or their last_heartbeat
 * moved. */
#define REGISTER_SQL(param)                                                                                  \
    "INSERT INTO agents AS a (address, org, last_heartbeat, health)"                                         \
    " SELECT address, split_part(address, '/', 3), now(), 'healthy' FROM unnest(" param "::text[]) AS t(address)" \
    " ORDER BY 1"                                                                                            \
    " ON CONFLICT (address) DO UPDATE SET last_heartbeat = greatest(a.last_heartbeat, excluded.last_heartbeat)"

const char cm_hbrow_register_sql[] = REGISTER_SQL("$1");

/* The raw rows of `src` (a CTE shaped as input) whose ids are new, their
 * hour/day/month rollups, and the agents of $22. */
#define STORE_SQL(src)                                                                                        \
    " ids AS (INSERT INTO heartbeat_ids (key) SELECT key FROM " src                                          \
    " WHERE key IS NOT NULL ORDER BY 1 ON CONFLICT DO NOTHING RETURNING key),"                               \
    " ins AS (INSERT INTO heartbeats (address, hb_id, intent_id, run_id, session_id, workflow,"              \
    " parent_intent_id, status, ts, cost_nanos, tokens_in, tokens_out, tokens_cached, llm_calls,"            \
    " tool_calls, intents_total, intents_succeeded, intents_failed, avg_latency_ms, model,"                  \
    " tokens_cache_write, priced_nanos, customer, revenue_nanos, refund_nanos, external_nanos, fees_nanos,"  \
    " compute_ms) SELECT i.address, i.hb_id, intent_id, run_id, session_id, workflow, parent_intent_id,"     \
    " status, to_timestamp(ts), cost, tin, tout, tcached, calls, tools, itotal, isucc, ifail, lat, model,"   \
    " tcwrite, priced, customer, revenue, refund, external, fees, compute_ms"                                \
    " FROM " src " i LEFT JOIN ids ON ids.key = i.key"                                                      \
    " WHERE i.hb_id IS NULL OR ids.key IS NOT NULL"                                                         \
    " RETURNING address, hb_id, intent_id, ts, cost_nanos, tokens_in, tokens_out, tokens_cached,"           \
    " llm_calls, tool_calls, intents_total, intents_succeeded, intents_failed),"                             \
    " roll AS (INSERT INTO rollup_agent AS r (address, grain, bucket, cost_nanos, tokens_in,"                \
    " tokens_out, tokens_cached, llm_calls, tool_calls, heartbeats, intents_total,"                          \
    " intents_succeeded, intents_failed)"                                                                    \
    " SELECT i.address, g.grain, date_trunc(g.unit, i.ts, 'UTC'), sum(cost_nanos), sum(tokens_in),"         \
    " sum(tokens_out), sum(tokens_cached), sum(llm_calls), sum(tool_calls), count(*),"                      \
    " sum(intents_total), sum(intents_succeeded), sum(intents_failed)"                                       \
    " FROM ins i CROSS JOIN (VALUES ('h', 'hour'), ('d', 'day'), ('m', 'month')) AS g(grain, unit)"          \
    " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"                                                                     \
    " ON CONFLICT (address, grain, bucket) DO UPDATE SET"                                                    \
    " cost_nanos = r.cost_nanos + excluded.cost_nanos, tokens_in = r.tokens_in + excluded.tokens_in,"       \
    " tokens_out = r.tokens_out + excluded.tokens_out,"                                                      \
    " tokens_cached = r.tokens_cached + excluded.tokens_cached,"                                             \
    " llm_calls = r.llm_calls + excluded.llm_calls, tool_calls = r.tool_calls + excluded.tool_calls,"       \
    " heartbeats = r.heartbeats + excluded.heartbeats,"                                                      \
    " intents_total = r.intents_total + excluded.intents_total,"                                             \
    " intents_succeeded = r.intents_succeeded + excluded.intents_succeeded,"                                 \
    " intents_failed = r.intents_failed + excluded.intents_failed"                                           \
    " RETURNING address, grain, bucket, cost_nanos, tokens_in, tokens_out, llm_calls, heartbeats),"         \
    " reg AS (" REGISTER_SQL("$22") " RETURNING 1),"

/* The rollups' absolute totals after the statement, as 'r' rows. */
#define ROLLUP_ROWS_SQL                                                                                    \
    "SELECT 'r', address, grain, extract(epoch FROM bucket)::bigint::text, cost_nanos::text,"              \
    " tokens_in::text, tokens_out::text, llm_calls::text, heartbeats::text FROM roll"

/* Every output column is text so the kinds of rows share one result. A 't'
 * row's cost is today's before the statement (an 'r' row of today's day
 * bucket, when there is one, is newer; a join on the 'roll' CTE here would
 * rescan it once per agent). */
const char cm_hbrow_group_sql[] =
    INPUT_SQL("", "") STORE_SQL("input")
    " today AS (SELECT date_trunc('day', to_timestamp($21), 'UTC') AS d)"
    " SELECT 'n', i.idx::text, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM input i"
    " WHERE i.hb_id IS NULL OR EXISTS (SELECT 1 FROM ids WHERE ids.key = i.key)"
    " UNION ALL " ROLLUP_ROWS_SQL
    " UNION ALL SELECT 't', x.address, coalesce(d.cost_nanos, 0)::text, NULL, NULL,"
    " NULL, NULL, NULL, NULL FROM (SELECT DISTINCT address FROM input) x CROSS JOIN today"
    " LEFT JOIN rollup_agent d ON d.address = x.address AND d.grain = 'd' AND d.bucket = today.d";

/* The mark is locked first (FOR UPDATE waits for another replica's batch and
 * reads the mark it left), so two persisters never both store an entry.
 * $36/$37 are the entries persist.c left out as duplicates of an earlier row
 * of the same batch: recorded with the others, so a batch drained again
 * knows every entry whose increments are to be taken back. */
const char cm_hbrow_persist_sql[] =
    INPUT_SQL(", $33::bigint[], $34::bigint[]", ", e_ms, e_seq")
    " mark AS (SELECT ms, seq FROM persist_mark WHERE id = 1 FOR UPDATE),"
    " fresh AS (SELECT i.* FROM input i, mark m WHERE (i.e_ms, i.e_seq) > (m.ms, m.seq)),"
    STORE_SQL("fresh")
    " moved AS (UPDATE persist_mark p SET ms = $21::bigint, seq = $35::bigint FROM mark m"
    " WHERE p.id = 1 AND (m.ms, m.seq) < ($21::bigint, $35::bigint) RETURNING 1),"
    " dups AS (SELECT f.idx, f.e_ms, f.e_seq FROM fresh f"
    " WHERE f.key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ids WHERE ids.key = f.key)),"
    " kept AS (INSERT INTO persist_dup (ms, seq) SELECT e_ms, e_seq FROM dups UNION"
    " SELECT d.ms, d.seq FROM unnest($36::bigint[], $37::bigint[]) AS d(ms, seq), mark m"
    " WHERE (d.ms, d.seq) > (m.ms, m.seq) ORDER BY 1, 2"
    " ON CONFLICT DO NOTHING RETURNING 1),"
    " pruned AS (DELETE FROM persist_dup WHERE ms < $21::bigint - 86400000 RETURNING 1)"
    " SELECT 'd', idx::text, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM dups"
    " UNION ALL SELECT 'd', i.idx::text, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM input i, mark m"
    " WHERE (i.e_ms, i.e_seq) <= (m.ms, m.seq)"
    " AND EXISTS (SELECT 1 FROM persist_dup p WHERE p.ms = i.e_ms AND p.seq = i.e_seq)"
    " UNION ALL " ROLLUP_ROWS_SQL " WHERE $38::boolean";

/* ---- duplicates within a group ---- */

typedef struct {
    const cm_hb *hb;
    size_t i;
} ranked;

static int cmp_ranked(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    int c = strcmp(x->hb->agent, y->hb->agent);
    if (c) return c;
    c = strcmp(x->hb->id, y->hb->id);
    if (c) return c;
    return x->i < y->i ? -1 : x->i > y->i;
}

int cm_hbrow_mark_dups(const cm_hb *const *hbs, size_t n, unsigned char *dup)
{
    memset(dup, 0, n);
    ranked *order = malloc((n ? n : 1) * sizeof *order);
    if (!order) return CM_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (hbs[i]->id[0]) order[m++] = (ranked){hbs[i], i};
    /* Equal pairs sort by position: the first one stays. */
    qsort(order, m, sizeof *order, cmp_ranked);
    for (size_t k = 1; k < m; k++)
        if (strcmp(order[k].hb->agent, order[k - 1].hb->agent) == 0 &&
            strcmp(order[k].hb->id, order[k - 1].hb->id) == 0)
            dup[order[k].i] = 1;
    free(order);
    return CM_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

size_t cm_hbrow_distinct(const char **names, size_t n)
{
    qsort(names, n, sizeof *names, cmp_str);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || strcmp(names[i], names[k - 1]) != 0) names[k++] = names[i];
    return k;
}

/* ---- a heartbeat as a queue entry ----
 *
 * Short names keep an entry small (the queue's memory is what a PostgreSQL
 * outage lets grow); fields at their default are left out. */

/* How a field is written: F_INT is left out at 0, F_TS always written
 * (and required), F_PRICE written when the rate card priced the heartbeat,
 * F_FLAG (has_cost) only when true, F_LATENCY as text with 17 significant
 * digits (which read back to the same double) when there is one. */
typedef enum { F_STR, F_INT, F_TS, F_PRICE, F_FLAG, F_LATENCY } field_kind;

typedef struct {
    const char *name;
    field_kind kind;
    size_t off;  /* of the char array or int64_t */
    size_t size; /* of the char array */
} field;

#define STR(n, m) {n, F_STR, offsetof(cm_hb, m), sizeof(((cm_hb *)0)->m)}
#define INT(n, m) {n, F_INT, offsetof(cm_hb, m), 0}
static const field fields[] = {
    STR("a", agent),       STR("id", id),         STR("in", intent_id),     STR("ru", run_id),
    STR("se", session_id), STR("wf", workflow),   STR("pi", parent_intent_id), STR("cu", customer),
    STR("st", status),     STR("mo", model),      {"ts", F_TS, offsetof(cm_hb, ts), 0}, INT("c", cost_nanos),
    INT("rv", revenue_nanos), INT("rf", refund_nanos), INT("ex", external_nanos), INT("fe", fees_nanos),
    INT("ti", tokens_in),  INT("to", tokens_out), INT("tc", tokens_cached), INT("tw", tokens_cache_write),
    INT("lc", llm_calls),  INT("tl", tool_calls), INT("cm", compute_ms),    INT("it", intents_total),
    INT("is", intents_succeeded), INT("if", intents_failed),
    {"hc", F_FLAG, 0, 0},  {"pr", F_PRICE, offsetof(cm_hb, priced_nanos), 0}, {"la", F_LATENCY, 0, 0},
};
#undef STR
#undef INT
enum { NFIELDS = sizeof fields / sizeof fields[0] };

static int64_t *int_at(cm_hb *h, const field *f)
{
    return (int64_t *)((char *)h + f->off);
}

void cm_hbrow_encode(const cm_hb *h, cm_buf *out)
{
    cm_buf_adds(out, "{");
    int first = 1;
    for (int i = 0; i < NFIELDS; i++) {
        const field *f = &fields[i];
        char text[40];
        const char *str = NULL;
        int64_t num = 0;
        switch (f->kind) {
        case F_STR:
            str = (const char *)h + f->off;
            if (!str[0]) continue;
            break;
        case F_INT:
            num = *int_at((cm_hb *)h, f);
            if (num == 0) continue;
            break;
        case F_TS: num = h->ts; break;
        case F_PRICE:
            if (!h->priced) continue;
            num = h->priced_nanos;
            break;
        case F_FLAG:
            if (!h->has_cost) continue;
            break;
        case F_LATENCY:
            if (!h->has_latency) continue;
            snprintf(text, sizeof text, "%.17g", h->avg_latency_ms);
            str = text;
            break;
        }
        cm_buf_adds(out, first ? "\"" : ",\"");
        first = 0;
        cm_buf_adds(out, f->name);
        cm_buf_adds(out, "\":");
        if (str) cm_buf_add_jstr(out, str);
        else if (f->kind == F_FLAG) cm_buf_adds(out, "true");
        else cm_buf_add_int(out, num);
    }
    cm_buf_adds(out, "}");
}

static const field *field_named(const char *name)
{
    for (int i = 0; i < NFIELDS; i++)
        if (strcmp(fields[i].name, name) == 0) return &fields[i];
    return NULL;
}

int cm_hbrow_decode(const char *text, size_t len, cm_hb *out)
{
    memset(out, 0, sizeof *out);
    cm_apierr e;
    json_object *root = cm_codec_parse(text, len, &e);
    if (!root) return CM_EINVAL;
    if (!json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return CM_EINVAL;
    }
    int rc = CM_OK;
    int has_ts = 0;
    json_object_object_foreach(root, key, val)
    {
        const field *f = field_named(key);
        if (rc != CM_OK || !f) {
            rc = CM_EINVAL;
            break;
        }
        const char *str = json_object_is_type(val, json_type_string) ? json_object_get_string(val) : NULL;
        size_t n = str ? (size_t)json_object_get_string_len(val) : 0;
        if (str && (strlen(str) != n || n == 0 || cm_utf8_valid_prefix(str, n) != n)) {
            rc = CM_EINVAL;
            break;
        }
        switch (f->kind) {
        case F_INT:
        case F_TS:
        case F_PRICE:
            /* json-c clamps what int64 cannot hold to its bounds, which
             * encode never writes (no value the codec accepts is one). */
            if (!json_object_is_type(val, json_type_int)) rc = CM_EINVAL;
            *int_at(out, f) = json_object_get_int64(val);
            if (*int_at(out, f) == INT64_MAX || *int_at(out, f) == INT64_MIN) rc = CM_EINVAL;
            if (f->kind == F_PRICE) out->priced = true;
            if (f->kind == F_TS) has_ts = 1;
            break;
        case F_FLAG:
            if (!json_object_is_type(val, json_type_boolean) || !json_object_get_boolean(val)) rc = CM_EINVAL;
            else out->has_cost = true;
            break;
        case F_STR:
            if (!str || n >= f->size) rc = CM_EINVAL;
            else memcpy((char *)out + f->off, str, n + 1);
            break;
        case F_LATENCY: {
            /* Exactly the text encode writes for a finite double
             * (subnormals too, which strtod reports as ERANGE). */
            char back[40];
            out->avg_latency_ms = str ? strtod(str, NULL) : 0;
            out->has_latency = true;
            snprintf(back, sizeof back, "%.17g", out->avg_latency_ms);
            if (!str || !isfinite(out->avg_latency_ms) || strcmp(back, str) != 0) rc = CM_EINVAL;
            break;
        }
        }
    }
    json_object_put(root);
    if (rc == CM_OK && !has_ts) rc = CM_EINVAL;
    if (rc != CM_OK) memset(out, 0, sizeof *out);
    return rc;
}
