/* forecast.h - how fast cost is burning and when each cost limit runs out
 * at that pace: the arithmetic of issue 15's forecasts.
 *
 * Pure (no I/O, no allocation), thread-safe. The inputs are the hour
 * windows Redis keeps (hot.h, cm_hot_check): the burn rate is over the last
 * 60 minutes, this hour's cost plus the part of the previous hour's that
 * falls inside them, the previous hour taken as spent evenly. */
#ifndef CM_FORECAST_H
#define CM_FORECAST_H

#include "buf.h"
#include "policy.h"

#include <stdbool.h>
#include <stdint.h>

/* Nano-dollars per hour over the 60 minutes before `now`. */
int64_t cm_forecast_burn(int64_t this_hour, int64_t prev_hour, int64_t now);

/* When `current` reaches `limit` at `burn` nano-dollars per hour: true with
 * *at (Unix seconds, rounded up; `now` when already reached) when that is
 * before window_end; false when the window ends first or nothing burns. */
bool cm_forecast_exhaustion(int64_t current, int64_t limit, int64_t burn, int64_t now, int64_t window_end,
                            int64_t *at);

/* The current and limit of each cost limit (CM_LIM_COST_*), and the burn. */
typedef struct {
    int64_t burn;
    bool has[CM_LIM_COUNT];
    int64_t current[CM_LIM_COUNT], limit[CM_LIM_COUNT];
} cm_forecast;

/* Appends {"burn_rate_usd_per_hour":x,"exhaustion":{"<limit>":"<time>"|null,
 * ...}} for the cost limits set, each the predicted time it runs out in its
 * window containing `now` (null: not before the window ends). */
void cm_forecast_json(const cm_forecast *f, int64_t now, cm_buf *b);

#endif
