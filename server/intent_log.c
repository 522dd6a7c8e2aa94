#include "intent_log.h"
#include "buf.h"
#include "error.h"
#include "refusal.h"
#include "queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Records per statement. Repeated ids inside a batch are found by comparing
 * each record with the earlier ones, which stays cheap at this size. */
#define BATCH_MAX 256

/* One statement for a batch: the earlier owner of each id (when the org
 * already recorded it), the agents registered, and the new intents
 * inserted. $12 is each record's index in the batch; the result is one row
 * per record that has an earlier owner: its index and that owner. */
static const char batch_sql[] =
    "WITH input AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
    " $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[], $12::int[], $13::bigint[],"
    " $14::bigint[]) AS t(address, org, intent_id, itype, idem, run_id, session_id, workflow, customer, parent, at,"
    " idx, est, until)),"
    " prev AS (SELECT i.idx, (SELECT p.address FROM intents p WHERE p.org = i.org AND p.intent_id = i.intent_id"
    " LIMIT 1) AS address FROM input i),"
    " reg AS (INSERT INTO agents (address, org) SELECT DISTINCT address, org FROM input ORDER BY 1"
    " ON CONFLICT (address) DO NOTHING),"
    " ins AS (INSERT INTO intents (address, org, intent_id, intent_type, idempotency_key, run_id, session_id,"
    " workflow, customer, parent_intent_id, admitted_at, estimated_cost_nanos, reserved_until)"
    " SELECT i.address, i.org, i.intent_id, i.itype, i.idem, i.run_id, i.session_id, i.workflow, i.customer,"
    " i.parent, to_timestamp(i.at), i.est, to_timestamp(i.until) FROM input i JOIN prev USING (idx)"
    " WHERE prev.address IS NULL)"
    " SELECT idx::text, address FROM prev WHERE address IS NOT NULL";

typedef struct entry entry;
struct entry {
    entry *next;
    cm_intent_rec rec;
    cm_intent_log_cb cb;
    void *arg;
    int same_as;       /* index of an earlier record of the batch with the same org and id, or -1 */
    const char *prev;  /* the earlier owner, from the result */
};

CM_QUEUE_DEFINE(entryq, entry, next)

typedef struct {
    cm_intent_log *log;
    entry *v[BATCH_MAX];
    int n;
} batch;

struct cm_intent_log {
    cm_pg_pool *db;
    int deadline_ms;    /* cm_intent_log_new's */
    entryq waiting;
    entryq alone;       /* records of a refused batch, retried one per statement */
    bool busy;          /* a batch's statement is in flight */
};

static void flush(cm_intent_log *l);

int cm_intent_log_new(cm_pg_pool *db, int deadline_ms, cm_intent_log **out)
{
    cm_intent_log *l = calloc(1, sizeof *l);
    if (!l) return CM_ENOMEM;
    l->db = db;
    l->deadline_ms = deadline_ms;
    *out = l;
    return CM_OK;
}

static void fail_all(entryq *q)
{
    for (entry *e; (e = entryq_pop(q)) != NULL; free(e)) e->cb(e->arg, CM_ESTORE, NULL, "", "");
}

static void fail_waiting(cm_intent_log *l)
{
    fail_all(&l->alone);
    fail_all(&l->waiting);
}

void cm_intent_log_free(cm_intent_log *l)
{
    if (!l) return;
    fail_waiting(l);
    free(l);
}

int cm_intent_log_record(cm_intent_log *l, const cm_intent_rec *r, cm_intent_log_cb cb, void *arg)
{
    entry *e = calloc(1, sizeof *e);
    if (!e) return CM_ENOMEM;
    e->rec = *r;
    e->cb = cb;
    e->arg = arg;
    entryq_push(&l->waiting, e);
    if (!l->busy) flush(l);
    return CM_OK;
}

/* Answers every record of b: with rc, and each its earlier owner. A record
 * that repeats an earlier one of the batch has that one's owner: its
 * earlier owner, or else its own agent once it was inserted. */
static void answer(batch *b, int rc, const char *sqlstate, const char *constraint)
{
    for (int i = 0; i < b->n; i++) {
        entry *e = b->v[i];
        if (e->same_as >= 0) {
            const entry *f = b->v[e->same_as];
            e->prev = f->prev ? f->prev : f->rec.agent;
        }
        e->cb(e->arg, rc, rc == CM_OK ? e->prev : NULL, sqlstate, constraint);
    }
    for (int i = 0; i < b->n; i++) free(b->v[i]);
    free(b);
}

