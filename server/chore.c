#include "chore.h"
#include "error.h"
#include "log.h"

#include <stdlib.h>

struct cm_chore {
    cm_pg_pool *db;
    uv_timer_t timer;
    const char *sql;
    int n;
    const char *const *params; /* borrowed: the owner's, alive as long as it */
    cm_chore_cb cb;
    void *arg;
    int busy; /* a run is in flight */
};

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_run(void *arg, int rc, const cm_pgres *res, const char *sqlstate)
{
    cm_chore *c = arg;
    c->busy = 0;
    c->cb(c->arg, rc, res, sqlstate);
}

void cm_chore_run(cm_chore *c)
{
    if (c->busy) return;
    if (cm_pg_query(c->db, c->sql, c->n, c->params, on_run, c) == CM_OK) c->busy = 1;
    else cm_log(CM_LOG_DEBUG, "event=chore_skipped reason=postgres");
}

static void on_tick(uv_timer_t *t)
{
    cm_chore_run(t->data);
}

int cm_chore_new(uv_loop_t *loop, cm_pg_pool *db, int interval_ms, const char *sql, int n,
                 const char *const *params, cm_chore_cb cb, void *arg, cm_chore **out)
{
    cm_chore *c = calloc(1, sizeof *c);
    if (!c) return CM_ENOMEM;
    *c = (cm_chore){.db = db, .sql = sql, .n = n, .params = params, .cb = cb, .arg = arg};
    if (uv_timer_init(loop, &c->timer) != 0) {
        free(c);
        return CM_EIO;
    }
    c->timer.data = c;
    if (uv_timer_start(&c->timer, on_tick, (uint64_t)interval_ms, (uint64_t)interval_ms) != 0) {
        uv_close((uv_handle_t *)&c->timer, on_closed);
        return CM_EIO;
    }
    *out = c;
    return CM_OK;
}

void cm_chore_soon(cm_chore *c, int ms)
{
    uv_timer_start(&c->timer, on_tick, (uint64_t)ms, uv_timer_get_repeat(&c->timer));
}

void cm_chore_free(cm_chore *c)
{
    if (!c) return;
    uv_close((uv_handle_t *)&c->timer, on_closed);
}
