/* hot.h - everything Redis means to costmesh: the hot per-agent windows,
 * policies and kill flags mirrored from PostgreSQL, and the typed calls of
 * the Lua scripts (server/lua/) that read and update them atomically.
 *
 * Loop thread only. Owns the Redis connection (store.h); the keys and
 * fields are hot_layout.h's. PostgreSQL is the record: whenever Redis may
 * have lost data (each (re)connect, a script that finds the epoch key
 * missing) the module rebuilds the mirror from it by itself
 * (hot_rebuild.c), then sets the epoch key. One rebuild at a time; one
 * asked for while another runs follows it; a failed one is retried a
 * second later.
 *
 * Every call returns CM_OK and later calls its callback once, or an error
 * at once (CM_ESTORE when Redis is not connected, CM_ENOMEM, CM_EINVAL for
 * no rows or agents) and never calls it. Strings in a call's input are borrowed for the call only; a
 * result is lent to its callback only. */
#ifndef CM_HOT_H
#define CM_HOT_H

#include "budget.h"
#include "codec.h"
#include "forecast.h"
#include "pg.h"
#include "policy.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct cm_hot cm_hot;

/* Connects to Redis where it is (store.h; copied). pg is borrowed (it must
 * outlive the module): the rebuild reads it. */
int cm_hot_new(uv_loop_t *loop, const cm_store_where *where, cm_pg_pool *pg, cm_hot **out);
/* Disconnects (pending calls get CM_ESTORE); memory is freed once libuv
 * has closed the handles (run the loop after). NULL is a no-op. */
void cm_hot_free(cm_hot *h);
/* The connection, for /metrics. */
const cm_store *cm_hot_store(const cm_hot *h);
/* Connected and holding a complete mirror (rebuilt since it connected):
 * what /readyz reports. Safe from any thread. */
bool cm_hot_ready(const cm_hot *h);

/* rc is CM_OK, or CM_ESTORE when Redis failed or the connection dropped. */
typedef void (*cm_hot_done_cb)(void *arg, int rc);

/* Whole rebuilds of the mirror done so far: after one, Redis's windows may
 * hold less than PostgreSQL's rollups (it lost data). */
unsigned long cm_hot_rebuilds(const cm_hot *h);

/* ---- MERGE: absolute totals, after a group commit ---- */

/* A window's totals as PostgreSQL's rollup holds them. */
typedef struct {
    const char *address;
    char grain;    /* 'h', 'd' or 'm' (CM_HOT_GRAINS) */
    int64_t start; /* the window's start, Unix seconds */
    int64_t cost;  /* nano-dollars */
    int64_t tokens_in, tokens_out, llm_calls, heartbeats;
} cm_hot_rollup;

/* Reads a row's columns col..col+7 as the group commit and the rebuild
 * select them (text): address, grain, bucket start, cost, tokens in and
 * out, LLM calls, heartbeats. out->address points into res. */
void cm_hot_rollup_read(const cm_pgres *res, int row, int col, cm_hot_rollup *out);

/* Each window field becomes max(Redis, row): totals only grow, so a merge
 * applied twice, late or out of order changes nothing. Unless every agent's
 * windows are kept (cm_hot_set_all_windows), a row is merged only while its
 * agent's policy in Redis has a limit (merge.lua): only the checks of an
 * agent's limits read its windows, so an agent without one costs Redis one
 * read per merge, and cm_hot_put_policy reads the windows back when it
 * gives one. cb may be NULL. */
int cm_hot_merge(cm_hot *h, const cm_hot_rollup *rows, int n, cm_hot_done_cb cb, void *arg);

/* One field of a window hash as PostgreSQL counts it: an agent's or a
 * scope's intents in a window, a scope's cost. */
typedef struct {
    const char *tag; /* the agent's address, or a scope's tag (cm_budget_tag) */
    char grain;
    int64_t start;
    int64_t value;
} cm_hot_count;

/* cm_hot_merge for one field of window hashes ("intents", "cost"). */
int cm_hot_merge_count(cm_hot *h, const char *field, const cm_hot_count *rows, int n, cm_hot_done_cb cb,
                       void *arg);

/* ---- CHECK: agents' states and newly crossed marks, after heartbeats ---- */

typedef enum { CM_HOT_AGENT_ACTIVE = 0, CM_HOT_AGENT_BLOCKED, CM_HOT_AGENT_KILLED } cm_hot_agent_state;

/* A threshold of a cost limit, or a limit itself, crossed for the first
 * time in its window; or the limit's exhaustion, at the burn rate of the
 * last hour, predicted for the first time within the horizon
 * (cm_hot_set_horizon) and before the window ends. */
