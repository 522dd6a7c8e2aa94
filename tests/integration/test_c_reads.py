"""Operations endpoints, the agents listing, intent spend, concurrent writers."""

import random
import re
import threading
import time
from decimal import Decimal

from harness import (accepted, batch, check, check_eq, check_error, check_status, dec, enc, hb_id, hb_obj,
                     new_agent, parse_iso, day_start, ConnError)


def metric_value(text, name):
    m = re.search(r"^%s(?:\{[^}]*\})? (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


def test_operations(h):
    r = h.request("GET", "/healthz")
    check_status(r, 200, "/healthz without a key")
    r = h.request("GET", "/readyz")
    check_status(r, 200, "/readyz")
    check_eq((r.json.get("redis"), r.json.get("postgres")), ("up", "up"), "/readyz stores")
    m1 = h.request("GET", "/metrics")
    check_status(m1, 200, "/metrics")
    check(m1.headers.get("content-type", "").startswith("text/plain"), "/metrics content type %r" % m1.headers)
    for name in ("costmesh_heartbeats_accepted_total", "costmesh_http_requests_total"):
        check(re.search(r"^%s(\{.*\})? \d+$" % name, m1.text, re.M), "/metrics lacks %s" % name)
    before = metric_value(m1.text, "costmesh_heartbeats_accepted_total")
    a = new_agent(tag="ops")
    accepted(h.hb(batch([hb_obj(a, "0.1", hb_id()) for _ in range(3)])), 3, 0, "hbs")
    m2 = h.request("GET", "/metrics").text
    after = metric_value(m2, "costmesh_heartbeats_accepted_total")
    check(after is not None and before is not None and after - before >= 3,
          "accepted counter did not move by 3: %r -> %r" % (before, after))
    check(re.search(r'^costmesh_http_requests_total\{[^}]*route="heartbeat"[^}]*status="202"[^}]*\} [1-9]\d*$',
                    m2, re.M), "no heartbeat/202 request line in /metrics")
    # Operations answer without a key even when one is wrong.
    check_status(h.request("GET", "/healthz", key="garbage"), 200, "/healthz with a bad key")


def _agents(h, query="", key=None):
    r = h.request("GET", "/v1/mesh/agents" + query, key=h.k1 if key is None else key)
    check_status(r, 200, "GET /v1/mesh/agents%s" % query)
    check(isinstance(r.json, dict) and isinstance(r.json.get("agents"), list), "agents shape: %.200r" % r.text)
    return r


def test_agents_list(h):
    a = new_agent(tag="list")
    old = new_agent(tag="list-old")
    mid = new_agent(tag="list-mid")
    t0 = time.time()
    accepted(h.hb(hb_obj(a, "1.25", hb_id())), 1, 0, "hb 1")
    accepted(h.hb(hb_obj(a, "0.5", hb_id())), 1, 0, "hb 2")
    accepted(h.hb(hb_obj(old, "0.1", hb_id())), 1, 0, "old hb")
    accepted(h.hb(hb_obj(mid, "0.1", hb_id())), 1, 0, "mid hb")
    # Age two agents' last heartbeat in the system of record.
    h.psql("UPDATE agents SET last_heartbeat = now() - interval '10 minutes' WHERE address = '%s'" % old)
    h.psql("UPDATE agents SET last_heartbeat = now() - interval '150 seconds' WHERE address = '%s'" % mid)

    r = _agents(h, "?limit=1000")
    by = {x["address"]: x for x in r.json["agents"]}
    check(a in by, "agent missing from the list")
    e = by[a]
    check_eq(e.get("health"), "healthy", "health")
    lh = parse_iso(e.get("last_heartbeat"))
    check(t0 - 5 <= lh <= time.time() + 5, "last_heartbeat %s not recent" % e.get("last_heartbeat"))
    if day_start(t0) == day_start(time.time()):
        check_eq(dec(e["cost_today_usd"]), Decimal("1.75"), "cost_today_usd")
        check('"cost_today_usd":1.75' in r.text, "cost_today_usd text is not 1.75")
    check_eq(by[old]["health"], "unreachable", "health of a 10-minute-old agent")
    check_eq(by[mid]["health"], "degraded", "health of a 150-second-old agent")

    def names(q):
        return [x["address"] for x in _agents(h, q).json["agents"]]

    healthy = names("?health=healthy&limit=1000")
    check(a in healthy and old not in healthy and mid not in healthy, "?health=healthy")
    unreach = names("?health=unreachable&limit=1000")
    check(old in unreach and a not in unreach, "?health=unreachable")
    check(mid in names("?health=degraded&limit=1000"), "?health=degraded")
    for q, field in (("?health=bogus", "health"), ("?health=", "health"), ("?limit=0", "limit"),
                     ("?limit=abc", "limit"), ("?limit=-1", "limit"), ("?limit=1001", "limit")):
        r = h.request("GET", "/v1/mesh/agents" + q, key=h.k1)
        check_error(r, 400, field=field, what=q)
    one = _agents(h, "?limit=1").json["agents"]
    check_eq(len(one), 1, "?limit=1 length")
    check(len(_agents(h, "?limit=2").json["agents"]) <= 2, "?limit=2")
    check_eq(len(_agents(h, "?health=healthy&limit=1").json["agents"]), 1, "?health=healthy&limit=1")
    # A bound agent key sees only its agent.
    r = h.request("POST", "/v1/keys", {"role": "agent", "name": "lister", "agent": a}, key=h.k1)
    check_status(r, 201, "create key")
    lst = [x["address"] for x in _agents(h, "?limit=1000", key=r.json["key"]).json["agents"]]
    check_eq(lst, [a], "a bound key's agent list")


def test_intent_spend(h):
    a = new_agent(tag="intent")
    x = "int-" + hb_id()
    y = "int-" + hb_id()
    t = int(time.time()) - 90
    accepted(h.hb(batch([hb_obj(a, "0.3", hb_id(), ts=t, intent=x, tokens_in=100, tokens_out=10, llm_calls=1),
                         hb_obj(a, "0.2", hb_id(), ts=t - 3600, intent=x, tokens_in=50, tokens_out=5, llm_calls=2),
                         hb_obj(a, "5", hb_id(), ts=t, intent=y, tokens_in=1000),
                         hb_obj(a, "7", hb_id(), ts=t)])), 4, 0, "intent hbs")
    b = new_agent(tag="intent")
    accepted(h.hb(hb_obj(b, "9", hb_id(), ts=t, intent=x)), 1, 0, "same intent, other agent")
    r = h.request("GET", "/v1/mesh/intents/%s/spend?agent=%s" % (x, enc(a)), key=h.k1)
    check_status(r, 200, "intent spend")
    j = r.json
    check_eq(dec(j["cost_usd"]), Decimal("0.5"), "intent cost")
    check('"cost_usd":0.5' in r.text, "intent cost text not 0.5: %.200r" % r.text)
    check_eq((j["tokens_in"], j["tokens_out"], j["llm_calls"], j["heartbeats"]), (150, 15, 3, 2), "intent counters")
    check_eq(j.get("intent_id"), x, "intent_id")
    r = h.request("GET", "/v1/mesh/intents/%s/spend?agent=%s" % (y, enc(a)), key=h.k1)
    check_eq(dec(r.json["cost_usd"]), Decimal("5"), "other intent cost")
    r = h.request("GET", "/v1/mesh/intents/%s/spend?agent=%s" % ("int-unknown-" + hb_id(), enc(a)), key=h.k1)
    check_error(r, 404, what="unknown intent")
    r = h.request("GET", "/v1/mesh/intents/%s/spend?agent=%s" % (x, enc(new_agent(tag="nobody"))), key=h.k1)
    check_error(r, 404, what="intent of an agent without it")
    r = h.request("GET", "/v1/mesh/intents/%s/spend" % x, key=h.k1)
    check_error(r, 400, field="agent", what="admin key without ?agent")
    r = h.request("GET", "/v1/mesh/intents/%s/spend?agent=bogus" % x, key=h.k1)
    check_error(r, 400, field="agent", what="?agent=bogus")
    days = {day_start(t), day_start(t - 3600)}
    total = sum((dec(h.spend_ok(a, "day", at=d)["cost_usd"]) for d in days), Decimal(0))
    check_eq(total, Decimal("12.5"), "agent total")

def test_concurrent_writers(h):
    """8 writers; pairs share ids; each sends its set twice, interleaved with the others: exact totals."""
    agents = [new_agent(tag="conc") for _ in range(2)]
    t = int(time.time()) - 45
    groups = []
    for g in range(4):
        hbs = []
        for i in range(240):
            a = agents[(g + i) % 2]
            cost = "0.%03d" % (1 + (g * 240 + i) % 997)  # 0.001 .. 0.997
            hbs.append((a, hb_id(), cost))
        groups.append(hbs)
    want = {a: Decimal(0) for a in agents}
    for hbs in groups:
        for a, _, c in hbs:
            want[a] += Decimal(c)
    results = []
    errors = []
    lock = threading.Lock()

    def writer(w):
        rnd = random.Random(w)
        hbs = groups[w // 2]
        chunks = [hbs[i:i + 40] for i in range(0, len(hbs), 40)]
        order = list(range(len(chunks))) * 2
        rnd.shuffle(order)
        for ci in order:
            body = batch([hb_obj(a, c, i, ts=t) for a, i, c in chunks[ci]])
            for attempt in range(5):
                try:
                    r = h.hb(body)
                except ConnError as e:
                    with lock:
                        errors.append("writer %d: %s" % (w, e))
                    return
                if r.status == 202:
                    with lock:
                        results.append((r.json["accepted"], r.json["duplicates"]))
                    break
                if r.status != 503:
                    with lock:
                        errors.append("writer %d: %r" % (w, r))
                    return
                time.sleep(0.2)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(50)
    check(not any(th.is_alive() for th in threads), "writers did not finish")
    check(not errors, "writer errors: %s" % errors[:3])
    sent = 8 * 2 * 240
    check_eq(len(results), 8 * 2 * 6, "answered batches")
    check_eq(sum(x[0] for x in results), 4 * 240, "sum of accepted")
    check_eq(sum(x[1] for x in results), sent - 4 * 240, "sum of duplicates")
    for a in agents:
        s = h.spend_ok(a, "day", at=t)
        check_eq(dec(s["cost_usd"]), want[a], "total of %s" % a)
        check_eq(s["heartbeats"], 480, "heartbeats of %s" % a)
        check_eq(h.psql("SELECT count(*) FROM heartbeats WHERE address = '%s'" % a), "480", "rows of %s" % a)


def test_spend_window_bounds_are_valid_times(h):
    """from/to are RFC 3339 times, also for windows at the edges of the accepted `at` range
    (or such an `at` is refused with 400)."""
    a = new_agent(tag="edges")
    accepted(h.hb(hb_obj(a, "0.5", hb_id())), 1, 0, "hb")
    for window, at in (("week", "1970-01-01T00:00:00Z"), ("week", "1970-01-03T12:00:00Z"),
                       ("day", "9999-12-31T23:59:59Z"), ("month", "9999-12-31T23:59:59Z"),
                       ("week", "9999-12-31T23:59:59Z"), ("hour", "9999-12-31T23:59:59Z")):
        r = h.spend(a, window, at=at)
        if r.status == 400:
            check_error(r, 400, field="at", what="window=%s&at=%s" % (window, at))
            continue
        check_status(r, 200, "window=%s&at=%s" % (window, at))
        for k in ("from", "to"):
            try:
                parse_iso(r.json[k])
            except AssertionError:
                check(False, "window=%s&at=%s: %s is %r, not an RFC 3339 time" % (window, at, k, r.json[k]))
        for b in r.json["series"]:
            parse_iso(b["from"])
