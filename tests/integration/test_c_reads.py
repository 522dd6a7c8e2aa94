"""Operations endpoints, the agents listing, intent spend, concurrent writers."""

import random
import threading
import time
from urllib.parse import unquote
from decimal import Decimal

from harness import (accepted, batch, check, check_eq, check_error, check_json, check_status, dec, enc, hb_id,
                     hb_obj, iso, new_agent, parse_iso, read_metrics, day_start, hour_start, BACKLOGS, STORE_UP,
                     ConnError, money_members, wait_metric)
from test_e_policies import away_from_boundary


STORES_UP = {STORE_UP % "redis": 1, STORE_UP % "postgres": 1}
HB_202 = 'costmesh_http_requests_total{route="heartbeat",status="202"}'


STAGES = ("routing", "queue", "store", "hot")
STAGE_COUNT = 'costmesh_ingest_stage_seconds_count{stage="%s"}'
STAGE_SUM = 'costmesh_ingest_stage_seconds_sum{stage="%s"}'


def moved(before, after, names):
    return {n: after.get(n, 0) - before.get(n, 0) for n in names}


def test_operations(h):
    r = h.request("GET", "/healthz")
    check_status(r, 200, "/healthz without a key")
    r = h.request("GET", "/readyz")
    check_status(r, 200, "/readyz")
    check_json(r.json, {"ready": True, "redis": "up", "postgres": "up"}, "/readyz")
    m1 = h.request("GET", "/metrics")
    check_status(m1, 200, "/metrics")
    check(m1.headers.get("content-type", "").startswith("text/plain"), "/metrics content type %r" % m1.headers)
    before = read_metrics(h)
    # Nothing else runs between the tests: the counters move by exactly what this test sends.
    a = new_agent(tag="ops")
    ids = [hb_id() for _ in range(3)]
    accepted(h.hb(batch([hb_obj(a, "0.1", i) for i in ids])), 3, 0, "hbs")
    accepted(h.hb(batch([hb_obj(a, "0.1", ids[0]), hb_obj(a, "0.2", None, tokens_in=1, gpu_seconds=2),
                         hb_obj(a, "0.1", ids[1])])), 1, 2, "two resent, one new with an unknown metric")
    check_error(h.hb(hb_obj(a, "-1", hb_id())), 400, field="metrics.cost_usd", what="a refused heartbeat")
    after = read_metrics(h)
    check_eq(moved(before, after, ("costmesh_heartbeats_accepted_total", "costmesh_heartbeats_duplicate_total",
                                   "costmesh_heartbeat_metrics_ignored_total", HB_202,
                                   'costmesh_http_requests_total{route="heartbeat",status="400"}')),
             {"costmesh_heartbeats_accepted_total": 4, "costmesh_heartbeats_duplicate_total": 2,
              "costmesh_heartbeat_metrics_ignored_total": 1, HB_202: 2,
              'costmesh_http_requests_total{route="heartbeat",status="400"}': 1}, "/metrics counters moved")
    check_eq({n: after.get(n) for n in STORES_UP}, STORES_UP, "costmesh_store_up with both stores up")
    # Each acknowledged request is timed once in every stage of its path; the 400 never reached the queue.
    # The group commits stored the six heartbeats sent (the resent ones too: PostgreSQL or Redis finds
    # them repeated), in one group or two.
    counts = moved(before, after, [STAGE_COUNT % s for s in STAGES])
    check_eq(counts, {n: 2 for n in counts}, "stage counts moved by the two acknowledged requests")
    check_eq(moved(before, after, ["costmesh_ingest_group_heartbeats_total"]),
             {"costmesh_ingest_group_heartbeats_total": 6}, "heartbeats stored by the group commits")
    groups = moved(before, after, ["costmesh_ingest_groups_total"])["costmesh_ingest_groups_total"]
    check(groups in (1, 2), "two requests stored by one group commit or two, not %r" % groups)
    sums = moved(before, after, [STAGE_SUM % s for s in STAGES])
    check(all(v >= 0 for v in sums.values()) and sums[STAGE_SUM % "store"] > 0,
          "stage seconds grow, the durable point's wait above zero: %r" % sums)
    # A 202 is answered once its heartbeats are written and merged: the acknowledged path's stages are
    # empty. Background work's calls to Redis come and go in the redis stage: the rollup worker's (it
    # merges and checks the scopes of each batch) in both modes, the persister's (it polls the queue) in
    # Redis mode; they end.
    check_eq({n: after.get(n) for n in BACKLOGS[:2]}, {n: 0 for n in BACKLOGS[:2]},
             "backlogs after answered requests")
    wait_metric(h, BACKLOGS[2], 0, 5, "background calls to Redis")
    check_eq(after.get("costmesh_http_inflight"), 0, "costmesh_http_inflight (/metrics is answered on the HTTP thread)")
    # Operations answer without a key even when one is wrong.
    check_status(h.request("GET", "/healthz", key="garbage"), 200, "/healthz with a bad key")


