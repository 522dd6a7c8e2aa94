/* internal.h - the SDK's modules, seen by each other and by the unit tests
 * (tests/sdk/unit.c links the static library). Nothing here is exported:
 * the library is built with -fvisibility=hidden and only CM_API symbols
 * of costmesh.h leave the shared object. */
#ifndef CM_SDK_INTERNAL_H
#define CM_SDK_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "costmesh.h"

#define CM__NANOS_PER_USD 1000000000LL
#define CM__MONEY_MAX (1000000LL * CM__NANOS_PER_USD) /* per heartbeat, the server's limit */
/* Money in and out beside the cost (cm_money), in this order, and their
 * metric names. */
#define CM__MONEY_KINDS 4
extern const char *const cm__money_metrics[CM__MONEY_KINDS];
#define CM__COUNT_MAX 1000000000000000LL              /* per heartbeat count, the server's limit */
#define CM__MONEY_BUFSZ 32
#define CM__ID_PREFIX_LEN 24      /* hex digits of the random per-client prefix */
#define CM__ID_BUFSZ 64
#define CM__BATCH_BYTES_MAX (768 * 1024) /* a request body stays under the server's 1 MiB */
#define CM__BATCH_MAX 1000

/* ---- money.c: nano-dollars ---- */

/* llround(usd * 1e9), refusing NaN/inf/negative (CM_EINVAL) and values
 * above CM_COST_MAX_USD (CM_ERANGE). -0.0 is 0. */
int cm__money_from_double(double usd, int64_t *nanos);
/* Exact decimal text of nanos >= 0 ("0", "0.001", "100", "1.000000001"),
 * NUL-terminated in buf (CM__MONEY_BUFSZ bytes); returns its length. */
size_t cm__money_format(int64_t nanos, char *buf);
/* Decimal text [-]D+[.D*] -> nano-dollars, rounded half-even at the 9th
 * decimal. Returns CM_OK, CM_EINVAL (not that syntax), CM_ERANGE. */
int cm__money_parse(const char *s, size_t n, int64_t *nanos);
/* Unsigned decimal text of v into buf (>= 21 bytes), NUL-terminated; returns its length. */
size_t cm__u64_format(uint64_t v, char *buf);

/* ---- util.c: ids, backoff, randomness ---- */

/* CM__ID_PREFIX_LEN random hex digits (getrandom, else /dev/urandom, else
 * time/pid/address mixing) plus NUL into out. */
void cm__id_prefix(char out[CM__ID_PREFIX_LEN + 1]);
/* "cm-<prefix>-<counter in hex>" into out (outsz >= CM__ID_BUFSZ); returns its length. */
size_t cm__id_format(const char *prefix, uint64_t counter, char *out, size_t outsz);
/* Delay before retry number attempt (1 = first retry): d = min(max, initial * 2^(attempt-1)),
 * then "equal jitter": d/2 + rnd % (d/2 + 1); at least retry_after_ms when that is > 0
 * (Retry-After wins over the cap, itself capped at one hour). */
int64_t cm__backoff_ms(int attempt, int initial_ms, int max_ms, int64_t retry_after_ms, uint32_t rnd);
/* xorshift64* step; *state must be non-zero. */
uint32_t cm__rand_next(uint64_t *state);
/* Retry-After header value in seconds (delta-seconds only), -1 when absent or not that form. */
int64_t cm__parse_retry_after(const char *v, size_t n);
/* FNV-1a of n bytes. */
uint32_t cm__hash(const char *s, size_t n);
/* true when s[0..n) is valid UTF-8 without NUL. */
bool cm__utf8_valid(const char *s, size_t n);
/* Monotonic milliseconds. */
int64_t cm__now_ms(void);

/* ---- table.c: the coalescing buffer, one entry per intent ---- */

typedef struct cm__entry {
    uint32_t hash;
    uint32_t len;
    int64_t cost_nanos;
    int64_t tokens_in, tokens_out, llm_calls, tool_calls, tokens_cached, tokens_cache_write;
    int64_t money[CM__MONEY_KINDS]; /* revenue, refund, external spend, fees (nanos) */
    char intent[CM_INTENT_ID_MAX + 1];
    uint32_t mlen;
    bool by_card; /* no cost: the server prices it by its model's rate card */
    char model[CM_MODEL_MAX + 1];
} cm__entry;

typedef struct cm__table {
    cm__entry *e;      /* dense, e[0..n) */
    int32_t *slot;     /* open addressing: index into e, -1 empty */
    uint32_t n, cap;   /* entries used, entries allocated (= max_pending_intents) */
    uint32_t mask;     /* slot count - 1 (a power of two >= 2 * cap) */
} cm__table;

/* Deltas of one report, already validated and converted, and the model
 * and pricing that, with the intent, make its entry. */
typedef struct cm__delta {
    int64_t cost_nanos, tokens_in, tokens_out, llm_calls, tool_calls, tokens_cached, tokens_cache_write;
    int64_t money[CM__MONEY_KINDS];
    const char *model; /* mlen bytes, borrowed; mlen 0: none */
    uint32_t mlen;
    bool by_card;
} cm__delta;

