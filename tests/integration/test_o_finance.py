"""Spend by run, session, workflow and customer, the most expensive units, money in and out (issue 14 items 1,
2 and 5): exact from the tail (worker idle) and from the rollup (worker running), across batches, retries and
out-of-order arrival; attributes inherited from the intent; margin with a refund and its event and webhook;
tenancy and validation."""

import json
import time
import uuid
from decimal import Decimal

from harness import (HookReceiver, accepted, batch, check, check_eq, check_error, check_json, check_status,
                     day_start, enc, expected_totals, granularity, hb_id, iso, new_agent, outcomes_of, parse_iso,
                     timeout,
                     window_bounds, MONEY)
from test_e_policies import away_from_boundary, create_agent_key

UNITS = ("run", "session", "workflow", "customer")


def uid(tag):
    return "%s-%s" % (tag, uuid.uuid4().hex[:12])


def hb(agent, ts, hid=None, intent=None, attrs=None, **metrics):
    """One heartbeat as a dict (money as text, sent as JSON numbers) and the (ts, metrics) the expectation
    helpers read."""
    body = {"agent": agent, "ts": iso(ts)}
    if hid:
        body["id"] = hid
    if intent:
        body["intent_id"] = intent
    body.update(attrs or {})
    if metrics:
        body["metrics"] = metrics
    return body


def body_text(items):
    """items (dicts from hb) as one batch, money as JSON numbers with the exact text given."""
    text = json.dumps({"heartbeats": items})
    for it in items:
        for k in ("cost_usd",) + MONEY:
            v = it.get("metrics", {}).get(k)
            if v is not None:
                text = text.replace('"%s": "%s"' % (k, v), '"%s": %s' % (k, v))
    return text


def send(h, items, want_acc, want_dup, what, key=None):
    return accepted(h.hb(body_text(items), key=key), want_acc, want_dup, what)


def unit_spend(h, by, uid_, window="day", at=None, key=None, status=200):
    q = "window=%s" % window + ("&at=%s" % iso(at) if at is not None else "")
    r = h.request("GET", "/v1/mesh/%ss/%s/spend?%s" % (by, enc(uid_), q), key=h.k1 if key is None else key)
    check_status(r, status, "%s %s spend" % (by, uid_))
    return r


def top(h, by, window="day", at=None, agent=None, limit=None, key=None, status=200):
    q = "by=%s&window=%s" % (by, window) + ("&at=%s" % iso(at) if at is not None else "")
    if agent:
        q += "&agent=" + enc(agent)
    if limit:
        q += "&limit=%d" % limit
    r = h.request("GET", "/v1/mesh/top?" + q, key=h.k1 if key is None else key)
    check_status(r, status, "top by %s" % by)
    return r


def metrics_of(items):
    """(ts, metrics) pairs for expected_totals; counters as ints, money as text."""
    return [(_ts(it), dict(it.get("metrics", {}))) for it in items]


def _ts(it):
    return parse_iso(it["ts"])


def expected_unit(by, id_, items, window, at):
    lo, hi, step = window_bounds(window, at)
    want = expected_totals(metrics_of(items), lo, hi, step,
                           {"by": by, "id": id_, "window": window, "from": iso(lo), "to": iso(hi),
                            "granularity": granularity(step)})
    want["agents"] = len({it["agent"] for it in items if lo <= _ts(it) < hi})
    # No intent of these tests ends: what their heartbeats cost in the window is unfinished.
    want["outcomes"] = outcomes_of(want["cost_usd"], unfinished_spend=sum(
        Decimal(it.get("metrics", {}).get("cost_usd", "0")) for it in items
        if it.get("intent_id") and lo <= _ts(it) < hi))
    return want


def settled_now():
    """Now, with a minute at least before the next hour: every window of a test stays the same."""
    away_from_boundary(3600, 60)
    return int(time.time())


def wait_rolled_up(h, secs=30):
    deadline = time.time() + secs
    while time.time() < deadline:
        if h.psql("SELECT count(*) FROM cm_rollup_tail()") == "0":
            return
        time.sleep(0.05)
    raise AssertionError("rows still past the watermark after %ss" % secs)


