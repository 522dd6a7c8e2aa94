/* job.h - one API request on its way from an HTTP thread to the loop thread
 * and back: the operation, who asks, its decoded request and, once the loop
 * thread is done, the reply.
 *
 * A job carries the request type of its operation only (as libuv's
 * uv_any_req): `op` says which member of `req` is valid. The HTTP thread
 * fills the request; the loop thread fills the reply and calls done. */
#ifndef CM_JOB_H
#define CM_JOB_H

#include "auth.h"
#include "budget.h"
#include "buf.h"
#include "codec.h"
#include "cloudevents.h"
#include "otlp.h"
#include "queue.h"
#include "timeutil.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    CM_OP_HEARTBEAT = 0, /* req.heartbeat */
    CM_OP_KEY_CREATE,    /* req.key_create */
    CM_OP_KEY_LIST,      /* no request fields */
    CM_OP_KEY_REVOKE,    /* req.key_revoke */
    CM_OP_AGENT_LIST,    /* req.agent_list */
    CM_OP_AGENT_GET,     /* req.agent */
    CM_OP_SPEND_AGENT,   /* req.spend_agent */
    CM_OP_SPEND_INTENT,  /* req.spend_intent */
    CM_OP_EVENTS,        /* req.events */
    CM_OP_POLICY_PUT,    /* req.policy */
    CM_OP_POLICY_GET,    /* req.policy (address only) */
    CM_OP_POLICY_DELETE, /* req.policy (address only) */
    CM_OP_POLICY_PATCH,  /* req.policy, with present */
    CM_OP_KILL,          /* req.agent */
    CM_OP_RESUME,        /* req.agent */
    CM_OP_WEBHOOK_PUT,   /* req.webhook_put */
    CM_OP_WEBHOOK_GET,   /* no request fields */
    CM_OP_INTENT,        /* req.intent */
    CM_OP_WEBHOOK_DELETE, /* no request fields */
    CM_OP_OTLP_TRACES,   /* req.interop */
    CM_OP_CE_EVENTS,     /* req.interop */
    CM_OP_METER_PUT,     /* req.meter */
    CM_OP_METER_LIST,    /* no request fields */
    CM_OP_METER_DELETE,  /* req.meter (event_type only) */
    CM_OP_AUTH,          /* the key only: the HTTP front asks before it reads a body (204 or 401) */
    CM_OP_INTENT_END,    /* req.intent_end */
    CM_OP_PRICE_PUT,     /* req.price */
    CM_OP_PRICE_LIST,    /* req.price (model only, "" for every model) */
    CM_OP_SPEND_UNIT,    /* req.spend_unit */
    CM_OP_TOP,           /* req.spend_unit */
    CM_OP_BILL_PUT,      /* req.bill */
    CM_OP_BILL_LIST,     /* req.bill (plan only, "" for every plan) */
    CM_OP_USAGE,         /* req.usage */
    CM_OP_POLICY_LIST,   /* req.policy_list */
    CM_OP_INTENT_TREE,   /* req.spend_intent */
    CM_OP_COUNT
} cm_op;

/* POST /v1/mesh/heartbeat: the decoded heartbeats. */
typedef struct {
    cm_hb *hbs; /* owned, freed by cm_job_free */
    size_t n;
    cm_ignored ignored; /* unknown metric names, for the reply; freed by cm_job_free */
} cm_req_heartbeat;

/* DELETE /v1/keys/{id}. */
typedef struct {
    char id[CM_KEY_ID_MAX + 1];
} cm_req_key_revoke;

/* GET /v1/mesh/agents. */
typedef struct {
    char health[16];        /* ?health=, "" for all */
    char after[CM_ADDR_MAX]; /* ?cursor=: addresses after this one, "" from the start */
    int limit;
} cm_req_agent_list;

/* A route whose only parameter is an agent's address: one agent, kill,
 * resume. */
typedef struct {
    char address[CM_ADDR_MAX];
} cm_req_agent;

/* GET /v1/mesh/agents/{address}/spend. */
typedef struct {
    char address[CM_ADDR_MAX];
    cm_window window;
    int64_t at; /* a time inside the window, Unix seconds */
} cm_req_spend_agent;

/* GET /v1/mesh/{runs|sessions|workflows|customers}/{id}/spend, and
 * GET /v1/mesh/top?by=&window=&limit=&agent=. */
typedef struct {
    const char *by; /* static: "run", "session", "workflow", "customer"; top also "agent" */
    char id[CM_ID_MAX + 1];  /* the unit; "" for top */
    cm_window window;
    int64_t at;              /* a time inside the window, Unix seconds */
    char agent[CM_ADDR_MAX]; /* top's ?agent=: that agent's spend broken down; "" for the org */
    int limit;               /* top's ?limit= */
} cm_req_spend_unit;

/* GET /v1/mesh/intents/{intent_id}/spend and .../tree. An intent id is
 * unique within an org and its tree spans agents, so ?agent= is a hint,
 * checked like any agent the key names, and never narrows the answer. */
typedef struct {
    char intent_id[CM_ID_MAX + 1];
    char agent[CM_ADDR_MAX]; /* ?agent=, "" when absent */
} cm_req_spend_intent;

/* POST /v1/mesh/intents/{intent_id}/end. */
typedef struct {
    cm_req_spend_intent intent; /* the id and the ?agent= hint */
    cm_intent_end body;
} cm_req_intent_end;

/* GET /v1/mesh/events. */
typedef struct {
    char event_type[32];     /* ?event_type=, "" for all */
    char agent[CM_ADDR_MAX]; /* ?agent=, "" for all the key may see */
    int64_t before;          /* ?cursor=: events older than this id, 0 from the newest */
    int limit;
} cm_req_events;

