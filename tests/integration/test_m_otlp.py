"""Issue 16: OpenTelemetry GenAI traces (POST /v1/traces) from the real OpenTelemetry JS SDK, unmodified
(BatchSpanProcessor with @opentelemetry/exporter-trace-otlp-http and -proto, pinned in tests/otel/package-lock.json),
driven through tests/otel/otlp_export.mjs: exact spend, the trace as run / parent / session, a retried export
counted once, 429 and its Retry-After honoured, tenancy; and the answers OTLP asks for on bad input."""

import gzip
import json
import os
import subprocess
import uuid
from decimal import Decimal

from harness import REPO, check, check_eq, check_error, check_status, enc, read_metrics

OTEL = os.path.join(REPO, "tests", "otel")


def node(script, cfg, timeout=90):
    p = subprocess.run(["node", os.path.join(OTEL, script), json.dumps(cfg)], cwd=OTEL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    out = p.stdout.decode("utf-8", "replace").strip()
    check(p.returncode == 0 and out, "%s failed (%d): %s %s" % (script, p.returncode, out[-500:],
                                                                 p.stderr.decode("utf-8", "replace")[-1500:]))
    return json.loads(out.splitlines()[-1])


def export(h, spans, key=None, protocol="json", compression="none", auth="x-api-key", service="svc-otlp"):
    return node("otlp_export.mjs", {"url": "http://127.0.0.1:%d/v1/traces" % h.http_port,
                                    "key": h.k1 if key is None else key, "protocol": protocol,
                                    "compression": compression, "auth": auth, "service": service, "spans": spans})


def usage(tin, tout, cost=None, **extra):
    a = {"gen_ai.usage.input_tokens": tin, "gen_ai.usage.output_tokens": tout, "gen_ai.request.model": "gpt-4o"}
    if cost is not None:
        a["gen_ai.usage.cost"] = cost
    a.update(extra)
    return a


def name(tag):
    return "%s-%s" % (tag, uuid.uuid4().hex[:12])


def check_spend(h, address, cost, tin, tout, calls, key=None, what=""):
    s = h.spend_ok(address, "day", key=key)
    got = (Decimal(str(s["cost_usd"])), s["tokens_in"], s["tokens_out"], s["llm_calls"], s["heartbeats"])
    check_eq(got, (Decimal(cost), tin, tout, calls, calls), "%s: spend of %s (cost, in, out, calls, heartbeats)"
             % (what, address))


def rows(h, address):
    """The agent's heartbeats as (id, run_id, parent, session), by id."""
    out = h.psql("SELECT hb_id, coalesce(run_id,''), coalesce(parent_intent_id,''), coalesce(session_id,'')"
                 " FROM heartbeats WHERE address = '%s' ORDER BY hb_id" % address)
    return [tuple(line.split("|")) for line in out.splitlines() if line]


def test_json_exporter_exact_spend_and_trace_tree(h):
    """An agent span (no usage: ignored and counted) with two LLM calls under it, through the JSON exporter with
    x-api-key: the spend is exactly the spans' cost and tokens, each span id is a heartbeat id, the trace id its
    run, the agent span its parent, gen_ai.conversation.id its session."""
    n = name("otlp-json")
    before = read_metrics(h).get("costmesh_otlp_spans_ignored_total", 0)
    out = export(h, [{"name": "invoke_agent", "attrs": {"gen_ai.agent.name": n}},
                     {"name": "chat", "parent": 0,
                      "attrs": usage(1200, 300, 0.1, **{"gen_ai.agent.name": n, "gen_ai.conversation.id": "conv-1"})},
                     {"name": "chat", "parent": 0,
                      "attrs": usage(800, 200, 0.2, **{"gen_ai.agent.name": n, "gen_ai.conversation.id": "conv-1",
                                                      "gen_ai.usage.cache_read.input_tokens": 500})}])
    check_eq(out["results"], [0], "export results")
    a = "agent://org1/production/" + n
    check_spend(h, a, "0.3", 2000, 500, 2, what="json")
    check_eq(h.spend_ok(a, "day")["tokens_cached"], 500, "tokens_cached")
    trace, root = out["traceIds"][0], out["spanIds"][0]
    check_eq(rows(h, a), sorted((s, trace, root, "conv-1") for s in out["spanIds"][1:]), "heartbeat rows")
    check(read_metrics(h)["costmesh_otlp_spans_ignored_total"] >= before + 1, "the agent span is counted as ignored")


def test_proto_exporter_gzip_bearer_no_cost(h):
    """The protobuf exporter, gzip'd (sent chunked), with Authorization: Bearer; the agent is the resource's
    service.name; spans without a cost attribute record their tokens at cost 0 (no rate card yet)."""
    n = name("otlp-proto")
    out = export(h, [{"name": "chat", "attrs": usage(100, 50)}, {"name": "chat", "attrs": usage(7, 3, "0.000000001")}],
                 protocol="proto", compression="gzip", auth="bearer", service=n)
    check_eq(out["results"], [0], "export results")
    check_spend(h, "agent://org1/production/" + n, "0.000000001", 107, 53, 2, what="proto")


def test_retried_export_counted_once_and_429_honoured(h):
    """COSTMESH_TEST_INTEROP_FAULTS=503,429: the first attempt is committed and answered 503, the exporter's retry
    is committed again (all duplicates) and answered 429 with Retry-After: 2, which the exporter waits out before
    its third attempt succeeds. The spend counts each span once, for both exporters."""
    for protocol in ("json", "proto"):
        h.restart_server(env={"COSTMESH_TEST_INTEROP_FAULTS": "503,429"})
        try:
            n = name("otlp-retry-" + protocol)
            out = export(h, [{"attrs": usage(10, 5, 0.5, **{"gen_ai.agent.name": n})},
                             {"attrs": usage(20, 5, 0.25, **{"gen_ai.agent.name": n})}], protocol=protocol)
            check_eq(out["results"], [0], "%s: export results after the retries" % protocol)
            check(out["ms"] >= 3000, "%s: the flush took %d ms: 1 s after the 503 plus the 2 s of Retry-After"
                  % (protocol, out["ms"]))
            a = "agent://org1/production/" + n
            check_spend(h, a, "0.75", 30, 10, 2, what=protocol)
            check_eq(len(rows(h, a)), 2, "%s: one row per span" % protocol)
        finally:
            h.restart_server()


def test_tenancy(h):
    """The same agent name from org2's key is org2's agent; org1 sees none of it and org2 cannot read org1's. A key
    bound to an agent records every span as that agent, whatever the spans name."""
    n = name("otlp-tenant")
    export(h, [{"attrs": usage(1, 1, 1, **{"gen_ai.agent.name": n})}])
    export(h, [{"attrs": usage(2, 2, 2, **{"gen_ai.agent.name": n})}], key=h.k2, protocol="proto")
    check_spend(h, "agent://org1/production/" + n, "1", 1, 1, 1, what="org1")
    check_spend(h, "agent://org2/production/" + n, "2", 2, 2, 1, key=h.k2, what="org2")
    r = h.spend("agent://org1/production/" + n, "day", key=h.k2)
    check_status(r, 403, "org2 reading org1's agent")
    bound = "agent://org1/production/" + name("otlp-bound")
    r = h.request("POST", "/v1/keys", {"role": "agent", "name": "otel", "agent": bound}, key=h.k1)
    check_status(r, 201, "bound key")
    out = export(h, [{"attrs": usage(4, 4, 4, **{"gen_ai.agent.name": "someone-else"})}], key=r.json["key"])
    check_eq(out["results"], [0], "export results")
    check_spend(h, bound, "4", 4, 4, 1, what="bound key")


def test_key_interop_env(h):
    """A key created with an interop_env names the agents of its spans and CloudEvents agent://ORG/ENV/NAME with
    that ENV (the server's COSTMESH_INTEROP_ENV otherwise); POST and GET /v1/keys show it; a value that is no
    address segment, not a string, or on a key bound to an agent is refused with 400 naming interop_env."""
    r = h.request("POST", "/v1/keys", {"role": "agent", "name": "otel-staging", "interop_env": "staging"}, key=h.k1)
    check_status(r, 201, "key with interop_env")
    check_eq(r.json.get("interop_env"), "staging", "interop_env in the create reply")
    staging, kid = r.json["key"], r.json["id"]
    plain = h.request("POST", "/v1/keys", {"role": "agent", "name": "plain"}, key=h.k1).json["id"]
    listed = {k["id"]: k for k in h.request("GET", "/v1/keys", key=h.k1).json["keys"]}
    check_eq(listed[kid].get("interop_env"), "staging", "interop_env in the key list")
    check("interop_env" not in listed[plain], "a key without interop_env lists none")
    n = name("otlp-env")
    r = post(h, body_of(span_json("aaa19b7ec3c1b174", {"gen_ai.usage.input_tokens": 9, "gen_ai.agent.name": n})),
             key=staging)
    check_status(r, 200, "export with the staging key")
    check_spend(h, "agent://org1/staging/" + n, "0", 9, 0, 1, what="span of the staging key")
    check_status(h.spend("agent://org1/production/" + n, "day"), 404, "nothing under the server's ENV")
    put_meter(h, "env.call", {"cost_usd": "$.cost"})
    s = name("ce-env")
    ev = {"specversion": "1.0", "id": "ev-" + s, "source": "env-test", "type": "env.call", "subject": s,
          "data": {"cost": 0.5}}
    r = h.request("POST", "/api/v1/events", ev, key=staging, headers={"Content-Type": "application/cloudevents+json"})
    check_status(r, 204, "CloudEvent with the staging key")
    check_eq(Decimal(str(h.spend_ok("agent://org1/staging/" + s, "day")["cost_usd"])), Decimal("0.5"),
             "event of the staging key")
    bound = "agent://org1/production/" + name("otlp-env-bound")
    for body, what in (({"role": "agent", "name": "x", "interop_env": "no/slash"}, "not an address segment"),
                       ({"role": "agent", "name": "x", "interop_env": "e" * 65}, "over 64 bytes"),
                       ({"role": "agent", "name": "x", "interop_env": ".."}, "a dot segment"),
                       ({"role": "admin", "name": "x", "interop_env": 7}, "not a string"),
                       ({"role": "agent", "name": "x", "agent": bound, "interop_env": "staging"}, "on a bound key")):
        check_error(h.request("POST", "/v1/keys", body, key=h.k1), 400, "invalid_field", "interop_env", what)


def post(h, body, ctype="application/json", key=None, headers=None):
    hd = {"Content-Type": ctype}
    hd.update(headers or {})
    return h.request("POST", "/v1/traces", body, key=h.k1 if key is None else key, headers=hd)


def span_json(span_id, attrs, trace="5b8efff798038103d269b633813fc60c"):
    kv = []
    for k, v in attrs.items():
        kv.append({"key": k, "value": {"stringValue": v} if isinstance(v, str) else {"intValue": str(v)}})
    return {"traceId": trace, "spanId": span_id, "name": "chat", "attributes": kv}


def body_of(*spans, service="svc"):
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                               "scopeSpans": [{"scope": {"name": "x"}, "spans": list(spans)}]}]}


