/* api_tree.c - one intent: its spend (self and the whole delegation tree
 * below it), the tree with each node's cost, and its end (an outcome and
 * the release of its reservation).
 *
 * An intent id is unique within an org and a tree spans agents, so these
 * routes are keyed by (org, intent id); ?agent= is only checked like any
 * agent a key names. A key bound to an agent sees that agent's part of the
 * sums only, as for runs and sessions. Every read is rollup + tail in one
 * statement (rollup.h), so it is exact right after a 202, whatever order
 * parents and children reported in (schema/018_intent_tree.sql).
 *
 * Ending an intent does both jobs of POST .../end: with a body, it keeps
 * the intent's outcome; with or without one, it releases what is left of
 * the intent's reservation (estimated_cost_usd, reservations in hot.h). */
#include "api_routes.h"
#include "error.h"
#include "rollup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Nodes a tree reply lists at most; the sums of a spend reply cover all. */
#define TREE_NODES_MAX "1000"

/* $1 org, $2 the intent, $3 the bound agent or NULL. n: the intent and its
 * descendants; p: their rows (rollup + tail) that the key may see, with
 * each row's depth. The org's tail is read once, for the tree's edges and
 * its nodes' rows. */
#define TREE_PARTS_SQL                                                                             \
    "WITH " CM_TAIL_CTE_SQL("cm_org_tail($1) h") ","                                               \
    " n AS (SELECT * FROM cm_intent_tree($1, $2, " CM_TAIL_ARRAY_SQL ")),"                         \
    " p AS (SELECT n.depth, intent_parts.* FROM n JOIN " CM_ROLLUP_INTENTS_OF(CM_TAIL_ROWS_SQL)    \
    " ON intent_parts.org = $1 AND intent_parts.intent_id = n.intent_id"                           \
    " WHERE $3::text IS NULL OR intent_parts.address = $3)"


/* The ?agent= hint: absent, or an agent the key may name. */
static int check_hint(const cm_ident *who, const cm_req_spend_intent *q, cm_apierr *e)
{
    return q->agent[0] ? cm_api_may_act_for(who, q->agent, "agent", e) : CM_OK;
}

static void not_found(cm_job *j)
{
    cm_api_error(j, 404, "intent_not_found", NULL, "no intent of this id in this org (that this key may see)");
}

/* The start of a reply: the job, or NULL once answered (503 when the
 * statement failed, 404 unless column col of its first row is true). */
static cm_job *take_known(void *arg, int rc, const cm_pgres *res, int col)
{
    cm_job *j = cm_api_take(arg, rc);
    if (j && (cm_pgres_rows(res) == 0 || cm_pgres_get(res, 0, col)[0] != 't')) {
        not_found(j);
        return NULL;
    }
    return j;
}

static void add_hint(cm_buf *b, const cm_req_spend_intent *q)
{
    cm_buf_adds(b, ",\"agent\":");
    if (q->agent[0]) cm_buf_add_jstr(b, q->agent);
    else cm_buf_adds(b, "null");
}

/* A text column as a JSON string, or null. */
static void add_text_or_null(cm_buf *b, const cm_pgres *res, int row, int col)
{
    if (cm_pgres_isnull(res, row, col)) cm_buf_adds(b, "null");
    else cm_buf_add_jstr(b, cm_pgres_get(res, row, col));
}

/* A Unix-seconds column as an RFC 3339 string, or null. */
static void add_time_or_null(cm_buf *b, const cm_pgres *res, int row, int col)
{
    if (cm_pgres_isnull(res, row, col)) cm_buf_adds(b, "null");
    else cm_buf_add_jtime(b, strtoll(cm_pgres_get(res, row, col), NULL, 10));
}

/* ---- spend: self and tree ---- */

