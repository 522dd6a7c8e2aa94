#include "reservations.h"
#include "buf.h"
#include "error.h"

#include <stdlib.h>
#include <time.h>

#define SWEEP_MS 1000
#define SWEEP_MAX 200 /* reservations per sweep: a backlog drains a second at a time */

struct cm_reservations {
    uv_timer_t timer;
    cm_hot *hot;
    cm_notify *notify;
};

static void on_expired(void *arg, int rc, int found, const cm_hot_released *v, int n)
{
    (void)found;
    cm_reservations *r = arg;
    for (int i = 0; rc == CM_OK && i < n; i++) {
        cm_buf d;
        cm_buf_init(&d);
        cm_buf_adds(&d, "{\"intent_id\":");
        cm_buf_add_jstr(&d, v[i].intent_id);
        cm_buf_adds(&d, ",\"released_usd\":");
        cm_buf_add_money(&d, v[i].left);
        cm_buf_adds(&d, "}");
        char *details = cm_buf_take(&d, NULL);
        if (details) cm_notify_event(r->notify, v[i].org, v[i].agent, "reservation_expired", details, true, NULL, NULL);
        free(details);
    }
}

static void on_tick(uv_timer_t *t)
{
    cm_reservations *r = t->data;
    /* Not connected: the next tick tries again. */
    (void)cm_hot_release_due(r->hot, (int64_t)time(NULL), SWEEP_MAX, on_expired, r);
}

int cm_reservations_new(uv_loop_t *loop, cm_hot *hot, cm_notify *notify, cm_reservations **out)
{
    cm_reservations *r = calloc(1, sizeof *r);
    if (!r) return CM_ENOMEM;
    r->hot = hot;
    r->notify = notify;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, on_tick, SWEEP_MS, SWEEP_MS);
    *out = r;
    return CM_OK;
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void cm_reservations_free(cm_reservations *r)
{
    if (!r) return;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, on_closed);
}
