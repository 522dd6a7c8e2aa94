"""Heartbeat ingestion: exact money, dedupe, ts placement, validation."""

import calendar
import json
import re
import time
from decimal import Decimal

from harness import (accepted, batch, check, check_eq, check_error, check_json, check_status, dec, expected_spend,
                     hb_id, hb_obj, iso, new_agent, parse_iso, day_start, hour_start)
from test_e_policies import away_from_boundary


def top_cost_text(text):
    """The top-level cost_usd literal of a spend reply (before the series)."""
    head = text.split('"series"', 1)[0]
    m = re.search(r'"cost_usd":(-?[0-9.eE+-]+)', head)
    check(m is not None, "no top-level cost_usd in %.300r" % text)
    return m.group(1)


def test_money_exact(h):
    """2000 x 0.1 == 200 exactly; half-even at the 9th decimal; 12.47 displays as 12.47."""
    a = new_agent(tag="money")
    t = int(time.time()) - 120
    for b in range(4):
        items = [hb_obj(a, "0.1", hb_id(), ts=t, tokens_in=3) for _ in range(500)]
        accepted(h.hb(batch(items)), 500, 0, "batch %d" % b)
    r = h.spend(a, "day", at=t)
    check_status(r, 200, "spend")
    check_eq(dec(r.json["cost_usd"]), Decimal("200"), "day cost_usd")
    check(re.search(r'"cost_usd":200[,}]', r.text) is not None,
          'raw JSON lacks "cost_usd":200: %.300r' % r.text)
    check_eq(top_cost_text(r.text), "200", "cost_usd literal")
    check_eq(r.json["heartbeats"], 2000, "heartbeats")
    check_eq(r.json["tokens_in"], 6000, "tokens_in")
    check_eq(sum(dec(b["cost_usd"]) for b in r.json["series"]), Decimal("200"), "sum of series")

    # 0.000000001 + 0.0000000015 (1.5 nanos -> 2, half-even) == 3 nanos.
    b_ = new_agent(tag="money-ne")
    accepted(h.hb(hb_obj(b_, "0.000000001", hb_id(), ts=t)), 1, 0, "1e-9")
    accepted(h.hb(hb_obj(b_, "0.0000000015", hb_id(), ts=t)), 1, 0, "1.5e-9")
    r = h.spend(b_, "day", at=t)
    check_status(r, 200, "spend")
    check_eq(dec(r.json["cost_usd"]), Decimal("0.000000003"), "1e-9 + 1.5e-9 (half-even)")
    check_eq(top_cost_text(r.text), "0.000000003", "cost_usd literal")

    # 2.5 nanos -> 2 (to even), 3.5 -> 4, 2.50000001 -> 3 (above half).
    c = new_agent(tag="money-he")
    for cost in ("0.0000000025", "0.0000000035", "0.00000000250000001", "2.5E-9"):
        accepted(h.hb(hb_obj(c, cost, hb_id(), ts=t)), 1, 0, cost)
    check_eq(dec(h.spend_ok(c, "day", at=t)["cost_usd"]), Decimal("0.000000011"), "2+4+3+2 nanos")

    # 12.47 shows as 12.47 (no float artefacts), also as 12 + 0.47 and 1247e-2.
    for parts in (["12.47"], ["12", "0.47"], ["1247e-2"], ["0.1247E2"]):
        d = new_agent(tag="money-1247")
        for p in parts:
            accepted(h.hb(hb_obj(d, p, hb_id(), ts=t)), 1, 0, p)
        r = h.spend(d, "day", at=t)
        check_status(r, 200, "spend")
        check_eq(top_cost_text(r.text), "12.47", "cost_usd literal of %s" % "+".join(parts))
        check_eq(dec(r.json["cost_usd"]), Decimal("12.47"), "cost of %s" % "+".join(parts))

    # Largest accepted amount, and a sum above 2^53 nanos stays exact.
    e = new_agent(tag="money-big")
    for _ in range(10):
        accepted(h.hb(hb_obj(e, "999999.999999999", hb_id(), ts=t)), 1, 0, "max")
    check_eq(dec(h.spend_ok(e, "day", at=t)["cost_usd"]), Decimal("9999999.99999999"), "10 x max")