@timeout(120)
def test_units_exact_from_tail_and_rollup(h):
    """Two agents report one run, session, workflow and customer in several batches, with a retry of the
    same heartbeat ids and an earlier hour sent last. Every unit's spend (totals, series, margin) and top are
    exact with the worker idle (the tail) and after it rolled everything up (the rollup), and equal."""
    h.restart_server({"COSTMESH_ROLLUP_MS": "600000"})
    now = settled_now()
    a, b = new_agent(tag="fin"), new_agent(tag="fin")
    ids = {u: uid(u) for u in UNITS}
    attrs = {"run_id": ids["run"], "session_id": ids["session"], "workflow": ids["workflow"],
             "customer": ids["customer"]}
    other_run = uid("run")
    first = [hb(a, now - 10, hb_id(), attrs=attrs, cost_usd="0.25", revenue_usd="1.5", tokens_in=100, llm_calls=1),
             hb(b, now - 20, hb_id(), attrs=attrs, cost_usd="0.000000001", external_spend_usd="0.1", tool_calls=2)]
    second = [hb(a, now - 5, hb_id(), attrs=dict(attrs, run_id=other_run), cost_usd="7", fees_usd="0.03",
                 tokens_out=9),
              hb(b, now - 3600, hb_id(), attrs=attrs, cost_usd="2.5", refund_usd="0.5", tokens_cached=4)]
    send(h, first, 2, 0, "first batch")
    send(h, second, 2, 0, "second batch")
    send(h, first + second, 0, 4, "retry of both batches")
    late = [hb(a, now - 7200, hb_id(), attrs=attrs, cost_usd="0.125", revenue_usd="0.2")]
    send(h, late, 1, 0, "an earlier hour, sent last")
    mine = [x for x in first + second + late if x.get("run_id") != other_run]

    def replies():
        got = {}
        for u in UNITS:
            items = mine if u == "run" else first + second + late
            for window in ("hour", "day", "week", "month"):
                r = unit_spend(h, u, ids[u], window, now)
                check_json(r.json, expected_unit(u, ids[u], items, window, now),
                           "%s spend window=%s" % (u, window))
                got[(u, window)] = r.json
        t = top(h, "run", at=now).json
        runs = [x for x in t["top"] if x["id"] in (ids["run"], other_run)]
        check_eq([x["id"] for x in runs], [other_run, ids["run"]], "top runs, the most expensive first")
        check_eq(Decimal(str(runs[0]["cost_usd"])), Decimal("7"), "top run's cost")
        check_eq(Decimal(str(runs[0]["margin_usd"])), Decimal("-7.03"), "top run's margin")
        ta = top(h, "customer", at=now, agent=b).json
        check_eq([x["id"] for x in ta["top"]], [ids["customer"]], "agent b broken down by customer")
        want_b = [x for x in first + second + late if x["agent"] == b and day_start(now) <= _ts(x)]
        check_eq(Decimal(str(ta["top"][0]["cost_usd"])),
                 sum(Decimal(x["metrics"].get("cost_usd", "0")) for x in want_b), "agent b's part of the customer")
        got["top"], got["top_b"] = t, ta
        return got

    from_tail = replies()
    check(h.psql("SELECT count(*) FROM rollup_unit WHERE unit = '%s'" % ids["run"]) == "0",
          "nothing rolled up while the worker is idle")
    h.restart_server({"COSTMESH_ROLLUP_MS": "20"})
    wait_rolled_up(h)
    check(int(h.psql("SELECT count(*) FROM rollup_unit WHERE unit = '%s'" % ids["run"])) > 0, "run rolled up")
    from_rollup = replies()
    check_eq(from_rollup, from_tail, "replies from the rollup equal those from the tail")
    # The agent's own spend carries its money too.
    s = h.spend_ok(a, "day", now)
    mine_a = [x for x in first + second + late if x["agent"] == a and day_start(now) <= _ts(x)]
    check_eq(Decimal(str(s["margin_usd"])),
             sum(Decimal(x["metrics"].get("revenue_usd", "0")) - Decimal(x["metrics"].get("cost_usd", "0"))
                 - Decimal(x["metrics"].get("fees_usd", "0")) for x in mine_a), "agent a's margin today")
    h.restart_server()