/* Allocates a table for cap entries (all memory up front). CM_OK or CM_ENOMEM. */
int cm__table_init(cm__table *t, uint32_t cap);
void cm__table_free(cm__table *t); /* t's memory; t itself is the caller's */
void cm__table_clear(cm__table *t);
/* Adds d to the entry of intent[0..len) and d's model and pricing (hash =
 * cm__hash(intent, len)), creating it when new. CM_OK, CM_EFULL (new intent, table full),
 * CM_ERANGE (a sum would overflow int64); on failure nothing changes. */
int cm__table_merge(cm__table *t, const char *intent, uint32_t len, uint32_t hash, const cm__delta *d);
/* The entry of intent without a model, or NULL. */
const cm__entry *cm__table_find(const cm__table *t, const char *intent, uint32_t len);

/* ---- encode.c: request bodies ---- */

typedef struct cm__buf {
    char *p;
    size_t len, cap;
    bool oom; /* an append failed: the contents are incomplete */
} cm__buf;

void cm__buf_init(cm__buf *b);
void cm__buf_free(cm__buf *b);
void cm__buf_reset(cm__buf *b);
void cm__buf_add(cm__buf *b, const char *s, size_t n);
void cm__buf_adds(cm__buf *b, const char *s);
/* A JSON string literal of s[0..n) (quotes, \" \\ and control characters escaped). */
void cm__buf_add_jstr(cm__buf *b, const char *s, size_t n);

/* Where the encoder is in a frozen table (which it never modifies). An
 * entry above the per-heartbeat limits (1e6 USD, 1e15 per count) is split
 * over several heartbeats: part k carries the k-th slice of each field. */
typedef struct cm__cursor {
    uint32_t entry;   /* next entry to encode */
    uint32_t part;    /* heartbeats already emitted for it */
} cm__cursor;

typedef struct cm__ids {
    const char *prefix;  /* cm__id_prefix() */
    uint64_t next;       /* counter of the next id; advanced per heartbeat */
} cm__ids;

/* Encodes the next heartbeats of t from *cur as {"heartbeats":[...]} into out
 * (reset first): at most max_batch of them and about CM__BATCH_BYTES_MAX bytes.
 * agent may be NULL (bound key). *nhb and *cost get what the body carries.
 * Returns CM_OK (cur->entry == t->n when t is done) or CM_ENOMEM (then
 * restore *cur and ids->next to retry). */
int cm__encode_batch(const cm__table *t, cm__cursor *cur, const char *agent, cm__ids *ids, int max_batch,
                     cm__buf *out, int *nhb, int64_t *cost);
/* {"agent":...,"intent_id":...,"run_id":...} (any may be NULL: left out;
 * attrs NULL: none). */
int cm__encode_intent(const char *agent, const char *intent_id, const cm_intent_attrs *attrs, cm__buf *out);
/* The URL of an intent's end, base + "/" + the percent-encoded id + "/end",
 * and its body {"status":...,"quality":...} (quality < 0: left out), into
 * url and body (reset first). CM_OK or CM_ENOMEM. */
int cm__encode_intent_end(const char *base, const char *intent_id, const char *status, double quality,
                          cm__buf *url, cm__buf *body);

/* ---- reply.c: the server's answers (json-c) ---- */

typedef struct cm__hb_reply {
    int64_t accepted, duplicates;
    int state;               /* cm_agent_state_t; CM_STATE_UNKNOWN when the agent is not named */
    int64_t cost_today_nanos;/* -1 when unknown */
} cm__hb_reply;

/* A 202 heartbeat reply. agent NULL: the only agent in "agents". CM_OK or CM_EPROTO. */
int cm__parse_hb_reply(const char *body, size_t n, const char *agent, cm__hb_reply *out);
/* An intents reply of this status into d (already zeroed, http_status set);
 * returns the cm_intent_begin() result code. */
int cm__parse_intent_reply(int status, const char *body, size_t n, cm_decision *d);

/* ---- http.c: libcurl ---- */

typedef struct cm__http cm__http;

typedef struct cm__http_opts {
    const char *api_key;
    const char *ca_file;
    long timeout_ms, connect_timeout_ms;
    /* Optional: a request in progress is aborted (CM_ENETWORK) once
     * cm__now_ms() passes *abort_at_ms (0: never). Checked about once a second. */
    const _Atomic int64_t *abort_at_ms;
} cm__http_opts;

typedef struct cm__http_res {
    int status;               /* 0: no HTTP answer */
    int64_t retry_after_s;    /* -1: none */
    cm__buf body;             /* the reply body (capped at 1 MiB) */
    char err[128];            /* libcurl's message when status is 0 */
} cm__http_res;

int cm__http_global_init(void); /* once per process; CM_OK or CM_ENOMEM */
/* A reusable connection (one thread at a time). NULL on failure. */
cm__http *cm__http_new(const cm__http_opts *o);
void cm__http_free(cm__http *h);
/* POST body to url; fills *res (its body buffer is reset and reused).
 * CM_OK when an HTTP answer came (any status), CM_ENETWORK otherwise. */
int cm__http_post(cm__http *h, const char *url, const char *body, size_t len, cm__http_res *res);

#endif