def test_money_in_reply_is_exact(h):
    """The 202 reply's cost_today_usd is exact too."""
    away_from_boundary(86400, 30)
    a = new_agent(tag="reply")
    for i in range(3):
        r = h.hb(hb_obj(a, "0.1", hb_id()))
        check_status(r, 202, "hb %d" % i)
        check_json(r.json, {"accepted": 1, "duplicates": 0,
                            "agents": {a: {"state": "active", "cost_today_usd": Decimal("0.1") * (i + 1)}}},
                   "202 of hb %d" % i)
    check('"cost_today_usd":0.3}' in r.text, "cost_today_usd text not 0.3: %.300r" % r.text)


def test_dedupe(h):
    a = new_agent(tag="dedupe")
    b = new_agent(tag="dedupe")
    x = hb_id()
    t = int(time.time()) - 60
    accepted(h.hb(batch([hb_obj(a, "1.5", x, ts=t), hb_obj(a, "1.5", x, ts=t)])), 1, 1, "same id twice in a batch")
    accepted(h.hb(hb_obj(a, "1.5", x, ts=t)), 0, 1, "resend")
    accepted(h.hb(batch([hb_obj(a, "7", x, ts=t)])), 0, 1, "resend in a batch with another cost")
    accepted(h.hb(hb_obj(b, "1.5", x, ts=t)), 1, 0, "same id, another agent")
    y = hb_id()
    accepted(h.hb(batch([hb_obj(a, "0.25", y, ts=t), hb_obj(a, "1.5", x, ts=t), hb_obj(b, "0.25", y, ts=t),
                         hb_obj(a, "0.25", y, ts=t)])), 2, 2, "mixed batch")
    # Heartbeats without an id are never duplicates.
    accepted(h.hb(batch([hb_obj(a, "0.01", None, ts=t), hb_obj(a, "0.01", None, ts=t)])), 2, 0, "no ids")
    h.restart_server()
    accepted(h.hb(hb_obj(a, "1.5", x, ts=t)), 0, 1, "resend after restart")
    accepted(h.hb(hb_obj(b, "0.25", y, ts=t)), 0, 1, "resend after restart (b)")
    sa = h.spend_ok(a, "day", at=t)
    sb = h.spend_ok(b, "day", at=t)
    check_eq(dec(sa["cost_usd"]), Decimal("1.77"), "agent a total")
    check_eq(sa["heartbeats"], 4, "agent a heartbeats")
    check_eq(dec(sb["cost_usd"]), Decimal("1.75"), "agent b total")
    check_eq(sb["heartbeats"], 2, "agent b heartbeats")
    check_eq(h.psql("SELECT count(*) FROM heartbeats WHERE address = '%s'" % a), "4", "rows of a")


def _bucket(series, start):
    for b in series:
        if b["from"] == iso(start):
            return b
    check(False, "no bucket from %s" % iso(start))


def _check_window_sums(s, what):
    for k in ("cost_usd", "tokens_in", "tokens_out", "llm_calls"):
        got = sum((dec(b[k]) for b in s["series"]), Decimal(0))
        check_eq(got, dec(s[k]), "%s: sum of series %s vs window total" % (what, k))
    for i, b in enumerate(s["series"]):
        parse_iso(b["from"])
        if i:
            check(parse_iso(b["from"]) > parse_iso(s["series"][i - 1]["from"]), "%s: series not ascending" % what)