@timeout(90)
def test_intent_attributes_are_inherited(h):
    """An intent admitted with run, session, workflow and customer: its heartbeats that omit them count in
    those units, field by field (one names its own session), before and after the worker."""
    h.restart_server({"COSTMESH_ROLLUP_MS": "600000"})
    now = settled_now()
    a = new_agent(tag="fin-inh")
    x, ids = uid("int"), {u: uid(u) for u in UNITS}
    r = h.request("POST", "/v1/mesh/intents", {"agent": a, "intent_id": x, "run_id": ids["run"],
                                                "session_id": ids["session"], "workflow": ids["workflow"],
                                                "customer": ids["customer"]}, key=h.k1)
    check_status(r, 201, "intent with attributes")
    own_session = uid("session")
    items = [hb(a, now - 1, hb_id(), intent=x, cost_usd="0.5", revenue_usd="2"),
             hb(a, now - 2, hb_id(), intent=x, attrs={"session_id": own_session}, cost_usd="0.25")]
    send(h, items, 2, 0, "heartbeats of the intent")
    for phase in ("tail", "rollup"):
        for u in UNITS:
            got = items if u != "session" else items[:1]
            check_json(unit_spend(h, u, ids[u], "day", now).json, expected_unit(u, ids[u], got, "day", now),
                       "%s inherited (%s)" % (u, phase))
        check_json(unit_spend(h, "session", own_session, "day", now).json,
                   expected_unit("session", own_session, items[1:], "day", now), "own session kept (%s)" % phase)
        r = h.request("GET", "/v1/mesh/intents/%s/spend?agent=%s" % (x, enc(a)), key=h.k1)
        check_status(r, 200, "intent spend")
        check_eq(Decimal(str(r.json["margin_usd"])), Decimal("1.25"), "intent's margin (%s)" % phase)
        if phase == "tail":
            h.restart_server({"COSTMESH_ROLLUP_MS": "20"})
            wait_rolled_up(h)
    h.restart_server()


@timeout(90)
def test_margin_with_refund_turns_negative_once(h):
    """revenue 1 - cost 0.4 is a margin of 0.6; a refund of 0.9 makes the day's margin -0.3: one
    margin_negative event per unit whose margin turned (the customer's among them), delivered to the
    webhook; a further loss the same day is no new event."""
    h.restart_server({"COSTMESH_ROLLUP_MS": "20"})
    rec = HookReceiver()
    try:
        # Deliveries other tests left pending for org2 go with its webhook, so ours is not queued behind them.
        h.request("DELETE", "/v1/mesh/webhook", key=h.k2)
        r = h.request("PUT", "/v1/mesh/webhook", {"url": rec.url(), "secret": "s-fin"}, key=h.k2)
        check_status(r, 200, "PUT webhook")
        now = settled_now()
        a, cust = new_agent(org="org2", tag="fin-m"), uid("customer")
        unpaid = uid("customer")
        send(h, [hb(a, now, hb_id(), attrs={"customer": cust}, cost_usd="0.4", revenue_usd="1"),
                 hb(a, now, hb_id(), attrs={"customer": unpaid}, cost_usd="0.2")], 2, 0, "sale, and unpaid work",
             key=h.k2)
        wait_rolled_up(h)
        s = unit_spend(h, "customer", cust, "day", now, key=h.k2).json
        check_eq((Decimal(str(s["revenue_usd"])), Decimal(str(s["margin_usd"]))), (Decimal(1), Decimal("0.6")),
                 "margin before the refund")
        send(h, [hb(a, now, hb_id(), attrs={"customer": cust}, refund_usd="0.9")], 1, 0, "refund", key=h.k2)
        s = unit_spend(h, "customer", cust, "day", now, key=h.k2).json
        check_eq((Decimal(str(s["refund_usd"])), Decimal(str(s["margin_usd"]))), (Decimal("0.9"), Decimal("-0.3")),
                 "margin after the refund")
        d = rec.wait(1, lambda j: j.get("event_type") == "margin_negative" and (j.get("details") or {}).get("id")
                     == cust, secs=30)
        check(d, "no margin_negative delivery for %s; events %s; deliveries %.600r" % (
            cust, h.psql("SELECT id, event_type, details FROM events WHERE org = 'org2' ORDER BY id DESC LIMIT 3"),
            h.request("GET", "/v1/mesh/webhook", key=h.k2).text))
        det = d[0][4]["details"]
        check_eq((det["by"], det["window"], Decimal(str(det["margin_usd"]))), ("customer", "day", Decimal("-0.3")),
                 "event details")
        r = h.request("GET", "/v1/mesh/events?event_type=margin_negative&agent=%s" % enc(a), key=h.k2)
        check_status(r, 200, "events")
        check_eq(len(r.json["events"]), 1, "the agent's own margin_negative event")
        send(h, [hb(a, now, hb_id(), attrs={"customer": cust}, cost_usd="1")], 1, 0, "further loss", key=h.k2)
        wait_rolled_up(h)
        time.sleep(0.5)
        n = h.psql("SELECT count(*) FROM events WHERE event_type = 'margin_negative' AND details->>'id' = '%s'"
                   % cust)
        check_eq(n, "1", "one event per turn")
        check_eq(unit_spend(h, "customer", unpaid, "day", now, key=h.k2).json["margin_usd"], Decimal("-0.2"),
                 "an unpaid customer's margin")
        check_eq(h.psql("SELECT count(*) FROM events WHERE details->>'id' = '%s'" % unpaid), "0",
                 "no margin event for a unit that earns nothing")
        check_eq(Decimal(str(unit_spend(h, "customer", cust, "day", now, key=h.k2).json["margin_usd"])),
                 Decimal("-1.3"), "margin after the further loss")
    finally:
        h.request("DELETE", "/v1/mesh/webhook", key=h.k2)
        rec.close()
    h.restart_server()


