"""Issue 15.1 and 16: rate cards. Versions of a model's card per org (PUT, GET; refusals naming the field),
heartbeats and OTLP spans that carry a model and tokens but no cost priced exactly by the version in force at
their ts (hand-computed table: cached and cache-write tokens, a price change in the middle of an hour, half-even
rounding at the 9th decimal), the client's own figure kept and a discrepancy counted, a model without a card
counted as unpriced, and a change of card heard by a second replica."""

import json
import os
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from decimal import Decimal

from harness import (REPO, PortView, Server, accepted, batch, check, check_eq, check_error, check_status, enc, free_port,
                     hb_id, hb_obj, hour_start, iso, new_agent, read_metrics)
from test_g_ctl import ctl, fails, ok
from test_k_readme import replies


def model(tag):
    """A model name no other test prices: every test shares the org's cards."""
    return "%s-%s/v1:0" % (tag, uuid.uuid4().hex[:10])


def card_path(m):
    return "/v1/mesh/pricing/models/" + urllib.parse.quote(m, safe="")


def put_card(h, m, body, key=None, want=201, what="PUT a version"):
    r = h.request("PUT", card_path(m), body if isinstance(body, str) else json.dumps(body),
                  key=h.k1 if key is None else key)
    check_status(r, want, what)
    return r


def card(frm, inp, out, cached=None, write=None):
    """A PUT body as JSON text, the prices as the literal text given."""
    parts = ['"effective_from":"%s"' % (frm if isinstance(frm, str) else iso(frm)),
             '"input_per_million_usd":%s' % inp, '"output_per_million_usd":%s' % out]
    if cached is not None:
        parts.append('"cached_input_per_million_usd":%s' % cached)
    if write is not None:
        parts.append('"cache_write_per_million_usd":%s' % write)
    return "{" + ",".join(parts) + "}"


def priced_hb(agent, m, ts, hid=None, cost=None, **tokens):
    """A heartbeat naming a model, as JSON text (cost as the literal text given)."""
    return '{"model":%s,' % json.dumps(m) + hb_obj(agent, cost=cost, hid=hid or hb_id(), ts=ts, **tokens)[1:]


def nanos_of(h, address):
    """The agent's heartbeats as {hb_id: (cost_nanos, priced_nanos or None)}."""
    h.wait_persisted()  # redis mode: the raw rows are written by the persister
    out = h.psql("SELECT hb_id, cost_nanos, coalesce(priced_nanos::text, '') FROM heartbeats WHERE address = '%s'"
                 % address)
    rows = {}
    for line in out.splitlines():
        hid, cost, priced = line.split("|")
        rows[hid] = (int(cost), int(priced) if priced else None)
    return rows