def test_ts_placement(h):
    a = new_agent(tag="ts")
    now = int(time.time())
    t3 = now - 3 * 3600 - 17
    accepted(h.hb(hb_obj(a, "0.7", hb_id(), ts=iso(t3), tokens_in=70, tokens_out=7, llm_calls=1)), 1, 0, "3h ago")
    # The same kind of instant written with a +02:00 offset (wall clock 2 h ahead of UTC).
    t5 = now - 6 * 3600 - 31
    local = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t5 + 7200)) + "+02:00"
    a2 = new_agent(tag="ts-offset")  # its own agent: no other heartbeat near its hours
    accepted(h.hb(hb_obj(a2, "0.05", hb_id(), ts=local, tokens_in=5, llm_calls=2)), 1, 0, "+02:00")
    # And now (arrival time, no ts).
    accepted(h.hb(hb_obj(a, "0.003", hb_id(), tokens_out=3, llm_calls=4)), 1, 0, "now")

    # Day containing t3.
    s = h.spend_ok(a, "day", at=t3)
    check_eq(s["window"], "day", "window")
    check_eq(s["from"], iso(day_start(t3)), "day from")
    check_eq(s["to"], iso(day_start(t3) + 86400), "day to")
    check_eq(len(s["series"]), 24, "day buckets")
    check_eq([b["from"] for b in s["series"]], [iso(day_start(t3) + 3600 * i) for i in range(24)], "day bucket starts")
    b = _bucket(s["series"], hour_start(t3))
    check_eq(dec(b["cost_usd"]), Decimal("0.7"), "cost in the hour of t3")
    check_eq(b["tokens_in"], 70, "tokens_in in the hour of t3")
    _check_window_sums(s, "day(t3)")
    for bb in s["series"]:
        if bb["from"] not in (iso(hour_start(t3)), iso(hour_start(now))):
            check_eq(dec(bb["cost_usd"]), Decimal(0), "empty bucket %s" % bb["from"])

    # Day containing t5: the +02:00 heartbeat is in UTC hour of t5.
    s = h.spend_ok(a2, "day", at=t5)
    check_json(s, expected_spend(a2, [(t5, {"cost_usd": "0.05", "tokens_in": 5, "llm_calls": 2})], "day", t5),
               "day of the +02:00 heartbeat")
    # Not misplaced by ignoring the offset (+2 h) or applying it the wrong way (+4 h).
    for off in (7200, 14400, -7200):
        hs = h.spend_ok(a2, "hour", at=t5 + off)
        check_eq(dec(hs["cost_usd"]), Decimal(0), "hour %s (offset mishandled)" % hs["from"])
    _check_window_sums(s, "day(t5)")

    # Hour windows.
    s = h.spend_ok(a, "hour", at=t3)
    check_eq(len(s["series"]), 1, "hour buckets")
    check_eq((s["from"], s["to"]), (iso(hour_start(t3)), iso(hour_start(t3) + 3600)), "hour bounds")
    check_eq(dec(s["cost_usd"]), Decimal("0.7"), "hour(t3) cost")
    check_eq(s["heartbeats"], 1, "hour(t3) heartbeats")
    _check_window_sums(s, "hour(t3)")
    s = h.spend_ok(a2, "hour", at=local)  # `at` accepts an offset too
    check_eq(dec(s["cost_usd"]), Decimal("0.05"), "hour(at=+02:00 text) cost")

    # Week containing now: 7 daily buckets from Monday.
    s = h.spend_ok(a, "week", at=now)
    d0 = day_start(now)
    monday = d0 - time.gmtime(now).tm_wday * 86400
    check_eq(len(s["series"]), 7, "week buckets")
    check_eq((s["from"], s["to"]), (iso(monday), iso(monday + 7 * 86400)), "week bounds")
    check_eq([b["from"] for b in s["series"]], [iso(monday + 86400 * i) for i in range(7)], "week bucket starts")
    _check_window_sums(s, "week(now)")
    want = sum((c for t, c in ((t3, Decimal("0.7")), (now, Decimal("0.003")))
                if monday <= t < monday + 7 * 86400), Decimal(0))
    check_eq(dec(s["cost_usd"]), want, "week cost")

    # Month containing now: one bucket per day.
    g = time.gmtime(now)
    ndays = calendar.monthrange(g.tm_year, g.tm_mon)[1]
    m0 = calendar.timegm((g.tm_year, g.tm_mon, 1, 0, 0, 0))
    s = h.spend_ok(a, "month", at=now)
    check_eq(len(s["series"]), ndays, "month buckets")
    check_eq((s["from"], s["to"]), (iso(m0), iso(m0 + ndays * 86400)), "month bounds")
    _check_window_sums(s, "month(now)")
    want = sum((c for t, c in ((t3, Decimal("0.7")), (now, Decimal("0.003")))
                if t >= m0), Decimal(0))
    check_eq(dec(s["cost_usd"]), want, "month cost")

    # Default window is the day of now.
    s = h.spend_ok(a)
    check_eq(s["window"], "day", "default window")
    check_eq(len(s["series"]), 24, "default day buckets")
    _check_window_sums(s, "day(now)")

    # Bad window / at.
    r = h.spend(a, "fortnight")
    check_error(r, 400, field="window", what="window=fortnight")
    r = h.spend(a, "day", at="yesterday")
    check_error(r, 400, field="at", what="at=yesterday")


