#include "hot_rebuild.h"
#include "address.h"
#include "budget.h"
#include "error.h"
#include "policy_row.h"

#include <stdio.h>
#include <stdlib.h>

/* The queries of a pass, run one after the other: the agents' policies and
 * kill flags (replaced), their rollups and intent counts of the current
 * windows (merged as maxima), then the same of the scopes (budget.h): cost
 * and intents per window, policies; then the open reservations. $1 is
 * one agent's address, or NULL for all; with an address, the scopes of its
 * org that have a policy (SCOPE_WANTED) and its org's reservations. Columns
 * of the counts: address or tag, grain, bucket start, then the totals
 * (cm_hot_rollup's) or the count.
 *
 * The policies come first: the group commits merge an agent's windows only
 * while its policy in Redis has a limit (merge.lua), so a commit after the
 * policy is back merges itself and one before it is in the rollups read
 * after. A whole pass of postgres mode ($2 true) reads the windows of the
 * agents whose policy has a limit only, the only ones the commits keep
 * (hot.h, cm_hot_set_all_windows).
 *
 * The rollups come in slices of ROLLUP_SLICE rows in key order, $3..$5 the
 * key of the last row of the slice before (NULL for the first): a slice's
 * rows are read and its MERGE calls formatted on the loop thread, which
 * for 600,000 windows at once held every live request for most of a
 * second, and the slices bound the memory a rebuild holds. One agent's
 * rows (at most ~60) are one slice. */
#define ROLLUP_SLICE 20000
#define TEXT_(x) #x
#define TEXT(x) TEXT_(x)
/* The agents a pass reads the windows of: $1, or all, or with $2 those
 * whose policy has a limit. */
#define AGENTS_WANTED                                                                                      \
    "($1::text IS NULL OR address = $1) AND ($1::text IS NOT NULL OR NOT $2::boolean OR address IN"        \
    " (SELECT address FROM cost_policies WHERE " CM_POLICY_ROW_HAS_LIMIT_SQL "))"
static const char rollups_sql[] =
    "SELECT address, grain, extract(epoch FROM bucket)::bigint::text, cost_nanos::text,"
    " tokens_in::text, tokens_out::text, llm_calls::text, heartbeats::text FROM rollup_agent"
    " WHERE " AGENTS_WANTED " AND ((grain = 'h' AND bucket >= now() - interval '49 hours')"
    " OR (grain = 'd' AND bucket >= now() - interval '9 days')"
    " OR (grain = 'm' AND bucket >= date_trunc('month', now(), 'UTC') - interval '1 month'))"
    " AND ($3::text IS NULL OR (address, grain, bucket) > ($3::text, $4::bpchar, to_timestamp($5::bigint)))"
    " ORDER BY address, grain, bucket LIMIT " TEXT(ROLLUP_SLICE);

static const char intents_sql[] =
    "SELECT address, g.grain, extract(epoch FROM date_trunc(g.unit, admitted_at, 'UTC'))::bigint::text,"
    " count(*)::text FROM intents CROSS JOIN (VALUES ('h', 'hour'), ('d', 'day'), ('m', 'month')) AS g(grain, unit)"
    " WHERE " AGENTS_WANTED
    " AND admitted_at >= date_trunc('month', now(), 'UTC') - interval '1 month'"
    " AND (g.grain <> 'h' OR admitted_at >= now() - interval '49 hours') GROUP BY 1, 2, 3";

/* Columns: address, has a policy, killed, then CM_POLICY_ROW_COLS. All
 * agents: those with a policy or killed (the others have neither in a
 * rebuilt Redis), in the same order at every rebuild. One agent: always
 * its row, so a policy or kill flag Redis kept from before is cleared
 * too. */
static const char policies_sql[] =
    "SELECT coalesce(c.address, a.address), c.address IS NOT NULL, coalesce(a.killed, false), " CM_POLICY_ROW_COLS
    " FROM cost_policies c FULL JOIN (SELECT address, killed FROM agents WHERE killed) a ON a.address = c.address"
    " WHERE $1::text IS NULL ORDER BY 1";
static const char agent_policy_sql[] =
    "SELECT $1::text, c.address IS NOT NULL, coalesce(a.killed, false), " CM_POLICY_ROW_COLS
    " FROM (SELECT 1) one LEFT JOIN cost_policies c ON c.address = $1 LEFT JOIN agents a ON a.address = $1";

