#include "backoff.h"

uint64_t cm_backoff_next(cm_backoff *b)
{
    b->ms = b->ms ? b->ms * 2 : CM_BACKOFF_FIRST_MS;
    if (b->ms > CM_BACKOFF_MAX_MS) b->ms = CM_BACKOFF_MAX_MS;
    return (uint64_t)b->ms;
}

void cm_backoff_reset(cm_backoff *b)
{
    b->ms = 0;
}
