/*
 * costmesh.h - the costmesh agent SDK: report an agent's AI cost to costmeshd.
 *
 * This header is the whole public API; what is not declared here is not API.
 * Link with `pkg-config --cflags --libs costmesh` (static: add --static).
 *
 * Model
 *   An agent creates one cm_client, calls cm_report() after every LLM call
 *   (cheap: it merges the deltas into an in-memory buffer, one entry per
 *   intent, and returns without touching the network), and asks
 *   cm_intent_begin() before starting new work (a synchronous admission
 *   request that answers CM_EBUDGET when a cost policy blocks the agent).
 *   A background thread owned by the client sends the buffer as heartbeat
 *   batches every flush_interval_ms, or sooner when max_batch intents are
 *   waiting, and retries until the server acknowledges them.
 *
 * Delivery: exactly once
 *   Every heartbeat carries an id (a random per-client prefix plus a
 *   counter) assigned when its batch is frozen. A frozen batch never changes:
 *   after a timeout, a connection error or a 5xx it is resent byte for byte
 *   (same ids) before anything newer, with exponential backoff plus jitter,
 *   honouring Retry-After. The server counts an id once, so a retry never
 *   double counts. Reports made meanwhile go to a fresh buffer.
 *
 * Memory bound
 *   At most max_pending_intents distinct intents are buffered (frozen batch
 *   not included: two tables of that size exist, allocated by
 *   cm_client_new; nothing is allocated per report). When the buffer holds
 *   that many distinct intents, cm_report() for an intent not yet in it
 *   returns CM_EFULL and records nothing: data is never dropped silently.
 *   Reports for intents already buffered keep merging.
 *
 * Money
 *   cost_usd is converted at report time to integer nano-dollars with
 *   llround(cost_usd * 1e9) (the nearest nano-dollar to the double's value;
 *   no decimal-text rounding), summed as integers, and sent as exact decimal
 *   text built from the integer. 100000 reports of 0.001 arrive as exactly
 *   100. One report may carry at most 1000000 USD (CM_ERANGE above).
 *
 * Threads
 *   Every function may be called from any thread unless its comment says
 *   otherwise, except cm_client_free(), which must be the last call on a
 *   client, made once, with no other call on that client in progress.
 *   Callbacks run on the client's background thread; they must return
 *   quickly and must not call cm_client_free() or cm_flush().
 *
 * Errors
 *   Every function that can fail returns an int: CM_OK (0) or a negative
 *   cm_error. Codes are only ever appended, never renumbered.
 *   cm_strerror() names them.
 */
#ifndef COSTMESH_H
#define COSTMESH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CM_VERSION_MAJOR 0
#define CM_VERSION_MINOR 2
#define CM_VERSION_PATCH 0
#define CM_VERSION_STRING "0.2.0"
/* One comparable number: 0xMMmmpp (0.1.0 -> 0x000100). */
#define CM_VERSION_NUM ((CM_VERSION_MAJOR << 16) | (CM_VERSION_MINOR << 8) | CM_VERSION_PATCH)

#if defined(_WIN32)
#define CM_API
#elif defined(__GNUC__) && __GNUC__ >= 4
#define CM_API __attribute__((visibility("default")))
#else
#define CM_API
#endif

/* Longest intent id, in bytes (the server's limit for id-like fields). */
#define CM_INTENT_ID_MAX 128
/* Bytes of a model name (cm_usage.model). */
#define CM_MODEL_MAX 128
/* cm_usage.cost_usd of a report the server prices: its model's rate card
 * in the org, in force when the server receives it (docs/sdk.md). */
#define CM_COST_BY_RATE_CARD (-1.0)
/* Largest cost one report or one heartbeat may carry: 1000000 USD. */
#define CM_COST_MAX_USD 1000000.0

/* Result codes. CM_OK is 0; failures are negative and only ever appended. */
typedef enum cm_error {
    CM_OK = 0,
    CM_EINVAL = -1,     /* an argument or option is invalid */
    CM_ENOMEM = -2,     /* out of memory */
    CM_EFULL = -3,      /* the buffer holds max_pending_intents intents: this report was not recorded */
    CM_ERANGE = -4,     /* a value is out of range (cost above CM_COST_MAX_USD, sum overflow) */
    CM_ETIMEDOUT = -5,  /* the timeout passed first (the data is kept and still sent) */
    CM_ENETWORK = -6,   /* no HTTP answer: connection refused or reset, DNS, TLS, timeout */
    CM_EBUDGET = -7,    /* 429 cost_policy_breached: a cost policy blocks new intents */
    CM_EKILLED = -8,    /* 403 agent_killed: the agent is killed by an admin */
    CM_EAUTH = -9,      /* 401, or 403 other than agent_killed: the key may not do this */
    CM_EHTTP = -10,     /* another unexpected HTTP status */
    CM_EPROTO = -11,    /* the server's reply could not be understood */
    CM_ETHREAD = -12,   /* a thread could not be started */
    CM_ESHUTDOWN = -13, /* the client is shutting down */
    CM_EREJECTED = -14  /* the server refused a batch as invalid (400/413); see cm_stats.dropped_* */
} cm_error;

