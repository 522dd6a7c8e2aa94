/* ratecards.c - the orgs' rate cards: a chained hash table of orgs, each
 * with its cards (models sorted by name, versions by effective_from), the
 * jobs waiting for them and the load in flight. */
#include "ratecards.h"
#include "error.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Orgs hash into this many chains; an org is a few hundred bytes, kept
 * once it was asked for (its cards are dropped on a change). */
#define NBUCKETS 1024

typedef struct {
    char model[CM_MODEL_MAX + 1];
    const cm_price *v; /* into the set's prices */
    size_t n;
} model_cards;

struct cm_ratecard_set {
    model_cards *models; /* owned, ascending by model */
    size_t n;
    cm_price *prices; /* owned */
};

typedef struct entry entry;
typedef struct load load;

struct entry {
    entry *next; /* the hash chain */
    char org[CM_ADDR_SEG_MAX + 1];
    bool loaded;
    cm_ratecard_set set; /* while loaded */
    load *loading;       /* the statement in flight, or NULL */
    bool stale;          /* changed since the load in flight began */
    cm_jobq waiters;
};

/* A load in flight; c is NULL once the cache is freed. */
struct load {
    cm_ratecards *c;
    entry *e;
};

struct cm_ratecards {
    cm_pg_pool *db;
    cm_ratecards_cb cb;
    void *arg;
    entry *buckets[NBUCKETS];
};

static const char load_sql[] =
    "SELECT model, " CM_PG_EPOCH("effective_from") ", input_nanos, output_nanos, cached_input_nanos,"
    " cache_write_nanos FROM price_cards WHERE org = $1 ORDER BY model, effective_from";

int cm_ratecards_new(cm_pg_pool *db, cm_ratecards_cb cb, void *arg, cm_ratecards **out)
{
    cm_ratecards *c = calloc(1, sizeof *c);
    if (!c) return CM_ENOMEM;
    c->db = db;
    c->cb = cb;
    c->arg = arg;
    *out = c;
    return CM_OK;
}

static void set_free(cm_ratecard_set *s)
{
    free(s->models);
    free(s->prices);
    memset(s, 0, sizeof *s);
}

/* Hands every waiting job of e its answer. */
static void answer_waiters(cm_ratecards *c, entry *e, int rc)
{
    cm_jobq q = cm_jobq_take(&e->waiters);
    for (cm_job *j; (j = cm_jobq_pop(&q));) c->cb(c->arg, e->org, j, rc, rc == CM_OK ? &e->set : NULL);
}

void cm_ratecards_free(cm_ratecards *c)
{
    if (!c) return;
    for (int b = 0; b < NBUCKETS; b++)
        for (entry *e = c->buckets[b], *next; e; e = next) {
            next = e->next;
            answer_waiters(c, e, CM_ESTORE);
            if (e->loading) e->loading->c = NULL;
            set_free(&e->set);
            free(e);
        }
    free(c);
}

static unsigned bucket_of(const char *org)
{
    unsigned h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)org; *p; p++) h = (h ^ *p) * 16777619u;
    return h % NBUCKETS;
}

static entry *find(cm_ratecards *c, const char *org)
{
    for (entry *e = c->buckets[bucket_of(org)]; e; e = e->next)
        if (strcmp(e->org, org) == 0) return e;
    return NULL;
}

/* The org's cards from the statement's rows, ordered by model then time. */
static int set_build(const cm_pgres *res, cm_ratecard_set *s)
{
    int rows = cm_pgres_rows(res);
    if (rows < 0) rows = 0;
    size_t nmodels = 0;
    for (int r = 0; r < rows; r++)
        if (r == 0 || strcmp(cm_pgres_get(res, r, 0), cm_pgres_get(res, r - 1, 0)) != 0) nmodels++;
    s->prices = calloc(rows ? (size_t)rows : 1, sizeof *s->prices);
    s->models = calloc(nmodels ? nmodels : 1, sizeof *s->models);
    if (!s->prices || !s->models) {
        set_free(s);
        return CM_ENOMEM;
    }
    for (int r = 0; r < rows; r++) {
        const char *model = cm_pgres_get(res, r, 0);
        if (s->n == 0 || strcmp(s->models[s->n - 1].model, model) != 0) {
            model_cards *m = &s->models[s->n++];
            snprintf(m->model, sizeof m->model, "%s", model);
            m->v = &s->prices[r];
        }
        cm_price *p = &s->prices[r];
        p->from = strtoll(cm_pgres_get(res, r, 1), NULL, 10);
        for (int k = 0; k < CM_PRICE_KINDS; k++) p->per_million[k] = strtoll(cm_pgres_get(res, r, 2 + k), NULL, 10);
        s->models[s->n - 1].n++;
    }
    return CM_OK;
}

static void start_load(cm_ratecards *c, entry *e);

static void on_load(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    load *l = arg;
    cm_ratecards *c = l->c;
    entry *e = l->e;
    free(l);
    if (!c) return;
    e->loading = NULL;
    if (rc == CM_OK && e->stale) {
        e->stale = false;
        start_load(c, e);
        return;
    }
    if (rc == CM_OK) rc = set_build(res, &e->set);
    if (rc != CM_OK) {
        cm_log(CM_LOG_WARN, "event=ratecards_load_failed org=%s", e->org);
        answer_waiters(c, e, CM_ESTORE);
        return;
    }
    e->loaded = true;
    answer_waiters(c, e, CM_OK);
}

static void start_load(cm_ratecards *c, entry *e)
{
    load *l = malloc(sizeof *l);
    const char *params[] = {e->org};
    if (l) {
        l->c = c;
        l->e = e;
        e->loading = l;
        e->stale = false;
        if (cm_pg_query(c->db, load_sql, 1, params, on_load, l) == CM_OK) return;
        e->loading = NULL;
        free(l);
    }
    answer_waiters(c, e, CM_ESTORE);
}

void cm_ratecards_get(cm_ratecards *c, const char *org, cm_job *j)
{
    entry *e = find(c, org);
    if (!e) {
        e = calloc(1, sizeof *e);
        if (!e) {
            c->cb(c->arg, org, j, CM_ENOMEM, NULL);
            return;
        }
        snprintf(e->org, sizeof e->org, "%s", org);
        unsigned b = bucket_of(org);
        e->next = c->buckets[b];
        c->buckets[b] = e;
    }
    if (e->loaded) {
        c->cb(c->arg, e->org, j, CM_OK, &e->set);
        return;
    }
    cm_jobq_push(&e->waiters, j);
    if (!e->loading) start_load(c, e);
}

static void forget(entry *e)
{
    if (e->loaded) set_free(&e->set);
    e->loaded = false;
    if (e->loading) e->stale = true;
}

void cm_ratecards_forget(cm_ratecards *c, const char *org)
{
    entry *e = find(c, org);
    if (e) forget(e);
}

void cm_ratecards_forget_all(cm_ratecards *c)
{
    for (int b = 0; b < NBUCKETS; b++)
        for (entry *e = c->buckets[b]; e; e = e->next) forget(e);
}

static int cmp_model(const void *key, const void *m)
{
    return strcmp(key, ((const model_cards *)m)->model);
}

const cm_price *cm_ratecards_price(const cm_ratecard_set *cards, const char *model, int64_t ts)
{
    const model_cards *m = bsearch(model, cards->models, cards->n, sizeof *cards->models, cmp_model);
    return m ? cm_price_at(m->v, m->n, ts) : NULL;
}
