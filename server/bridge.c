#include "bridge.h"
#include "error.h"

#include <pthread.h>
#include <stdlib.h>

struct cm_bridge {
    uv_async_t async;
    pthread_mutex_t lock;
    cm_jobq jobs;        /* under lock */
    int closed;          /* under lock */
    cm_bridge_fn fn;
    void *arg;
};

static void drain(uv_async_t *h)
{
    cm_bridge *b = h->data;
    pthread_mutex_lock(&b->lock);
    cm_jobq batch = cm_jobq_take(&b->jobs);
    pthread_mutex_unlock(&b->lock);
    for (cm_job *j; (j = cm_jobq_pop(&batch));) b->fn(b->arg, j);
}

int cm_bridge_new(uv_loop_t *loop, cm_bridge_fn fn, void *arg, cm_bridge **out)
{
    cm_bridge *b = calloc(1, sizeof *b);
    if (!b) return CM_ENOMEM;
    if (pthread_mutex_init(&b->lock, NULL) != 0 || uv_async_init(loop, &b->async, drain) != 0) {
        free(b);
        return CM_EIO;
    }
    b->async.data = b;
    b->fn = fn;
    b->arg = arg;
    *out = b;
    return CM_OK;
}

int cm_bridge_submit(cm_bridge *b, cm_job *j)
{
    pthread_mutex_lock(&b->lock);
    if (b->closed) {
        pthread_mutex_unlock(&b->lock);
        return CM_ESHUTDOWN;
    }
    j->handed_ns = uv_hrtime();
    cm_jobq_push(&b->jobs, j);
    pthread_mutex_unlock(&b->lock);
    uv_async_send(&b->async);
    return CM_OK;
}

static void on_closed(uv_handle_t *h)
{
    cm_bridge *b = h->data;
    pthread_mutex_destroy(&b->lock);
    free(b);
}

void cm_bridge_close(cm_bridge *b)
{
    pthread_mutex_lock(&b->lock);
    b->closed = 1;
    pthread_mutex_unlock(&b->lock);
}

void cm_bridge_free(cm_bridge *b)
{
    if (!b) return;
    cm_bridge_close(b);
    drain(&b->async);
    uv_close((uv_handle_t *)&b->async, on_closed);
}
