/* hot_layout.h - what costmesh keeps in Redis, spelled once: the key
 * scheme, the fields of a policy hash, how long keys live, and the text of
 * a remembered answer.
 *
 * Pure (no I/O), so it is unit-tested and fuzzed without a server. hot.c is
 * its user; the scripts in server/lua/ read the same fields by name, so a
 * field renamed here is renamed there too. */
#ifndef CM_HOT_LAYOUT_H
#define CM_HOT_LAYOUT_H

#include "address.h"
#include "buf.h"
#include "policy.h"

#include <stdbool.h>
#include <stdint.h>

/* The key scheme:
 *   cm:epoch                     present while Redis holds a complete mirror
 *   cm:<address>:<grain>:<start> an agent's window hash; grain h, d or m
 *                                (CM_HOT_GRAINS, in CM_WIN3 order), start in
 *                                Unix seconds. Fields: cost, tin, tout,
 *                                calls, hb (merged from PostgreSQL's
 *                                rollups: by group commits only while
 *                                the agent's policy has a limit),
 *                                intents (counted by ADMIT)
 *   cm:p:<address>               an agent's policy fields (below) and kill
 *                                flag (killed = "1"); wp and wk: the
 *                                generations of the last change of each
 *   cm:pg                        the generation counter of policy and
 *                                kill-flag writes (hreplace.lua, pgen.lua)
 *   cm:i:<address>:<key>         an Idempotency-Key's answer: "pending"
 *                                while the first request runs, then
 *                                cm_hot_answer_text. Scoped by agent: one
 *                                agent's key never answers another's
 *   cm:n:<address>:<intent_id>   the same, for a client-given intent_id sent
 *                                without an Idempotency-Key
 *   cm:r:<address>               present once this agent's windows, policy
 *                                and kill flag are back from PostgreSQL
 *                                while the whole mirror is not (its own
 *                                rebuild, so admission need not wait)
 *   cm:v:<tag>                   what an agent or scope (its tag, budget.h)
 *                                has reserved for intents not yet spent or
 *                                ended (nano-dollars)
 *   cm:rv:<org>:<intent_id>      an intent's reservation (admit.lua says
 *                                its fields)
 *   cm:rz                        the reservations by deadline (a zset)
 *   cm:d:<key>                   a heartbeat id's dedupe mark while Redis is
 *                                the durable point (key: cm_auth_hb_key)
 *   cm:q                         the queue of acknowledged heartbeats the
 *                                persister drains (a stream; persist.h)
 *   cm:q:last, cm:q:done         its last appended id, and the last id
 *                                committed to PostgreSQL
 *   cm:q:lease                   the replica whose persister drains it
 *   cm:x:...                     once-per-window markers, spelled by the
 *                                scripts (admit.lua and check.lua share the
 *                                limit markers, so a breach is reported once
 *                                per window whichever sees it first) */
#define CM_HOT_EPOCH_KEY "cm:epoch"
#define CM_HOT_POLICY_GEN_KEY "cm:pg"
#define CM_HOT_QUEUE_KEY "cm:q"
#define CM_HOT_QUEUE_LAST_KEY "cm:q:last"
#define CM_HOT_QUEUE_DONE_KEY "cm:q:done"
#define CM_HOT_QUEUE_LEASE_KEY "cm:q:lease"
#define CM_HOT_GRAINS "hdm"
/* Holds the longest of them: a window key (an address and two numbers) or
 * an idempotency key (an address and a key of up to 128 bytes). */
#define CM_HOT_KEY_MAX (CM_ADDR_MAX + 128 + 16)
void cm_hot_key_window(const char *address, char grain, int64_t start, char out[CM_HOT_KEY_MAX]);
void cm_hot_key_policy(const char *address, char out[CM_HOT_KEY_MAX]);
/* key_hex: cm_auth_hb_key's text. */
void cm_hot_key_dedupe(const char *key_hex, char out[CM_HOT_KEY_MAX]);
/* by_intent_id: the key is a client-given intent_id (cm:n:), which makes
 * a repeated intent idempotent without an Idempotency-Key. */
void cm_hot_key_idem(const char *address, const char *key, bool by_intent_id, char out[CM_HOT_KEY_MAX]);
void cm_hot_key_rebuilt(const char *address, char out[CM_HOT_KEY_MAX]);
void cm_hot_key_reserved(const char *tag, char out[CM_HOT_KEY_MAX]);
void cm_hot_key_reservation(const char *org, const char *intent_id, char out[CM_HOT_KEY_MAX]);
#define CM_HOT_RESERVATIONS_KEY "cm:rz"
/* A delegation tree's hash (field "cost": the largest cost an admission
 * read for it) and its once-only breach marker, by org and root intent. */
void cm_hot_key_tree(const char *org, const char *root, char out[CM_HOT_KEY_MAX]);

/* How long a window hash lives from its first write, in seconds (the
 * scripts set it then, not at each write): long enough for the week and
 * month sums that read it. */
long cm_hot_window_ttl(char grain);
/* An Idempotency-Key's answer is kept a day. */
#define CM_HOT_IDEM_TTL 86400L
/* A key's "in flight" mark lasts this long: a replica killed between the
 * admission and its answer leaves the mark behind, and the client's retry
 * must not get 409 for a day. Once it expires, a retry is admitted again and
 * the intents table finds the intent's id recorded (the id follows from the
 * key, api_intents.c), so it still counts once. */
#define CM_HOT_PENDING_TTL 30L
/* A once-per-window marker outlives the longest window (a month). */
#define CM_HOT_MARKER_TTL 3000000L
/* An agent's own rebuild is trusted this long; the whole mirror's rebuild
 * normally ends long before. */
#define CM_HOT_REBUILT_TTL 3600L
/* A tree's hash only spares a refusal from going back when a replica read
 * an older snapshot; PostgreSQL is read at each admission, so a day is
 * plenty, and the marker lives as long (a tree rarely runs for days). */
#define CM_HOT_TREE_TTL 86400L

/* The arguments of hreplace.lua that make a policy hash say what `p` says:
 * "n", then field/value pairs (l<i> = limit i, block = "1"/"0", t<i> =
 * comma-separated threshold amounts of cost limit i, tf = the thresholds as
 * fractions in 1e-9 units), then the fields of absent limits to delete. The
 * kill flag is not touched. Strings point into `space`. Returns argc (at
 * most CM_HOT_POLICY_ARGV_MAX). */
#define CM_HOT_POLICY_ARGV_MAX 24
#define CM_HOT_POLICY_SPACE 1024
int cm_hot_policy_fields(const cm_policy *p, char space[CM_HOT_POLICY_SPACE],
                         const char *argv[CM_HOT_POLICY_ARGV_MAX]);

/* A remembered answer as stored under its idempotency key: "status
 * retry_after body". cm_hot_answer_parse points *body into text. */
void cm_hot_answer_text(int status, long retry_after, const char *body, cm_buf *out);
void cm_hot_answer_parse(const char *text, int *status, long *retry_after, const char **body);

#endif
