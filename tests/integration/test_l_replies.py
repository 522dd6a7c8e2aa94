"""Every field of every reply, against what the test wrote (issue 11, "Tests that would have caught
these"): the counters of a heartbeat end to end, each agent's entry in a batch's 202, the agent
page's hour/today/month blocks and the state its cost limits give it, and one shape for
policy_breached whichever path records it."""

import time
from decimal import Decimal

from harness import (accepted, batch, check, check_eq, check_json, check_status, dec, enc, expected_spend, hb_id,
                     hb_obj, hour_start, day_start, iso, nanos, new_agent, parse_iso, money_members, outcomes_of, window_bounds,
                     COUNTERS)
from test_e_policies import (admitted, agent_view, away_from_boundary, check_breach, events_of, intent, policy_of,
                             put_policy, reached, register)


def items_of(address, hbs):
    """hbs [(ts, intent_id or None, metrics)] as heartbeat texts, each with its own id."""
    return [hb_obj(address, m["cost_usd"], hb_id(), ts=ts, intent=i, **{k: m[k] for k in COUNTERS if k in m})
            for ts, i, m in hbs]


def plain(hbs):
    """hbs as expected_spend takes them: (ts, metrics)."""
    return [(ts, m) for ts, _, m in hbs]


def cost_in(address, hbs, window, at):
    return expected_spend(address, plain(hbs), window, at)["cost_usd"]


def test_every_counter_end_to_end(h):
    """tokens_cached and tool_calls, like every other metric, reach the agent's spend and the intent's
    spend: each reply, field by field, is what the heartbeats add up to."""
    away_from_boundary(86400, 30)
    a = new_agent(tag="l-counters")
    x = "int-" + hb_id()
    now = int(time.time())
    t1, t2 = hour_start(now) - 2 * 3600 + 17, hour_start(now) - 3600 + 1234
    hbs = [(t1, x, {"cost_usd": "0.25", "tokens_in": 100, "tokens_out": 20, "tokens_cached": 70, "llm_calls": 2,
                    "tool_calls": 3}),
           (t2, x, {"cost_usd": "0.5", "tokens_in": 1, "tokens_out": 2, "tokens_cached": 5, "llm_calls": 1,
                    "tool_calls": 4}),
           (t2, None, {"cost_usd": "1", "tokens_cached": 1000, "tool_calls": 9})]
    # The intent becomes abandoned an hour (the default setting) after its last heartbeat: not within
    # seconds of now, so this test and the server agree on which side of it they are.
    gone = t2 + 3600
    if abs(time.time() - gone) < 5:
        time.sleep(gone + 5 - time.time())
    r = h.hb(batch(items_of(a, hbs)))
    check_status(r, 202, "heartbeats")
    check_json(r.json, {"accepted": 3, "duplicates": 0,
                        "agents": {a: {"state": "active", "cost_today_usd": cost_in(a, hbs, "day", now)}}}, "202")
    for window, at in (("hour", t1), ("hour", t2), ("day", t1), ("day", t2), ("week", now), ("month", now)):
        want = expected_spend(a, plain(hbs), window, at)
        lo, hi, _ = window_bounds(window, at)
        # The intent has not ended: its cost in the window is unfinished.
        want["outcomes"] = outcomes_of(want["cost_usd"], abandoned=int(lo <= gone < min(hi, time.time())),
                                       unfinished_spend=sum(Decimal(m["cost_usd"]) for ts, i, m in hbs
                                                            if i and lo <= ts < hi))
        check_json(h.spend_ok(a, window, at), want, "spend window=%s at=%s" % (window, iso(at)))
    r = h.request("GET", "/v1/mesh/intents/%s/spend?agent=%s" % (x, enc(a)), key=h.k1)
    check_status(r, 200, "intent spend")
    totals = {"cost_usd": Decimal("0.75"), "tokens_in": 101, "tokens_out": 22, "tokens_cached": 75,
              "llm_calls": 3, "tool_calls": 7, "heartbeats": 2, **money_members(Decimal("0.75"))}
    check_json(r.json, {"intent_id": x, "agent": a, "from": iso(hour_start(t1)), "to": iso(hour_start(t2) + 3600),
                        **totals, "parent_intent_id": None, "root_intent_id": x, "self": totals,
                        "tree": {"intents": 1, **totals}, "outcome": None, "abandoned": time.time() > gone},
               "intent spend")