def _agents(h, query="", key=None):
    r = h.request("GET", "/v1/mesh/agents" + query, key=h.k1 if key is None else key)
    check_status(r, 200, "GET /v1/mesh/agents%s" % query)
    check(isinstance(r.json, dict) and isinstance(r.json.get("agents"), list), "agents shape: %.200r" % r.text)
    return r


def test_agents_list(h):
    away_from_boundary(86400, 30)
    a = new_agent(tag="list")
    old = new_agent(tag="list-old")
    mid = new_agent(tag="list-mid")
    t0 = int(time.time())
    accepted(h.hb(hb_obj(a, "1.25", hb_id())), 1, 0, "hb 1")
    accepted(h.hb(hb_obj(a, "0.5", hb_id())), 1, 0, "hb 2")
    accepted(h.hb(hb_obj(old, "0.1", hb_id())), 1, 0, "old hb")
    accepted(h.hb(hb_obj(mid, "0.1", hb_id())), 1, 0, "mid hb")
    # Age two agents' last heartbeat in the system of record (redis mode: once the persister, which moves
    # it, has stored them).
    h.wait_persisted()
    h.psql("UPDATE agents SET last_heartbeat = now() - interval '10 minutes' WHERE address = '%s'" % old)
    h.psql("UPDATE agents SET last_heartbeat = now() - interval '150 seconds' WHERE address = '%s'" % mid)

    r = _agents(h, "?limit=1000")
    by = {x["address"]: x for x in r.json["agents"]}
    check(a in by, "agent missing from the list")
    e = by[a]
    lh = parse_iso(e.get("last_heartbeat"))
    check(t0 <= lh <= time.time(), "last_heartbeat %s is not this test's heartbeat" % e.get("last_heartbeat"))
    check_json(e, {"address": a, "health": "healthy", "last_heartbeat": e["last_heartbeat"], "intents_today": 0,
                   "cost_today_usd": Decimal("1.75"), "state": "active"}, "the agent's entry")
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
    check_eq(len(_agents(h, "?limit=2").json["agents"]), 2, "?limit=2 length (this test listed 3 agents)")
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
    # An intent id is the org's, so its spend covers every agent that reported it; ?agent= is a hint only.
    totals_x = {"cost_usd": Decimal("9.5"), "tokens_in": 150, "tokens_out": 15, "tokens_cached": 0,
                "llm_calls": 3, "tool_calls": 0, "heartbeats": 3, **money_members(Decimal("9.5"))}
    want_x = {"intent_id": x, "agent": a, "from": iso(hour_start(t - 3600)), "to": iso(hour_start(t) + 3600),
              **totals_x, "parent_intent_id": None, "root_intent_id": x, "self": totals_x,
              "tree": {"intents": 1, **totals_x}, "outcome": None, "abandoned": False}
    for hint in ("?agent=%s" % enc(a), "?agent=%s" % enc(b), ""):
        r = h.request("GET", "/v1/mesh/intents/%s/spend%s" % (x, hint), key=h.k1)
        check_status(r, 200, "intent spend " + hint)
        check_json(r.json, dict(want_x, agent=a if a in unquote(hint) else b if hint else None),
                   "intent spend " + hint)
    check('"cost_usd":9.5' in r.text, "intent cost text not 9.5: %.200r" % r.text)
    totals_y = {"cost_usd": Decimal(5), "tokens_in": 1000, "tokens_out": 0, "tokens_cached": 0,
                "llm_calls": 0, "tool_calls": 0, "heartbeats": 1, **money_members(5)}
    r = h.request("GET", "/v1/mesh/intents/%s/spend" % y, key=h.k1)
    check_status(r, 200, "other intent's spend")
    check_json(r.json, {"intent_id": y, "agent": None, "from": iso(hour_start(t)), "to": iso(hour_start(t) + 3600),
                        **totals_y, "parent_intent_id": None, "root_intent_id": y, "self": totals_y,
                        "tree": {"intents": 1, **totals_y}, "outcome": None, "abandoned": False},
               "other intent's spend")
    r = h.request("GET", "/v1/mesh/intents/%s/spend" % ("int-unknown-" + hb_id()), key=h.k1)
    check_error(r, 404, what="unknown intent")
    r = h.request("GET", "/v1/mesh/intents/%s/spend?agent=%s" % (x, enc(new_agent(org="org2"))), key=h.k1)
    check_error(r, 403, field="agent", what="a hint of another org")
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