/* What the server last said about this agent (heartbeat replies, intents). */
typedef enum cm_agent_state_t {
    CM_STATE_UNKNOWN = 0, /* no answer from the server yet */
    CM_STATE_ACTIVE = 1,  /* new intents are admitted */
    CM_STATE_BLOCKED = 2, /* a cost policy blocks new intents: pause */
    CM_STATE_KILLED = 3   /* an admin killed the agent */
} cm_agent_state_t;

/* Called on the background thread when the agent's state changes.
 * cost_today_nanos is the agent's cost today in nano-dollars (-1: unknown). */
typedef void (*cm_state_cb)(void *userdata, int state, int64_t cost_today_nanos);

/* The client: opaque. Created by cm_client_new(), destroyed by cm_client_free(). */
typedef struct cm_client cm_client;

/* Client options. Always start from cm_options_init(): fields may be
 * appended in later versions, and the init function sets their defaults.
 * The strings are copied by cm_client_new(); the caller keeps ownership. */
typedef struct cm_options {
    const char *url;           /* server base URL, e.g. "http://127.0.0.1:8080" (required) */
    const char *api_key;       /* x-api-key sent with every request (required) */
    const char *agent;         /* "agent://ORG/ENV/NAME"; NULL when the key is bound to an agent */
    int flush_interval_ms;     /* send the buffer at least this often (default 30000; >= 10) */
    int max_batch;             /* heartbeats per request, and the buffer size that triggers a send
                                  before the interval (default 500; 1..1000) */
    int max_pending_intents;   /* distinct intents the buffer holds (default 4096; >= 1) */
    int request_timeout_ms;    /* whole-request timeout of one HTTP request (default 10000) */
    int connect_timeout_ms;    /* connect timeout (default 3000) */
    int backoff_initial_ms;    /* first retry delay, doubled per attempt (default 250) */
    int backoff_max_ms;        /* largest retry delay (default 30000); Retry-After may exceed it */
    int close_timeout_ms;      /* how long cm_client_free() tries to send what is left (default 5000) */
    cm_state_cb on_state;      /* optional: agent state changes (background thread) */
    void *userdata;            /* passed to on_state */
    const char *ca_file;       /* optional CA bundle for https (NULL: the system default) */
} cm_options;

/* One report: deltas since the previous report for the same intent and
 * model. Counts must be >= 0; cost_usd must be finite, >= 0,
 * <= CM_COST_MAX_USD, or CM_COST_BY_RATE_CARD with a model. */
typedef struct cm_usage {
    const char *intent_id;  /* borrowed for the call; NULL or "" = no intent; <= CM_INTENT_ID_MAX bytes UTF-8 */
    double cost_usd;        /* converted to nano-dollars at once: llround(cost_usd * 1e9) */
    int64_t tokens_in;      /* every input token, the cached and cache-write ones included */
    int64_t tokens_out;
    int64_t llm_calls;
    int64_t tool_calls;     /* sent only when non-zero */
    int64_t tokens_cached;  /* input read from the provider's cache; sent only when non-zero */
    /* Since 0.2. */
    const char *model;      /* borrowed for the call; NULL or "" = none; <= CM_MODEL_MAX bytes of
                               A-Z a-z 0-9 . _ - : / @ + ("gpt-4o-mini") */
    int64_t tokens_cache_write; /* input written to the provider's cache; sent only when non-zero.
                                   With a model, tokens_cached + tokens_cache_write <= tokens_in */
} cm_usage;

/* Money in and out beside a report's cost (cm_report_money), each in
 * dollars like cost_usd: finite, >= 0, <= CM_COST_MAX_USD, sent only when
 * non-zero. The server's margin is revenue - refund - cost - external
 * spend - fees; a refund is its own amount, never a negative revenue.
 * Fields may be appended in later versions: zero the struct first. */
typedef struct cm_money {
    double revenue_usd;        /* what the work earned */
    double refund_usd;         /* revenue given back */
    double external_spend_usd; /* tools, APIs, paid endpoints */
    double fees_usd;
} cm_money;