#define CM_HOT_MARK_PREDICTED (-1)
typedef struct {
    int agent;           /* index into the addresses checked */
    int limit;           /* CM_LIM_* */
    int64_t fraction;    /* the threshold in 1e-9 units; 0: the limit itself; CM_HOT_MARK_PREDICTED */
    int64_t current;     /* the window's value */
    int64_t limit_value;
} cm_hot_mark;

typedef struct {
    const cm_hot_agent_state *state; /* one per address checked */
    const cm_forecast *forecast;     /* one per address checked; figures only where has[] */
    int nmarks;
    const cm_hot_mark *marks;
} cm_hot_check_result;

/* r is never NULL: with rc other than CM_OK some agents went unchecked and
 * read active (heartbeats are accepted whatever Redis says), with no marks. */
typedef void (*cm_hot_check_cb)(void *arg, int rc, const cm_hot_check_result *r);

/* Checks addresses[0..n) (agents' addresses or scopes' tags) against
 * their policies in the windows containing `now`. Redis runs it after the
 * merges sent before. */
int cm_hot_check(cm_hot *h, const char *const *addresses, int n, int64_t now, cm_hot_check_cb cb, void *arg);
/* How far ahead a predicted exhaustion is a mark (seconds; default 3600). */
void cm_hot_set_horizon(cm_hot *h, int seconds);
/* Whether every agent's windows are kept (the default; redis mode, whose
 * ACK keeps them all, a month holding its caps) or only those of agents
 * whose policy has a limit (postgres mode): then merges are gated
 * (cm_hot_merge), a whole rebuild reads those agents only, and a policy
 * put reads its agent's windows back (cm_hot_put_policy). */
void cm_hot_set_all_windows(cm_hot *h, bool all);
/* How long Redis may leave its calls unanswered before the connection is
 * given up (store.h's cm_store_set_deadline; 0: no bound). */
void cm_hot_set_deadline(cm_hot *h, int ms);

/* ---- ADMIT: an intent's check-and-increment ---- */

/* Every budget an intent counts in is a level: its agent (level 0, whose
 * tag is its address) and the scopes of budget.h, each keyed by its tag. */
#define CM_HOT_LEVELS_MAX CM_SCOPE_KINDS

typedef struct {
    const char *agent;       /* also the Idempotency-Key's scope */
    const char *const *tags; /* ntags levels, tags[0] the agent's address (cm_budget_tag) */
    int ntags;
    const char *org, *intent_id;
    /* > 0: reserved at every level with the admission, until spent, ended
     * (cm_hot_release) or past `deadline` (Unix seconds, cm_hot_release_due). */
    int64_t estimate;
    int64_t deadline;
    int64_t starts[CM_WIN3]; /* the windows it counts in */
    const char *idem_key;    /* the Idempotency-Key, "" for none */
    bool by_intent_id;       /* idem_key is the client's intent_id, standing in for the header */
    /* The delegation tree the intent joins, when the agent's policy caps
     * trees (tree_cap NULL: no check): its root (in org), its cost as
     * PostgreSQL has it (nano-dollars, decimal text) and the cap. */
    const char *tree_root, *tree_cost, *tree_cap;
    unsigned long generation; /* cm_hot_generation() when sent to ADMIT */
} cm_hot_admission;

/* Which Redis primary is used: it changes with a failover, after which
 * the primary never saw what was counted on the one before. Until the
 * mirror is rebuilt on the new one, cm_hot_admit answers CM_ESTORE. */
unsigned long cm_hot_generation(const cm_hot *h);

typedef enum {
    CM_HOT_ADMITTED,   /* counted in its three windows at every level */
    CM_HOT_REFUSED,    /* a limit of a blocking policy is reached at some level */
    CM_HOT_KILLED,     /* the agent is killed */
    CM_HOT_REBUILDING, /* Redis lost its data and this agent's rebuild failed */
    CM_HOT_REPEAT,     /* the Idempotency-Key was answered before: answer */
    CM_HOT_IN_FLIGHT,  /* the Idempotency-Key's first request still runs */
} cm_hot_admit_code;

/* ADMITTED and REFUSED: what one level's policy says. */
typedef struct {
    /* bit i = limit i (CM_LIM_*) is reached, and is so for the first time
     * in its window; whether the level's policy blocks (else alerts). */
    unsigned breached, newly;
    bool blocks;
    int64_t current[CM_LIM_COUNT]; /* a cost limit's: spent + reserved */
    int64_t limit[CM_LIM_COUNT]; /* 0 for a limit the policy does not set */
    int64_t this_hour, prev_hour; /* cost spent, for the forecast */
} cm_hot_level;