/* The current windows of a bucket column, as the agents' queries take them. */
#define CURRENT_WINDOWS(b)                                                                                 \
    "((grain = 'h' AND " b " >= now() - interval '49 hours') OR (grain = 'd' AND " b " >= now() - interval"  \
    " '9 days') OR (grain = 'm' AND " b " >= date_trunc('month', now(), 'UTC') - interval '1 month'))"
#define SCOPE_ORG "($1::text IS NULL OR org = split_part($1, '/', 3))"
/* One agent's pass: only the scopes of its org with a policy, since only
 * those refuse its admission (a scope without one answers zeros, and the
 * whole pass brings it back). The first condition, with no column, is
 * checked once: an org without scope policies reads no intents at all. */
#define SCOPE_WANTED(kind, scope)                                                                          \
    "($1::text IS NULL OR EXISTS (SELECT 1 FROM scope_policies WHERE org = split_part($1, '/', 3)))"        \
    " AND ($1::text IS NULL OR (" kind ", " scope ") IN (SELECT kind, scope FROM scope_policies"            \
    " WHERE org = split_part($1, '/', 3)))"

static const char scope_costs_sql[] =
    "SELECT " CM_BUDGET_TAG_SQL("org", "kind", "scope") ", grain, extract(epoch FROM bucket)::bigint::text,"
    " least(cost_nanos, 9223372036854775807)::text FROM rollup_scope WHERE " SCOPE_ORG " AND "
    SCOPE_WANTED("kind", "scope") " AND " CURRENT_WINDOWS("bucket");

static const char scope_intents_sql[] =
    "SELECT " CM_BUDGET_TAG_SQL("org", "u.kind", "u.scope") ", g.grain,"
    " extract(epoch FROM date_trunc(g.unit, admitted_at, 'UTC'))::bigint::text, count(*)::text FROM intents"
    " CROSS JOIN LATERAL (VALUES ('org', ''), ('env', split_part(address, '/', 4)), ('run', run_id),"
    " ('workflow', workflow), ('customer', customer)) AS u(kind, scope)"
    " CROSS JOIN (VALUES ('h', 'hour'), ('d', 'day'), ('m', 'month')) AS g(grain, unit)"
    " WHERE u.scope IS NOT NULL AND " SCOPE_ORG " AND " SCOPE_WANTED("u.kind", "u.scope")
    " AND admitted_at >= date_trunc('month', now(), 'UTC') - interval '1 month'"
    " AND (g.grain <> 'h' OR admitted_at >= now() - interval '49 hours') GROUP BY 1, 2, 3";

/* Columns as policies_sql's. */
static const char scope_policies_sql[] =
    "SELECT " CM_BUDGET_TAG_SQL("org", "kind", "scope") ", true, false, " CM_POLICY_ROW_COLS
    " FROM scope_policies WHERE " SCOPE_ORG;

/* The open reservations: org, intent id, agent, deadline, what is left of
 * the estimate after what its agent spent on the intent (rollup and tail),
 * run, workflow, customer. */
static const char reservations_sql[] =
    "SELECT i.org, i.intent_id, i.address, extract(epoch FROM i.reserved_until)::bigint::text, i.held::text,"
    " coalesce(i.run_id, ''), coalesce(i.workflow, ''), coalesce(i.customer, '')"
    " FROM " CM_BUDGET_OPEN_SQL("cm_rollup_tail()") " i WHERE $1::text IS NULL OR i.org = split_part($1, '/', 3)";

/* The last stream entry PostgreSQL holds (schema/023_persist.sql), for a
 * whole rebuild once anything was queued: a Redis that lost its queue must
 * number new entries past it, or the persister would take them for entries
 * it already stored (a new primary's clock behind the old one's). */
static const char queue_mark_sql[] =
    "SELECT ms::text, seq::text FROM persist_mark WHERE $1::text IS NULL AND (ms, seq) > (0, 0)";

enum { POLICIES = 0, ROLLUPS, INTENTS, SCOPE_COSTS, SCOPE_INTENTS, SCOPE_POLICIES, RESERVATIONS, QUEUE_MARK, NSTEPS };

