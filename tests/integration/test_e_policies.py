"""Cost policies: limits, 429 with Retry-After, atomic admission (threads and two
replicas), alert mode, kill switch, idempotent intents, webhooks, Redis rebuild."""

import calendar
import http.server
import json
import threading
import time
import uuid
from decimal import Decimal

from harness import (PortView, Server, TestFailure, accepted, batch, check, check_eq, check_error, check_json,
                     check_status, check_webhook_signature, dec, enc, free_port, hb_id, hb_obj, hour_start, new_agent)


def timeout(seconds):
    def deco(fn):
        fn.timeout = seconds
        return fn
    return deco


DEFAULT_THRESHOLDS = [Decimal("0.5"), Decimal("0.75"), Decimal("0.9"), Decimal("1")]
LIMITS = ("max_intents_per_hour", "max_intents_per_day", "max_cost_per_hour_usd", "max_cost_per_day_usd",
          "max_cost_per_month_usd")


# ------------------------------------------------------------------ helpers

def policy_of(**fields):
    """A policy as GET answers it: these fields (money as Decimal), the other limits unlimited, and unless
    given, blocking with the default thresholds."""
    p = dict.fromkeys(LIMITS)
    p.update(max_cost_per_intent_tree_usd=None, action_on_breach="block", alert_thresholds=DEFAULT_THRESHOLDS)
    p.update(fields)
    return p


def policy_path(address):
    return "/v1/mesh/agents/%s/policies/cost" % enc(address)


def put_policy(h, address, body, key=None, what="PUT policy"):
    """body: raw JSON text (money kept as written) or a dict without money."""
    r = h.request("PUT", policy_path(address), body, key=h.k1 if key is None else key)
    check_status(r, 200, what)
    check(isinstance(r.json, dict), "%s: body not JSON: %.300r" % (what, r.text))
    return r.json


def watch_cost(h, address, key=None):
    """A cost limit nobody reaches, for a test that reads the agent's cost windows in Redis: in postgres mode
    the group commits keep them only while its policy has a limit (merge.lua)."""
    put_policy(h, address, '{"max_cost_per_month_usd": 1000000}', key=key, what="a cost limit for %s" % address)


def register(h, address, key=None, cost="0"):
    accepted(h.hb(hb_obj(address, cost, hb_id()), key=key), 1, 0, "registering heartbeat of %s" % address)


def intent(h, address, key=None, intent_id=None, idem=None, timeout=30):
    body = {"agent": address}
    if intent_id is not None:
        body["intent_id"] = intent_id
    hdrs = {"Idempotency-Key": idem} if idem else None
    return h.request("POST", "/v1/mesh/intents", body, key=h.k1 if key is None else key, headers=hdrs,
                     timeout=timeout)


def axme_intent(h, address, key=None):
    body = {"intent_type": "research.summarize", "to_agent": address, "payload": {"q": "x"},
            "correlation_id": "corr-" + uuid.uuid4().hex[:12]}
    return h.request("POST", "/v1/intents", body, key=h.k1 if key is None else key)


def admitted(r, address, what):
    check_status(r, 201, what)
    j = r.json
    check(isinstance(j, dict) and isinstance(j.get("intent_id"), str) and j["intent_id"],
          "%s: 201 without intent_id: %.300r" % (what, r.text))
    check_eq(j.get("agent"), address, "%s: agent in the 201" % what)
    return j["intent_id"]


