/* codec.h - JSON request bodies into C structs, validated.
 *
 * The only module that includes json-c. Decoders are pure (no I/O), run on
 * the HTTP threads, and either fill the output completely or describe the
 * first fault in a cm_apierr naming the field's JSON path. */
#ifndef CM_CODEC_H
#define CM_CODEC_H

#include "address.h"
#include "buf.h"
#include "policy.h"
#include "billing.h"
#include "pricing.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CM_ID_MAX 128            /* bytes in an id-like string field */
#define CM_STATUS_MAX 32
#define CM_BATCH_MAX 1000        /* heartbeats in one request */
/* 1e15: a group commit's 4,000 of these on top of a capped total
 * (CM_TOTAL_MAX, refusal.h) stay inside int64. */
#define CM_COUNT_MAX 1000000000000000LL
#define CM_TS_PAST_S (7 * 86400) /* oldest accepted ts, before now */
#define CM_TS_FUTURE_S 300       /* newest accepted ts, after now */

/* A client-facing error: HTTP status, snake_case code, sentence, field path. */
typedef struct {
    int status;
    const char *code; /* static string */
    char message[256];
    char field[128];  /* "" when no single field is at fault */
} cm_apierr;

/* Fills e and returns `status` negated into a cm error code (CM_EINVAL for
 * 4xx), so decoders can `return cm_apierr_set(...)`. */