@timeout(60)
def test_tenancy_and_validation(h):
    """Another org's key sees nothing of a run (404, and no row in its top) and may not break down another
    org's agent (403); an agent key sees its own part of a run only; bad attributes are refused naming the
    field and change nothing."""
    now = settled_now()
    a, b = new_agent(tag="fin-t"), new_agent(tag="fin-t")
    run = uid("run")
    send(h, [hb(a, now, hb_id(), attrs={"run_id": run}, cost_usd="1"),
             hb(b, now, hb_id(), attrs={"run_id": run}, cost_usd="2")], 2, 0, "run of two agents")
    for u, id_ in (("run", run), ("customer", uid("nobody"))):
        check_error(unit_spend(h, u, id_, key=h.k2, status=404), 404, "%s_not_found" % u, what="org2 reads org1")
    check(all(x["id"] != run for x in top(h, "run", key=h.k2, limit=1000).json["top"]), "org2's top has org1's run")
    check_error(top(h, "run", agent=a, key=h.k2, status=403), 403, "forbidden_org", "agent", "breakdown of org1's agent")
    ka = create_agent_key(h, h.k1, a)
    s = unit_spend(h, "run", run, key=ka).json
    check_eq((Decimal(str(s["cost_usd"])), s["agents"]), (Decimal(1), 1), "agent key sees its part")
    check_eq([x["id"] for x in top(h, "agent", key=ka).json["top"]], [a], "agent key's top is itself")
    check_error(top(h, "run", agent=b, key=ka, status=403), 403, "forbidden_agent", "agent", "agent key, other agent")
    before = unit_spend(h, "run", run).json
    for field, value in (("customer", "c" * 129), ("run_id", "r\u0001"), ("workflow", 7), ("session_id", "s" * 129)):
        r = h.hb(body_text([hb(a, now, hb_id(), attrs={"run_id": run}, cost_usd="5"),
                            hb(a, now, hb_id(), attrs={field: value}, cost_usd="5")]))
        check_error(r, 400, "invalid_field", "heartbeats[1].%s" % field, "heartbeat with a bad %s" % field)
        r = h.request("POST", "/v1/mesh/intents", {"agent": a, field: value}, key=h.k1)
        check_error(r, 400, "invalid_field", field, "intent with a bad %s" % field)
    r = h.hb(body_text([hb(a, now, hb_id(), attrs={"run_id": run}, cost_usd="1", revenue_usd="-1")]))
    check_error(r, 400, "invalid_field", "heartbeats[0].metrics.revenue_usd", "negative revenue")
    check_eq(unit_spend(h, "run", run).json, before, "nothing changed by the refused requests")
    check_error(top(h, "model", status=400), 400, "invalid_field", "by", "top by an unknown unit")