def test_batch_validated_whole(h):
    a = new_agent(tag="batchval")
    t = int(time.time()) - 30
    first = hb_id()
    accepted(h.hb(hb_obj(a, "1", first, ts=t)), 1, 0, "baseline")
    ids = [hb_id() for _ in range(5)]
    items = [hb_obj(a, "0.5", ids[i], ts=t) for i in range(5)]
    items[3] = hb_obj(a, "-0.01", ids[3], ts=t)
    r = h.hb(batch(items))
    check_error(r, 400, code="invalid_field", field="heartbeats[3].metrics.cost_usd", what="negative cost in item 3")
    s = h.spend_ok(a, "day", at=t)
    check_eq(dec(s["cost_usd"]), Decimal("1"), "total after rejected batch")
    check_eq(s["heartbeats"], 1, "heartbeats after rejected batch")
    # None of the good items was recorded: sending them now is not a duplicate.
    accepted(h.hb(batch([items[0], items[1], items[2], items[4]])), 4, 0, "good items after rejection")
    check_eq(dec(h.spend_ok(a, "day", at=t)["cost_usd"]), Decimal("3"), "total")
    # Other per-item faults name their index too.
    for idx, bad, field in ((0, '{"agent":"agent://org1/x"}', "heartbeats[0].agent"),
                            (2, hb_obj(a, None, hb_id(), ts=t, tokens_out=-1), "heartbeats[2].metrics.tokens_out"),
                            (1, '{"agent":%s,"ts":"2020-01-01T00:00:00Z"}' % json.dumps(a), "heartbeats[1].ts"),
                            (4, '"not an object"', "heartbeats[4]")):
        items2 = [hb_obj(a, "1", hb_id(), ts=t) for _ in range(5)]
        items2[idx] = bad
        check_error(h.hb(batch(items2)), 400, field=field, what="bad item %d" % idx)
    check_eq(dec(h.spend_ok(a, "day", at=t)["cost_usd"]), Decimal("3"), "total after more rejections")