static void on_spend_intent(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = take_known(arg, rc, res, 34);
    if (!j) return;
    const cm_req_spend_intent *q = &j->req.spend_intent;
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{");
    cm_api_jfield(&b, "intent_id", q->intent_id, 1);
    add_hint(&b, q);
    cm_buf_adds(&b, ",\"from\":");
    add_time_or_null(&b, res, 0, 0);
    cm_buf_adds(&b, ",\"to\":");
    add_time_or_null(&b, res, 0, 1);
    /* The intent's own sums stay at the top, as before trees: clients of
     * the earlier reply read them there. */
    cm_api_spend_totals(&b, res, 0, 2);
    cm_buf_adds(&b, ",\"parent_intent_id\":");
    add_text_or_null(&b, res, 0, 28);
    cm_buf_adds(&b, ",\"root_intent_id\":");
    add_text_or_null(&b, res, 0, 29);
    /* self as an object: the totals' members without their leading comma. */
    cm_buf self;
    cm_buf_init(&self);
    cm_api_spend_totals(&self, res, 0, 2);
    cm_buf_adds(&b, ",\"self\":{");
    if (self.data) cm_buf_adds(&b, self.data + 1);
    if (self.failed) b.failed = 1;
    cm_buf_free(&self);
    cm_buf_addf(&b, "},\"tree\":{\"intents\":%s", cm_pgres_get(res, 0, 27));
    cm_api_spend_totals(&b, res, 0, 15);
    cm_buf_adds(&b, "},\"outcome\":");
    if (cm_pgres_isnull(res, 0, 30)) {
        cm_buf_adds(&b, "null");
    } else {
        cm_buf_adds(&b, "{");
        cm_api_jfield(&b, "status", cm_pgres_get(res, 0, 30), 1);
        cm_buf_addf(&b, ",\"quality\":%s,\"ended_at\":", cm_pgres_isnull(res, 0, 31) ? "null" : cm_pgres_get(res, 0, 31));
        add_time_or_null(&b, res, 0, 32);
        cm_buf_adds(&b, "}");
    }
    cm_buf_addf(&b, ",\"abandoned\":%s}", cm_pgres_get(res, 0, 33)[0] == 't' ? "true" : "false");
    cm_api_reply(j, 200, &b);
}

int cm_api_spend_intent(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    const cm_req_spend_intent *q = &j->req.spend_intent;
    if (check_hint(who, q, e) != CM_OK) return CM_EFORBIDDEN;
    cm_api_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    cm_api_outcome_params op;
    cm_api_outcome_params_of(api, j, &op);
    /* Its last bucket is a day when it is older than the hours kept. */
    char hours_from[24];
    snprintf(hours_from, sizeof hours_from, "%lld", (long long)cm_fold_horizon(api->fold, j->now));
    const char *params[] = {who->org, q->intent_id, cm_api_bound_agent(who), op.abandon, op.now, hours_from};
    /* Columns: 0..1 the intent's own first and past-last hour, 2..13 its
     * own totals, 14 its rows, 15..26 the tree's totals, 27 the tree's
     * intents, 28 parent, 29 root, 30..32 outcome (status, quality, end),
     * 33 abandoned, 34 known. Abandoned: not ended, and its last heartbeat
     * (else its admission) older than the setting; l finds that heartbeat
     * in the tail TREE_PARTS_SQL read. A polled statement:
     * prepared, on the read pool. */
    return cm_api_read(c,
                        TREE_PARTS_SQL ","
                        " s AS (SELECT extract(epoch FROM min(bucket))::bigint::text,"
                        " (extract(epoch FROM max(bucket))::bigint"
                        " + CASE WHEN max(bucket) < to_timestamp($6::bigint) THEN 86400 ELSE 3600 END)::text, "
                        CM_API_SPEND_SUMS_SQL ","
                        " count(*) AS nrows FROM p WHERE depth = 0),"
                        " t AS (SELECT " CM_API_SPEND_SUMS_SQL ", (SELECT count(*) FROM n)::text AS nodes FROM p),"
                        " o AS (SELECT * FROM cm_intent_outcome($1, $2)),"
                        " l AS (SELECT max(last_ts) AS last_ts FROM "
                        CM_ROLLUP_UNIT_INTENTS_OF(CM_HB_AGENT_UNIT, CM_TAIL_ROWS_SQL)
                        " WHERE org = $1 AND kind = 'agent' AND intent_id = $2 AND ($3::text IS NULL OR address = $3)),"
                        " r AS (SELECT min(admitted_at) AS at, count(*) AS mine FROM intents"
                        " WHERE org = $1 AND intent_id = $2 AND ($3::text IS NULL OR address = $3))"
                        " SELECT s.*, t.*, cm_intent_parent($1, $2), cm_intent_root($1, $2), o.status,"
                        " trim_scale(o.quality)::text, extract(epoch FROM o.ended_at)::bigint::text,"
                        " (o.status IS NULL AND coalesce(l.last_ts, r.at)"
                        " < to_timestamp($5::bigint) - make_interval(secs => $4::int))::text,"
                        " (s.nrows > 0 OR r.mine > 0 OR t.nodes::int > 1)::text"
                        " FROM s CROSS JOIN t CROSS JOIN l CROSS JOIN r LEFT JOIN o ON true",
                        6, params, on_spend_intent, e);
}

/* ---- the tree, node by node ---- */

static void on_tree(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = take_known(arg, rc, res, 20);
    if (!j) return;
    const cm_req_spend_intent *q = &j->req.spend_intent;
    int rows = cm_pgres_rows(res);
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{");
    cm_api_jfield(&b, "intent_id", q->intent_id, 1);
    add_hint(&b, q);
    cm_buf_addf(&b, ",\"intents\":%s,\"truncated\":%s,\"nodes\":[", cm_pgres_get(res, 0, 21),
                cm_pgres_get(res, 0, 22)[0] == 't' ? "true" : "false");
    for (int i = 0; i < rows; i++) {
        if (i) cm_buf_add(&b, ",", 1);
        cm_buf_adds(&b, "{");
        cm_api_jfield(&b, "intent_id", cm_pgres_get(res, i, 0), 1);
        cm_buf_adds(&b, ",\"parent_intent_id\":");
        add_text_or_null(&b, res, i, 1);
        cm_buf_addf(&b, ",\"depth\":%s,\"agents\":%s", cm_pgres_get(res, i, 2), cm_pgres_get(res, i, 4));
        cm_api_spend_totals(&b, res, i, 5);
        cm_buf_adds(&b, ",\"tree_cost_usd\":");
        cm_buf_add_money_text(&b, cm_pgres_get(res, i, 18));
        cm_buf_adds(&b, ",\"status\":");
        add_text_or_null(&b, res, i, 19);
        cm_buf_adds(&b, "}");
    }
    cm_buf_adds(&b, "]}");
    cm_api_reply(j, 200, &b);
}

int cm_api_intent_tree(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    const cm_req_spend_intent *q = &j->req.spend_intent;
    if (check_hint(who, q, e) != CM_OK) return CM_EFORBIDDEN;
    cm_api_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    const char *params[] = {who->org, q->intent_id, cm_api_bound_agent(who)};
    /* One row per node, depth first (by path): 0 id, 1 parent, 2 depth, 3
     * path, 4 its agents (JSON), 5..16 its own totals, 17 its own cost, 18
     * the cost of its subtree, 19 its outcome's status, 20 the tree is
     * known, 21 its intents, 22 cut at TREE_NODES_MAX. A node's subtree is
     * every node whose path passes through it. */
    return cm_api_query(c,
                        TREE_PARTS_SQL ","
                        " ns AS (SELECT n.intent_id, n.parent_intent_id, n.depth, n.path,"
                        " coalesce(json_agg(DISTINCT p.address) FILTER (WHERE p.address IS NOT NULL), '[]')::text"
                        " AS agents, " CM_API_SPEND_SUMS_SQL ", coalesce(sum(p.cost_nanos), 0) AS own"
                        " FROM n LEFT JOIN p ON p.intent_id = n.intent_id"
                        " GROUP BY n.intent_id, n.parent_intent_id, n.depth, n.path),"
                        " k AS (SELECT count(*) AS nodes, (SELECT count(*) FROM p) > 0 OR count(*) > 1 OR EXISTS"
                        " (SELECT 1 FROM intents WHERE org = $1 AND intent_id = $2 AND ($3::text IS NULL OR address = $3))"
                        " AS known FROM n)"
                        " SELECT ns.*, (SELECT sum(d.own) FROM ns d WHERE ns.intent_id = ANY (d.path))::text,"
                        " (SELECT status FROM cm_intent_outcome($1, ns.intent_id)), k.known::text, k.nodes::text,"
                        " (k.nodes > " TREE_NODES_MAX ")::text"
                        " FROM ns CROSS JOIN k ORDER BY ns.path LIMIT " TREE_NODES_MAX,
                        3, params, on_tree, e);
}

/* ---- the end of an intent: its outcome, and its reservation released ---- */

/* An end between its statement and Redis's release: the outcome kept (or
 * none, for an end without a body). */
typedef struct {
    cm_api_call base;
    char status[16], quality[24];
    bool has_quality, conflict;
    int64_t ended_at;
} end_call;

/* Released (found 1: r[0]) or nothing held: the reply. Without an outcome
 * the release is the whole answer, so nothing held is 404; with one, the
 * outcome is, and released_usd says what this request released. */
static void on_released(void *arg, int rc, int found, const cm_hot_released *r, int n)
{
    end_call *c = arg;
    cm_job *j = c->base.job;
    const cm_req_intent_end *q = &j->req.intent_end;
    end_call done = *c;
    free(c);
    if (rc != CM_OK) {
        cm_api_error(j, 503, "store_unavailable", NULL, "Redis did not answer; retry");
        return;
    }
    bool released = found == 1 && n >= 1;
    if (!q->body.status && !released) {
        /* Another agent's intent is not this key's to see: the same 404. */
        cm_api_error(j, 404, "reservation_not_found", NULL,
                     "this intent holds no reservation: none was made, it ended, or it expired");
        return;
    }
    if (done.conflict) {
        char msg[120];
        if (done.status[0])
            snprintf(msg, sizeof msg, "the intent already ended as %s; an outcome is kept once", done.status);
        else
            snprintf(msg, sizeof msg, "the intent was ended by another request just now");
        cm_api_error(j, 409, "intent_already_ended", "status", msg);
        return;
    }
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{");
    cm_api_jfield(&b, "intent_id", q->intent.intent_id, 1);
    if (q->body.status) {
        cm_api_jfield(&b, "status", done.status, 0);
        cm_buf_addf(&b, ",\"quality\":%s,\"ended_at\":", done.has_quality ? done.quality : "null");
        cm_buf_add_jtime(&b, done.ended_at);
    } else {
        cm_api_jfield(&b, "agent", r[0].agent, 0);
    }
    cm_buf_adds(&b, ",\"released_usd\":");
    cm_buf_add_money(&b, released ? r[0].left : 0);
    cm_buf_adds(&b, "}");
    cm_api_reply(j, 200, &b);
}

/* Recorded (the outcome kept, and the reservation marked ended so that a
 * Redis rebuild does not bring it back): now release it in Redis. */
static void on_end(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    end_call *c = arg;
    cm_job *j = c->base.job;
    const cm_req_intent_end *q = &j->req.intent_end;
    if (rc != CM_OK) {
        free(c);
        cm_api_fail_store(j);
        return;
    }
    if (q->body.status) {
        if (cm_pgres_rows(res) == 0 || cm_pgres_get(res, 0, 0)[0] != 't') {
            free(c);
            not_found(j);
            return;
        }
        /* No kept row: another request ended it between this statement's
         * read and its insert, and its outcome is the one kept. */
        if (!cm_pgres_isnull(res, 0, 1)) {
            snprintf(c->status, sizeof c->status, "%s", cm_pgres_get(res, 0, 1));
            c->has_quality = !cm_pgres_isnull(res, 0, 2);
            if (c->has_quality) snprintf(c->quality, sizeof c->quality, "%s", cm_pgres_get(res, 0, 2));
            c->ended_at = strtoll(cm_pgres_get(res, 0, 3), NULL, 10);
        }
        c->conflict = strcmp(c->status, q->body.status) != 0;
    }
    if (cm_hot_release(c->base.api->hot, c->base.who.org, q->intent.intent_id, c->base.who.agent, on_released, c) !=
        CM_OK)
        on_released(c, CM_ESTORE, 0, NULL, 0);
}

int cm_api_intent_end(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    const cm_req_intent_end *q = &j->req.intent_end;
    if (check_hint(who, &q->intent, e) != CM_OK) return CM_EFORBIDDEN;
    end_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    char quality[24], now[24];
    snprintf(quality, sizeof quality, "%lld", (long long)q->body.quality);
    snprintf(now, sizeof now, "%lld", (long long)j->now);
    /* A key bound to an agent ends only that agent's intents (their
     * reservations; an outcome when it has a part in the intent); an
     * unbound key any of its org's. */
    const char *params[] = {who->org, q->intent.intent_id, cm_api_bound_agent(who), now, q->body.status,
                            q->body.has_quality ? quality : NULL};
    if (!q->body.status)
        return cm_api_query(c,
                            "UPDATE intents SET ended_at = to_timestamp($4::bigint) WHERE org = $1 AND intent_id = $2"
                            " AND ($3::text IS NULL OR address = $3) AND estimated_cost_nanos > 0 AND ended_at IS NULL",
                            4, params, on_end, e);
    /* Known: recorded, or heartbeats of it (a bound key: its own). The
     * first outcome is kept, whether a heartbeat's status (maybe still in
     * the tail) or an earlier end brought it; a repeat reads it back. An
     * outcome ends the reservation too, whichever outcome is kept.
     * Columns: 0 known, 1..3 the kept outcome (status, quality, end). */
    return cm_api_query(c,
                        "WITH k AS (SELECT EXISTS (SELECT 1 FROM intents WHERE org = $1 AND intent_id = $2"
                        " AND ($3::text IS NULL OR address = $3)) OR EXISTS (SELECT 1 FROM " CM_ROLLUP_INTENTS_SQL("$1")
                        " WHERE org = $1 AND intent_id = $2 AND ($3::text IS NULL OR address = $3)) AS known),"
                        " prev AS (SELECT * FROM cm_intent_outcome($1, $2)),"
                        " ins AS (INSERT INTO intent_outcome (org, intent_id, status, quality, ended_at)"
                        " SELECT $1, $2, $5, $6::numeric / 1000000000, to_timestamp($4::bigint) FROM k"
                        " WHERE k.known AND NOT EXISTS (SELECT 1 FROM prev) ON CONFLICT DO NOTHING"
                        " RETURNING status, quality, ended_at),"
                        " rel AS (UPDATE intents SET ended_at = to_timestamp($4::bigint) WHERE org = $1"
                        " AND intent_id = $2 AND ($3::text IS NULL OR address = $3) AND estimated_cost_nanos > 0"
                        " AND ended_at IS NULL),"
                        " kept AS (SELECT * FROM ins UNION ALL SELECT * FROM prev)"
                        " SELECT k.known::text, kept.status, trim_scale(kept.quality)::text,"
                        " extract(epoch FROM kept.ended_at)::bigint::text FROM k LEFT JOIN kept ON true",
                        6, params, on_end, e);
}