/* PUT, PATCH, GET, DELETE /v1/mesh/agents/{address}/policies/cost, and
 * the same of a scope (/v1/mesh/org/..., /v1/mesh/envs/{env}/... and so on). */
typedef struct {
    cm_scope_kind kind;        /* CM_SCOPE_AGENT for an agent's */
    char address[CM_ADDR_MAX]; /* the agent's, or the scope's id ("" for the org) */
    cm_policy policy; /* the PUT or PATCH body */
    unsigned present; /* PATCH: bit i set for each column the body names (codec.h) */
} cm_req_policy;

/* GET /v1/mesh/policies: the org's policies, widest scope first. */
typedef struct {
    bool after_set;          /* ?cursor=: the policies after (after_kind, after) */
    cm_scope_kind after_kind;
    char after[CM_ADDR_MAX];
    int limit;
} cm_req_policy_list;

/* POST /v1/mesh/intents and the AXME form POST /v1/intents. */
typedef struct {
    cm_intentreq body;
    bool axme;
    char idem_key[CM_ID_MAX + 1]; /* Idempotency-Key header, "" when none */
} cm_req_intent;

/* PUT, GET /v1/mesh/pricing/models/{model} and GET /v1/mesh/pricing/models. */
typedef struct {
    char model[CM_MODEL_MAX + 1];
    cm_price price; /* the PUT body */
} cm_req_price;

/* PUT, GET /v1/mesh/pricing/billing/{plan} and GET /v1/mesh/pricing/billing. */
typedef struct {
    char plan[CM_ID_MAX + 1];
    cm_bill_card card; /* the PUT body */
} cm_req_bill;

/* GET /v1/mesh/customers/{id}/usage and .../usage.csv. */
typedef struct {
    char customer[CM_ID_MAX + 1];
    int64_t from, to; /* Unix seconds, whole hours, from < to */
    bool csv;
} cm_req_usage;

typedef struct cm_job cm_job;

/* POST /v1/traces and POST /api/v1/events: heartbeats in another
 * protocol's terms. Each heartbeat's `agent` holds the agent's NAME only;
 * the handler (api_interop.c) makes it an address for the key, hands the
 * job to the group commit as a heartbeat job, and answers in the
 * protocol's terms. CloudEvents come as events; the handler makes the
 * heartbeats with the org's meters. */
typedef struct {
    cm_req_heartbeat hb; /* first: the group commit reads it as req.heartbeat */
    cm_otlp_stats otlp;
    cm_ce_event *events; /* owned, freed by cm_job_free */
    size_t nevents;
    /* The transport's done, while the group commit answers the handler. */
    void (*done)(cm_job *j);
    void *done_arg;
    void *api; /* the handler's cm_api */
} cm_req_interop;

struct cm_job {
    cm_job *next; /* queue link, owned by whoever holds the job */
    cm_op op;
    int64_t now;  /* arrival, Unix seconds */
    /* Monotonic ns (libuv's clock) when the HTTP thread handed it to the
     * loop (bridge.c), and when it joined the group commit's queue
     * (ingest.c): the start of the stages /metrics times. */
    uint64_t handed_ns, queued_ns;
    unsigned char key_hash[CM_KEY_HASH_LEN]; /* every job has a key: none is a 401 at the door */

    union {
        cm_req_heartbeat heartbeat;
        cm_keyreq key_create;
        cm_req_key_revoke key_revoke;
        cm_req_agent_list agent_list;
        cm_req_agent agent;
        cm_req_spend_agent spend_agent;
        cm_req_spend_intent spend_intent;
        cm_req_intent_end intent_end;
        cm_req_spend_unit spend_unit;
        cm_req_events events;
        cm_req_policy policy;
        cm_req_policy_list policy_list;
        cm_webhookreq webhook_put;
        cm_req_intent intent;
        cm_req_interop interop;
        cm_meter meter;
        cm_req_price price;
        cm_req_bill bill;
        cm_req_usage usage;
    } req;

    /* Reply, filled on the loop thread before done(). */
    int status;
    char *body;        /* owned, JSON text, NUL-terminated */
    size_t body_len;
    long retry_after;  /* > 0: a Retry-After header, seconds */
    const char *content_type; /* static; NULL: application/json */
    cm_error_form errors;     /* how cm_job_fail writes an error; set by http.c */

    /* Hands the finished job back; called on the loop thread, so it must
     * only do thread-safe things. */
    void (*done)(cm_job *j);
    void *done_arg;
};

/* A FIFO of jobs, linked through next: the bridge's hand-off from the HTTP
 * threads and the heartbeats waiting for a group commit. A job is in one of
 * them at a time, so one link serves both. */
CM_QUEUE_DEFINE(cm_jobq, cm_job, next)

/* Sets the reply: status and the text of b (taken; b is reset). An
 * allocation failure becomes a bodiless 500. */
void cm_job_reply(cm_job *j, int status, cm_buf *b);
/* Sets an error reply with the error body of j->errors. field may be NULL. */
void cm_job_fail(cm_job *j, int status, const char *code, const char *field, const char *message);
/* Writes an error body in form onto b: costmesh's JSON error, or an OTLP
 * export's (otlp.h). Returns the Content-Type, a static string. Every error
 * body, on the HTTP threads and the loop thread, is written here. */
const char *cm_job_error_body(cm_error_form form, int status, const char *code, const char *field,
                              const char *message, cm_buf *b);
/* Frees the job and what its request owns. NULL is a no-op. */
void cm_job_free(cm_job *j);

#endif