def test_answers(h):
    """200 {} and partialSuccess naming the rejected span; 400 for a malformed JSON, protobuf or gzip body; 415 for
    another content type; 401 without a key; an empty export is 200 {}."""
    n = name("otlp-raw")
    good = span_json("eee19b7ec3c1b174", {"gen_ai.usage.input_tokens": 5, "gen_ai.agent.name": n})
    bad = span_json("eee19b7ec3c1b175", {"gen_ai.usage.input_tokens": "many", "gen_ai.agent.name": n})
    r = post(h, body_of(good, bad))
    check_status(r, 200, "partial success")
    check_eq(r.json["partialSuccess"]["rejectedSpans"], "1", "rejectedSpans")
    check("gen_ai.usage.input_tokens" in r.json["partialSuccess"]["errorMessage"], "errorMessage names the attribute")
    check_spend(h, "agent://org1/production/" + n, "0", 5, 0, 1, what="raw")
    r = post(h, gzip.compress(json.dumps(body_of(good)).encode()), headers={"Content-Encoding": "gzip"})
    check_status(r, 200, "gzip resend")
    check_eq(r.text, "{}", "a full success")
    check_spend(h, "agent://org1/production/" + n, "0", 5, 0, 1, what="resend is a duplicate")
    check_status(post(h, "{}"), 200, "an empty export")
    check_status(post(h, "{\"resourceSpans\":"), 400, "truncated JSON")
    check_status(post(h, "{\"resourceSpans\":{}}"), 400, "resourceSpans not an array")
    check_status(post(h, b"\x0a\xff\xff\xff\xff\x0f", "application/x-protobuf"), 400, "malformed protobuf")
    check_status(post(h, b"\x1f\x8b\x08\x00garbage", headers={"Content-Encoding": "gzip"}), 400, "corrupt gzip")
    check_status(post(h, "{}", "text/plain"), 415, "text/plain")
    r = h.request("POST", "/v1/traces", "{}", headers={"Content-Type": "application/json"})
    check_status(r, 401, "no key")