/* What an intent's heartbeats are attributed to (cm_intent_begin_attrs):
 * the server counts every report of the intent in its run, session,
 * workflow and customer. Each NULL or "" when none; at most
 * CM_INTENT_ID_MAX bytes of UTF-8 without control characters. Borrowed
 * for the call. Fields may be appended in later versions: zero it first. */
typedef struct cm_intent_attrs {
    const char *run_id;
    const char *session_id;
    const char *workflow;
    const char *customer;
} cm_intent_attrs;

/* Why cm_intent_begin() answered as it did. Filled by the call (zeroed first). */
typedef struct cm_decision {
    int http_status;          /* 201, 429, 403, ...; 0 when there was no HTTP answer */
    char error_code[48];      /* the server's error.code ("cost_policy_breached", "agent_killed"), or "" */
    char intent_id[CM_INTENT_ID_MAX + 1]; /* on CM_OK: the admitted intent id (the server's when none was given) */
    char limit[48];           /* on CM_EBUDGET: the binding limit, e.g. "max_cost_per_day_usd" */
    double limit_value;       /* on CM_EBUDGET: that limit (USD for cost limits, a count for intent limits) */
    double current;           /* on CM_EBUDGET: the window's current value, same unit */
    int64_t limit_value_exact;/* the same, exact: nano-dollars for cost limits, the count for intent limits */
    int64_t current_exact;    /* the same, exact */
    int64_t retry_after_s;    /* on CM_EBUDGET: seconds until the breached window ends (Retry-After) */
} cm_decision;

/* Counters of one client, for monitoring and tests. */
typedef struct cm_stats {
    uint64_t reports;            /* cm_report() calls that recorded data */
    uint64_t reports_full;       /* cm_report() calls refused with CM_EFULL */
    uint64_t batches_sent;       /* HTTP requests made for heartbeats (retries included) */
    uint64_t batches_acked;      /* batches the server acknowledged (202) */
    uint64_t retries;            /* resends of a frozen batch */
    uint64_t heartbeats_acked;   /* heartbeats acknowledged as accepted */
    uint64_t heartbeats_duplicate; /* heartbeats acknowledged as duplicates (an earlier try got through) */
    uint64_t heartbeats_dropped; /* heartbeats the server rejected as invalid (400/413): lost, counted here */
    int64_t cost_dropped_nanos;  /* their cost */
    int64_t cost_acked_nanos;    /* cost of the heartbeats acknowledged (accepted or duplicate) */
    uint64_t pending_intents;    /* intents buffered or frozen, not yet acknowledged */
    int last_error;              /* last delivery error (CM_OK when the last try succeeded) */
    int last_http_status;        /* status of the last heartbeat request (0: no answer) */
} cm_stats;

/* Library version at run time ("0.1.0"); compare with CM_VERSION_STRING.
 * Returns a static string (borrowed, never freed). */
CM_API const char *cm_version(void);

/* Names a result code: a static English sentence (borrowed, never freed);
 * unknown codes give "unknown error". Thread-safe. */
CM_API const char *cm_strerror(int rc);

/* Fills *o with the defaults (every pointer NULL, flush_interval_ms 30000,
 * max_batch 500, ...). o must not be NULL. Thread-safe. */
CM_API void cm_options_init(cm_options *o);

/* Constructor. Validates and copies *o, allocates the buffers, starts the
 * background thread. On CM_OK, *out owns a new client, to be destroyed with
 * cm_client_free(). On failure *out is set to NULL and nothing leaks.
 * Errors: CM_EINVAL (NULL argument, url/api_key missing, agent not
 * "agent://...", an option out of range), CM_ENOMEM, CM_ETHREAD.
 * Thread-safe; does no network I/O. */
CM_API int cm_client_new(const cm_options *o, cm_client **out);

/* Records one usage report: merges its deltas into the buffer entry of
 * u->intent_id and returns. Never blocks on the network and allocates
 * nothing; takes the client's lock for a few hundred nanoseconds at most.
 * Reports of one intent merge only when they name the same model and
 * both carry a cost or both leave it to the rate card.
 * Returns CM_OK (recorded), CM_EINVAL (NULL argument, negative count,
 * cost not finite or negative (but CM_COST_BY_RATE_CARD with a model),
 * intent id too long or not UTF-8, a model name that is not one, cached
 * and cache-write tokens above tokens_in with a model),
 * CM_ERANGE (cost above CM_COST_MAX_USD, or the intent's buffered sum
 * would overflow), CM_EFULL (a new intent while max_pending_intents are
 * buffered: nothing recorded; retry later or report it without intent),
 * CM_ESHUTDOWN. Nothing is recorded unless CM_OK is returned.
 * Thread-safe. */