def test_versions_are_kept_and_bad_cards_refused(h):
    m = model("cards")
    t0 = hour_start(time.time()) - 3 * 3600
    r = put_card(h, m, card(t0, "2.5", "10", "1.25", "3.75"))
    check_eq(r.json["version"]["input_per_million_usd"], Decimal("2.5"), "the version's input price")
    put_card(h, m, card(t0 + 86400 * 30, "2", "8"), what="a future version")
    # The same version again is a repeat (a retried PUT), other prices at its effective_from a conflict.
    put_card(h, m, card(t0, "2.5", "10", "1.25", "3.75"), want=200, what="the same version again")
    check_error(h.request("PUT", card_path(m), card(t0, "2.6", "10"), key=h.k1), 409, "version_exists",
                "effective_from", "other prices at an existing effective_from")
    r = h.request("GET", card_path(m), key=h.k1)
    check_status(r, 200, "GET the model's versions")
    vs = r.json["versions"]
    check_eq([v["effective_from"] for v in vs], [iso(t0), iso(t0 + 86400 * 30)], "versions, oldest first")
    check_eq([v["in_force"] for v in vs], [True, False], "which version is in force")
    # Without cache prices, cached and cache-write input cost the input price.
    check_eq((vs[1]["cached_input_per_million_usd"], vs[1]["cache_write_per_million_usd"]), (2, 2),
             "cache prices default to the input price")
    r = h.request("GET", "/v1/mesh/pricing/models", key=h.k1)
    check_status(r, 200, "GET every model")
    check(any(x["model"] == m for x in r.json["models"]), "the list names the model")
    check_error(h.request("GET", card_path(model("none")), key=h.k1), 404, "not_found", "model", "no such card")
    # Another org sees none of it.
    r = h.request("GET", card_path(m), key=h.k2)
    check_status(r, 404, "another org's card")

    bad = [
        (card(t0, "-1", "10"), "input_per_million_usd", "a negative price"),
        (card(t0, "1", "-0.5"), "output_per_million_usd", "a negative output price"),
        (card(t0, "1", "1", "-1"), "cached_input_per_million_usd", "a negative cached price"),
        (card(t0, "1", "1", "1", "-2"), "cache_write_per_million_usd", "a negative cache-write price"),
        (card(t0, "0.0000000001", "1"), "input_per_million_usd", "finer than a nano-dollar"),
        (card(t0, '"2.5"', "1"), "input_per_million_usd", "a price as a string"),
        ('{"input_per_million_usd":1,"output_per_million_usd":1,"effective_from":"%s","currency":"EUR"}' % iso(t0),
         "currency", "an unknown field"),
        ('{"output_per_million_usd":1,"effective_from":"%s"}' % iso(t0), "input_per_million_usd", "no input price"),
        ('{"input_per_million_usd":1,"output_per_million_usd":1}', "effective_from", "no effective_from"),
        (card("yesterday", "1", "1"), "effective_from", "not an RFC 3339 time"),
    ]
    for body, field, what in bad:
        check_error(h.request("PUT", card_path(m), body, key=h.k1), 400, "invalid_field", field, what)
    check_error(h.request("PUT", "/v1/mesh/pricing/models/bad%20name", card(t0, "1", "1"), key=h.k1), 400,
                "invalid_field", "model", "a model name with a space")
    # Only admin keys write cards.
    a = new_agent(tag="card-agent")
    r = h.request("POST", "/v1/keys", {"role": "agent", "name": "ag-" + hb_id(), "agent": a}, key=h.k1)
    check_status(r, 201, "create an agent key")
    check_status(h.request("PUT", card_path(m), card(t0 + 60, "1", "1"), key=r.json["key"]), 403,
                 "an agent key writes a card")