def test_blocked_agent_still_records_spans(h):
    """Spans are facts, like heartbeats: an agent whose policy blocks (its intents get 429) still has every span's
    spend recorded, and its exports are answered 200. intValue as a JSON number and doubleValue count too."""
    n = name("otlp-blocked")
    a = "agent://org1/production/" + n
    r = h.request("PUT", "/v1/mesh/agents/%s/policies/cost" % enc(a),
                  {"max_cost_per_day_usd": 0.5, "action_on_breach": "block"}, key=h.k1)
    check_status(r, 200, "block policy")

    def span(span_id, tokens):
        return {"traceId": "6b8efff798038103d269b633813fc60c", "spanId": span_id, "name": "chat",
                "attributes": [{"key": "gen_ai.agent.name", "value": {"stringValue": n}},
                               {"key": "gen_ai.usage.input_tokens", "value": {"intValue": tokens}},
                               {"key": "gen_ai.usage.cost", "value": {"doubleValue": 0.75}}]}
    check_status(post(h, body_of(span("bbb19b7ec3c1b174", 40))), 200, "the span that breaches the limit")
    r = h.request("POST", "/v1/mesh/intents", {"agent": a}, key=h.k1)
    check_status(r, 429, "an intent of the blocked agent")
    check_status(post(h, body_of(span("bbb19b7ec3c1b175", 2))), 200, "a span of the blocked agent")
    check_spend(h, a, "1.5", 42, 0, 2, what="blocked agent")


