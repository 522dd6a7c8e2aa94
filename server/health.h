/* health.h - an agent's health from the age of its last heartbeat.
 *
 * Healthy while the last heartbeat is under CM_HEALTH_HEALTHY_S seconds old,
 * degraded up to CM_HEALTH_DEGRADED_S inclusive, unreachable after that (a
 * killed agent is "killed" whatever its age, and an agent that has never
 * sent one, known by its policy or intents, is "unknown"). The SDK flushes every 30 s,
 * so healthy tolerates two missed flushes and degraded up to ten. The agents
 * list computes health as it reads and the health watcher records each
 * change as an event; both use these numbers so they never disagree. */
#ifndef CM_HEALTH_H
#define CM_HEALTH_H

/* Plain decimal literals: they are also pasted into SQL text below. */
#define CM_HEALTH_HEALTHY_S 90
#define CM_HEALTH_DEGRADED_S 300

#define CM_HEALTH_TEXT_(n) #n
#define CM_HEALTH_TEXT(n) CM_HEALTH_TEXT_(n)
/* The thresholds as SQL string literals, e.g. "90". */
#define CM_HEALTH_HEALTHY_SQL CM_HEALTH_TEXT(CM_HEALTH_HEALTHY_S)
#define CM_HEALTH_DEGRADED_SQL CM_HEALTH_TEXT(CM_HEALTH_DEGRADED_S)

/* The health as one SQL CASE expression, for every statement that shows
 * or records it: `killed` a boolean expression, `last` the last heartbeat
 * (NULL when never seen), `age` its age in seconds. */
#define CM_HEALTH_CASE_SQL(killed, last, age)                                                     \
    "CASE WHEN " killed " THEN 'killed' WHEN " last " IS NULL THEN 'unknown'"                      \
    " WHEN " age " < " CM_HEALTH_HEALTHY_SQL " THEN 'healthy' WHEN " age " <= " CM_HEALTH_DEGRADED_SQL \
    " THEN 'degraded' ELSE 'unreachable' END"

#endif
