/* otlp.h - an OTLP/HTTP trace export (POST /v1/traces) into heartbeats: the
 * request body in OTLP JSON or protobuf, and the body of its answer.
 *
 * A span that reports GenAI usage becomes one heartbeat:
 *   gen_ai.usage.input_tokens (or .prompt_tokens)        tokens_in
 *   gen_ai.usage.output_tokens (or .completion_tokens)   tokens_out
 *   gen_ai.usage.cache_read.input_tokens (or
 *     gen_ai.usage.cache_read_input_tokens)              tokens_cached
 *   gen_ai.usage.cache_creation.input_tokens (or
 *     gen_ai.usage.cache_creation_input_tokens)          tokens_cache_write
 *   gen_ai.response.model, else gen_ai.request.model      model
 *   gen_ai.usage.cost (USD, a number or its text)         cost_usd; without it,
 *                                                        the org's rate card
 *                                                        for the model prices
 *                                                        the span (else 0)
 *   one LLM call per span; the span's end time           ts
 *   span id (hex)                                        id: a retried export is a duplicate
 *   trace id (hex)                                       run_id
 *   parent span id (hex)                                 parent_intent_id
 *   gen_ai.conversation.id                               session_id
 *   gen_ai.agent.name, else the resource's service.name  the agent's NAME
 * A span with none of the usage attributes is ignored (counted). A span
 * with usage that cannot be recorded (no span id, a malformed count, a
 * name that is no address segment, a time outside the heartbeat window, a
 * model with cache tokens beyond its input tokens) is
 * rejected and counted, and the rest are recorded: the answer's
 * partialSuccess names how many and why, as OTLP asks.
 *
 * Pure, thread-safe; runs on the HTTP threads (error bodies also on the
 * loop thread, job.c). The only module that sees protobuf-c (C generated
 * from server/proto/otlp_trace.proto and rpc_status.proto). */
#ifndef CM_OTLP_H
#define CM_OTLP_H

#include "buf.h"
#include "codec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a decoded export says beside its heartbeats. */
typedef struct {
    bool protobuf;     /* the request's encoding, which the answer uses */
    size_t ignored;    /* spans without usage */
    size_t rejected;   /* spans with usage not recorded */
    char why[160];     /* the first rejection's reason, "" when none */
} cm_otlp_stats;

/* Decodes an export request body (already unpacked, inflate.h) of
 * content_type "application/json" or "application/x-protobuf" (parameters
 * such as "; charset=utf-8" allowed). `now` is the arrival time. On CM_OK,
 * *hbs is a malloc'd array of *n heartbeats (NULL when none) whose `agent`
 * holds the agent's NAME only: the handler makes it an address for the
 * key (api_interop.c). Else e: 415 for another content type, 400 for a
 * malformed body, 413 for more than CM_BATCH_MAX spans with usage. */
int cm_otlp_decode(const char *content_type, const char *body, size_t len, int64_t now, cm_hb **hbs, size_t *n,
                   cm_otlp_stats *st, cm_apierr *e);

/* The 200's body, in the request's encoding: JSON "{}" or
 * {"partialSuccess":{"rejectedSpans":"N","errorMessage":"..."}}; protobuf
 * an empty ExportTraceServiceResponse (no bytes) or one with its
 * partial_success. Returns the Content-Type to send, a static string. */
const char *cm_otlp_reply(const cm_otlp_stats *st, cm_buf *out);

/* How a request's errors are written: costmesh's JSON error body, or, for
 * an export, the google.rpc.Status that OTLP/HTTP asks of every 4xx and
 * 5xx, in the request's encoding. */
typedef enum { CM_ERRORS_JSON = 0, CM_ERRORS_OTLP_JSON, CM_ERRORS_OTLP_PROTOBUF } cm_error_form;

/* The form of an export's errors from its Content-Type (NULL when none):
 * protobuf for application/x-protobuf, else JSON. */
cm_error_form cm_otlp_error_form(const char *content_type);

/* An export's error body (form not CM_ERRORS_JSON): a Status with the gRPC
 * code closest to the HTTP status and the message, and when one field is
 * at fault a google.rpc.BadRequest naming it in details. Protobuf: the
 * packed Status (C generated from server/proto/rpc_status.proto). JSON:
 * the Status's JSON form, with costmesh's "error" member beside its fields
 * (OTLP JSON readers ignore unknown fields; costmesh's clients read
 * "error"). field may be NULL. Returns the Content-Type, a static string. */
const char *cm_otlp_error(cm_error_form form, int status, const char *code, const char *field, const char *message,
                          cm_buf *out);

/* What the interop routes ignore, for /metrics: spans without usage of
 * authenticated exports, and CloudEvents of a type no meter reads. The
 * handlers add each request's count once the key is known. Thread-safe. */
typedef enum { CM_IGNORED_SPANS = 0, CM_IGNORED_EVENTS, CM_IGNORED_KINDS } cm_ignored_kind;
void cm_otlp_count_ignored(cm_ignored_kind kind, size_t n);
unsigned long long cm_otlp_ignored(cm_ignored_kind kind);

#endif