# google.rpc.Status and google.rpc.BadRequest as googleapis defines them, with the real google.protobuf.Any,
# decoded by the protobuf library of Debian's python3-protobuf (scripts/deps.sh) and printed in their JSON form.
# /usr/bin/python3 runs it: Debian's modules are that interpreter's, whichever python3 runs the tests.
DECODE_STATUS = r"""
import json, sys
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, json_format, message_factory
F = descriptor_pb2.FieldDescriptorProto
f = descriptor_pb2.FileDescriptorProto(name="costmesh_test/rpc.proto", package="google.rpc", syntax="proto3",
                                       dependency=["google/protobuf/any.proto"])
st = f.message_type.add(name="Status")
st.field.add(name="code", number=1, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
st.field.add(name="message", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
st.field.add(name="details", number=3, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED, type_name=".google.protobuf.Any")
br = f.message_type.add(name="BadRequest")
fv = br.nested_type.add(name="FieldViolation")
fv.field.add(name="field", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
fv.field.add(name="description", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
br.field.add(name="field_violations", number=1, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
             type_name=".google.rpc.BadRequest.FieldViolation")
pool = descriptor_pool.DescriptorPool()
pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
pool.Add(f)
status = message_factory.MessageFactory(pool).GetPrototype(pool.FindMessageTypeByName("google.rpc.Status"))()
status.ParseFromString(sys.stdin.buffer.read())
print(json.dumps(json_format.MessageToDict(status, descriptor_pool=pool)))
"""