typedef struct {
    cm_hot_admit_code code;
    int nlevels; /* the admission's ntags, in its order */
    cm_hot_level level[CM_HOT_LEVELS_MAX];
    /* With a tree cap: the tree's cost the check used (the larger of the
     * admission's and the largest one before it), whether it reached the
     * cap (a refusal when the agent's policy blocks), and whether that was
     * seen for the first time for this root. */
    char tree_cost[48];
    bool tree_reached, tree_newly;
    /* REPEAT: the answer given to the first request. */
    struct {
        int status;
        long retry_after;
        const char *body;
    } answer;
} cm_hot_admit_result;

/* r is NULL unless rc is CM_OK. */
typedef void (*cm_hot_admit_cb)(void *arg, int rc, const cm_hot_admit_result *r);

/* Decides and counts atomically, whatever runs concurrently. While the
 * mirror is being rebuilt, the agent's own windows, policy and kill flag
 * are rebuilt first (from PostgreSQL), so one agent's admission never
 * waits for all agents' rebuild. With an
 * Idempotency-Key, an admission or refusal reserves the key ("in flight")
 * until cm_hot_remember or cm_hot_unadmit. */
int cm_hot_admit(cm_hot *h, const cm_hot_admission *a, cm_hot_admit_cb cb, void *arg);
/* Keeps the answer to a's Idempotency-Key for repeats (CM_HOT_REPEAT);
 * nothing when a has none. Fire-and-forget, like cm_hot_unadmit: CM_OK
 * when sent. */
int cm_hot_remember(cm_hot *h, const cm_hot_admission *a, int status, long retry_after, const char *body);
/* Undoes an admission whose intent was not recorded: the three intent
 * counts of every level go down again (unless a failover since means they
 * never went up on this primary), its reservation and the Idempotency-Key
 * are released. */
int cm_hot_unadmit(cm_hot *h, const cm_hot_admission *a);
/* After a's intent is recorded: when a failover came in between, the new
 * primary may have missed it (the rebuild read the intents before it was
 * recorded). While that rebuild runs, one more pass follows it; after, the
 * intent is counted on the new primary, twice if the rebuild did read it
 * (until its windows end: an error on the side of refusing). */
int cm_hot_recorded(cm_hot *h, const cm_hot_admission *a);

/* ---- reservations (admit.lua reserves) ---- */

/* An intent's cost just counted: at its commit (the agent's level) or by
 * the rollup worker (the scopes'). */
typedef struct {
    const char *org, *intent_id;
    int64_t cost;
} cm_hot_spent;

/* Draws the intents' reservations down by what they spent, at the agent's
 * level or the scopes' (draw.lua). Fire-and-forget: a lost draw leaves a
 * reservation held until its intent ends or its deadline. */
int cm_hot_draw(cm_hot *h, bool scopes, const cm_hot_spent *rows, int n);

/* A reservation released: what was left of it at the agent's level. */
typedef struct {
    const char *org, *intent_id, *agent;
    int64_t left;
} cm_hot_released;

/* found: 1 released (r[0..n)), 0 none, -1 it is another agent's. r is lent
 * to the callback. */
typedef void (*cm_hot_release_cb)(void *arg, int rc, int found, const cm_hot_released *r, int n);

/* Releases what is left of one intent's reservation, when `agent` ("" for
 * any) made it. */
int cm_hot_release(cm_hot *h, const char *org, const char *intent_id, const char *agent, cm_hot_release_cb cb,
                   void *arg);
/* An open reservation as PostgreSQL's intents hold it, for the rebuild. */
typedef struct {
    const char *org, *intent_id;
    const char *const *tags; /* its levels, tags[0] its agent's address */
    int ntags;
    int64_t left;            /* its estimate less what its agent spent on it */
    int64_t deadline;
} cm_hot_reservation;

/* Holds r again at every level unless Redis still has it (restore.lua). */
int cm_hot_restore_reservation(cm_hot *h, const cm_hot_reservation *r, cm_hot_done_cb cb, void *arg);

/* Releases at most max reservations whose deadline is at or before now. */
int cm_hot_release_due(cm_hot *h, int64_t now, int max, cm_hot_release_cb cb, void *arg);

/* ---- policies and kill flags, mirrored from PostgreSQL ---- */