typedef struct {
    cm_hot *h;
    cm_pg_pool *pg;
    cm_hot_pass_cb done;
    void *arg;
    char address[CM_ADDR_MAX]; /* "" for all agents */
    char after[CM_ADDR_MAX];   /* the rollups' last key read: address, */
    char after_grain[2];       /* grain, */
    char after_bucket[24];     /* bucket start ("" before the first slice) */
    int step;
    int last; /* the step the pass ends with */
    int pending; /* Redis calls of the step not yet answered, plus one while sending */
    bool failed;
    long long gen; /* of policy writes, taken before the policies are read */
} pass;

static void run_step(pass *p);
static int query_step(pass *p);

static void finish(pass *p, bool ok)
{
    cm_hot *h = p->h;
    cm_hot_pass_cb done = p->done;
    void *arg = p->arg;
    bool held = p->address[0] != '\0';
    free(p);
    done(h, ok, arg);
    /* After done: what it sends (an agent's ADMIT) goes before the whole
     * rebuild's next writes. */
    if (held) cm_hot_hold_bulk(h, false);
}

static void on_written(void *arg, int rc)
{
    pass *p = arg;
    if (rc != CM_OK) p->failed = true;
    if (--p->pending > 0) return;
    if (p->failed || p->step == p->last) {
        finish(p, !p->failed);
        return;
    }
    p->step++;
    run_step(p);
}

/* Counts a Redis call of the step that did (CM_OK) or did not go. */
static void sent(pass *p, int rc)
{
    if (rc == CM_OK) p->pending++;
    else p->failed = true;
}

static int64_t num(const cm_pgres *res, int r, int c)
{
    return strtoll(cm_pgres_get(res, r, c), NULL, 10);
}

void cm_hot_rollup_read(const cm_pgres *res, int row, int col, cm_hot_rollup *out)
{
    *out = (cm_hot_rollup){.address = cm_pgres_get(res, row, col), .grain = cm_pgres_get(res, row, col + 1)[0],
                           .start = num(res, row, col + 2), .cost = num(res, row, col + 3),
                           .tokens_in = num(res, row, col + 4), .tokens_out = num(res, row, col + 5),
                           .llm_calls = num(res, row, col + 6), .heartbeats = num(res, row, col + 7)};
}

static void merge_rollups(pass *p, const cm_pgres *res, int rows)
{
    cm_hot_rollup *v = malloc((size_t)rows * sizeof *v);
    if (!v) {
        p->failed = true;
        return;
    }
    for (int r = 0; r < rows; r++) cm_hot_rollup_read(res, r, 0, &v[r]);
    sent(p, cm_hot_merge(p->h, v, rows, on_written, p));
    free(v);
}

static void merge_count(pass *p, const char *field, const cm_pgres *res, int rows)
{
    cm_hot_count *v = malloc((size_t)rows * sizeof *v);
    if (!v) {
        p->failed = true;
        return;
    }
    for (int r = 0; r < rows; r++)
        v[r] = (cm_hot_count){.tag = cm_pgres_get(res, r, 0), .grain = cm_pgres_get(res, r, 1)[0],
                              .start = num(res, r, 2), .value = num(res, r, 3)};
    sent(p, cm_hot_merge_count(p->h, field, v, rows, on_written, p));
    free(v);
}

static void put_policies(pass *p, const cm_pgres *res, int rows)
{
    for (int r = 0; r < rows && !p->failed; r++) {
        cm_policy pol;
        const char *address = cm_pgres_get(res, r, 0);
        bool has = cm_pgres_get(res, r, 1)[0] == 't';
        if (has) cm_policy_row_read(res, r, 3, &pol);
        sent(p, cm_hot_replace_policy(p->h, address, has ? &pol : NULL, p->gen, on_written, p));
        if (p->step == POLICIES)
            sent(p, cm_hot_replace_killed(p->h, address, cm_pgres_get(res, r, 2)[0] == 't', p->gen, on_written, p));
    }
}

static void restore_reservations(pass *p, const cm_pgres *res, int rows)
{
    for (int r = 0; r < rows && !p->failed; r++) {
        cm_scope scopes[CM_SCOPE_KINDS];
        char tags[CM_SCOPE_KINDS][CM_ADDR_MAX];
        const char *tagv[CM_SCOPE_KINDS];
        const char *org = cm_pgres_get(res, r, 0);
        int n = cm_budget_scopes(cm_pgres_get(res, r, 2), cm_pgres_get(res, r, 5), cm_pgres_get(res, r, 6),
                                 cm_pgres_get(res, r, 7), scopes);
        for (int l = 0; l < n; l++) {
            cm_budget_tag(org, &scopes[l], tags[l]);
            tagv[l] = tags[l];
        }
        cm_hot_reservation v = {.org = org, .intent_id = cm_pgres_get(res, r, 1), .tags = tagv, .ntags = n,
                                .left = num(res, r, 4), .deadline = num(res, r, 3)};
        if (v.left > 0) sent(p, cm_hot_restore_reservation(p->h, &v, on_written, p));
    }
}