static void on_batch(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    batch *b = arg;
    cm_intent_log *l = b->log;
    l->busy = false;
    cm_apierr why;
    bool final = rc != CM_OK && cm_refusal_of(sqlstate, "", &why); /* the one rule of what a retry cannot fix */
    if (final && b->n > 1) {
        /* One record is at fault: each goes again alone, in order. */
        for (int i = 0; i < b->n; i++) entryq_push(&l->alone, b->v[i]);
        free(b);
        flush(l);
        return;
    }
    for (int r = 0; rc == CM_OK && r < cm_pgres_rows(res); r++) {
        long idx = strtol(cm_pgres_get(res, r, 0), NULL, 10);
        if (idx >= 0 && idx < b->n) b->v[idx]->prev = cm_pgres_get(res, r, 1);
    }
    /* prev and the constraint point into res: answer before it is freed. */
    answer(b, rc, sqlstate, cm_pgres_constraint(res));
    flush(l);
}

/* The text columns, then the admission time, the index, the estimate and
 * its deadline. */
enum { NTEXT = 10, NCOLS = NTEXT + 4 };

static void flush(cm_intent_log *l)
{
    if (!l->alone.head && !l->waiting.head) return;
    batch *b = calloc(1, sizeof *b);
    if (!b) {
        fail_waiting(l);
        return;
    }
    b->log = l;
    if (l->alone.head) b->v[b->n++] = entryq_pop(&l->alone);
    else
        while (l->waiting.head && b->n < BATCH_MAX) b->v[b->n++] = entryq_pop(&l->waiting);
    cm_buf cols[NCOLS];
    for (int c = 0; c < NCOLS; c++) {
        cm_buf_init(&cols[c]);
        cm_buf_add(&cols[c], "{", 1);
    }
    int sent = 0;
    for (int i = 0; i < b->n; i++) {
        entry *e = b->v[i];
        e->same_as = -1;
        for (int k = 0; k < i && e->same_as < 0; k++)
            if (b->v[k]->same_as < 0 && strcmp(b->v[k]->rec.org, e->rec.org) == 0 &&
                strcmp(b->v[k]->rec.intent_id, e->rec.intent_id) == 0)
                e->same_as = k;
        if (e->same_as >= 0) continue;
        const char *text[NTEXT] = {e->rec.agent,  e->rec.org,        e->rec.intent_id,
                                   e->rec.intent_type, e->rec.idem_key, e->rec.run_id,
                                   e->rec.session_id,  e->rec.workflow, e->rec.customer,
                                   e->rec.parent_intent_id};
        for (int c = 0; c < NTEXT; c++) {
            if (sent) cm_buf_add(&cols[c], ",", 1);
            cm_buf_add_pg_text(&cols[c], text[c]);
        }
        cm_buf_addf(&cols[NTEXT], "%s%lld", sent ? "," : "", (long long)e->rec.at);
        cm_buf_addf(&cols[NTEXT + 1], "%s%d", sent ? "," : "", i);
        if (e->rec.estimate > 0) {
            cm_buf_addf(&cols[NTEXT + 2], "%s%lld", sent ? "," : "", (long long)e->rec.estimate);
            cm_buf_addf(&cols[NTEXT + 3], "%s%lld", sent ? "," : "", (long long)e->rec.reserved_until);
        } else {
            cm_buf_adds(&cols[NTEXT + 2], sent ? ",NULL" : "NULL");
            cm_buf_adds(&cols[NTEXT + 3], sent ? ",NULL" : "NULL");
        }
        sent++;
    }
    const char *params[NCOLS];
    int failed = 0;
    for (int c = 0; c < NCOLS; c++) {
        cm_buf_add(&cols[c], "}", 1);
        failed |= cols[c].failed;
        params[c] = cols[c].data;
    }
    l->busy = true;
    int rc = failed ? CM_ENOMEM : cm_pg_query_prepared_within(l->db, l->deadline_ms, batch_sql, NCOLS, params, on_batch, b);
    for (int c = 0; c < NCOLS; c++) cm_buf_free(&cols[c]);
    if (rc != CM_OK) {
        l->busy = false;
        answer(b, CM_ESTORE, "", "");
        flush(l);
    }
}