def rpc_status(r):
    """The protobuf google.rpc.Status of an error reply to a protobuf export, as JSON."""
    check_eq(r.headers.get("content-type"), "application/x-protobuf", "Content-Type of a protobuf export's error")
    p = subprocess.run(["/usr/bin/python3", "-c", DECODE_STATUS], input=r.body, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    check(p.returncode == 0, "the error body is no google.rpc.Status: %s" % p.stderr.decode()[-600:])
    return json.loads(p.stdout)


def test_error_bodies_are_rpc_status(h):
    """OTLP/HTTP answers an export's every 4xx and 5xx with a google.rpc.Status in the request's encoding: protobuf
    for a protobuf export (decoded here by the protobuf library), its JSON form for a JSON one (with costmesh's
    "error" beside it). A fault of one field carries a google.rpc.BadRequest naming it. Errors of the HTTP thread
    (a malformed body, no key, an unsupported encoding) and of the loop thread (a key that costmeshd looks up, a 429
    after the commit) alike."""
    pb = "application/x-protobuf"
    r = post(h, b"\x0a\xff\xff\xff\xff\x0f", pb)
    check_status(r, 400, "malformed protobuf")
    check_eq(rpc_status(r), {"code": 3, "message": "the body is not an ExportTraceServiceRequest"}, "its Status")
    r = h.request("POST", "/v1/traces", b"", headers={"Content-Type": pb})
    check_status(r, 401, "no key")
    check_eq(rpc_status(r)["code"], 16, "UNAUTHENTICATED")
    r = post(h, b"", pb, key="cmk_" + "0" * 48)
    check_status(r, 401, "a key costmeshd looks up and does not find")
    check_eq(rpc_status(r)["code"], 16, "UNAUTHENTICATED from the loop thread")
    r = post(h, b"", pb, headers={"Content-Encoding": "br"})
    check_status(r, 415, "an encoding other than gzip")
    st = rpc_status(r)
    want = {"code": 3, "message": st["message"], "details": [{
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": "Content-Encoding", "description": st["message"]}]}]}
    check_eq(st, want, "a Status naming the field in a BadRequest")
    r = post(h, "{}", headers={"Content-Encoding": "br"})
    check_error(r, 415, "unsupported_encoding", "Content-Encoding", "the same for a JSON export")
    check_eq({k: v for k, v in r.json.items() if k != "error"}, want, "the JSON form of the same Status")
    check_eq(r.headers.get("content-type"), "application/json", "Content-Type of a JSON export's error")
    h.restart_server(env={"COSTMESH_TEST_INTEROP_FAULTS": "429"})
    try:
        r = post(h, b"", pb)
        check_status(r, 429, "refused after the commit")
        check_eq(r.headers.get("retry-after"), "2", "Retry-After")
        check_eq(rpc_status(r)["code"], 8, "RESOURCE_EXHAUSTED")
    finally:
        h.restart_server()


# ---- CloudEvents: POST /api/v1/events with @openmeter/sdk (tests/otel/openmeter_ingest.mjs) ----

def ingest(h, events, key=None):
    return node("openmeter_ingest.mjs", {"baseUrl": "http://127.0.0.1:%d" % h.http_port,
                                         "key": h.k1 if key is None else key, "events": events})


def put_meter(h, event_type, body, key=None):
    r = h.request("PUT", "/v1/mesh/meters/" + event_type, body, key=h.k1 if key is None else key)
    check_status(r, 200, "PUT meter %s" % event_type)
    return r.json


def llm_event(subject, cost, tin, tout, ev_id=None, agent=None, etype="llm.call"):
    data = {"usage": {"cost": cost, "input": tin, "output": tout}, "model": "gpt-4o"}
    if agent:
        data["agent"] = agent
    ev = {"type": etype, "subject": subject, "source": "checkout-service", "data": data}
    if ev_id:
        ev["id"] = ev_id
    return ev


def test_openmeter_sdk_exact_spend_and_meters(h):
    """A meter maps llm.call's data to cost and tokens; a batch from @openmeter/sdk is answered 204 and the spend
    is exactly the events' (the subject is the agent). An event type no meter reads is ignored. The meter API:
    PUT answers the meter, GET lists the org's, DELETE 204 then 404; agent keys may not touch meters."""
    m = put_meter(h, "llm.call", {"cost_usd": "$.usage.cost", "tokens_in": "$.usage.input",
                                  "tokens_out": "$.usage.output"})
    check_eq(m, {"event_type": "llm.call", "cost_usd": "$.usage.cost", "tokens_in": "$.usage.input",
                 "tokens_out": "$.usage.output", "agent": None}, "PUT meter")
    r = h.request("GET", "/v1/mesh/meters", key=h.k1)
    check_status(r, 200, "GET meters")
    check("llm.call" in [x["event_type"] for x in r.json["meters"]], "the meter is listed")
    s = name("ce-subject")
    out = ingest(h, [llm_event(s, 0.1, 100, 10), llm_event(s, "0.2", 200, 20),
                     {"type": "page.view", "subject": s, "data": {"cost": 99}}])
    check_eq(out, {"ok": True}, "ingest")
    sp = h.spend_ok("agent://org1/production/" + s, "day")
    check_eq((Decimal(str(sp["cost_usd"])), sp["tokens_in"], sp["tokens_out"], sp["heartbeats"]),
             (Decimal("0.3"), 300, 30, 2), "spend (cost, in, out, heartbeats)")
    put_meter(h, "tmp.meter", {"cost_usd": "$.c"})
    check_status(h.request("DELETE", "/v1/mesh/meters/tmp.meter", key=h.k1), 204, "DELETE meter")
    check_status(h.request("DELETE", "/v1/mesh/meters/tmp.meter", key=h.k1), 404, "DELETE again")
    check_status(h.request("PUT", "/v1/mesh/meters/x", {"cost": "$.c"}, key=h.k1), 400, "unknown field")
    check_status(h.request("PUT", "/v1/mesh/meters/x", {"agent": "$.a"}, key=h.k1), 400, "nothing metered")


def test_openmeter_retry_counted_once(h):
    """The first ingest is committed and answered 503 (COSTMESH_TEST_INTEROP_FAULTS=503,429), which the SDK
    reports; resending the same events (same source and id) is committed as duplicates and answered 429 with
    Retry-After; the third send gets 204. The spend counts each event once."""
    put_meter(h, "llm.call", {"cost_usd": "$.usage.cost", "tokens_in": "$.usage.input",
                              "tokens_out": "$.usage.output", "agent": "$.agent"})
    h.restart_server(env={"COSTMESH_TEST_INTEROP_FAULTS": "503,429"})
    try:
        n = name("ce-retry")
        events = [llm_event("customer-1", 0.125, 1, 2, ev_id="ev-1-" + n, agent=n),
                  llm_event("customer-2", 0.5, 3, 4, ev_id="ev-2-" + n, agent=n)]
        check_eq(ingest(h, events)["status"], 503, "first send")
        r = h.request("POST", "/api/v1/events", events, key=h.k1,
                      headers={"Content-Type": "application/cloudevents-batch+json"})
        events_json = [dict(e, specversion="1.0") for e in events]
        check_status(r, 400, "no specversion: the SDK adds it")
        r = h.request("POST", "/api/v1/events", events_json, key=h.k1,
                      headers={"Content-Type": "application/cloudevents-batch+json"})
        check_status(r, 429, "second send")
        check_eq(r.headers.get("retry-after"), "2", "Retry-After")
        check_eq(ingest(h, events), {"ok": True}, "third send")
        a = "agent://org1/production/" + n
        sp = h.spend_ok(a, "day")
        check_eq((Decimal(str(sp["cost_usd"])), sp["tokens_in"], sp["tokens_out"], sp["heartbeats"]),
                 (Decimal("0.625"), 4, 6, 2), "spend after the retries")
        check_eq(sorted(x[3] for x in rows(h, a)), ["customer-1", "customer-2"], "subjects as sessions")
    finally:
        h.restart_server()


def test_openmeter_tenancy_and_bad_events(h):
    """org2's meters and events are org2's: the same subject lands in org2 and an org2 event type unmetered there is
    ignored. A malformed event is 400 for the whole batch and nothing of it is counted; a wrong content type 415."""
    s = name("ce-tenant")
    put_meter(h, "llm.call", {"cost_usd": "$.usage.cost"})
    ignored_before = read_metrics(h).get("costmesh_cloudevents_ignored_total", 0)
    check_eq(ingest(h, [llm_event(s, 1, 0, 0)], key=h.k2), {"ok": True}, "org2 ingest without a meter")
    check_eq(read_metrics(h)["costmesh_cloudevents_ignored_total"], ignored_before + 1,
             "the unmetered event is counted as an ignored CloudEvent")
    check_status(h.spend("agent://org2/production/" + s, "day", key=h.k2), 404,
                 "org2 has no meter of llm.call: the event is ignored, no agent registers")
    put_meter(h, "llm.call", {"cost_usd": "$.usage.cost"}, key=h.k2)
    check_eq(ingest(h, [llm_event(s, 2, 0, 0)], key=h.k2), {"ok": True}, "org2 ingest")
    check_eq(Decimal(str(h.spend_ok("agent://org2/production/" + s, "day", key=h.k2)["cost_usd"])), Decimal(2),
             "org2 spend")
    check_status(h.spend("agent://org1/production/" + s, "day"), 404, "org1 has no such agent")
    bad = ingest(h, [llm_event(s, 1, 0, 0), llm_event(s, "lots", 0, 0)])
    check_eq(bad["status"], 400, "a bad cost")
    check_status(h.spend("agent://org1/production/" + s, "day"), 404, "nothing of a refused batch")
    r = h.request("POST", "/api/v1/events", "{}", key=h.k1, headers={"Content-Type": "text/plain"})
    check_status(r, 415, "text/plain")