def test_heartbeats_priced_exactly_by_the_version_in_force(h):
    """Hand-computed: v1 from H (input 2.5, output 10, cached 1.25, cache write 3.75 USD per million tokens),
    v2 from H+30min (input 3, output 15, cached 0.3, cache write 3.75), v3 from H+50min with prices that make
    half a nano-dollar (input 0.0000015 and output 0.0000025 USD per million)."""
    m = model("rate")
    H = hour_start(time.time()) - 2 * 3600
    put_card(h, m, card(H, "2.5", "10", "1.25", "3.75"))
    put_card(h, m, card(H + 1800, "3", "15", "0.3", "3.75"))
    put_card(h, m, card(H + 3000, "0.0000015", "0.0000025", "0", "0"))
    a = new_agent(tag="rate")
    table = [
        # ts, tokens, expected nano-dollars, why
        (H + 600, dict(tokens_in=1000, tokens_cached=400, tokens_out=500), 7000000,
         "v1: 600 fresh x 2.5 + 400 cached x 1.25 + 500 out x 10 = 7000 micro-dollars"),
        (H + 1799, dict(tokens_in=2000, tokens_cached=0, tokens_cache_write=1000, tokens_out=0), 6250000,
         "v1, a second before the change: 1000 fresh x 2.5 + 1000 written x 3.75"),
        (H + 1800, dict(tokens_in=1000, tokens_cached=400, tokens_out=500), 9420000,
         "v2 at its first second: 600 x 3 + 400 x 0.3 + 500 x 15"),
        (H + 2400, dict(tokens_in=1, tokens_out=1), 18000,
         "v2: 1 x 3 + 1 x 15 = 18 micro-dollars"),
        (H + 3000, dict(tokens_in=1000), 2, "v3: 1000 x 0.0015 = 1.5 nanos, half-even up to 2"),
        (H + 3001, dict(tokens_out=1000), 2, "v3: 1000 x 0.0025 = 2.5 nanos, half-even down to 2"),
        (H + 3002, dict(tokens_in=333), 0, "v3: 333 x 0.0015 = 0.4995 nanos, rounds to 0"),
        (H + 3003, dict(tokens_in=1000, tokens_out=1000), 4, "v3: 1.5 + 2.5 = 4 nanos, rounded once, not per kind"),
    ]
    ids = []
    items = []
    for ts, tok, _, _ in table:
        ids.append(hb_id())
        items.append(priced_hb(a, m, ts, hid=ids[-1], **tok))
    accepted(h.hb(batch(items)), len(items), 0, "the table as one batch")
    rows = nanos_of(h, a)
    for hid, (ts, tok, want, why) in zip(ids, table):
        check_eq(rows[hid], (want, want), "%s (cost_nanos, priced_nanos)" % why)
    # The hour of the change adds up exactly.
    s = h.spend_ok(a, "hour", at=H)
    check_eq(Decimal(str(s["cost_usd"])), Decimal(sum(t[2] for t in table)) / Decimal(10**9), "the hour's spend")
    # Large counts do not overflow: 1e14 tokens at 0.001 USD per million is 1e20 before dividing.
    big = model("big")
    put_card(h, big, card(H, "0.001", "0.000999"))
    b = new_agent(tag="rate-big")
    hid = hb_id()
    accepted(h.hb(priced_hb(b, big, H + 10, hid=hid, tokens_in=10**14, tokens_out=3 * 10**13)), 1, 0,
             "a heartbeat of 1e14 tokens")
    check_eq(nanos_of(h, b)[hid][1], 10**14 * 10**6 // 10**6 + 3 * 10**13 * 999000 // 10**6,
             "1e14 x 0.001 + 3e13 x 0.000999 USD per million, in nanos")
    # Past a million dollars the rating is refused, naming the model.
    r = h.hb(priced_hb(b, big, H + 20, tokens_in=10**15, tokens_out=10**15))
    check_error(r, 422, "price_out_of_range", "model", "a rating above 1000000 USD")


def test_cached_tokens_must_be_part_of_the_input(h):
    m = model("incl")
    a = new_agent(tag="incl")
    r = h.hb(priced_hb(a, m, time.time(), tokens_in=10, tokens_cached=8, tokens_cache_write=3))
    check_error(r, 400, "invalid_field", "metrics.tokens_in", "cached + cache-write tokens above tokens_in")
    r = h.hb(batch([priced_hb(a, m, time.time()), '{"agent":%s,"model":"a b"}' % json.dumps(a)]))
    check_error(r, 400, "invalid_field", "heartbeats[1].model", "a model name with a space")


def test_client_cost_kept_and_discrepancy_counted(h):
    m = model("disc")
    H = hour_start(time.time()) - 3600
    put_card(h, m, card(H, "1", "2"))
    a = new_agent(tag="disc")
    before = read_metrics(h)
    same, off = hb_id(), hb_id()
    # 1000 in x 1 + 1000 out x 2 = 0.003 USD: the client says 0.00301 (inside 1%) and then 0.006 (outside).
    accepted(h.hb(priced_hb(a, m, H + 60, hid=same, cost="0.00301", tokens_in=1000, tokens_out=1000)), 1, 0,
             "a client figure within the tolerance")
    accepted(h.hb(priced_hb(a, m, H + 61, hid=off, cost="0.006", tokens_in=1000, tokens_out=1000)), 1, 0,
             "a client figure off by 100%")
    rows = nanos_of(h, a)
    check_eq(rows[same], (3010000, 3000000), "the client's figure counts, the card's is kept beside it")
    check_eq(rows[off], (6000000, 3000000), "the client's figure counts even when off")
    after = read_metrics(h)
    check_eq(after.get("costmesh_price_discrepancies_total", 0) - before.get("costmesh_price_discrepancies_total", 0),
             1, "discrepancies counted")
    deadline = time.time() + 5
    evs = []
    while time.time() < deadline and not evs:
        r = h.request("GET", "/v1/mesh/events?event_type=price_discrepancy&agent=" + enc(a), key=h.k1)
        check_status(r, 200, "events")
        evs = r.json["events"]
        time.sleep(0.1)
    check_eq(len(evs), 1, "one price_discrepancy event")
    d = evs[0]["details"]
    check_eq((d["model"], d["heartbeat_id"], Decimal(str(d["client_cost_usd"])), Decimal(str(d["rated_cost_usd"]))),
             (m, off, Decimal("0.006"), Decimal("0.003")), "the event's details")