/* Makes the policy hash of `tag` (an agent's address or a scope's tag)
 * say what `pol` says (NULL: no policy), leaving its kill flag alone; or
 * sets or clears an agent's flag alone. When a policy gives an agent a
 * limit and only such agents' windows are kept (cm_hot_set_all_windows),
 * the agent's windows and intent counts are then read back from
 * PostgreSQL before cb: the group commits before the policy reached Redis
 * left them out, every one after it merges itself, and a whole rebuild of
 * that mode brought back the agents with a limit only. */
int cm_hot_put_policy(cm_hot *h, const char *tag, const cm_policy *pol, cm_hot_done_cb cb, void *arg);
int cm_hot_put_killed(cm_hot *h, const char *address, bool killed, cm_hot_done_cb cb, void *arg);

/* ---- the queue: Redis as the durable point (COSTMESH_DURABLE=redis) ----
 *
 * An acknowledged heartbeat is an entry of a stream until the persister
 * (persist.h) has committed it to PostgreSQL; docs/guarantees.md section 12. */

/* The month totals ACK caps, in its deltas' order, named as the caps of
 * schema/007_caps.sql after "cap_". */
#define CM_HOT_CAPPED 9
extern const char *const cm_hot_capped_names[CM_HOT_CAPPED];

typedef struct {
    const cm_hb *const *hbs; /* the rows; a row repeating an earlier (agent, id) is left out by the caller */
    int n;
    const int *request_rows; /* rows per request, in row order: a request is refused whole */
    int nrequests;
    const char *const *agents; /* whose cost today (the day of now) the result carries */
    int nagents;
    int64_t now;
    int mark_ttl_s;  /* how long Redis remembers an id */
    long max_queue;  /* entries past which nothing more is taken */
} cm_hot_ack_in;

typedef struct {
    bool full;                 /* the queue is at max_queue: nothing was taken */
    const int *status;         /* per row: 1 new, 0 duplicate, -k refused (cap k-1 of cm_hot_capped_names) */
    const int64_t *cost_today; /* per agent */
} cm_hot_ack_result;

/* r is NULL unless rc is CM_OK. */
typedef void (*cm_hot_ack_cb)(void *arg, int rc, const cm_hot_ack_result *r);

/* ACK: counts each new row in its agent's windows of its ts and appends it
 * to the queue, in one script. */
int cm_hot_ack(cm_hot *h, const cm_hot_ack_in *in, cm_hot_ack_cb cb, void *arg);

/* An entry of the queue, lent to the callback: its id ("ms-seq") and text
 * (hbrow.h cm_hbrow_decode). */
typedef struct {
    const char *id;
    const char *text;
} cm_hot_entry;
/* queued: the queue's length before this drain. */
typedef void (*cm_hot_drain_cb)(void *arg, int rc, const cm_hot_entry *e, int n, long long queued);

/* DRAIN: the oldest max entries, when this replica (`owner`) holds or takes
 * the lease for lease_ms; none when another does. */
int cm_hot_drain(cm_hot *h, const char *owner, int lease_ms, int max, cm_hot_drain_cb cb, void *arg);

/* A drained entry PostgreSQL found a duplicate, with its heartbeat. */
typedef struct {
    const char *id;
    const cm_hb *hb;
} cm_hot_undo;

/* DRAINED: the entries up to last_id are committed: they leave the queue,
 * and the increments of undo[0..n) are taken back from their windows. */
int cm_hot_drained(cm_hot *h, const char *last_id, const cm_hot_undo *undo, int n, cm_hot_done_cb cb, void *arg);

/* The queue's last appended and last committed ids ("" for none). */
typedef void (*cm_hot_qids_cb)(void *arg, int rc, const char *last, const char *done);
int cm_hot_qids(cm_hot *h, cm_hot_qids_cb cb, void *arg);

/* Makes the queue number its next entries past (ms, seq) (decimal text),
 * the last entry PostgreSQL holds, unless it already does. */
int cm_hot_queue_floor(cm_hot *h, const char *ms, const char *seq, cm_hot_done_cb cb, void *arg);

/* A call whose answer is one number; n is 0 unless rc is CM_OK. */
typedef void (*cm_hot_number_cb)(void *arg, int rc, long long n);

/* WAIT: n is how many replicas have every write this replica sent Redis
 * before the call, after at most timeout_ms. */
int cm_hot_wait_replicas(cm_hot *h, int n, int timeout_ms, cm_hot_number_cb cb, void *arg);

/* Parses a stream id "ms-seq"; CM_EINVAL when it is not one. */
int cm_hot_qid_parse(const char *id, uint64_t *ms, uint64_t *seq);

#endif