def test_mixed_batch_names_each_agent(h):
    """One batch for agents in every state: the 202 has one entry per agent, each with its own state
    (active, blocked, killed, active over an alert policy) and today's cost; a resend answers the
    same entries with every heartbeat a duplicate."""
    away_from_boundary(86400, 30)
    now = int(time.time())
    yesterday = day_start(now) - 600
    free, capped, dead, alerting, old = (new_agent(tag="l-mixed-" + t)
                                         for t in ("free", "capped", "dead", "alert", "old"))
    for x in (capped, dead, alerting):
        register(h, x)
    put_policy(h, capped, '{"max_cost_per_day_usd": 1}')
    put_policy(h, alerting, '{"max_cost_per_day_usd": 1, "action_on_breach": "alert"}')
    check_status(h.request("POST", "/v1/mesh/agents/%s/kill" % enc(dead), key=h.k1), 200, "kill")
    sent = {free: [(now, None, {"cost_usd": "0.5"}), (yesterday, None, {"cost_usd": "7"})],
            capped: [(now, None, {"cost_usd": "0.6"}), (now, None, {"cost_usd": "0.4"})],
            dead: [(now, None, {"cost_usd": "0.3"})],
            alerting: [(now, None, {"cost_usd": "2"})],
            old: [(yesterday, None, {"cost_usd": "3"})]}
    items = [it for x, hbs in sent.items() for it in items_of(x, hbs)]
    items.insert(3, items[0])  # the first heartbeat again, in the same batch
    want = {"accepted": len(items) - 1, "duplicates": 1, "agents": {
        free: {"state": "active", "cost_today_usd": Decimal("0.5")},
        capped: {"state": "blocked", "cost_today_usd": Decimal(1)},
        dead: {"state": "killed", "cost_today_usd": Decimal("0.3")},
        alerting: {"state": "active", "cost_today_usd": Decimal(2)},
        old: {"state": "active", "cost_today_usd": Decimal(0)}}}
    for x, hbs in sent.items():
        check_eq(cost_in(x, hbs, "day", now), want["agents"][x]["cost_today_usd"], "the test's own sum for %s" % x)
    for attempt in ("", " sent again"):
        t0 = time.time()
        r = h.hb(batch(items))
        check_status(r, 202, "mixed batch" + attempt)
        # The agents with a cost limit have a forecast: $1 and $2 an hour (nothing the hour before), their
        # day's limit already reached: exhausted now.
        fcs = r.json.pop("forecasts", None)
        check(isinstance(fcs, dict) and sorted(fcs) == sorted([capped, alerting]), "forecasts: %.300r" % fcs)
        for x, burn in ((capped, 1), (alerting, 2)):
            check_eq(dec(fcs[x]["burn_rate_usd_per_hour"]), Decimal(burn), "burn of %s" % x)
            at = parse_iso(fcs[x]["exhaustion"]["max_cost_per_day_usd"])
            check(int(t0) <= at <= time.time() + 1, "%s exhausted now: %r" % (x, fcs[x]))
        check_json(r.json, want, "202 of the mixed batch" + attempt)
        want.update(accepted=0, duplicates=len(items))


def ours(events):
    """Events less health_changed, which the 15 s health sweep records on its own time (an agent that
    had a policy before its first heartbeat goes from unknown to healthy), exhaustion_predicted,
    whose burn rate and time follow the second of the heartbeat that predicted it (test_o_budgets
    checks it), and margin_negative, which the rollup worker records on its own time (cost without
    revenue turns the agent's day negative)."""
    return [e for e in events if e.get("event_type") not in ("health_changed", "exhaustion_predicted",
                                                              "margin_negative")]