def test_bad_input(h):
    a = new_agent(tag="bad")
    t = int(time.time()) - 30
    accepted(h.hb(hb_obj(a, "1", hb_id(), ts=t)), 1, 0, "baseline")
    aj = json.dumps(a)
    now = int(time.time())
    others = []  # addresses that must stay unregistered

    def bad_agent():
        x = new_agent(tag="never")
        others.append(x)
        return x

    cases = [
        # (what, body, status, code, field)
        ("malformed JSON", '{"agent":%s,"metrics":{"cost_usd":1' % aj, 400, "invalid_json", None),
        ("trailing garbage", '{"agent":%s} x' % aj, 400, "invalid_json", None),
        ("not JSON at all", "hello", 400, "invalid_json", None),
        ("cost as string", '{"agent":%s,"metrics":{"cost_usd":"0.5"}}' % aj, 400, "invalid_field", "metrics.cost_usd"),
        ("cost as bool", '{"agent":%s,"metrics":{"cost_usd":true}}' % aj, 400, "invalid_field", "metrics.cost_usd"),
        ("tokens_in as string", '{"agent":%s,"metrics":{"tokens_in":"5"}}' % aj, 400, "invalid_field", "metrics.tokens_in"),
        ("negative count", '{"agent":%s,"metrics":{"llm_calls":-1}}' % aj, 400, "invalid_field", "metrics.llm_calls"),
        ("fractional count", '{"agent":%s,"metrics":{"tokens_out":1.5}}' % aj, 400, "invalid_field", "metrics.tokens_out"),
        ("negative cost", '{"agent":%s,"metrics":{"cost_usd":-1}}' % aj, 400, "invalid_field", "metrics.cost_usd"),
        ("NaN", '{"agent":%s,"metrics":{"cost_usd":NaN}}' % aj, 400, None, None),
        ("Infinity", '{"agent":%s,"metrics":{"cost_usd":Infinity}}' % aj, 400, None, None),
        ("-Infinity", '{"agent":%s,"metrics":{"cost_usd":-Infinity}}' % aj, 400, None, None),
        ("nan lowercase", '{"agent":%s,"metrics":{"cost_usd":nan}}' % aj, 400, None, None),
        ("NaN count", '{"agent":%s,"metrics":{"tokens_in":NaN}}' % aj, 400, None, None),
        ("1e400 cost", '{"agent":%s,"metrics":{"cost_usd":1e400}}' % aj, 400, "invalid_field", "metrics.cost_usd"),
        ("cost over 1e6", '{"agent":%s,"metrics":{"cost_usd":1000000.000000001}}' % aj, 400, "invalid_field", "metrics.cost_usd"),
        ("cost 1e6+1 as int", '{"agent":%s,"metrics":{"cost_usd":1000001}}' % aj, 400, "invalid_field", "metrics.cost_usd"),
        ("tokens 1e30", '{"agent":%s,"metrics":{"tokens_in":1e30}}' % aj, 400, "invalid_field", "metrics.tokens_in"),
        ("tokens 10^30 integer", '{"agent":%s,"metrics":{"tokens_in":1000000000000000000000000000000}}' % aj,
         400, "invalid_field", "metrics.tokens_in"),
        ("tokens 2^63", '{"agent":%s,"metrics":{"tokens_out":9223372036854775808}}' % aj, 400, "invalid_field", "metrics.tokens_out"),
        ("tokens -2^63-1", '{"agent":%s,"metrics":{"tokens_out":-9223372036854775809}}' % aj, 400, "invalid_field", "metrics.tokens_out"),
        ("latency NaN-ish 1e999", '{"agent":%s,"metrics":{"avg_latency_ms":1e999}}' % aj, 400, "invalid_field", "metrics.avg_latency_ms"),
        ("metrics not an object", '{"agent":%s,"metrics":[1]}' % aj, 400, "invalid_field", "metrics"),
        ("address without scheme", '{"agent":"org1/test/x","metrics":{"cost_usd":1}}', 400, "invalid_field", "agent"),
        ("address with 4 segments", '{"agent":"agent://org1/test/x/y","metrics":{"cost_usd":1}}', 400, "invalid_field", "agent"),
        ("address with empty segment", '{"agent":"agent://org1//x","metrics":{"cost_usd":1}}', 400, "invalid_field", "agent"),
        ("address with trailing slash", '{"agent":"agent://org1/test/x/","metrics":{"cost_usd":1}}', 400, "invalid_field", "agent"),
        ("address http scheme", '{"agent":"http://org1/test/x","metrics":{"cost_usd":1}}', 400, "invalid_field", "agent"),
        ("address with space", '{"agent":"agent://org1/test/a b","metrics":{"cost_usd":1}}', 400, "invalid_field", "agent"),
        ("address with ..", '{"agent":"agent://org1/../x","metrics":{"cost_usd":1}}', 400, "invalid_field", "agent"),
        ("agent not a string", '{"agent":5,"metrics":{"cost_usd":1}}', 400, "invalid_field", "agent"),
        ("NUL in id", '{"agent":%s,"id":"a\\u0000b","metrics":{"cost_usd":1}}' % aj, 400, "invalid_field", "id"),
        ("NUL in agent", '{"agent":"agent://org1/test/a\\u0000b","metrics":{"cost_usd":1}}', 400, "invalid_field", "agent"),
        ("NUL in intent_id", '{"agent":%s,"intent_id":"\\u0000","metrics":{"cost_usd":1}}' % aj, 400, "invalid_field", "intent_id"),
        ("control char in status", '{"agent":%s,"status":"a\\u0001","metrics":{"cost_usd":1}}' % aj, 400, "invalid_field", "status"),
        ("id too long", '{"agent":%s,"id":"%s","metrics":{"cost_usd":1}}' % (aj, "x" * 129), 400, "invalid_field", "id"),
        ("no agent with an admin key", '{"metrics":{"cost_usd":1}}', 400, "invalid_field", "agent"),
        ("another org's agent", hb_obj("agent://org2/test/" + a.rsplit("/", 1)[1], "1", hb_id()), 403, "forbidden_org", "agent"),
        ("ts 8 days ago", hb_obj(a, "1", hb_id(), ts=now - 8 * 86400), 400, "invalid_field", "ts"),
        ("ts 10 minutes ahead", hb_obj(a, "1", hb_id(), ts=now + 600), 400, "invalid_field", "ts"),
        ("ts not RFC 3339", hb_obj(a, "1", hb_id(), ts="2024-13-01T00:00:00Z"), 400, "invalid_field", "ts"),
        ("ts without zone", hb_obj(a, "1", hb_id(), ts=iso(now)[:-1]), 400, "invalid_field", "ts"),
        ("ts as number", '{"agent":%s,"ts":%d,"metrics":{"cost_usd":1}}' % (aj, now), 400, "invalid_field", "ts"),
        ("empty heartbeats array", '{"heartbeats":[]}', 400, "invalid_field", "heartbeats"),
        ("heartbeats not an array", '{"heartbeats":{}}', 400, "invalid_field", "heartbeats"),
        ("top-level array", "[%s]" % hb_obj(a, "1", hb_id()), 400, None, None),
        ("batch of 1001", batch([hb_obj(a, "1", hb_id(), ts=t) for _ in range(1001)]), 413, None, None),
    ]
    for what, body, status, code, field in cases:
        check_error(h.hb(body), status, code=code, field=field, what=what)

    # A batch mixing orgs is refused whole, naming the index.
    x = bad_agent()
    r = h.hb(batch([hb_obj(x, "1", hb_id(), ts=t), hb_obj("agent://org2/test/zz", "1", hb_id(), ts=t)]))
    check_error(r, 403, field="heartbeats[1].agent", what="batch with another org's agent")
    # Rejected requests register nothing.
    r = h.hb(hb_obj(bad_agent(), "1", hb_id(), ts=now + 600))
    check_error(r, 400, field="ts", what="future ts on a new agent")

    # Body over 1 MiB.
    big = '{"agent":%s,"status":"%s"}' % (aj, "x" * (1024 * 1024 + 10))
    check_error(h.hb(big), 413, what="body over 1 MiB")
    # Just over the limit in a valid batch shape.
    items = [hb_obj(a, "1", hb_id(), ts=t, pad="\"" + "p" * 1200 + "\"") for _ in range(900)]
    body = batch(items)
    check(len(body) > 1024 * 1024, "test body not over 1 MiB")
    check_error(h.hb(body), 413, what="batch body over 1 MiB")

    # Routing.
    r = h.request("GET", "/v1/nope", key=h.k1)
    check_error(r, 404, what="unknown path")
    r = h.request("GET", "/v1/mesh/heartbeat", key=h.k1)
    check_error(r, 405, what="GET heartbeat")
    check("POST" in r.headers.get("allow", ""), "405 without Allow: POST: %r" % r.headers)
    r = h.request("PUT", "/v1/keys", "{}", key=h.k1)
    check_error(r, 405, what="PUT /v1/keys")
    r = h.request("DELETE", "/v1/mesh/agents", key=h.k1)
    check_error(r, 405, what="DELETE agents")

    # Keys.
    r = h.request("POST", "/v1/mesh/heartbeat", hb_obj(a, "1", hb_id(), ts=t))
    check_error(r, 401, what="missing key")
    r = h.hb(hb_obj(a, "1", hb_id(), ts=t), key="nope-" + hb_id())
    check_error(r, 401, what="unknown key")
    r = h.hb(hb_obj(a, "1", hb_id(), ts=t), key="")
    check_error(r, 401, what="empty key")
    r = h.request("POST", "/v1/mesh/heartbeat", hb_obj(a, "1", hb_id(), ts=t),
                  headers={"Authorization": "Basic " + h.k1})
    check_error(r, 401, what="Authorization: Basic")
    r = h.request("GET", "/v1/mesh/agents", key="nope-" + hb_id())
    check_error(r, 401, what="unknown key on a read")
    r = h.spend(a, key="nope-" + hb_id())
    check_error(r, 401, what="unknown key on spend")
    # Bearer works.
    r = h.hb(hb_obj(a, "0.25", hb_id(), ts=t), bearer=True)
    accepted(r, 1, 0, "Authorization: Bearer")

    s = h.spend_ok(a, "day", at=t)
    check_eq(dec(s["cost_usd"]), Decimal("1.25"), "total after all the bad input")
    check_eq(s["heartbeats"], 2, "heartbeats after all the bad input")
    check_eq(h.psql("SELECT count(*) FROM heartbeats WHERE address = '%s'" % a), "2", "rows")
    for x in others + ["agent://org2/test/" + a.rsplit("/", 1)[1]]:
        check_eq(h.psql("SELECT count(*) FROM agents WHERE address = '%s'" % x), "0", "rejected agent %s registered" % x)
    check_eq(h.spend(others[0]).status, 404, "spend of a never-registered agent")