static void on_rows(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    pass *p = arg;
    int rows = rc == CM_OK ? cm_pgres_rows(res) : 0;
    cm_hot_set_bulk(p->h, !p->address[0]);
    if (rc != CM_OK) p->failed = true;
    else if (rows > 0 && p->step == ROLLUPS) merge_rollups(p, res, rows);
    else if (rows > 0 && (p->step == INTENTS || p->step == SCOPE_INTENTS)) merge_count(p, "intents", res, rows);
    else if (rows > 0 && p->step == SCOPE_COSTS) merge_count(p, "cost", res, rows);
    else if (p->step == POLICIES || p->step == SCOPE_POLICIES) put_policies(p, res, rows);
    else if (p->step == RESERVATIONS) restore_reservations(p, res, rows);
    else if (rows > 0 && p->step == QUEUE_MARK)
        sent(p, cm_hot_queue_floor(p->h, cm_pgres_get(res, 0, 0), cm_pgres_get(res, 0, 1), on_written, p));
    cm_hot_set_bulk(p->h, false);
    if (p->step == ROLLUPS && rows == ROLLUP_SLICE && !p->failed) {
        /* The next slice holds what this query held. */
        snprintf(p->after, sizeof p->after, "%s", cm_pgres_get(res, rows - 1, 0));
        snprintf(p->after_grain, sizeof p->after_grain, "%s", cm_pgres_get(res, rows - 1, 1));
        snprintf(p->after_bucket, sizeof p->after_bucket, "%s", cm_pgres_get(res, rows - 1, 2));
        if (query_step(p) == CM_OK) return;
        p->failed = true;
    }
    on_written(p, CM_OK); /* the one held while sending */
}

/* Sends the step's query: $1 the agent or NULL; for the agents' rollups
 * and intents $2, whether only agents with a limit; for the rollups the key
 * their next slice starts after. */
static int query_step(pass *p)
{
    static const char *const sql[NSTEPS] = {policies_sql,      rollups_sql,        intents_sql,      scope_costs_sql,
                                            scope_intents_sql, scope_policies_sql, reservations_sql, queue_mark_sql};
    const char *agent = p->address[0] ? p->address : NULL, *after = p->after[0] ? p->after : NULL;
    const char *params[] = {agent, cm_hot_all_windows(p->h) ? "false" : "true", after,
                            after ? p->after_grain : NULL, after ? p->after_bucket : NULL};
    const char *q = p->step == POLICIES && agent ? agent_policy_sql : sql[p->step];
    int n = p->step == ROLLUPS ? 5 : p->step == INTENTS ? 2 : 1;
    return cm_pg_query(p->pg, q, n, params, on_rows, p);
}

/* The pass's generation of policy writes is taken: its policies are read
 * after it, so a change marked later is newer than them. */
static void on_gen(void *arg, int rc, long long gen)
{
    pass *p = arg;
    p->gen = gen;
    if (rc != CM_OK) finish(p, false);
    else run_step(p);
}

static void run_step(pass *p)
{
    p->pending = 1;
    if (query_step(p) != CM_OK) finish(p, false);
}

int cm_hot_rebuild_pass(cm_hot *h, cm_pg_pool *pg, const char *address, bool windows_only, cm_hot_pass_cb done,
                        void *arg)
{
    pass *p = calloc(1, sizeof *p);
    if (!p) return CM_ENOMEM;
    p->h = h;
    p->pg = pg;
    p->done = done;
    p->arg = arg;
    if (address) {
        snprintf(p->address, sizeof p->address, "%s", address);
        /* Its steps go one after the other, each waiting for its writes:
         * the whole rebuild's next writes wait for it instead. */
        cm_hot_hold_bulk(h, true);
    }
    p->step = windows_only ? ROLLUPS : POLICIES;
    p->last = windows_only ? INTENTS : NSTEPS - 1;
    if (windows_only) run_step(p);
    else if (cm_hot_policy_gen(h, on_gen, p) != CM_OK) finish(p, false);
    return CM_OK;
}