def check_forecast(fc, address, hbs, policy, t0, t1, what):
    """An agent's forecast (burn over the last hour, each cost limit's exhaustion) as the server made it
    at some second in [t0, t1]: from the hbs sent, this hour's cost and the part of the previous hour's
    inside the last 60 minutes."""
    limits = [k for k in ("max_cost_per_hour_usd", "max_cost_per_day_usd", "max_cost_per_month_usd")
              if (policy or {}).get(k) is not None]
    if not limits:
        check_eq(fc, None, "%s: no forecast without a cost limit" % what)
        return
    check(isinstance(fc, dict) and sorted(fc) == ["burn_rate_usd_per_hour", "exhaustion"],
          "%s: forecast %.300r" % (what, fc))
    check_eq(sorted(fc["exhaustion"]), sorted(limits), "%s: the cost limits forecast" % what)
    burns = set()
    for t in range(int(t0), int(t1) + 2):
        this_h, prev_h = cost_in(address, hbs, "hour", t), cost_in(address, hbs, "hour", t - 3600)
        into = t % 3600
        burns.add((nanos(this_h) + nanos(prev_h) * (3600 - into) // 3600) / Decimal(10 ** 9))
    check(dec(fc["burn_rate_usd_per_hour"]) in burns, "%s: burn %s, want one of %s" % (what, fc["burn_rate_usd_per_hour"],
                                                                                      sorted(burns)))
    for k in limits:
        v = fc["exhaustion"][k]
        check(v is None or parse_iso(v) >= int(t0), "%s: %s runs out at %r" % (what, k, v))


def check_events(got, address, want, seen_from, what):
    """got (events of address, newest first) are want's {event_type, details} in any order (those of one
    heartbeat are recorded together), with ids and times of their own, all after seen_from."""
    check(isinstance(got, list) and all(isinstance(e, dict) for e in got), "%s: events %.300r" % (what, got))
    ids = [e.get("id") for e in got]
    check(all(type(i) is int for i in ids) and ids == sorted(set(ids), reverse=True),
          "%s: event ids not newest first: %r" % (what, ids))
    for e in got:
        check(seen_from <= parse_iso(e.get("ts")) <= time.time(), "%s: event time %r" % (what, e.get("ts")))
        check_eq(e.get("agent", address), address, "%s: event agent" % what)

    def order(e):
        return (e.get("event_type"), Decimal((e.get("details") or {}).get("threshold", 0)))
    check_json(sorted(({k: e.get(k) for k in e if k not in ("id", "ts", "agent")} for e in ours(got)), key=order),
               sorted(want, key=order), "%s: events" % what)


def wait_all_events(h, address, want, seen_from, what, secs=5):
    """Polls for as many events of address as want has (they are recorded after the replies), then
    checks them."""
    deadline = time.time() + secs
    got = events_of(h, address)
    while len(ours(got)) < len(want) and time.time() < deadline:
        time.sleep(0.1)
        got = events_of(h, address)
    check_events(got, address, want, seen_from, what)


def check_view(h, address, hbs, now, state, policy, events, seen_from, what, intents=0):
    """GET agent against what the test did: hbs sent (the last seen at `now`), `intents` admitted this
    hour, its policy and its events, all after seen_from."""
    t0 = time.time()
    v = agent_view(h, address)
    check_forecast(v.pop("forecast", None), address, hbs, policy, t0, time.time(), "%s: forecast" % what)
    check(seen_from <= parse_iso(v.get("last_heartbeat")) <= time.time(),
          "%s: last_heartbeat %r is not the time of this test's heartbeat" % (what, v.get("last_heartbeat")))
    check_events(v.get("recent_events"), address, events, seen_from, "%s: recent_events" % what)
    check_json({k: x for k, x in v.items() if k != "recent_events"},
               {"address": address, "health": "healthy", "last_heartbeat": v["last_heartbeat"], "state": state,
                "hour": {"cost_usd": cost_in(address, hbs, "hour", now), "intents": intents},
                "today": {"cost_usd": cost_in(address, hbs, "day", now), "intents": intents},
                "month": {"cost_usd": cost_in(address, hbs, "month", now)}, "policy": policy}, what)


def test_agent_view_every_field(h):
    """GET agent: the hour, today and month blocks from what was sent and admitted, and state blocked
    by an hourly cost limit, then by a monthly one while hour and day are under theirs."""
    away_from_boundary(3600, 30)
    seen_from = int(time.time())
    hr = new_agent(tag="l-view-hour")
    pol = policy_of(max_cost_per_hour_usd=Decimal(1), max_cost_per_day_usd=Decimal(100))
    put_policy(h, hr, '{"max_cost_per_hour_usd": 1, "max_cost_per_day_usd": 100}')
    events = [{"event_type": "policy_changed", "details": {"policy": pol}}]
    now = int(time.time())
    # The hour before (today, or yesterday just after midnight) and the day before (this month or the last).
    hbs = [(hour_start(now) - 1, None, {"cost_usd": "5"}), (day_start(now) - 1, None, {"cost_usd": "7"}),
           (now, None, {"cost_usd": "0.4"})]
    check_eq(accepted(h.hb(batch(items_of(hr, hbs))), 3, 0, "hbs")["agents"][hr]["state"], "active", "state")
    admitted(intent(h, hr), hr, "intent under the limits")
    check_view(h, hr, hbs, now, "active", pol, events, seen_from, "agent under its hourly limit", intents=1)
    hbs.append((now, None, {"cost_usd": "0.6"}))
    j = accepted(h.hb(batch(items_of(hr, hbs[-1:]))), 1, 0, "hb reaching the hourly limit")
    check_json(j["agents"][hr], {"state": "blocked", "cost_today_usd": cost_in(hr, hbs, "day", now)},
               "202 at the hourly limit")
    check_breach(intent(h, hr), "max_cost_per_hour_usd", "1", "1", 3600, "intent at the hourly limit")
    events += reached("max_cost_per_hour_usd", Decimal(1), Decimal(1))
    wait_all_events(h, hr, events, seen_from, "events of the agent at its hourly limit")
    check_view(h, hr, hbs, now, "blocked", pol, events, seen_from, "agent at its hourly limit", intents=1)

    mo = new_agent(tag="l-view-month")
    pol = policy_of(max_cost_per_hour_usd=Decimal(5), max_cost_per_day_usd=Decimal(5),
                    max_cost_per_month_usd=Decimal(2))
    put_policy(h, mo, '{"max_cost_per_hour_usd": 5, "max_cost_per_day_usd": 5, "max_cost_per_month_usd": 2}')
    hbs = [(now, None, {"cost_usd": "2"})]
    j = accepted(h.hb(batch(items_of(mo, hbs))), 1, 0, "hb reaching the monthly limit")
    check_json(j["agents"][mo], {"state": "blocked", "cost_today_usd": Decimal(2)}, "202 at the monthly limit")
    check_breach(intent(h, mo), "max_cost_per_month_usd", "2", "2", None, "intent at the monthly limit")
    events = ([{"event_type": "policy_changed", "details": {"policy": pol}}]
              + reached("max_cost_per_month_usd", Decimal(2), Decimal(2)))
    wait_all_events(h, mo, events, seen_from, "events of the agent at its monthly limit")
    check_view(h, mo, hbs, now, "blocked", pol, events, seen_from, "agent at its monthly limit")


def test_policy_breached_one_shape(h):
    """policy_breached is recorded by the heartbeat check and by admission (whichever sees the limit
    reached first in its window): the same details either way, from the limit and the values only."""
    away_from_boundary(86400, 30)
    seen_from = int(time.time())
    by_hb, by_admit, counted, alerting = (new_agent(tag="l-breach-" + t) for t in ("hb", "admit", "count", "alert"))
    limit = '{"max_cost_per_day_usd": 1}'
    changed = [{"event_type": "policy_changed", "details": {"policy": policy_of(max_cost_per_day_usd=Decimal(1))}}]
    put_policy(h, by_hb, limit)
    accepted(h.hb(hb_obj(by_hb, "1.5", hb_id())), 1, 0, "hb over the limit")
    wait_all_events(h, by_hb, changed + reached("max_cost_per_day_usd", Decimal(1), Decimal("1.5")), seen_from,
                    "limit found by the heartbeat check")
    # Spent before the policy: no heartbeat check sees the limit, the next intent does.
    register(h, by_admit, cost="1.5")
    put_policy(h, by_admit, limit)
    check_breach(intent(h, by_admit), "max_cost_per_day_usd", "1", "1.5", 86400, "intent over the limit")
    breach = reached("max_cost_per_day_usd", Decimal(1), Decimal("1.5"))[-1:]
    wait_all_events(h, by_admit, changed + breach, seen_from, "limit found by admission")
    # Once per window: the next heartbeat's check crosses the thresholds, and finds the breach recorded.
    accepted(h.hb(hb_obj(by_admit, "0.1", hb_id())), 1, 0, "hb after the breach")
    wait_all_events(h, by_admit, changed + breach + reached("max_cost_per_day_usd", Decimal(1), Decimal("1.6"))[:-1],
                    seen_from, "a heartbeat after admission found the limit")

    # An intent limit, blocking and alerting.
    intent_breach = {"event_type": "policy_breached",
                     "details": {"limit": "max_intents_per_day", "limit_value": 1, "current": 1}}
    put_policy(h, counted, {"max_intents_per_day": 1})
    admitted(intent(h, counted), counted, "the one intent")
    check_breach(intent(h, counted), "max_intents_per_day", 1, 1, 86400, "the second intent")
    wait_all_events(h, counted, [{"event_type": "policy_changed", "details": {"policy": policy_of(
        max_intents_per_day=1)}}, intent_breach], seen_from, "intent limit, blocking")
    put_policy(h, alerting, {"max_intents_per_day": 1, "action_on_breach": "alert"})
    for i in range(2):
        admitted(intent(h, alerting), alerting, "intent %d under an alert policy" % i)
    wait_all_events(h, alerting, [{"event_type": "policy_changed", "details": {"policy": policy_of(
        max_intents_per_day=1, action_on_breach="alert")}}, intent_breach], seen_from, "intent limit, alerting")