@timeout(60)
def test_previous_release_worker_still_counts_units(h):
    """A worker of the release before migration 016 moves the watermark without summing the units (and
    without bumping gen): the trigger sums them in its transaction, so the run's spend is the same after
    the move, from the rollup alone, and nothing is counted twice when this release's worker runs."""
    h.restart_server({"COSTMESH_ROLLUP_MS": "600000"})
    now = settled_now()
    a, run = new_agent(tag="fin-old"), uid("run")
    items = [hb(a, now, hb_id(), attrs={"run_id": run}, cost_usd="0.5", revenue_usd="2"),
             hb(a, now - 60, hb_id(), attrs={"run_id": run}, cost_usd="0.25")]
    send(h, items, 2, 0, "heartbeats of the run")
    want = expected_unit("run", run, items, "day", now)
    check_json(unit_spend(h, "run", run, "day", now).json, want, "run spend from the tail")
    gen = h.psql("SELECT gen FROM rollup_watermark")
    # What the previous release's batch does to the watermark (server/rollup.c before 016).
    h.psql("UPDATE rollup_watermark SET lo = greatest(lo, pg_snapshot_xmin(pg_current_snapshot())::text::bigint),"
           " moved_at = now()")
    check_eq(h.psql("SELECT gen FROM rollup_watermark"), gen, "the old move left gen as it was")
    check_eq(h.psql("SELECT count(*) FROM cm_rollup_tail() WHERE run_id = '%s'" % run), "0", "rows past the tail")
    check_eq(h.psql("SELECT sum(cost_nanos)::text || ' ' || sum(revenue_nanos)::text FROM rollup_unit"
                    " WHERE kind = 'run' AND unit = '%s'" % run), "750000000 2000000000", "units summed by the trigger")
    check_json(unit_spend(h, "run", run, "day", now).json, want, "run spend from the rollup")
    h.restart_server({"COSTMESH_ROLLUP_MS": "20"})
    send(h, items[:1], 0, 1, "a retry after the move")
    wait_rolled_up(h)
    check_json(unit_spend(h, "run", run, "day", now).json, want, "run spend after this release's worker ran")
    h.restart_server()


@timeout(60)
def test_previous_release_worker_still_counts_tree(h):
    """Migration 018 extends cm_rollup_units(), which 016's trigger runs for an older worker's move: a
    heartbeat's edge, the outcome its status ends and its run's intent are summed by that move, once, and
    not again when this release's worker runs."""
    h.restart_server({"COSTMESH_ROLLUP_MS": "600000"})
    now = settled_now()
    a, run, x, parent = new_agent(tag="fin-old-tree"), uid("run"), uid("int"), uid("int")
    items = [hb(a, now, hb_id(), intent=x, attrs={"run_id": run, "parent_intent_id": parent, "status": "succeeded"},
                cost_usd="0.5"),
             hb(a, now - 60, hb_id(), intent=x, attrs={"run_id": run}, cost_usd="0.25")]
    send(h, items, 2, 0, "heartbeats of the intent")
    h.wait_persisted()  # redis mode: the move below sums the rows committed before it
    h.psql("UPDATE rollup_watermark SET lo = greatest(lo, pg_snapshot_xmin(pg_current_snapshot())::text::bigint),"
           " moved_at = now()")
    q = ("SELECT (SELECT parent_intent_id FROM intent_edge WHERE org = 'org1' AND intent_id = '{x}') || ' ' ||"
         " (SELECT status FROM intent_outcome WHERE org = 'org1' AND intent_id = '{x}') || ' ' ||"
         " (SELECT sum(cost_nanos)::text FROM rollup_unit_intent WHERE org = 'org1' AND kind = 'run'"
         " AND unit = '{r}' AND intent_id = '{x}')").format(x=x, r=run)
    want = "%s succeeded 750000000" % parent
    check_eq(h.psql(q), want, "edge, outcome and the run's intent summed by the trigger")
    h.restart_server({"COSTMESH_ROLLUP_MS": "20"})
    send(h, items[:1], 0, 1, "a retry after the move")
    wait_rolled_up(h)
    check_eq(h.psql(q), want, "not again after this release's worker ran")
    h.restart_server()