CM_API int cm_report(cm_client *c, const cm_usage *u);

/* cm_report() with money in and out beside the cost (m may be NULL: none),
 * summed per intent like the cost. CM_EINVAL or CM_ERANGE for an amount
 * as for cost_usd. Same threads, locking and failures as cm_report(). */
CM_API int cm_report_money(cm_client *c, const cm_usage *u, const cm_money *m);

/* Asks the server to admit a new intent (POST /v1/mesh/intents) and waits
 * for the answer (at most request_timeout_ms). intent_id may be NULL: the
 * server picks one, returned in why->intent_id. why may be NULL; when given
 * it is zeroed and filled in (see cm_decision). Also updates
 * cm_agent_state(): CM_OK -> active, CM_EBUDGET -> blocked,
 * CM_EKILLED -> killed.
 * Returns CM_OK (201, admitted), CM_EBUDGET (429 cost_policy_breached:
 * why->limit, limit_value, current, retry_after_s are set), CM_EKILLED
 * (403 agent_killed), CM_EAUTH (401/403), CM_EINVAL (bad argument, or the
 * server answered 400), CM_ENETWORK (no answer), CM_EHTTP (other status),
 * CM_EPROTO (unreadable reply), CM_ENOMEM.
 * Blocks the calling thread on the network. Thread-safe. */
CM_API int cm_intent_begin(cm_client *c, const char *intent_id, cm_decision *why);

/* cm_intent_begin() with the intent's run, session, workflow and customer
 * (attrs may be NULL: none), which its reports inherit on the server.
 * CM_EINVAL also for an attribute too long, not UTF-8 or with a control
 * character. Blocks like cm_intent_begin(). Thread-safe. */
CM_API int cm_intent_begin_attrs(cm_client *c, const char *intent_id, const cm_intent_attrs *attrs,
                                 cm_decision *why);
/* Records how an intent ended (POST /v1/mesh/intents/{intent_id}/end) and
 * waits for the answer (at most request_timeout_ms). status is
 * "succeeded", "failed" or "cancelled"; quality is a score in [0, 1], or
 * negative for none. The first outcome of an intent is kept (a heartbeat
 * whose status ends it counts too). why may be NULL; when given it is
 * zeroed and filled in (http_status, error_code; intent_id on CM_OK).
 * Returns CM_OK (200: recorded, or it had already ended with this status),
 * CM_EHTTP (409: it had ended with another status, why->error_code
 * "intent_already_ended"; or another unexpected status), CM_EINVAL (bad
 * argument, or the server answered 400 or 404: no such intent), CM_EAUTH
 * (401/403), CM_ENETWORK, CM_EPROTO, CM_ENOMEM.
 * Blocks the calling thread on the network. Thread-safe. */
CM_API int cm_intent_end(cm_client *c, const char *intent_id, const char *status, double quality, cm_decision *why);

/* Sends everything reported before the call now and waits until the server
 * has acknowledged it, at most timeout_ms (< 0: no limit; 0: just start
 * the send). Returns CM_OK when all of it is acknowledged (or there was
 * nothing to send), CM_ETIMEDOUT otherwise (the data stays buffered and is
 * still sent), CM_EINVAL, CM_ESHUTDOWN. Blocks the calling thread.
 * Thread-safe; not from the on_state callback. */
CM_API int cm_flush(cm_client *c, int timeout_ms);

/* The agent's state as last told by the server (heartbeat reply or intent
 * answer) into *state (a cm_agent_state_t), and, when cost_today_nanos is
 * not NULL, the agent's cost today in nano-dollars (-1 when unknown).
 * Returns CM_OK or CM_EINVAL. Never does I/O. Thread-safe. */
CM_API int cm_agent_state(cm_client *c, int *state, int64_t *cost_today_nanos);

/* Copies the client's counters into *out. Returns CM_OK or CM_EINVAL.
 * Never does I/O. Thread-safe. */
CM_API int cm_client_stats(cm_client *c, cm_stats *out);

/* Destructor. Sends what is still buffered, trying for at most
 * close_timeout_ms, stops the background thread and frees the client and
 * everything it owns. What the server has not acknowledged by then is
 * lost: call cm_flush() first and check its result when that matters.
 * c == NULL is a harmless no-op. Not thread-safe: the last call on c. */
CM_API void cm_client_free(cm_client *c);

#ifdef __cplusplus
}
#endif

#endif /* COSTMESH_H */