def test_negative_subnano_cost_rejected(h):
    """Money must be >= 0: a negative amount that rounds to 0 nanos is still negative (400)."""
    a = new_agent(tag="negtiny")
    t = int(time.time()) - 30
    accepted(h.hb(hb_obj(a, "1", hb_id(), ts=t)), 1, 0, "baseline")
    for cost in ("-0.0000000001", "-0.0000000004", "-1e-10"):
        r = h.hb(hb_obj(a, cost, hb_id(), ts=t))
        check_error(r, 400, code="invalid_field", field="metrics.cost_usd", what="cost_usd %s" % cost)
    s = h.spend_ok(a, "day", at=t)
    check_eq(s["heartbeats"], 1, "heartbeats (rejected requests must change nothing)")


def test_invalid_utf8_is_400(h):
    """A string field with invalid UTF-8 is a bad request (400), not a store failure (503)
    that a client retries forever -- and it must not fail other clients' heartbeats."""
    import threading
    a = new_agent(tag="utf8")
    t = int(time.time()) - 30
    accepted(h.hb(hb_obj(a, "1", hb_id(), ts=t)), 1, 0, "baseline")
    bad = ('{"agent":%s,"id":"%s","status":"ok\xff\xfe","ts":"%s","metrics":{"cost_usd":1}}'
           % (json.dumps(a), hb_id(), iso(t))).encode("latin-1")
    # Other clients writing at the same time must be unaffected.
    others = [new_agent(tag="utf8-bystander") for _ in range(4)]
    statuses = []
    lock = threading.Lock()

    def bystander(x):
        for _ in range(15):
            r = h.hb(batch([hb_obj(x, "0.01", hb_id(), ts=t) for _ in range(20)]))
            with lock:
                statuses.append(r.status)

    ths = [threading.Thread(target=bystander, args=(x,)) for x in others]
    for th in ths:
        th.start()
    bad_statuses = [h.hb(bad).status for _ in range(15)]
    for th in ths:
        th.join(30)
    r = h.hb(bad)
    check_error(r, 400, field="status", what="invalid UTF-8 in status (others saw %s)" % sorted(set(statuses)))
    check(all(s == 400 for s in bad_statuses), "invalid UTF-8 answered %s" % sorted(set(bad_statuses)))
    check_eq(sorted(set(statuses)), [202], "statuses of other clients' batches sent meanwhile")
    s = h.spend_ok(a, "day", at=t)
    check_eq((dec(s["cost_usd"]), s["heartbeats"]), (Decimal("1"), 1), "total after the bad request")
