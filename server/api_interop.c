/* api_interop.c - what other protocols report: OTLP trace exports (otlp.h)
 * and CloudEvents (cloudevents.h, under the org's meters) become heartbeats
 * of agents named for the key, go through the group commit like any
 * heartbeat request (ingest.h: durable before the answer, a span id or an
 * event's (source, id) seen again is a duplicate), and are answered in the
 * protocol's own terms once committed. Also the meters' routes. */
#include "api_routes.h"
#include "error.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(offsetof(cm_req_interop, hb) == 0, "the group commit reads req.interop.hb as req.heartbeat");

/* Makes the agent NAME in agent an address for the key: its bound agent,
 * whatever the spans say (the key speaks for that agent only), else
 * agent://ORG/ENV/NAME with the key's org and ENV the key's interop_env,
 * or the server's when the key has none. */
static int address_for(const cm_api *api, const cm_ident *who, char agent[CM_ADDR_MAX], cm_apierr *e)
{
    char name[CM_ADDR_SEG_MAX + 1];
    snprintf(name, sizeof name, "%s", agent);
    if (who->agent[0]) agent[0] = '\0';
    else snprintf(agent, CM_ADDR_MAX, "agent://%s/%s/%s", who->org,
                  who->interop_env[0] ? who->interop_env : api->interop_env, name);
    return cm_api_resolve_agent(who, agent, "agent", e);
}

/* The next status of the test hook, 0 when none is left. */
static int next_fault(cm_api *api)
{
    char *f = api->interop_faults;
    if (!*f) return 0;
    int status = atoi(f);
    size_t skip = strcspn(f, ",");
    memmove(f, f + skip + (f[skip] == ','), strlen(f + skip + (f[skip] == ',')) + 1);
    return status == 429 || status == 503 ? status : 0;
}

/* The success answer of a committed request, in its protocol's terms; or,
 * while the test hook has statuses left, the next of them. */
static void set_success(cm_api *api, cm_job *j)
{
    int fault = next_fault(api);
    if (fault) {
        cm_log(CM_LOG_WARN, "event=interop_test_fault status=%d", fault);
        cm_job_fail(j, fault, fault == 429 ? "rate_limited" : "store_unavailable", NULL,
                    "refused by COSTMESH_TEST_INTEROP_FAULTS after the commit; retry");
        /* http.c gives every 503 its Retry-After of 1 s. */
        j->retry_after = fault == 429 ? 2 : 0;
        return;
    }
    cm_buf b;
    cm_buf_init(&b);
    if (j->op == CM_OP_CE_EVENTS) {
        cm_job_reply(j, 204, &b); /* OpenMeter's answer */
        return;
    }
    j->content_type = cm_otlp_reply(&j->req.interop.otlp, &b);
    cm_job_reply(j, 200, &b);
}

/* The group commit's answer: its 202 becomes the protocol's success, its
 * refusals (503, 422) stand. */
static void on_committed(cm_job *j)
{
    cm_req_interop *q = &j->req.interop;
    j->done = q->done;
    j->done_arg = q->done_arg;
    if (j->status == 202) set_success(q->api, j);
    cm_api_answer(j);
}

/* Sends the request's heartbeats, their agents resolved, to the group
 * commit, which answers through on_committed. */
void cm_api_interop_commit(cm_api *api, cm_job *j)
{
    cm_req_interop *q = &j->req.interop;
    if (q->hb.n == 0) {
        set_success(api, j);
        cm_api_answer(j);
        return;
    }
    q->done = j->done;
    q->done_arg = j->done_arg;
    q->api = api;
    j->done = on_committed;
    cm_ingest_submit(api->ingest, j);
}

int cm_api_otlp_traces(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    cm_req_interop *q = &j->req.interop;
    cm_otlp_count_ignored(CM_IGNORED_SPANS, q->otlp.ignored);
    for (size_t i = 0; i < q->hb.n; i++)
        if (address_for(api, who, q->hb.hbs[i].agent, e) != CM_OK) return CM_EFORBIDDEN;
    cm_api_price(api, j, who);
    return CM_OK;
}

/* ---- CloudEvents ---- */

static const char meters_sql[] =
    "SELECT event_type, coalesce(cost_usd, ''), coalesce(tokens_in, ''), coalesce(tokens_out, ''),"
    " coalesce(agent, '') FROM meters WHERE org = $1";

static void meter_of(const cm_pgres *res, int row, cm_meter *m)
{
    char *dst[] = {m->event_type, m->cost_usd, m->tokens_in, m->tokens_out, m->agent};
    size_t sz[] = {sizeof m->event_type, sizeof m->cost_usd, sizeof m->tokens_in, sizeof m->tokens_out,
                   sizeof m->agent};
    for (int c = 0; c < 5; c++) snprintf(dst[c], sz[c], "%s", cm_pgres_get(res, row, c));
}

/* The heartbeat id of an event: its (source, id), which CloudEvents makes
 * unique, hashed to a fixed length. */