def test_model_without_card_is_unpriced(h):
    a = new_agent(tag="unpriced")
    before = read_metrics(h)
    hid = hb_id()
    accepted(h.hb(priced_hb(a, model("nocard"), time.time(), hid=hid, tokens_in=5000, tokens_out=100)), 1, 0,
             "a heartbeat of a model without a card")
    check_eq(nanos_of(h, a)[hid], (0, None), "recorded at cost 0, not priced")
    after = read_metrics(h)
    check_eq(after["costmesh_heartbeats_unpriced_total"] - before.get("costmesh_heartbeats_unpriced_total", 0), 1,
             "counted as unpriced")


def test_otlp_span_priced_by_the_card(h):
    """Issue 16: a span with usage and a model but no gen_ai.usage.cost is priced by the org's card."""
    m = model("span")
    put_card(h, m, card(hour_start(time.time()) - 3600, "5", "20", "0.5", "6.25"))
    agent_name = "span-" + uuid.uuid4().hex[:10]
    now_ns = int(time.time()) * 10**9

    def span(sid, attrs):
        kv = [{"key": k, "value": ({"stringValue": v} if isinstance(v, str) else {"intValue": str(v)})}
              for k, v in attrs.items()]
        return {"traceId": "ab" * 16, "spanId": sid, "name": "chat", "startTimeUnixNano": str(now_ns - 10**9),
                "endTimeUnixNano": str(now_ns), "attributes": kv}

    body = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name",
                                                             "value": {"stringValue": agent_name}}]},
                               "scopeSpans": [{"spans": [
        span("00000000000000a1", {"gen_ai.request.model": "ignored-request-name", "gen_ai.response.model": m,
                                  "gen_ai.usage.input_tokens": 3000, "gen_ai.usage.output_tokens": 200,
                                  "gen_ai.usage.cache_read.input_tokens": 1000,
                                  "gen_ai.usage.cache_creation.input_tokens": 1000}),
        span("00000000000000a2", {"gen_ai.request.model": m, "gen_ai.usage.input_tokens": 10,
                                  "gen_ai.usage.output_tokens": 10, "gen_ai.usage.cost": "0.5"}),
        span("00000000000000a3", {"gen_ai.request.model": m, "gen_ai.usage.input_tokens": 10,
                                  "gen_ai.usage.cache_read.input_tokens": 11}),
    ]}]}]}
    r = h.request("POST", "/v1/traces", body, key=h.k1)
    check_status(r, 200, "an OTLP JSON export")
    check_eq(r.json.get("partialSuccess", {}).get("rejectedSpans"), "1", "the span with cache tokens past its input")
    address = "agent://%s/production/%s" % (h.org1, agent_name)
    rows = nanos_of(h, address)
    # 1000 fresh x 5 + 1000 cached x 0.5 + 1000 written x 6.25 + 200 out x 20 = 15750 micro-dollars.
    check_eq(rows["00000000000000a1"], (15750000, 15750000), "a span priced by the card (response model)")
    check_eq(rows["00000000000000a2"], (500000000, 250000), "a span's own cost counts; the card's is kept")
    check_eq(h.psql("SELECT model || '|' || tokens_cache_write FROM heartbeats WHERE address = '%s'"
                    " AND hb_id = '00000000000000a1'" % address), "%s|1000" % m, "model and cache-write tokens")


