/* api_cards.c - what rate cards (api_pricing.c) and billing cards
 * (api_billing.c) share: a card is named (a model, a plan), has versions
 * each in force from its effective_from, and each version has four prices
 * in nano-dollars. PUT writes a version (never changes one); GET lists a
 * card's versions or every card's. */
#include "api_routes.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void add_version(cm_buf *b, const cm_card_kind *kind, int64_t from, const int64_t prices[CM_CARD_PRICES],
                        bool in_force)
{
    cm_buf_adds(b, "{\"effective_from\":");
    cm_buf_add_jtime(b, from);
    for (int k = 0; k < CM_CARD_PRICES; k++) {
        cm_buf_addf(b, ",\"%s\":", kind->fields[k]);
        cm_buf_add_money(b, prices[k]);
    }
    cm_buf_addf(b, ",\"in_force\":%s}", in_force ? "true" : "false");
}

typedef struct {
    cm_api_call base;
    const cm_card_kind *kind;
    char org[CM_ADDR_SEG_MAX + 1];
    char name[CM_CARD_NAME_MAX + 1];
    int64_t from, prices[CM_CARD_PRICES];
} put_call;

static void on_put(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    put_call c = *(put_call *)arg;
    cm_job *j = cm_api_take(arg, rc);
    if (!j) return;
    bool inserted = strcmp(cm_pgres_get(res, 0, 0), "1") == 0;
    if (!inserted && strcmp(cm_pgres_get(res, 0, 1), "t") != 0) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "a version of this %s with other prices starts at this effective_from; versions are never changed:"
                 " give the new prices another effective_from", c.kind->what);
        cm_api_error(j, 409, "version_exists", "effective_from", msg);
        return;
    }
    if (inserted && c.kind->changed) c.kind->changed(c.base.api, c.org);
    cm_buf b;
    cm_buf_init(&b);
    cm_buf_adds(&b, "{");
    cm_api_jfield(&b, c.kind->key, c.name, 1);
    cm_buf_adds(&b, ",\"version\":");
    add_version(&b, c.kind, c.from, c.prices, false);
    cm_buf_adds(&b, "}");
    cm_api_reply(j, inserted ? 201 : 200, &b);
}

int cm_api_card_put(cm_api *api, cm_job *j, const cm_ident *who, const cm_card_kind *kind, const char *name,
                    int64_t from, const int64_t prices[CM_CARD_PRICES], cm_apierr *e)
{
    if (cm_api_need_admin(who, e) != CM_OK) return CM_EFORBIDDEN;
    put_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    c->kind = kind;
    snprintf(c->org, sizeof c->org, "%s", who->org);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->from = from;
    memcpy(c->prices, prices, sizeof c->prices);
    char v[1 + CM_CARD_PRICES][24];
    snprintf(v[0], sizeof v[0], "%lld", (long long)from);
    for (int k = 0; k < CM_CARD_PRICES; k++) snprintf(v[1 + k], sizeof v[1 + k], "%lld", (long long)prices[k]);
    const char *params[] = {who->org, name, v[0], v[1], v[2], v[3], v[4]};
    return cm_api_query(c, kind->put_sql, 7, params, on_put, e);
}

typedef struct {
    cm_api_call base;
    const cm_card_kind *kind;
    bool one;
} list_call;

static void on_list(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    (void)sqlstate;
    list_call c = *(list_call *)arg;
    cm_job *j = cm_api_take(arg, rc);
    if (!j) return;
    int rows = cm_pgres_rows(res);
    if (c.one && rows == 0) {
        char msg[96];
        snprintf(msg, sizeof msg, "this org has no %s of this %s", c.kind->what, c.kind->key);
        cm_api_error(j, 404, "not_found", c.kind->key, msg);
        return;
    }
    cm_buf b;
    cm_buf_init(&b);
    if (!c.one) cm_buf_addf(&b, "{\"%s\":[", c.kind->list);
    for (int r = 0; r < rows; r++) {
        const char *name = cm_pgres_get(res, r, 0);
        bool starts = r == 0 || strcmp(name, cm_pgres_get(res, r - 1, 0)) != 0;
        bool ends = r == rows - 1 || strcmp(name, cm_pgres_get(res, r + 1, 0)) != 0;
        int64_t from = strtoll(cm_pgres_get(res, r, 1), NULL, 10), prices[CM_CARD_PRICES];
        for (int k = 0; k < CM_CARD_PRICES; k++) prices[k] = strtoll(cm_pgres_get(res, r, 2 + k), NULL, 10);
        /* Oldest first: the one in force now is the last that has begun. */
        bool next_begun = !ends && strtoll(cm_pgres_get(res, r + 1, 1), NULL, 10) <= j->now;
        if (starts) {
            cm_buf_adds(&b, r ? "]},{" : "{");
            cm_api_jfield(&b, c.kind->key, name, 1);
            cm_buf_adds(&b, ",\"versions\":[");
        } else {
            cm_buf_adds(&b, ",");
        }
        add_version(&b, c.kind, from, prices, from <= j->now && !next_begun);
    }
    if (rows) cm_buf_adds(&b, "]}");
    if (!c.one) cm_buf_adds(&b, "]}");
    cm_api_reply(j, 200, &b);
}

int cm_api_card_list(cm_api *api, cm_job *j, const cm_ident *who, const cm_card_kind *kind, const char *name,
                     cm_apierr *e)
{
    list_call *c = cm_api_call_new(api, j, who, sizeof *c, e);
    if (!c) return CM_ENOMEM;
    c->kind = kind;
    c->one = name[0] != '\0';
    const char *params[] = {who->org, c->one ? name : NULL};
    return cm_api_query(c, kind->list_sql, 2, params, on_list, e);
}