static void event_id(const cm_ce_event *ev, char id[CM_ID_MAX + 1])
{
    char both[2 * CM_ID_MAX + 2];
    size_t ns = strlen(ev->source), ni = strlen(ev->id);
    memcpy(both, ev->source, ns + 1); /* the NUL separates: no (source, id) pair runs into another */
    memcpy(both + ns + 1, ev->id, ni);
    unsigned char h[CM_KEY_HASH_LEN];
    memcpy(id, "ce-", 3);
    if (cm_auth_hash(both, ns + 1 + ni, h) == CM_OK) cm_auth_hex(h, sizeof h, id + 3);
}

/* The org's meters are in: each metered event becomes a heartbeat. */
static void on_meters(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_api_call *c = arg;
    cm_api *api = c->api;
    cm_ident who = c->who;
    cm_job *j = cm_api_take(c, rc);
    if (!j) return;
    cm_req_interop *q = &j->req.interop;
    cm_apierr e;
    q->hb.hbs = calloc(q->nevents, sizeof *q->hb.hbs);
    if (!q->hb.hbs) {
        cm_api_error(j, 503, "internal", NULL, "out of memory; retry");
        return;
    }
    size_t ignored = 0;
    for (size_t i = 0; i < q->nevents; i++) {
        const cm_ce_event *ev = &q->events[i];
        int row = 0, rows = cm_pgres_rows(res);
        while (row < rows && strcmp(cm_pgres_get(res, row, 0), ev->type) != 0) row++;
        if (row == rows) { /* no meter reads this type */
            ignored++;
            continue;
        }
        cm_meter m;
        meter_of(res, row, &m);
        cm_hb *hb = &q->hb.hbs[q->hb.n];
        if (cm_ce_apply(ev, i, &m, hb, &e) != CM_OK || address_for(api, &who, hb->agent, &e) != CM_OK) {
            cm_api_fail(j, &e);
            return;
        }
        event_id(ev, hb->id);
        q->hb.n++;
    }
    cm_otlp_count_ignored(CM_IGNORED_EVENTS, ignored);
    cm_api_interop_commit(api, j);
}

int cm_api_ce_events(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    cm_api_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    const char *params[] = {who->org};
    return cm_api_query(c, meters_sql, 1, params, on_meters, e);
}

/* ---- meters ---- */

static void add_meter(cm_buf *b, const cm_meter *m)
{
    const char *names[] = {"cost_usd", "tokens_in", "tokens_out", "agent"};
    const char *paths[] = {m->cost_usd, m->tokens_in, m->tokens_out, m->agent};
    cm_buf_adds(b, "{\"event_type\":");
    cm_buf_add_jstr(b, m->event_type);
    for (int i = 0; i < 4; i++) {
        cm_buf_addf(b, ",\"%s\":", names[i]);
        if (paths[i][0]) cm_buf_add_jstr(b, paths[i]);
        else cm_buf_adds(b, "null");
    }
    cm_buf_adds(b, "}");
}

static void on_meter_written(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = cm_api_take(arg, rc);
    if (!j) return;
    cm_buf b;
    cm_buf_init(&b);
    if (j->op == CM_OP_METER_DELETE) {
        if (cm_pgres_affected(res) == 0) cm_api_error(j, 404, "not_found", NULL, "no meter of this event type");
        else cm_api_reply(j, 204, &b);
        return;
    }
    add_meter(&b, &j->req.meter);
    cm_api_reply(j, 200, &b);
}

static int meter_write(cm_api *api, cm_job *j, const cm_ident *who, const char *sql, int n, cm_apierr *e)
{
    if (cm_api_need_admin(who, e) != CM_OK) return CM_EFORBIDDEN;
    cm_api_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    const cm_meter *m = &j->req.meter;
    const char *params[] = {who->org, m->event_type, m->cost_usd, m->tokens_in, m->tokens_out, m->agent};
    return cm_api_query(c, sql, n, params, on_meter_written, e);
}

int cm_api_meter_put(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    return meter_write(api, j, who,
                       "INSERT INTO meters (org, event_type, cost_usd, tokens_in, tokens_out, agent)"
                       " VALUES ($1, $2, nullif($3, ''), nullif($4, ''), nullif($5, ''), nullif($6, ''))"
                       " ON CONFLICT (org, event_type) DO UPDATE SET cost_usd = EXCLUDED.cost_usd,"
                       " tokens_in = EXCLUDED.tokens_in, tokens_out = EXCLUDED.tokens_out, agent = EXCLUDED.agent,"
                       " updated_at = now()",
                       6, e);
}

int cm_api_meter_delete(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    return meter_write(api, j, who, "DELETE FROM meters WHERE org = $1 AND event_type = $2", 2, e);
}

static void on_meter_list(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    cm_job *j = cm_api_take(arg, rc);
    if (!j) return;
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{\"meters\":[");
    for (int r = 0; r < cm_pgres_rows(res); r++) {
        cm_meter m;
        meter_of(res, r, &m);
        if (r) cm_buf_adds(&b, ",");
        add_meter(&b, &m);
    }
    cm_buf_adds(&b, "]}");
    cm_api_reply(j, 200, &b);
}

int cm_api_meter_list(cm_api *api, cm_job *j, const cm_ident *who, cm_apierr *e)
{
    if (cm_api_need_admin(who, e) != CM_OK) return CM_EFORBIDDEN;
    cm_api_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    const char *params[] = {who->org};
    return cm_api_query(c, meters_sql, 1, params, on_meter_list, e);
}