int cm_apierr_set(cm_apierr *e, int status, const char *code, const char *field,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The strict parse every JSON body goes through (RFC 8259: one value,
 * nothing after it, strings valid UTF-8), for the decoders of other shapes
 * that walk the json-c tree themselves (otlp.c, cloudevents.c). Returns the
 * root, which the caller json_object_put()s, or NULL with e filled (400, or
 * 413 for a body json-c cannot take). */
struct json_object;
struct json_object *cm_codec_parse(const char *body, size_t len, cm_apierr *e);

/* Whether a Content-Type header (NULL when absent) names the media type
 * `type`, case-insensitively, with or without parameters ("; charset=utf-8"). */
bool cm_codec_media_is(const char *header, const char *type);

/* Money from a number's text ("0.03", "1e-3"), into nano-dollars: CM_OK
 * when it is a number from 0 to CM_MONEY_MAX (money.h), rounded half-even;
 * else CM_EINVAL or CM_ERANGE. "-0" is zero; any other negative is refused,
 * even one that rounds to zero. */
int cm_codec_money(const char *text, int64_t *nanos);

/* One heartbeat. Strings are "" when absent. */
typedef struct {
    char agent[CM_ADDR_MAX];
    char id[CM_ID_MAX + 1];
    char intent_id[CM_ID_MAX + 1];
    char run_id[CM_ID_MAX + 1];
    char session_id[CM_ID_MAX + 1];
    char workflow[CM_ID_MAX + 1];
    char parent_intent_id[CM_ID_MAX + 1];
    char customer[CM_ID_MAX + 1];
    char status[CM_STATUS_MAX + 1];
    char model[CM_MODEL_MAX + 1]; /* "" when none: nothing for a rate card to price */
    int64_t ts; /* Unix seconds; arrival time when the body had none */
    int64_t cost_nanos;
    bool has_cost; /* the client sent cost_usd (else the rate card prices it) */
    bool priced;          /* a rate card of the org priced it (api_pricing.c): */
    int64_t priced_nanos; /* the server's own rating, whatever the client sent */
    /* Money in and out beside the model cost; a refund is its own
     * non-negative amount, subtracted from revenue (margin, schema 016). */
    int64_t revenue_nanos, refund_nanos, external_nanos, fees_nanos;
    /* tokens_cached and tokens_cache_write are part of tokens_in. */
    int64_t tokens_in, tokens_out, tokens_cached, tokens_cache_write, llm_calls, tool_calls;
    int64_t compute_ms; /* compute time of the work reported, what compute-seconds bill (schema 019) */
    int64_t intents_total, intents_succeeded, intents_failed;
    double avg_latency_ms;
    bool has_latency;
} cm_hb;

/* The metric names a heartbeat decoder did not know. They are accepted
 * (an SDK newer than the server keeps working, and the AXME SDK sends
 * metrics of its own) and reported back, so a misspelt one is seen: the
 * reply lists the first CM_IGNORED_LISTED paths and /metrics counts all. */
#define CM_IGNORED_LISTED 20
typedef struct {
    size_t count;
    cm_buf listed; /* JSON strings, comma-separated, e.g. "metrics.cost","heartbeats[2].metrics.x" */
} cm_ignored;

/* Decodes a heartbeat request body (`len` bytes, may be 0): one heartbeat
 * object, or {"heartbeats":[...]} with 1..CM_BATCH_MAX items. An empty body
 * is one liveness beat with no agent. `now` is the arrival time.
 * On CM_OK *out is a malloc'd array of *n items the caller frees with free().
 * On failure *out is NULL and e says why (400, or 413 for too many items).
 * Unknown metric names are added to *ignored (initialised by the caller);
 * any other unknown field is a 400. */
int cm_codec_heartbeats(const char *body, size_t len, int64_t now, cm_hb **out, size_t *n,
                        cm_ignored *ignored, cm_apierr *e);

/* PUT /v1/mesh/pricing/models/{model} body: input_per_million_usd and
 * output_per_million_usd required, cached_input_per_million_usd and
 * cache_write_per_million_usd optional (absent: the input price, no
 * discount), each a number from 0 to CM_MONEY_MAX in whole nano-dollars
 * (more decimals are refused, not rounded: a card is stored as written);
 * effective_from required, an RFC 3339 time from 2000 to 9998, whole
 * seconds. Unknown fields are refused. */
int cm_codec_price(const char *body, size_t len, cm_price *out, cm_apierr *e);

/* PUT /v1/mesh/pricing/billing/{plan} body: per_run_usd, per_step_usd,
 * per_compute_second_usd, per_outcome_usd (at least one; absent ones are 0),
 * each as a model card's price; effective_from required, as a model card's,
 * and on a whole UTC hour. Unknown fields are refused. */
int cm_codec_bill_card(const char *body, size_t len, cm_bill_card *out, cm_apierr *e);

/* POST /v1/keys body. */
typedef struct {
    bool admin;                /* role "admin", else "agent" */
    char name[CM_ID_MAX + 1];
    char agent[CM_ADDR_MAX];   /* "" when not bound */
    char interop_env[CM_ADDR_SEG_MAX + 1]; /* "" when the server's */
} cm_keyreq;

/* POST /v1/keys body: role "admin" or "agent" and a non-empty name are
 * required; agent binds an agent key; interop_env (an address segment) is
 * the ENV of the agents that OTLP spans and CloudEvents sent with the key
 * name, for keys not bound to an agent. */
int cm_codec_keyreq(const char *body, size_t len, cm_keyreq *out, cm_apierr *e);

/* PUT and PATCH .../policies/cost body: every limit optional (absent or
 * null: unlimited), counts >= 0, money >= 0, action "block" (default) or
 * "alert", alert_thresholds 1..CM_THRESH_MAX numbers in (0, 1] (default
 * [0.5,0.75,0.9,1.0]), stored ascending. Unknown fields are refused: a typo
 * in a limit's name must not silently mean "unlimited". *present gets bit i
 * for each field the body names, null included, in the order of
 * CM_POLICY_ROW_COLS (the five limits, the action, the thresholds): what a
 * PATCH changes. */
int cm_codec_policy(const char *body, size_t len, cm_policy *out, unsigned *present, cm_apierr *e);

/* POST /v1/mesh/intents {"agent","intent_id"} or the AXME form of
 * POST /v1/intents {"to_agent","intent_type","payload","correlation_id"};
 * either may carry the attributes its heartbeats inherit when they omit
 * them: run_id, session_id, workflow, customer ("" when absent; the run,
 * workflow and customer also name the budgets it counts in, budget.h);
 * parent_intent_id, which places it in a delegation tree (it may not be
 * the intent's own id); and its estimated_cost_usd (money, like a
 * heartbeat's cost). */
typedef struct {
    char agent[CM_ADDR_MAX];          /* "" when absent */
    char intent_id[CM_ID_MAX + 1];    /* "" when absent: generated */
    char intent_type[CM_ID_MAX + 1];
    char run_id[CM_ID_MAX + 1];
    char session_id[CM_ID_MAX + 1];
    char workflow[CM_ID_MAX + 1];
    char customer[CM_ID_MAX + 1];
    char parent_intent_id[CM_ID_MAX + 1]; /* the delegation tree: "" for a root */
    int64_t estimated_cost; /* estimated_cost_usd in nano-dollars, reserved; 0 when absent */
} cm_intentreq;

int cm_codec_intent(const char *body, size_t len, bool axme, cm_intentreq *out, cm_apierr *e);

/* POST /v1/mesh/intents/{id}/end {"status","quality"?}: status one of
 * cm_codec_intent_ends (required in a body), quality a number from 0 to 1.
 * No body at all is an end without an outcome (status NULL): it only
 * releases the intent's reservation. */
typedef struct {
    const char *status;  /* static: an entry of cm_codec_intent_ends; NULL: no body */
    bool has_quality;
    int64_t quality;     /* 1e-9 units, like money */
} cm_intent_end;

/* The statuses that end an intent, NULL-terminated; rollup.h spells the
 * same three for SQL. */
extern const char *const cm_codec_intent_ends[];

int cm_codec_intent_end(const char *body, size_t len, cm_intent_end *out, cm_apierr *e);

/* PUT /v1/mesh/webhook {"url":"http(s)://...","secret":"..."}. */
typedef struct {
    char url[512];
    char secret[CM_ID_MAX + 1];
} cm_webhookreq;

int cm_codec_webhook(const char *body, size_t len, cm_webhookreq *out, cm_apierr *e);

#endif