def test_card_change_heard_by_another_replica(h):
    """Cards are kept in memory on each replica; a new version PUT on one reaches the other by NOTIFY."""
    m = model("repl")
    H = hour_start(time.time()) - 3600
    put_card(h, m, card(H, "1", "1"))
    a = new_agent(tag="repl")
    view = PortView(h, free_port())
    second = Server(view, h.server.admin_key, h.server.org)
    second.start()
    try:
        first = hb_id()
        accepted(view.hb(priced_hb(a, m, H + 1200, hid=first, tokens_in=1000)), 1, 0,
                 "a heartbeat through the second replica loads its cards")
        check_eq(nanos_of(h, a)[first][1], 1000000, "priced by the first version")
        put_card(h, m, card(H + 600, "7", "1"), what="a version from H+10min, on the first replica")
        deadline, got = time.time() + 5, None
        while time.time() < deadline:
            hid = hb_id()
            accepted(view.hb(priced_hb(a, m, H + 1200, hid=hid, tokens_in=1000)), 1, 0, "a heartbeat, second replica")
            got = nanos_of(h, a)[hid][1]
            if got == 7000000:
                break
            time.sleep(0.1)
        check_eq(got, 7000000, "the second replica prices by the new version")
    finally:
        problems = second.stop()
    check(not problems, "second replica: %s" % problems)