def seconds_to_next(period, now=None):
    now = time.time() if now is None else now
    return (int(now) // period + 1) * period - now


def away_from_boundary(period, margin):
    """Sleeps past the next window boundary when it is closer than margin."""
    left = seconds_to_next(period)
    if left < margin:
        time.sleep(left + 1)


def last_hour_of(period_left):
    """Whether the current hour ends with a longer window that ends period_left seconds from now: then a
    breached hour limit and that window's limit end together, and the 429 names the lower limit
    (server/policy.h cm_policy_binding: on a tie the lower index, the hour's)."""
    return period_left <= seconds_to_next(3600) + 1


def seconds_to_next_month(now=None):
    now = time.time() if now is None else now
    y, m = time.gmtime(now)[:2]
    y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return calendar.timegm((y, m, 1, 0, 0, 0, 0, 0, 0)) - now


def check_agent_entry(j, address, state, cost_today, what):
    """A 202 (j) for heartbeats of one agent: its entry, and no other."""
    check_json(j.get("agents"), {address: {"state": state, "cost_today_usd": Decimal(cost_today)}},
               "agents of the 202 %s" % what)


def reached(limit, limit_value, current):
    """The events of a cost limit reached in one step: every default threshold crossed, then the breach."""
    mark = {"limit": limit, "limit_value": limit_value, "current": current}
    return ([{"event_type": "threshold_crossed", "details": dict(mark, threshold=t)} for t in DEFAULT_THRESHOLDS]
            + [{"event_type": "policy_breached", "details": mark}])


def check_breach(r, limit, limit_value, current, period, what):
    """A 429 cost_policy_breached naming `limit`, with exact values and a Retry-After to the window's end
    (period: 3600, 86400, or None for the calendar month)."""
    # The server's "now" lies between the request's sending and this check: a slow answer (a rebuild on
    # demand, a sanitizer build) widens the range, never moves it.
    to_end = (lambda t: seconds_to_next(period, t)) if period else seconds_to_next_month
    latest, earliest = to_end(r.sent_at), to_end(time.time())
    e = check_error(r, 429, "cost_policy_breached", what=what)
    check_eq(e.get("limit"), limit, "%s: error.limit" % what)
    check_eq(dec(e.get("limit_value")), Decimal(limit_value), "%s: error.limit_value" % what)
    check_eq(dec(e.get("current")), Decimal(current), "%s: error.current" % what)
    if "intents" in limit:
        check(isinstance(e.get("limit_value"), int) and isinstance(e.get("current"), int),
              "%s: intent counts must be integers: %.300r" % (what, r.text))
    ra = r.headers.get("retry-after")
    check(ra is not None and ra.isdigit(), "%s: Retry-After header missing or not whole seconds: %r" % (what, ra))
    check(earliest - 2 <= int(ra) <= latest + 2, "%s: Retry-After %s, want %.0f to %.0f (end of the window)"
          % (what, ra, earliest, latest))
    check_eq(e.get("retry_after_s"), int(ra), "%s: error.retry_after_s vs the Retry-After header" % what)
    return e


def agent_view(h, address, key=None):
    r = h.request("GET", "/v1/mesh/agents/%s" % enc(address), key=h.k1 if key is None else key)
    check_status(r, 200, "GET agent %s" % address)
    check(isinstance(r.json, dict), "agent view not JSON: %.300r" % r.text)
    return r.json


def agents_list(h, query, key=None):
    r = h.request("GET", "/v1/mesh/agents" + query, key=h.k1 if key is None else key)
    check_status(r, 200, "GET /v1/mesh/agents%s" % query)
    check(isinstance(r.json, dict) and isinstance(r.json.get("agents"), list), "agent list shape: %.300r" % r.text)
    return r.json["agents"]


def events_of(h, address, event_type=None, key=None):
    q = "?limit=1000" + ("&event_type=" + event_type if event_type else "")
    r = h.request("GET", "/v1/mesh/events" + q, key=h.k1 if key is None else key)
    check_status(r, 200, "GET events")
    check(isinstance(r.json, dict) and isinstance(r.json.get("events"), list), "events shape: %.300r" % r.text)
    evs = r.json["events"]
    check(all(isinstance(e.get("id"), int) for e in evs), "event ids are not integers")
    if event_type:
        check(all(e.get("event_type") == event_type for e in evs), "event_type filter let others through")
    return [e for e in evs if e.get("agent") == address]


def wait_events(h, address, event_type, n=1, secs=5, key=None):
    deadline = time.time() + secs
    evs = []
    while time.time() < deadline:
        evs = events_of(h, address, event_type, key=key)
        if len(evs) >= n:
            return evs
        time.sleep(0.1)
    raise TestFailure("want >= %d %s event(s) for %s within %ss, got %d" % (n, event_type, address, secs, len(evs)))


def create_agent_key(h, key, address):
    r = h.request("POST", "/v1/keys", {"role": "agent", "name": "pol-" + hb_id(), "agent": address}, key=key)
    check_status(r, 201, "create agent key")
    return r.json["key"]


def run_concurrently(fns):
    """Runs each fn in its own thread, released together; returns their results in order."""
    out = [None] * len(fns)
    barrier = threading.Barrier(len(fns))

    def body(i, fn):
        try:
            barrier.wait(20)
        except threading.BrokenBarrierError:
            pass
        try:
            out[i] = fn()
        except Exception as e:  # noqa: BLE001
            out[i] = e

    ths = [threading.Thread(target=body, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(60)
    return out


def statuses(results):
    return [r.status if hasattr(r, "status") else repr(r) for r in results]


# ------------------------------------------------------------------ tests

def test_policy_put_get_delete_axme_body(h):
    a = new_agent(tag="pol-crud")
    register(h, a)
    check_error(h.request("GET", policy_path(a), key=h.k1), 404, "policy_not_found", what="GET before any PUT")
    # The AXME SDK's body, byte for byte.
    body = '{"max_intents_per_day": 500, "max_cost_per_day_usd": 50.00, "max_intents_per_hour": 100, ' \
           '"action_on_breach": "block"}'
    r = h.request("PUT", policy_path(a), body, key=h.k1)
    check_status(r, 200, "PUT AXME policy")
    p = r.json
    check_json(p, policy_of(max_intents_per_day=500, max_cost_per_day_usd=Decimal(50), max_intents_per_hour=100),
               "PUT reply")
    g = h.request("GET", policy_path(a), key=h.k1)
    check_status(g, 200, "GET policy")
    check_eq(g.json, p, "GET answers what PUT answered")
    # It is the agent's view too.
    check_eq(agent_view(h, a).get("policy"), p, "GET agent .policy")
    # An agent key may read it.
    ak = create_agent_key(h, h.k1, a)
    g = h.request("GET", policy_path(a), key=ak)
    check_status(g, 200, "GET policy with the agent's own key")
    # PUT replaces: absent limits go back to unlimited.
    p2 = put_policy(h, a, '{"max_cost_per_month_usd": 123.456789, "action_on_breach": "alert",'
                          ' "alert_thresholds": [0.25, 1]}', what="replacing PUT")
    check_json(p2, policy_of(max_cost_per_month_usd=Decimal("123.456789"), action_on_breach="alert",
                             alert_thresholds=[Decimal("0.25"), Decimal(1)]), "PUT reply after replace")
    check_eq(h.request("GET", policy_path(a), key=h.k1).json, p2, "GET after replace")
    d = h.request("DELETE", policy_path(a), key=h.k1)
    check_status(d, 204, "DELETE policy")
    check_eq(d.text, "", "204 has no body")
    check_error(h.request("GET", policy_path(a), key=h.k1), 404, "policy_not_found", what="GET after DELETE")
    check_error(h.request("DELETE", policy_path(a), key=h.k1), 404, "policy_not_found", what="second DELETE")
    check_eq(agent_view(h, a).get("policy", "absent"), None, "GET agent .policy after DELETE")
    check_json([e["details"] for e in events_of(h, a, "policy_changed")],
               [{"policy": None}, {"policy": p2}, {"policy": p}],
               "policy_changed events, newest first (each recorded before its answer)")


def test_cost_breach_blocks_with_retry_after(h):
    away_from_boundary(86400, 30)
    a = new_agent(tag="pol-cost")
    register(h, a)
    put_policy(h, a, '{"max_intents_per_day": 500, "max_cost_per_day_usd": 50.00, "max_intents_per_hour": 100,'
                     ' "action_on_breach": "block"}')
    j = accepted(h.hb(hb_obj(a, "30.07", hb_id())), 1, 0, "hb 30.07")
    check_agent_entry(j, a, "active", "30.07", "under the limit")
    j = accepted(h.hb(hb_obj(a, "19.929999999", hb_id())), 1, 0, "hb to 49.999999999")
    check_agent_entry(j, a, "active", "49.999999999", "one nano under the limit")
    admitted(intent(h, a), a, "intent one nano under the limit")
    j = accepted(h.hb(hb_obj(a, "0.120000001", hb_id())), 1, 0, "hb to 50.12")
    check_agent_entry(j, a, "blocked", "50.12", "once the limit is reached")
    r = intent(h, a)
    check_breach(r, "max_cost_per_day_usd", "50", "50.12", 86400, "intent over the day cost limit")
    check_breach(axme_intent(h, a), "max_cost_per_day_usd", "50", "50.12", 86400, "AXME intent over the limit")
    # Heartbeats are never refused, and say blocked.
    j = accepted(h.hb(hb_obj(a, "0.01", hb_id())), 1, 0, "heartbeat while blocked")
    check_agent_entry(j, a, "blocked", "50.13", "while blocked")
    check_breach(intent(h, a), "max_cost_per_day_usd", "50", "50.13", 86400, "intent after more spend")
    v = agent_view(h, a)
    check_eq(v.get("state"), "blocked", "GET agent state")
    check_eq(dec(v["today"]["cost_usd"]), Decimal("50.13"), "GET agent today.cost_usd")
    check_eq(v["today"]["intents"], 1, "GET agent today.intents (refused intents do not count)")
    # Both the hour (intents) and the day (cost) breached: the day binds, unless this is the day's last hour.
    put_policy(h, a, '{"max_intents_per_hour": 1, "max_cost_per_day_usd": 50, "action_on_breach": "block"}')
    if last_hour_of(seconds_to_next(86400)):
        check_breach(intent(h, a), "max_intents_per_hour", "1", "1", 3600, "hour and day breached, ending together")
    else:
        check_breach(intent(h, a), "max_cost_per_day_usd", "50", "50.13", 86400, "hour and day breached")
    # Raising the limit unblocks at once.
    put_policy(h, a, '{"max_cost_per_day_usd": 50.130000001}')
    admitted(intent(h, a), a, "intent after raising the limit")
    j = accepted(h.hb(hb_obj(a, "0.000000001", hb_id())), 1, 0, "hb reaching the raised limit")
    check_agent_entry(j, a, "blocked", "50.130000001", "at the raised limit")
    check_breach(intent(h, a), "max_cost_per_day_usd", "50.130000001", "50.130000001", 86400, "raised limit")


def test_limits_count_spend_from_before_them(h):
    """Spend reported before an agent had any limit counts once it gets one: with a cost limit, the first
    intent after the PUT is refused with the day's whole cost; with an intents limit only, a refusal's burn
    rate is the hour's whole spend. In postgres mode the group commits leave an agent's windows out of Redis
    while its policy has no limit (merge.lua); the PUT that sets one reads them back from PostgreSQL before it
    answers."""
    away_from_boundary(3600, 30)
    a, b = new_agent(tag="pol-before-cost"), new_agent(tag="pol-before-count")
    accepted(h.hb(batch([hb_obj(a, "5", hb_id()), hb_obj(b, "3.5", hb_id())])), 2, 0, "spend before any policy")
    if not h.durable_redis:
        got = h.redis("HGET", "cm:%s:h:%d" % (a, hour_start(time.time())), "cost")
        check(got in ("", None), "a window kept for an agent without a limit: %r" % got)
    put_policy(h, a, '{"max_cost_per_day_usd": 5, "action_on_breach": "block"}')
    check_breach(intent(h, a), "max_cost_per_day_usd", "5", "5", 86400, "the first intent after a cost limit")
    j = accepted(h.hb(hb_obj(a, "0.25", hb_id())), 1, 0, "a heartbeat after the limit")
    check_agent_entry(j, a, "blocked", "5.25", "a heartbeat after the limit")
    put_policy(h, b, '{"max_intents_per_hour": 1, "action_on_breach": "block"}')
    admitted(intent(h, b), b, "the hour's one intent")
    r = intent(h, b)
    check_breach(r, "max_intents_per_hour", "1", "1", 3600, "the hour's second intent")
    check_eq(dec(r.json["error"]["forecast"]["burn_rate_usd_per_hour"]), Decimal("3.5"),
             "the refusal's burn rate: the hour's spend, from before the limit")


def test_hourly_intent_limit(h):
    away_from_boundary(3600, 20)
    a = new_agent(tag="pol-hour")
    register(h, a)
    put_policy(h, a, {"max_intents_per_hour": 3, "action_on_breach": "block"})
    ids = [admitted(intent(h, a), a, "intent %d of 3" % (i + 1)) for i in range(3)]
    check_eq(len(set(ids)), 3, "generated intent ids are distinct")
    check_breach(intent(h, a), "max_intents_per_hour", 3, 3, 3600, "4th intent in the hour")
    check_breach(axme_intent(h, a), "max_intents_per_hour", 3, 3, 3600, "AXME 4th intent in the hour")
    v = agent_view(h, a)
    check_eq((v["hour"]["intents"], v["today"]["intents"]), (3, 3), "hour/today intents after refusals")
    check_eq(v["state"], "blocked", "state at the hourly intent limit")
    j = accepted(h.hb(hb_obj(a, "0.01", hb_id())), 1, 0, "hb at the intent limit")
    check_agent_entry(j, a, "blocked", "0.01", "at the intent limit")


def test_concurrent_admission_exact(h):
    away_from_boundary(86400, 30)
    a = new_agent(tag="pol-conc")
    register(h, a)
    put_policy(h, a, {"max_intents_per_day": 10, "action_on_breach": "block"})
    res = run_concurrently([lambda i=i: intent(h, a, intent_id="c-%d-%s" % (i, uuid.uuid4().hex[:8]))
                            for i in range(80)])
    st = statuses(res)
    check_eq((st.count(201), st.count(429)), (10, 70), "(201, 429) of 80 concurrent intents, limit 10; all: %s"
             % sorted(set(map(str, st))))
    for r in res:
        if r.status == 429:
            e = r.error()
            check_eq((e.get("limit"), e.get("current")), ("max_intents_per_day", 10), "429 limit/current")
    v = agent_view(h, a)
    check_eq(v["today"]["intents"], 10, "today.intents")
    lst = [x for x in agents_list(h, "?limit=1000") if x.get("address") == a]
    check(lst, "agent missing from the list")
    check_eq((lst[0].get("intents_today"), lst[0].get("state")), (10, "blocked"), "list intents_today/state")


def test_concurrent_same_intent_id(h):
    """Intents recorded in one group commit (intent_log.c): the same intent_id from two agents of one org
    at once belongs to one of them; its repeats are that one intent, counted once; the other agent gets 409."""
    away_from_boundary(86400, 30)
    a, b = new_agent(tag="pol-same-a"), new_agent(tag="pol-same-b")
    register(h, a)
    register(h, b)
    iid = "same-" + uuid.uuid4().hex[:12]
    # An Idempotency-Key of its own per request, so that the id's repeats reach the record (without one,
    # the intent_id is the key and a repeat still in flight is refused by Redis first).
    res = run_concurrently([lambda i=i: intent(h, a if i % 2 else b, intent_id=iid, idem=uuid.uuid4().hex)
                            for i in range(20)])
    st = statuses(res)
    by = {x: [r.status for i, r in enumerate(res) if (a if i % 2 else b) == x] for x in (a, b)}
    owner = a if 201 in by[a] else b
    other = b if owner == a else a
    check_eq((by[owner], by[other]), ([201] * 10, [409] * 10), "statuses of the owner and the other agent; all: %s" % st)
    for i, r in enumerate(res):
        if r.status == 201:
            check_json(r.json, {"intent_id": iid, "agent": owner}, "201 body")
        else:
            check_error(r, 409, "intent_id_in_use", "intent_id", "409 body")
    check_eq((agent_view(h, owner)["today"]["intents"], agent_view(h, other)["today"]["intents"]), (1, 0),
             "today.intents of the owner and the other")
    check_eq(h.psql("SELECT count(*) FROM intents WHERE intent_id = '%s'" % iid), "1", "intents rows with that id")


@timeout(90)
def test_two_replicas_admit_exactly(h):
    away_from_boundary(86400, 40)
    a = new_agent(tag="pol-repl")
    register(h, a)
    put_policy(h, a, {"max_intents_per_day": 7, "action_on_breach": "block"})
    view = PortView(h, free_port())
    second = Server(view, h.server.admin_key, h.server.org)
    second.start()
    try:
        # The second replica serves the same org data.
        check_status(view.request("GET", policy_path(a), key=h.k1), 200, "policy through the second replica")
        fns = []
        for i in range(40):
            tgt = h if i % 2 == 0 else view
            fns.append(lambda tgt=tgt: tgt.request("POST", "/v1/mesh/intents", {"agent": a}, key=h.k1))
        res = run_concurrently(fns)
        st = statuses(res)
        by = {}
        for i, s in enumerate(st):
            by.setdefault(i % 2, []).append(s)
        check_eq((st.count(201), st.count(429)), (7, 33),
                 "(201, 429) of 40 intents over two replicas, limit 7; first: %s, second: %s" % (by[0], by[1]))
    finally:
        problems = second.stop()
    check(not problems, "second replica stop: %s" % "; ".join(problems))
    check_eq(agent_view(h, a)["today"]["intents"], 7, "today.intents")


def test_alert_mode_never_refuses(h):
    a = new_agent(tag="pol-alert")
    register(h, a)
    put_policy(h, a, '{"max_cost_per_day_usd": 1, "max_intents_per_day": 2, "action_on_breach": "alert"}')
    j = accepted(h.hb(hb_obj(a, "1.5", hb_id())), 1, 0, "hb over the cost limit")
    check_agent_entry(j, a, "active", "1.5", "over an alert policy (it never blocks)")
    for i in range(5):
        admitted(intent(h, a), a, "intent %d over an alert policy" % (i + 1))
    admitted(axme_intent(h, a), a, "AXME intent over an alert policy")
    v = agent_view(h, a)
    check_eq(v["state"], "active", "GET agent state under alert")
    check_eq(v["today"]["intents"], 6, "today.intents under alert")
    evs = wait_events(h, a, "policy_breached", 2)
    check_json(sorted((e["details"] for e in evs), key=lambda d: d.get("limit")),
               [{"limit": "max_cost_per_day_usd", "limit_value": Decimal(1), "current": Decimal("1.5")},
                {"limit": "max_intents_per_day", "limit_value": 2, "current": 2}],
               "policy_breached events of both limits (the third intent found 2 admitted)")


def test_kill_resume(h):
    a = new_agent(tag="pol-kill")
    register(h, a)
    admitted(intent(h, a), a, "intent before kill")
    base = "/v1/mesh/agents/%s" % enc(a)
    ak = create_agent_key(h, h.k1, a)
    check_error(h.request("POST", base + "/kill", key=ak), 403, what="agent key killing")
    r = h.request("POST", base + "/kill", key=h.k1)
    check_status(r, 200, "kill")
    check_eq((r.json.get("address"), r.json.get("state"), r.json.get("killed")), (a, "killed", True), "kill reply")
    check_error(intent(h, a), 403, "agent_killed", what="intent of a killed agent")
    check_error(axme_intent(h, a), 403, "agent_killed", what="AXME intent of a killed agent")
    check_error(intent(h, a, key=ak), 403, "agent_killed", what="intent of a killed agent with its own key")
    accepted(h.hb(hb_obj(a, "0.25", hb_id())), 1, 0, "heartbeat of a killed agent")
    killed = [x["address"] for x in agents_list(h, "?health=killed&limit=1000")]
    check(a in killed, "health=killed does not list the killed agent")
    check(all(x.get("state") == "killed" for x in agents_list(h, "?health=killed&limit=1000")),
          "health=killed lists agents not in state killed")
    v = agent_view(h, a)
    check_eq((v.get("state"), v.get("health")), ("killed", "killed"), "GET agent of a killed agent")
    check_eq(dec(v["today"]["cost_usd"]), Decimal("0.25"), "killed agent's heartbeat was recorded")
    r = h.request("POST", base + "/resume", key=h.k1)
    check_status(r, 200, "resume")
    check_eq((r.json.get("address"), r.json.get("state"), r.json.get("killed")), (a, "active", False), "resume reply")
    admitted(intent(h, a), a, "intent after resume")
    check(a not in [x["address"] for x in agents_list(h, "?health=killed&limit=1000")],
          "resumed agent still listed as killed")
    check_eq(agent_view(h, a)["state"], "active", "state after resume")
    k = wait_events(h, a, "agent_killed")
    rs = wait_events(h, a, "agent_resumed")
    check_eq((len(k), len(rs)), (1, 1), "one agent_killed, one agent_resumed")
    check(rs[0]["id"] > k[0]["id"], "agent_resumed is newer than agent_killed")
    mixed = [e["event_type"] for e in events_of(h, a) if e["event_type"] in ("agent_killed", "agent_resumed")]
    check_eq(sorted(mixed), ["agent_killed", "agent_resumed"], "unfiltered events of the agent")
    recent = [e.get("event_type") for e in agent_view(h, a).get("recent_events", [])]
    check("agent_killed" in recent and "agent_resumed" in recent, "recent_events of the agent: %r" % recent)
    ghost = new_agent(tag="pol-ghost")
    check_error(h.request("POST", "/v1/mesh/agents/%s/kill" % enc(ghost), key=h.k1), 404, what="kill unknown")
    check_error(h.request("POST", "/v1/mesh/agents/%s/resume" % enc(ghost), key=h.k1), 404, what="resume unknown")


def test_idempotent_intent(h):
    away_from_boundary(86400, 30)
    a = new_agent(tag="pol-idem")
    register(h, a)
    put_policy(h, a, {"max_intents_per_day": 2, "action_on_breach": "block"})
    key = "idem-" + uuid.uuid4().hex
    r1 = intent(h, a, idem=key)
    id1 = admitted(r1, a, "first intent with the key")
    r2 = intent(h, a, idem=key)
    id2 = admitted(r2, a, "repeat with the same key")
    check_eq(id2, id1, "repeat answers the first intent_id")
    # Even with another body the first answer comes back.
    r3 = intent(h, a, intent_id="other-" + uuid.uuid4().hex[:8], idem=key)
    check_eq((r3.status, r3.json.get("intent_id")), (201, id1), "repeat with another body")
    check_eq(agent_view(h, a)["today"]["intents"], 1, "intents counted once")
    admitted(intent(h, a), a, "second distinct intent")
    check_breach(intent(h, a), "max_intents_per_day", 2, 2, 86400, "third distinct intent")
    r4 = intent(h, a, idem=key)
    check_eq((r4.status, r4.json.get("intent_id")), (201, id1), "repeat after the limit: still the first answer")
    # A refused answer is remembered too.
    k429 = "idem429-" + uuid.uuid4().hex
    check_breach(intent(h, a, idem=k429), "max_intents_per_day", 2, 2, 86400, "refused intent with a key")
    put_policy(h, a, {"max_intents_per_day": 100, "action_on_breach": "block"})
    check_breach(intent(h, a, idem=k429), "max_intents_per_day", 2, 2, 86400, "repeat of a refused key")
    check_eq(agent_view(h, a)["today"]["intents"], 2, "intents after all repeats")
    # Keys are per org: the same key in org2 is a new admission.
    b = new_agent(org="org2", tag="pol-idem2")
    register(h, b, key=h.k2)
    rb = intent(h, b, key=h.k2, idem=key)
    idb = admitted(rb, b, "same key in another org")
    check(idb != id1, "another org's key answered this org's intent")


@timeout(30)
def test_idempotency_key_after_its_replica_died(h):
    """A replica killed after recording an intent and before answering leaves
    the key's in-flight mark in Redis: retries get 409 until it expires (30 s
    at most), then the same intent id, counted once."""
    a = new_agent(tag="pol-idem-dead")
    register(h, a)
    key = "idem-" + uuid.uuid4().hex
    id1 = admitted(intent(h, a, idem=key), a, "first intent with the key")
    # The state the dead replica left: recorded in PostgreSQL, counted in
    # Redis, the answer never remembered.
    h.redis("SET", "cm:i:%s:%s" % (a, key), "pending", "EX", 2)
    check_error(intent(h, a, idem=key), 409, "idempotency_key_in_use", what="retry while the mark lasts")
    time.sleep(2.2)
    check_eq(admitted(intent(h, a, idem=key), a, "retry once the mark expired"), id1, "the same intent id")
    check_eq(agent_view(h, a)["today"]["intents"], 1, "counted once in Redis")
    check_eq(h.psql("SELECT count(*) FROM intents WHERE address = '%s'" % a), "1", "recorded once")


@timeout(90)
def test_webhook_threshold_delivery(h):
    away_from_boundary(86400, 60)
    got = []
    failed = []
    lock = threading.Lock()

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n)
            with lock:
                got.append((time.time(), self.path, dict((k.lower(), v) for k, v in self.headers.items()), raw))
                # The first threshold_crossed delivery fails; every other one is taken.
                fail = b"threshold_crossed" in raw and not failed
                if fail:
                    failed.append(raw)
            self.send_response(500 if fail else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    port = srv.server_address[1]
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    secret = "s3cret"
    try:
        url = "http://127.0.0.1:%d/hook" % port
        r = h.request("PUT", "/v1/mesh/webhook", {"url": url, "secret": secret}, key=h.k2)
        check_status(r, 200, "PUT webhook")
        check_eq((r.json.get("url"), r.json.get("secret_set")), (url, True), "PUT webhook reply")
        check("s3cret" not in r.text, "PUT webhook reply shows the secret")
        g = h.request("GET", "/v1/mesh/webhook", key=h.k2)
        check_status(g, 200, "GET webhook")
        check_eq(g.json.get("url"), url, "GET webhook url")
        check("s3cret" not in g.text and "secret" not in g.json, "GET webhook shows the secret: %.200r" % g.text)
        a = new_agent(org="org2", tag="pol-hook")
        register(h, a, key=h.k2)
        put_policy(h, a, '{"max_cost_per_day_usd": 1, "alert_thresholds": [0.5, 1]}', key=h.k2)

        def mine(kind=None, thr=None):
            out = []
            with lock:
                items = list(got)
            for t, path, hdrs, raw in items:
                try:
                    j = json.loads(raw, parse_float=Decimal)
                except ValueError:
                    raise TestFailure("webhook body is not JSON: %.200r" % raw)
                if j.get("agent") != a:
                    continue
                if kind and j.get("event_type") != kind:
                    continue
                if thr is not None and (j.get("details") or {}).get("threshold") != thr:
                    continue
                out.append((t, path, hdrs, raw, j))
            return out

        def wait_for(n, kind, thr, secs):
            deadline = time.time() + secs
            while time.time() < deadline:
                m = mine(kind, thr)
                if len(m) >= n:
                    return m
                time.sleep(0.05)
            return mine(kind, thr)

        accepted(h.hb(hb_obj(a, "0.3", hb_id()), key=h.k2), 1, 0, "hb 0.3 (under 0.5)")
        t_cross = time.time()
        accepted(h.hb(hb_obj(a, "0.3", hb_id()), key=h.k2), 1, 0, "hb to 0.6 (crosses 0.5)")
        d = wait_for(2, "threshold_crossed", Decimal("0.5"), 10)
        check_eq(len(d), 2, "deliveries of the 0.5 crossing (first answered 500, then one retry)")
        t1, t2 = d[0][0], d[1][0]
        check(t2 - t1 >= 0.4, "retry came %.2fs after the failed delivery; want the 0.5 s backoff" % (t2 - t1))
        check(t1 - t_cross < 5, "first delivery %.1fs after the crossing" % (t1 - t_cross))
        check_eq(d[0][3], d[1][3], "the retry sends the same body")
        for _, path, hdrs, raw, j in d:
            check_eq(path, "/hook", "delivery path")
            check_webhook_signature(secret, hdrs, raw)
            check_eq(j.get("event_type"), "threshold_crossed", "delivered event_type")
            det = j.get("details") or {}
            check_eq(det.get("limit"), "max_cost_per_day_usd", "details.limit")
            check_eq(dec(det.get("threshold")), Decimal("0.5"), "details.threshold")
            check_eq(dec(det.get("limit_value")), Decimal(1), "details.limit_value")
            check_eq(dec(det.get("current")), Decimal("0.6"), "details.current")
            check(isinstance(j.get("id"), int) and isinstance(j.get("ts"), str), "delivery id/ts: %.300r" % raw)
        # It is recorded once as an event.
        evs = wait_events(h, a, "threshold_crossed", 1, key=h.k2)
        check_eq(len(evs), 1, "threshold_crossed events after the first crossing")
        check_eq(evs[0]["id"], d[0][4]["id"], "delivered id is the event's id")
        # More spend in the same window, still under 1: nothing new for 0.5 (checked at the end).
        accepted(h.hb(hb_obj(a, "0.1", hb_id()), key=h.k2), 1, 0, "hb to 0.7")
        accepted(h.hb(hb_obj(a, "0.2", hb_id()), key=h.k2), 1, 0, "hb to 0.9")
        # Crossing 1: its own threshold_crossed, once.
        accepted(h.hb(hb_obj(a, "0.15", hb_id()), key=h.k2), 1, 0, "hb to 1.05 (crosses 1)")
        d1 = wait_for(1, "threshold_crossed", Decimal("1"), 10)
        check_eq(len(d1), 1, "deliveries of the crossing of 1")
        check_eq(dec(d1[0][4]["details"]["current"]), Decimal("1.05"), "current at the crossing of 1")
        accepted(h.hb(hb_obj(a, "0.5", hb_id()), key=h.k2), 1, 0, "hb to 1.55")
        # The kill's event is recorded after any event of the heartbeats above: once its delivery is in,
        # a delivery they should not have caused would be in too.
        check_status(h.request("POST", "/v1/mesh/agents/%s/kill" % enc(a), key=h.k2), 200, "kill")
        check_eq(len(wait_for(1, "agent_killed", None, 10)), 1, "delivery of the kill")
        got_marks = sorted((dec(j["details"]["threshold"]), dec(j["details"]["current"]))
                           for _, _, _, _, j in mine("threshold_crossed"))
        check_eq(got_marks, [(Decimal("0.5"), Decimal("0.6"))] * 2 + [(Decimal(1), Decimal("1.05"))],
                 "threshold_crossed deliveries (threshold, current): 0.5 failed once and retried, 1 once")
        check_eq(len(events_of(h, a, "threshold_crossed", key=h.k2)), 2, "threshold_crossed events at the end")
    finally:
        srv.shutdown()
        srv.server_close()
        th.join(10)


@timeout(90)
def test_redis_flush_rebuilds_policies(h):
    away_from_boundary(86400, 40)
    cost = new_agent(tag="pol-flush-cost")
    cnt = new_agent(tag="pol-flush-cnt")
    dead = new_agent(tag="pol-flush-kill")
    hourly = new_agent(tag="pol-flush-hour")
    month = new_agent(tag="pol-flush-month")
    alert = new_agent(tag="pol-flush-alert")
    gone = new_agent(tag="pol-flush-deleted")
    later = new_agent(tag="pol-flush-later")
    for x in (cost, cnt, dead, hourly, month, alert, gone, later):
        register(h, x)
    put_policy(h, cost, '{"max_cost_per_day_usd": 2.5}')
    put_policy(h, cnt, {"max_intents_per_day": 2})
    put_policy(h, hourly, {"max_intents_per_hour": 1})
    put_policy(h, month, '{"max_cost_per_month_usd": 0.75}')
    put_policy(h, alert, '{"max_cost_per_day_usd": 0.5, "action_on_breach": "alert"}')
    put_policy(h, gone, '{"max_cost_per_day_usd": 0.5}')
    for x in (month, alert, gone):
        accepted(h.hb(hb_obj(x, "0.8", hb_id())), 1, 0, "hb 0.8")
    check_status(h.request("DELETE", policy_path(gone), key=h.k1), 204, "delete policy before the flush")
    admitted(intent(h, gone), gone, "agent whose policy was deleted")
    admitted(intent(h, alert), alert, "alert agent over its limit")
    admitted(intent(h, hourly), hourly, "hourly 1")
    check_breach(intent(h, hourly), "max_intents_per_hour", 1, 1, 3600, "hourly breach before flush")
    check_breach(intent(h, month), "max_cost_per_month_usd", "0.75", "0.8", None, "month breach before flush")
    accepted(h.hb(hb_obj(cost, "2.500000001", hb_id())), 1, 0, "hb over the limit")
    check_breach(intent(h, cost), "max_cost_per_day_usd", "2.5", "2.500000001", 86400, "cost breach before flush")
    admitted(intent(h, cnt), cnt, "intent 1")
    admitted(intent(h, cnt), cnt, "intent 2")
    check_breach(intent(h, cnt), "max_intents_per_day", 2, 2, 86400, "intent breach before flush")
    check_status(h.request("POST", "/v1/mesh/agents/%s/kill" % enc(dead), key=h.k1), 200, "kill")
    check_error(intent(h, dead), 403, "agent_killed", what="killed before flush")
    admitted(intent(h, later), later, "an agent without a policy, intent 1")
    admitted(intent(h, later), later, "an agent without a policy, intent 2")
    # The rebuild reads PostgreSQL. A 202 means the heartbeats are there in postgres mode; in redis mode
    # a FLUSHALL loses what the persister has not stored yet (guarantees.md section 12), so wait for it.
    h.wait_persisted()
    check_eq(h.redis("FLUSHALL"), "OK", "FLUSHALL")
    accepted(h.hb(hb_obj(new_agent(tag="pol-flush-trigger"), "0.001", hb_id())), 1, 0, "trigger heartbeat")
    t0 = time.time()
    want = {cost: 429, cnt: 429, dead: 403, hourly: 429, month: 429, alert: 201, gone: 201}
    seen = {x: [] for x in want}
    final = {}
    while time.time() - t0 < 10:
        for x in want:
            if x in final:
                continue
            r = intent(h, x)
            seen[x].append(r.status)
            check(r.status in (want[x], 503), "after FLUSHALL %s got %r (want %d, or 503 while rebuilding)"
                  % (x.rsplit("/", 1)[1], r, want[x]))
            if r.status == 503:
                check_error(r, 503, what="admission while rebuilding")
            else:
                final[x] = r
        if len(final) == len(want):
            break
        time.sleep(0.2)
    missing = [x.rsplit("/", 1)[1] for x in want if x not in final]
    check(not missing, "not enforced again within 10 s of the flush: %s (statuses %r)"
          % (missing, {k.rsplit("/", 1)[1]: v[-5:] for k, v in seen.items()}))
    check_breach(final[cost], "max_cost_per_day_usd", "2.5", "2.500000001", 86400, "cost breach after rebuild")
    check_breach(final[cnt], "max_intents_per_day", 2, 2, 86400, "intent breach after rebuild")
    check_error(final[dead], 403, "agent_killed", what="killed agent after rebuild")
    check_breach(final[hourly], "max_intents_per_hour", 1, 1, 3600, "hourly intent breach after rebuild")
    check_breach(final[month], "max_cost_per_month_usd", "0.75", "0.8", None, "month breach after rebuild")
    # Heartbeat replies know the state again.
    j = accepted(h.hb(hb_obj(cost, "0.01", hb_id())), 1, 0, "hb after rebuild")
    check_agent_entry(j, cost, "blocked", "2.510000001", "after rebuild")
    check_eq(agent_view(h, cnt)["today"]["intents"], 2, "intents after rebuild (refusals did not count)")
    check_status(h.request("POST", "/v1/mesh/agents/%s/resume" % enc(dead), key=h.k1), 200, "resume")
    admitted(intent(h, dead), dead, "resumed after rebuild")
    # An agent without a limit is left out of the whole rebuild in postgres mode (only the windows of
    # agents with one are kept); the limit it gets later counts its intents from before the flush.
    h.wait_ready(30)
    put_policy(h, later, {"max_intents_per_day": 2})
    check_breach(intent(h, later), "max_intents_per_day", 2, 2, 86400, "a limit set after the rebuild")


def test_bad_policies_and_access(h):
    a = new_agent(tag="pol-bad")
    register(h, a)
    good = put_policy(h, a, '{"max_cost_per_day_usd": 5, "action_on_breach": "block"}')
    bad = [
        ('{"max_cost_per_day_usd": -1}', "max_cost_per_day_usd"),
        ('{"max_cost_per_hour_usd": "5"}', "max_cost_per_hour_usd"),
        ('{"max_cost_per_month_usd": true}', "max_cost_per_month_usd"),
        ('{"max_intents_per_day": -3}', "max_intents_per_day"),
        ('{"max_intents_per_day": 2.5}', "max_intents_per_day"),
        ('{"max_intents_per_hour": "10"}', "max_intents_per_hour"),
        ('{"action_on_breach": "explode"}', "action_on_breach"),
        ('{"action_on_breach": 1}', "action_on_breach"),
        ('{"max_cost_per_dya_usd": 50}', "max_cost_per_dya_usd"),
        ('{"alert_thresholds": [0.5, 0]}', "alert_thresholds"),
        ('{"alert_thresholds": [1.5]}', "alert_thresholds"),
        ('{"alert_thresholds": [-0.25]}', "alert_thresholds"),
        ('{"alert_thresholds": "0.5"}', "alert_thresholds"),
    ]
    for body, field in bad:
        r = h.request("PUT", policy_path(a), body, key=h.k1)
        e = check_error(r, 400, what="PUT %s" % body)
        f = e.get("field") or ""
        check(f == field or f.startswith(field + "["), "PUT %s: error.field %r, want %s" % (body, f, field))
    # Out of range for nano-dollars (over 2^63 nanos): 400, never a silently wrong limit.
    for body, field in (('{"max_cost_per_month_usd": 100000000000}', "max_cost_per_month_usd"),
                        ('{"max_intents_per_day": 100000000000000000000}', "max_intents_per_day")):
        r = h.request("PUT", policy_path(a), body, key=h.k1)
        check_error(r, 400, field=field, what="PUT %s" % body)
    for body in ('{"max_cost_per_day_usd": 5', '[]', ''):
        check_error(h.request("PUT", policy_path(a), body, key=h.k1), 400, what="PUT %r" % body)
    check_eq(h.request("GET", policy_path(a), key=h.k1).json, good, "policy after rejected PUTs")
    ak = create_agent_key(h, h.k1, a)
    check_error(h.request("PUT", policy_path(a), '{"max_cost_per_day_usd": 1000}', key=ak), 403,
                what="agent key PUT")
    check_error(h.request("DELETE", policy_path(a), key=ak), 403, what="agent key DELETE")
    check_eq(h.request("GET", policy_path(a), key=h.k1).json, good, "policy after agent key attempts")
    foreign = new_agent(org="org2", tag="pol-foreign")
    register(h, foreign, key=h.k2)
    put_policy(h, foreign, '{"max_intents_per_day": 1}', key=h.k2)
    check_error(h.request("PUT", policy_path(foreign), '{"max_intents_per_day": 9}', key=h.k1), 403,
                what="org1 admin PUT on an org2 agent")
    check_error(h.request("GET", policy_path(foreign), key=h.k1), 403, what="org1 admin GET of org2 policy")
    check_error(h.request("DELETE", policy_path(foreign), key=h.k1), 403, what="org1 admin DELETE of org2 policy")
    check_error(h.request("POST", "/v1/mesh/agents/%s/kill" % enc(foreign), key=h.k1), 403, what="foreign kill")
    check_error(intent(h, foreign), 403, what="org1 intent for an org2 agent")
    g = h.request("GET", policy_path(foreign), key=h.k2)
    check_status(g, 200, "org2 GET of its policy")
    check_eq(g.json.get("max_intents_per_day"), 1, "org2 policy untouched")
    check_error(h.request("PUT", policy_path(a), '{"max_cost_per_day_usd": 1}'), 401, what="PUT without a key")


def test_month_and_zero_limits(h):
    a = new_agent(tag="pol-month")
    register(h, a)
    put_policy(h, a, '{"max_cost_per_month_usd": 3, "max_cost_per_hour_usd": 100}')
    accepted(h.hb(hb_obj(a, "3", hb_id())), 1, 0, "hb reaching the month limit")
    check_breach(intent(h, a), "max_cost_per_month_usd", "3", "3", None, "month limit (cost == limit)")
    # Month and hour cost both breached: the month binds (its window ends last), unless this is its last hour.
    put_policy(h, a, '{"max_cost_per_month_usd": 3, "max_cost_per_hour_usd": 2}')
    if last_hour_of(seconds_to_next_month()):
        check_breach(intent(h, a), "max_cost_per_hour_usd", "2", "3", 3600, "hour and month breached, ending together")
    else:
        check_breach(intent(h, a), "max_cost_per_month_usd", "3", "3", None, "hour and month breached")
    # A zero limit blocks from the start (0 >= 0).
    z = new_agent(tag="pol-zero")
    register(h, z)
    put_policy(h, z, {"max_intents_per_day": 0})
    check_breach(intent(h, z), "max_intents_per_day", 0, 0, 86400, "zero intent limit")
    check_eq(agent_view(h, z)["today"]["intents"], 0, "nothing admitted under a zero limit")


def test_events_newest_first(h):
    """GET /v1/mesh/events is newest first by id, and ?limit=N gives the N newest."""
    a = new_agent(tag="pol-events")
    register(h, a)
    base = "/v1/mesh/agents/%s" % enc(a)

    def org_ids():
        r = h.request("GET", "/v1/mesh/events?limit=1000", key=h.k1)
        check_status(r, 200, "GET events")
        return [e["id"] for e in r.json["events"]]

    # Make sure the org's ids span two lengths of decimal digits (9 and 10, 99 and 100, ...).
    ids = org_ids()
    n = 0
    while (not ids or len(str(min(ids))) == len(str(max(ids)))) and n < 1500:
        check_status(h.request("POST", base + ("/kill" if n % 2 == 0 else "/resume"), key=h.k1), 200, "toggle")
        n += 1
        if n % 50 == 0 or n < 5:
            ids = org_ids()
    ids = org_ids()
    check_eq(ids, sorted(ids, reverse=True), "event ids of GET /v1/mesh/events?limit=1000 (newest first)")
    r = h.request("GET", "/v1/mesh/events?limit=3", key=h.k1)
    check_status(r, 200, "GET events limit=3")
    check_eq([e["id"] for e in r.json["events"]], sorted(ids, reverse=True)[:3], "the 3 newest events")
    if n % 2 == 1:
        h.request("POST", base + "/resume", key=h.k1)


def test_concurrent_same_idempotency_key(h):
    away_from_boundary(86400, 30)
    a = new_agent(tag="pol-idemc")
    register(h, a)
    put_policy(h, a, {"max_intents_per_day": 100})
    key = "idemc-" + uuid.uuid4().hex
    res = run_concurrently([lambda: intent(h, a, idem=key) for _ in range(20)])
    st = statuses(res)
    check(all(s in (201, 409) for s in st), "statuses of 20 concurrent repeats: %r" % st)
    ids = {r.json["intent_id"] for r in res if r.status == 201}
    check_eq(len(ids), 1, "distinct intent ids among the 201s of one Idempotency-Key")
    for r in res:
        if r.status == 409:
            check_error(r, 409, "idempotency_key_in_use", what="concurrent repeat")
    check_eq(agent_view(h, a)["today"]["intents"], 1, "intents admitted for one Idempotency-Key")
    r = intent(h, a, idem=key)
    check_eq((r.status, r.json.get("intent_id")), (201, ids.pop()), "repeat afterwards")


def test_thresholds_in_one_jump(h):
    away_from_boundary(86400, 30)
    a = new_agent(tag="pol-jump")
    register(h, a)
    put_policy(h, a, '{"max_cost_per_day_usd": 1}')
    def details(event_type, n):
        evs = wait_events(h, a, event_type, n)
        return sorted((e["details"] for e in evs), key=lambda d: Decimal(d.get("threshold", 0)))

    # A threshold or breach recorded twice would show at the next check: the second one waits for more.
    accepted(h.hb(hb_obj(a, "0.95", hb_id())), 1, 0, "hb 0.95: crosses 0.5, 0.75 and 0.9 at once")
    at_095 = [e["details"] for e in reached("max_cost_per_day_usd", Decimal(1), Decimal("0.95"))[:3]]
    check_json(details("threshold_crossed", 3), at_095, "thresholds recorded for one jump")
    admitted(intent(h, a), a, "intent at 0.95 of the limit")
    accepted(h.hb(hb_obj(a, "0.05", hb_id())), 1, 0, "hb to exactly 1")
    at_1 = [e["details"] for e in reached("max_cost_per_day_usd", Decimal(1), Decimal(1))[3:]]
    check_json(details("policy_breached", 1), at_1[1:], "breach at exactly 1")
    check_json(details("threshold_crossed", 4), at_095 + at_1[:1], "thresholds after reaching 1")
    check_breach(intent(h, a), "max_cost_per_day_usd", "1", "1", 86400, "intent at exactly the limit")


def test_cost_in_other_windows_does_not_count(h):
    """Cost placed (by ts) in an earlier hour/day counts for that window only."""
    away_from_boundary(3600, 30)
    now = time.time()
    a = new_agent(tag="pol-win")
    register(h, a)
    put_policy(h, a, '{"max_cost_per_hour_usd": 1, "max_cost_per_day_usd": 5}')
    prev_hour = int(now) // 3600 * 3600 - 60
    if prev_hour >= int(now) // 86400 * 86400:
        j = accepted(h.hb(hb_obj(a, "2", hb_id(), ts=prev_hour)), 1, 0, "hb in the previous hour")
        check_eq(j["agents"][a]["state"], "active", "state after cost in the previous hour")
        admitted(intent(h, a), a, "intent: this hour's cost is 0")
    yesterday = int(now) // 86400 * 86400 - 3600
    j = accepted(h.hb(hb_obj(a, "9", hb_id(), ts=yesterday)), 1, 0, "hb yesterday")
    check_eq(j["agents"][a]["state"], "active", "state after cost yesterday")
    admitted(intent(h, a), a, "intent: yesterday's cost does not count today")
    check_eq(len(events_of(h, a, "policy_breached")), 0, "no policy_breached for today's windows")
    j = accepted(h.hb(hb_obj(a, "1", hb_id())), 1, 0, "hb this hour")
    check_eq(j["agents"][a]["state"], "blocked", "state after 1 this hour")
    check_breach(intent(h, a), "max_cost_per_hour_usd", "1", "1", 3600, "hour cost limit")