def test_ctl_pricing_set_list_and_the_starter_file(h):
    """costmeshctl pricing set --file loads pricing/starter.json (each card accepted by the server; loading it
    again changes nothing), pricing set adds one version, pricing list shows them, and heartbeat --model is
    priced by them. The starter's model names get a unique suffix here: the org's cards are shared by every
    test, and another test's spans name gpt-4o without a cost."""
    tag = "-t" + uuid.uuid4().hex[:8]
    with open(os.path.join(REPO, "pricing", "starter.json"), encoding="utf-8") as f:
        starter = json.load(f, parse_float=Decimal)
    check(len(starter["cards"]) >= 5, "the starter file has cards")
    for c in starter["cards"]:
        c["model"] += tag
    # The file's text with the names changed, so its numbers go out exactly as written.
    with open(os.path.join(REPO, "pricing", "starter.json"), encoding="utf-8") as f:
        text = f.read()
    for c in starter["cards"]:
        text = text.replace('"model": "%s"' % c["model"][:-len(tag)], '"model": "%s"' % c["model"])
    fd, path = tempfile.mkstemp(suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    try:
        r = ok(ctl(h, "pricing", "set", "--file", path), "load the starter file")
        check_eq(r.out.count(" added"), len(starter["cards"]), "every starter card added: %r" % r.out)
        r = ok(ctl(h, "pricing", "set", "--file", path), "load it again")
        check_eq(r.out.count("unchanged"), len(starter["cards"]), "nothing changes the second time: %r" % r.out)
    finally:
        os.unlink(path)
    first = starter["cards"][0]
    r = ok(ctl(h, "pricing", "list", first["model"], "--json"), "list one model")
    v = json.loads(r.out, parse_float=Decimal)["versions"][0]
    for k in ("input_per_million_usd", "output_per_million_usd", "cached_input_per_million_usd",
              "cache_write_per_million_usd"):
        check_eq(Decimal(v[k]), Decimal(first[k]), "the starter's %s as loaded" % k)

    m = model("ctl")
    H = hour_start(time.time()) - 3600
    r = ok(ctl(h, "pricing", "set", m, "--input", "0.5", "--output", "1.5", "--cached-input", "0.05", "--from", iso(H)),
           "set one version")
    check("added" in r.out, "set says added: %r" % r.out)
    r = ok(ctl(h, "pricing", "list"), "list every card")
    rows = [line.split() for line in r.out.splitlines()]
    check_eq(rows[0], ["MODEL", "EFFECTIVE_FROM", "INPUT", "OUTPUT", "CACHED_INPUT", "CACHE_WRITE", "IN_FORCE"],
             "the table's header")
    check([m, iso(H), "0.5", "1.5", "0.05", "0.5", "yes"] in rows, "the version in the table: %r" % r.out)
    fails(ctl(h, "pricing", "set", m, "--input", "-1", "--output", "1", "--from", iso(H + 60)), 1,
          "input_per_million_usd", "a negative price")
    fails(ctl(h, "pricing", "set", m, "--output", "1"), 2, "--input and --output are required", "no input price")
    a = new_agent(tag="ctl-price")
    ok(ctl(h, "heartbeat", a, "--model", m, "--tokens-in", "2000", "--tokens-cached", "1000", "--tokens-out", "1000",
           "--id", "ctl-priced"), "heartbeat --model")
    # 1000 fresh x 0.5 + 1000 cached x 0.05 + 1000 out x 1.5 = 2050 micro-dollars.
    check_eq(nanos_of(h, a)["ctl-priced"], (2050000, 2050000), "the CLI's heartbeat priced by the card")


def test_readme_rate_card_example_works(h):
    """The README's rate card block, run as printed (its agent in this test's org): the PUT answers 201, the
    heartbeat is priced at the 0.00174 USD the README computes, and the GET shows the version in force."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    marker = "<!-- test_n_pricing runs this -->\n```sh\n"
    check(marker in readme, "the README has no block marked for this test")
    block = readme.split(marker, 1)[1].split("```", 1)[0]
    a = new_agent(tag="readme-price")
    script = block.replace("agent://default/production/research-agent", a)
    check(script != block, "the block names the example agent")
    env = dict(os.environ, BASE="http://127.0.0.1:%d" % h.http_port, ADMIN_KEY=h.k1)
    p = subprocess.run(["sh", "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    check(p.returncode == 0, "the block: exit %d: %s" % (p.returncode, p.stderr.decode()))
    out = replies(p.stdout.decode())
    check_eq(len(out), 3, "three replies: %r" % out)
    check_eq(out[0]["version"]["cache_write_per_million_usd"], Decimal("0.15"), "the PUT's reply")
    check_eq(out[1]["agents"][a]["cost_today_usd"], Decimal("0.00174"), "the heartbeat priced as the README says")
    check_eq(out[2]["versions"][-1]["in_force"], True, "the GET's version is in force")


def test_sdk_reports_priced_by_the_card(h):
    """The C SDK: cm_report with a model and CM_COST_BY_RATE_CARD sends no cost_usd, and the server prices it;
    the same model's report with a cost is kept apart and its cost counts."""
    from test_f_sdk import session
    m = model("sdk")
    put_card(h, m, card(hour_start(time.time()) - 3600, "2", "8", "0.5", "2.5"))
    a = new_agent(tag="sdk-price")
    d = session(h, a, flush_ms=60000)
    try:
        check_eq(d.cmd("model %s card 3000 1000 1000 500" % m)["rc"], 0, "a report left to the card")
        check_eq(d.cmd("model %s card 3000 1000 1000 500" % m)["rc"], 0, "another, merged with it")
        check_eq(d.cmd("model %s 0.25 10 0 0 10" % m)["rc"], 0, "a report of the same model with its own cost")
        check_eq(d.flush(10000), 0, "flush")
    finally:
        d.quit()
    rows = sorted(nanos_of(h, a).values())
    # Twice (1000 fresh x 2 + 1000 cached x 0.5 + 1000 written x 2.5 + 500 out x 8) = 2 x 9000 micro-dollars;
    # the other: 10 x 2 + 10 x 8 = 100 micro-dollars by the card, 0.25 USD by the client.
    check_eq(rows, [(18000000, 18000000), (250000000, 100000)], "the SDK's heartbeats (cost, card's rating)")
