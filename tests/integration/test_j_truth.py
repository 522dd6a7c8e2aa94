"""Every figure the API shows is true (issue 11): intents counted in spend, the
real state after kill/resume, one event per real change, agents known before
their first heartbeat."""

import os
import re
import subprocess
import time

from harness import (accepted, batch, check, check_eq, check_error, check_json, check_status, enc, expected_spend, hb_id,
                     hb_obj, new_agent, read_metrics)
from test_e_policies import (admitted, agent_view, agents_list, away_from_boundary, events_of, intent, put_policy,
                             register, watch_cost)


def test_spend_counts_intents(h):
    away_from_boundary(86400, 30)
    a = new_agent(tag="truth-intents")
    now = int(time.time())
    sent = [(now, {"cost_usd": "0.5"})]
    accepted(h.hb(hb_obj(a, "0.5", hb_id(), ts=now)), 1, 0, "heartbeat")
    for i in range(3):
        admitted(intent(h, a), a, "intent %d" % i)
    for window in ("day", "month"):
        check_json(h.spend_ok(a, window=window), expected_spend(a, sent, window, now, intents=3),
                   "spend of the %s after three admitted intents" % window)
    check_eq(agent_view(h, a)["today"]["intents"], 3, "agent page intents today")
    listed = [x for x in agents_list(h, "?limit=1000") if x["address"] == a]
    check_eq([x.get("intents_today") for x in listed], [3], "agent list intents_today")
    other = new_agent(tag="truth-intents-none")
    accepted(h.hb(hb_obj(other, "0", hb_id(), ts=now)), 1, 0, "heartbeat")
    check_json(h.spend_ok(other, window="day"), expected_spend(other, [(now, {})], "day", now),
               "spend of an agent without intents")


def test_resume_answers_real_state(h):
    a = new_agent(tag="truth-resume")
    register(h, a)
    put_policy(h, a, '{"max_intents_per_day": 1}')
    admitted(intent(h, a), a, "the one allowed intent")
    check_error(intent(h, a), 429, "cost_policy_breached", what="second intent")
    base = "/v1/mesh/agents/%s" % enc(a)
    r = h.request("POST", base + "/kill", key=h.k1)
    check_status(r, 200, "kill")
    check_eq((r.json.get("state"), r.json.get("killed")), ("killed", True), "kill reply")
    r = h.request("POST", base + "/resume", key=h.k1)
    check_status(r, 200, "resume")
    check_eq((r.json.get("state"), r.json.get("killed")), ("blocked", False), "resume of a blocked agent")
    check_eq(agent_view(h, a)["state"], "blocked", "GET after resume")


def test_kill_twice_records_one_event(h):
    a = new_agent(tag="truth-kill2")
    register(h, a)
    base = "/v1/mesh/agents/%s" % enc(a)
    for i in range(2):
        r = h.request("POST", base + "/kill", key=h.k1)
        check_status(r, 200, "kill %d" % i)
        check_eq(r.json.get("state"), "killed", "kill %d state" % i)
    for i in range(2):
        r = h.request("POST", base + "/resume", key=h.k1)
        check_status(r, 200, "resume %d" % i)
        check_eq(r.json.get("state"), "active", "resume %d state" % i)
    mine = [e for e in events_of(h, a) if e.get("agent") == a]
    check_eq(sorted(e["event_type"] for e in mine if e["event_type"] in ("agent_killed", "agent_resumed")),
             ["agent_killed", "agent_resumed"], "one event per real change")
    # Resuming an agent that was never killed is a no-op too.
    b = new_agent(tag="truth-resume-noop")
    register(h, b)
    check_status(h.request("POST", "/v1/mesh/agents/%s/resume" % enc(b), key=h.k1), 200, "resume active")
    check_eq([e for e in events_of(h, b) if e.get("agent") == b and e["event_type"] == "agent_resumed"], [],
             "no agent_resumed event for an active agent")


def test_agent_known_before_first_heartbeat(h):
    by_policy = new_agent(tag="truth-unseen-pol")
    put_policy(h, by_policy, '{"max_cost_per_day_usd": 5}')
    v = agent_view(h, by_policy)
    check_eq((v.get("address"), v.get("health"), v.get("last_heartbeat"), v.get("state")),
             (by_policy, "unknown", None, "active"), "agent with a policy only")
    check(v.get("policy") is not None, "its policy is shown")
    by_intent = new_agent(tag="truth-unseen-int")
    admitted(intent(h, by_intent), by_intent, "first intent")
    v = agent_view(h, by_intent)
    check_eq((v.get("health"), v.get("last_heartbeat")), ("unknown", None), "agent with intents only")
    check_eq(v["today"]["intents"], 1, "its intent is counted")
    listed = {x["address"]: x for x in agents_list(h, "?limit=1000")}
    check(by_policy in listed and by_intent in listed, "both agents are listed")
    check_eq(listed[by_policy]["health"], "unknown", "listed health")
    unknown = [x["address"] for x in agents_list(h, "?health=unknown&limit=1000")]
    check(by_policy in unknown and by_intent in unknown, "?health=unknown lists agents never seen")
    # The health watcher starts from the same value, so it records no false change.
    check_eq(h.psql("SELECT health FROM agents WHERE address = '%s'" % by_policy).strip(), "unknown",
             "recorded health of an agent never seen")
    now = int(time.time())
    got = h.spend_ok(by_policy, window="day", at=now)
    # Its cost limit has a forecast: nothing burns, so the limit does not run out.
    check_json(got.pop("forecast", None), {"burn_rate_usd_per_hour": 0, "exhaustion": {"max_cost_per_day_usd": None}},
               "forecast of an agent never seen")
    check_json(got, expected_spend(by_policy, [], "day", now), "spend of an agent never seen")
    # The first heartbeat makes it healthy.
    accepted(h.hb(hb_obj(by_policy, "0.1", hb_id())), 1, 0, "first heartbeat")
    check_eq(agent_view(h, by_policy)["health"], "healthy", "health after the first heartbeat")


def test_misspelt_fields(h):
    """Unknown top-level fields are refused; unknown metric names are accepted, named in the reply and
    counted in /metrics (decision in README: newer SDKs keep working against older servers)."""
    a = new_agent(tag="truth-typo")
    register(h, a, cost="0.25")
    bad = [({"agent": a, "id": hb_id(), "cost_usd": 5}, "cost_usd"),
           ({"heartbeats": [{"agent": a, "id": hb_id(), "metrics": {"cost_usd": 1}},
                            {"agent": a, "id": hb_id(), "cots_usd": 3}]}, "heartbeats[1].cots_usd"),
           ({"heartbeats": [{"agent": a, "id": hb_id()}], "agent": a}, "agent")]
    for body, field in bad:
        check_error(h.hb(body), 400, "invalid_field", field, what="heartbeat with %s" % field)
    # Nothing of the refused requests was counted, not even the good item of the batch.
    s = h.spend_ok(a, window="month")
    check_eq((str(s.get("cost_usd")), s.get("heartbeats")), ("0.25", 1), "spend after refused heartbeats")

    before = read_metrics(h)["costmesh_heartbeat_metrics_ignored_total"]
    r = h.hb({"heartbeats": [{"agent": a, "id": hb_id(), "metrics": {"cost": 0.5, "tokens_in": 7}},
                             {"agent": a, "id": hb_id(), "metrics": {"gpu_seconds": 2}}]})
    j = accepted(r, 2, 0, "heartbeats with unknown metric names")
    check_eq(j.get("ignored"), ["heartbeats[0].metrics.cost", "heartbeats[1].metrics.gpu_seconds"],
             "the reply names what was ignored")
    check_eq(read_metrics(h)["costmesh_heartbeat_metrics_ignored_total"] - before, 2, "ignored metric names counted")
    s = h.spend_ok(a, window="month")
    check_eq((str(s.get("cost_usd")), s.get("tokens_in"), s.get("heartbeats")), ("0.25", 7, 3),
             "known metrics beside unknown ones count; the unknown cost does not")
    j = accepted(h.hb({"agent": a, "id": hb_id(), "metrics": {"cost_usd": 0.01}}), 1, 0, "a clean heartbeat")
    check("ignored" not in j, "a clean reply has no ignored list: %r" % j)


def test_admission_during_rebuild_is_exact(h):
    """After Redis loses its data, each agent's first intent rebuilds that agent from PostgreSQL and is
    answered exactly (never a 503 for the whole org), before the whole mirror is back: the agent's own
    writes do not wait behind the whole rebuild's. A policy changed while the whole rebuild runs stays
    changed. /readyz is 200 again once the mirror is whole."""
    from test_e_policies import check_breach
    away_from_boundary(86400, 30)
    capped = new_agent(tag="truth-rb-cap")
    free = new_agent(tag="truth-rb-free")
    dead = new_agent(tag="truth-rb-dead")
    for x in (capped, free, dead):
        register(h, x, cost="0.4")
    put_policy(h, capped, {"max_intents_per_day": 2})
    admitted(intent(h, capped), capped, "capped 1")
    admitted(intent(h, capped), capped, "capped 2")
    check_status(h.request("POST", "/v1/mesh/agents/%s/kill" % enc(dead), key=h.k1), 200, "kill")
    # Many other agents' windows, so the whole mirror takes seconds to come back (its writes to Redis
    # are most of that), while an agent's own part is a few small writes. They have a limit: in postgres
    # mode the mirror keeps the windows of such agents only. Their org sorts before org1, so the whole
    # rebuild writes their 60,000 policies before capped's.
    h.psql("INSERT INTO rollup_agent (address, grain, bucket, cost_nanos, tokens_in, tokens_out, tokens_cached,"
           " llm_calls, tool_calls, heartbeats, intents_total, intents_succeeded, intents_failed)"
           " SELECT 'agent://bulk9/bulk/a' || g, w.grain, date_trunc(w.unit, now(), 'UTC'), 1, 0, 0, 0, 0, 0, 1, 0,"
           " 0, 0 FROM generate_series(1, 60000) g CROSS JOIN (VALUES ('h', 'hour'), ('d', 'day'), ('m', 'month'))"
           " w(grain, unit) ON CONFLICT DO NOTHING", timeout=60)
    h.psql("INSERT INTO cost_policies (address, org, max_intents_per_day, action_on_breach, alert_thresholds)"
           " SELECT 'agent://bulk9/bulk/a' || g, 'bulk9', 1000000, 'alert', '' FROM generate_series(1, 60000) g"
           " ON CONFLICT DO NOTHING", timeout=60)
    check_eq(h.redis("FLUSHALL"), "OK", "FLUSHALL")
    check_breach(intent(h, capped), "max_intents_per_day", 2, 2, 86400, "capped agent right after the flush")
    # That intent started the whole rebuild: once its windows arrive in Redis, the next agents' own
    # parts are written beside them.
    deadline = time.time() + 60
    while int(h.redis("DBSIZE")) < 1000:
        check(time.time() < deadline, "the whole rebuild wrote no windows within 60 s")
        time.sleep(0.01)
    check_error(intent(h, dead), 403, "agent_killed", what="killed agent right after the flush")
    admitted(intent(h, free), free, "uncapped agent right after the flush")
    r = h.request("GET", "/readyz")
    check_eq((r.status, r.json.get("redis")), (503, "rebuilding"),
             "/readyz once the three agents were answered: the whole mirror is still coming back")
    # The whole rebuild read capped's policy (2 a day) before this change and writes it after the bulk
    # agents': its older write must not undo the change.
    put_policy(h, capped, {"max_intents_per_day": 4})
    check_eq(h.request("GET", "/readyz").status, 503, "the whole rebuild still running after the change")
    deadline = time.time() + 120
    while time.time() < deadline:
        r = h.request("GET", "/readyz")
        if r.status == 200:
            break
        check_eq((r.status, r.json.get("redis")), (503, "rebuilding"), "/readyz while the mirror comes back")
        time.sleep(0.2)
    check_status(h.request("GET", "/readyz"), 200, "/readyz once the mirror is whole")
    admitted(intent(h, capped), capped, "capped under the policy changed during the rebuild")
    check_eq(agent_view(h, capped)["today"]["intents"], 3, "refusals after the flush counted nothing")
    h.psql("DELETE FROM rollup_agent WHERE address LIKE 'agent://bulk9/bulk/%'")
    h.psql("DELETE FROM cost_policies WHERE address LIKE 'agent://bulk9/bulk/%'")


def test_idempotency_keys_are_per_agent(h):
    from test_e_policies import create_agent_key
    a = new_agent(tag="truth-idem-a")
    b = new_agent(tag="truth-idem-b")
    for x in (a, b):
        register(h, x)
    put_policy(h, a, {"max_intents_per_day": 0})
    ka, kb = create_agent_key(h, h.k1, a), create_agent_key(h, h.k1, b)
    r = intent(h, a, key=ka, idem="task-42")
    check_error(r, 429, "cost_policy_breached", what="a's refused intent")
    r = intent(h, b, key=kb, idem="task-42")
    check_eq(admitted(r, b, "b's intent with the same Idempotency-Key"), r.json["intent_id"], "b's own answer")
    r2 = intent(h, b, key=kb, idem="task-42")
    check_eq((r2.status, r2.json.get("intent_id")), (201, r.json["intent_id"]), "b's repeat answers b's intent")
    check_error(intent(h, a, key=ka, idem="task-42"), 429, "cost_policy_breached", what="a's repeat")


def test_events_filter_and_pages(h):
    from test_e_policies import create_agent_key
    a = new_agent(tag="truth-ev-a")
    b = new_agent(tag="truth-ev-b")
    for x in (a, b):
        register(h, x)
    for i in range(5):  # five policy_changed events for a, one for b
        put_policy(h, a, {"max_intents_per_day": 10 + i})
    put_policy(h, b, {"max_intents_per_day": 3})
    r = h.request("GET", "/v1/mesh/events?agent=%s&limit=1000" % enc(a), key=h.k1)
    check_status(r, 200, "events of a")
    evs = r.json["events"]
    check(len(evs) >= 5 and all(e.get("agent") == a for e in evs), "?agent= returns only a's events")
    check(all(isinstance(e.get("details"), dict) for e in evs), "details are JSON objects")
    # Pages of two, newest first, with no overlap and no gap.
    seen, cursor, pages = [], None, 0
    while True:
        q = "/v1/mesh/events?agent=%s&limit=2" % enc(a) + ("&cursor=%s" % cursor if cursor else "")
        r = h.request("GET", q, key=h.k1)
        check_status(r, 200, "events page %d" % pages)
        seen += [e["id"] for e in r.json["events"]]
        cursor = r.json.get("next_cursor")
        pages += 1
        check(len(r.json["events"]) == 2 or cursor is None, "a short page is the last one")
        if cursor is None or pages > 20:
            break
    check_eq(seen, [e["id"] for e in evs], "pages of events are the whole list, in order")
    check_error(h.request("GET", "/v1/mesh/events?cursor=abc", key=h.k1), 400, "invalid_field", "cursor",
                what="bad events cursor")
    check_error(h.request("GET", "/v1/mesh/events?agent=nope", key=h.k1), 400, "invalid_field", "agent",
                what="bad ?agent=")
    other_org = "agent://org2/x/y"
    check_error(h.request("GET", "/v1/mesh/events?agent=%s" % enc(other_org), key=h.k1), 403, what="other org")
    kb = create_agent_key(h, h.k1, b)
    check_error(h.request("GET", "/v1/mesh/events?agent=%s" % enc(a), key=kb), 403, what="bound key, other agent")
    check_error(h.request("GET", "/v1/mesh/agents/%s" % enc(a), key=kb), 403,
                what="bound key, another agent's page (its recent events)")
    r = h.request("GET", "/v1/mesh/events?limit=1000", key=kb)
    check_status(r, 200, "events with a bound key")
    mine = h.request("GET", "/v1/mesh/events?agent=%s&limit=1000" % enc(b), key=h.k1).json["events"]
    check_eq([e["event_type"] for e in mine], ["policy_changed"], "b's events as the admin sees them")
    check_eq(r.json["events"], mine, "a bound key sees its agent's events, all of them and no other")
    # The agent page shows the same events, with the same time.
    recent = {e["id"]: e for e in agent_view(h, a)["recent_events"]}
    for e in evs[:5]:
        check_eq((recent[e["id"]]["ts"], type(recent[e["id"]]["details"])), (e["ts"], dict),
                 "event %d on the agent page" % e["id"])


def test_agent_list_pages(h):
    tag = "truth-page-" + hb_id()[:6]
    mine = sorted(new_agent(tag=tag) for _ in range(5))
    for x in mine:
        register(h, x)
    got, cursor, pages = [], None, 0
    while pages < 200:
        q = "/v1/mesh/agents?limit=3" + ("&cursor=%s" % enc(cursor) if cursor else "")
        r = h.request("GET", q, key=h.k1)
        check_status(r, 200, "agents page %d" % pages)
        got += [x["address"] for x in r.json["agents"]]
        cursor = r.json.get("next_cursor")
        pages += 1
        if cursor is None:
            break
    check_eq(got, sorted(set(got)), "pages are sorted, without repeats")
    check(all(x in got for x in mine), "every agent is on some page")
    check_error(h.request("GET", "/v1/mesh/agents?cursor=zzz", key=h.k1), 400, "invalid_field", "cursor",
                what="bad agents cursor")


def test_policy_patch_merges(h):
    from test_e_policies import policy_path
    a = new_agent(tag="truth-patch")
    register(h, a)
    put_policy(h, a, '{"max_cost_per_day_usd": 50, "max_intents_per_day": 500, "alert_thresholds": [0.9]}')
    r = h.request("PATCH", policy_path(a), '{"max_cost_per_hour_usd": 2.5}', key=h.k1)
    check_status(r, 200, "PATCH one limit")
    j = r.json
    check_eq((str(j.get("max_cost_per_day_usd")), j.get("max_intents_per_day"), str(j.get("max_cost_per_hour_usd")),
              j.get("action_on_breach"), [str(x) for x in j.get("alert_thresholds")]),
             ("50", 500, "2.5", "block", ["0.9"]), "PATCH keeps the other fields")
    check_eq(h.request("GET", policy_path(a), key=h.k1).json, j, "GET after PATCH")
    r = h.request("PATCH", policy_path(a), '{"max_intents_per_day": null, "action_on_breach": "alert"}', key=h.k1)
    check_status(r, 200, "PATCH clearing a limit")
    check_eq((r.json.get("max_intents_per_day"), r.json.get("action_on_breach"), str(r.json.get("max_cost_per_day_usd"))),
             (None, "alert", "50"), "null clears one limit")
    check_error(h.request("PATCH", policy_path(a), '{"max_cost_per_dya_usd": 1}', key=h.k1), 400, "invalid_field",
                "max_cost_per_dya_usd", what="PATCH with a typo")
    check_eq(h.request("GET", policy_path(a), key=h.k1).json, r.json, "a refused PATCH changed nothing")
    # PATCH on an agent without a policy starts from the defaults.
    from test_e_policies import away_from_boundary
    away_from_boundary(3600, 10)
    b = new_agent(tag="truth-patch-new")
    r = h.request("PATCH", policy_path(b), '{"max_intents_per_hour": 3}', key=h.k1)
    check_status(r, 200, "PATCH creates a policy")
    check_eq((r.json.get("max_intents_per_hour"), r.json.get("max_cost_per_day_usd"), r.json.get("action_on_breach")),
             (3, None, "block"), "new policy from the defaults")
    # Enforcement follows the merged policy (Redis mirrors it).
    admitted(intent(h, b), b, "1 of 3")
    admitted(intent(h, b), b, "2 of 3")
    admitted(intent(h, b), b, "3 of 3")
    check_error(intent(h, b), 429, "cost_policy_breached", what="4th intent under the PATCHed limit")


def test_client_intent_id_counts_once(h):
    a = new_agent(tag="truth-iid-a")
    b = new_agent(tag="truth-iid-b")
    for x in (a, b):
        register(h, x)
    iid = "task-" + hb_id()
    first = intent(h, a, intent_id=iid)
    check_eq(admitted(first, a, "first post of a client-given intent_id"), iid, "the client's id")
    again = intent(h, a, intent_id=iid)
    check_eq((again.status, again.text), (first.status, first.text), "the same id again: the same answer")
    check_eq(agent_view(h, a)["today"]["intents"], 1, "counted once")
    check_eq(int(h.psql("SELECT count(*) FROM intents WHERE intent_id = '%s'" % iid)), 1, "recorded once")
    check_error(intent(h, b, intent_id=iid), 409, "intent_id_in_use", "intent_id",
                what="another agent reusing the id")
    check_eq(agent_view(h, b)["today"]["intents"], 0, "the refused reuse counted nothing")
    # Past the day its answer is kept in Redis, PostgreSQL still knows the id.
    h.redis("DEL", "cm:n:%s:%s" % (a, iid))
    again = intent(h, a, intent_id=iid)
    check_eq((again.status, again.json.get("intent_id")), (201, iid), "a repeat after Redis forgot it")
    check_eq(agent_view(h, a)["today"]["intents"], 1, "still counted once")


def test_revocation_reaches_every_replica_at_once(h):
    """A key revoked on one replica is refused by another at once, even where that replica trusts its
    cache for a minute (issue 12.6); privileged writes never trust the cache."""
    from harness import PortView, Server, free_port
    r = h.request("POST", "/v1/keys", {"role": "admin", "name": "rev-" + hb_id()}, key=h.k1)
    check_status(r, 201, "create an admin key")
    k2, kid = r.json["key"], r.json["id"]
    view = PortView(h, free_port())
    second = Server(view, h.server.admin_key, h.server.org, env={"COSTMESH_KEY_CACHE_MS": "60000"})
    second.start()
    try:
        check_status(view.request("GET", "/v1/mesh/agents", key=k2), 200, "the key works on the second replica")
        check_status(h.request("DELETE", "/v1/keys/" + kid, key=h.k1), 204, "revoke on the first replica")
        deadline, last = time.time() + 5, None
        while time.time() < deadline:
            last = view.request("GET", "/v1/mesh/agents", key=k2)
            if last.status == 401:
                break
            time.sleep(0.05)
        check_eq(last.status, 401, "a read with the revoked key on the second replica, well before its cache expires")
        check_error(view.request("POST", "/v1/keys", {"role": "admin", "name": "x"}, key=k2), 401,
                    what="a privileged write with the revoked key on the second replica")
        # A key revoked without the notification (straight in PostgreSQL) may still read from a
        # replica's cache, but never writes a policy, a key or a webhook there.
        r = h.request("POST", "/v1/keys", {"role": "admin", "name": "rev3-" + hb_id()}, key=h.k1)
        k3, kid3 = r.json["key"], r.json["id"]
        check_status(view.request("GET", "/v1/mesh/agents", key=k3), 200, "k3 read, now cached")
        h.psql("UPDATE api_keys SET revoked_at = now() WHERE id = '%s'" % kid3)
        check_error(view.request("PUT", "/v1/mesh/webhook", {"url": "https://example.com/h", "secret": "s"}, key=k3),
                    401, what="a privileged write skips the cache")
    finally:
        problems = second.stop()
    check(not problems, "second replica stop: %s" % "; ".join(problems))


def test_admin_key_leaves_no_trace(h):
    """The bootstrap key is not readable from the running server's environment, and a short one is refused."""
    environ = open("/proc/%d/environ" % h.server.proc.pid, "rb").read()
    check(h.server.admin_key.encode() not in environ, "the admin key is still in costmeshd's environment")
    env = dict(os.environ, COSTMESH_ADMIN_KEY="short-key")
    p = subprocess.run([h.binary], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    check(p.returncode != 0 and b"at least 24 characters" in p.stderr, "a short admin key: rc %d, %r" %
          (p.returncode, p.stderr))


def test_agent_quota_per_org(h):
    """An org cannot register more agents than its quota (issue 12.7): heartbeats, intents and policies
    naming one more new agent get 422 naming the field, change nothing, and other orgs are unaffected."""
    from test_e_policies import policy_path
    org = "org2"
    have = int(h.psql("SELECT coalesce((SELECT agents FROM org_agents WHERE org = '%s'), 0)" % org))
    h.psql("INSERT INTO org_limits (org, max_agents) VALUES ('%s', %d)" % (org, have + 2))
    try:
        a1, a2, a3 = (new_agent(org=org, tag="quota-%d" % i) for i in range(3))
        accepted(h.hb(hb_obj(a1, "0.1", hb_id()), key=h.k2), 1, 0, "agent 1 of 2")
        admitted(intent(h, a2, key=h.k2), a2, "agent 2 of 2, registered by its intent")
        r = h.hb(hb_obj(a3, "0.1", hb_id()), key=h.k2)
        check_error(r, 422, "agent_quota_exceeded", "agent", what="a third new agent's heartbeat")
        check_error(intent(h, a3, key=h.k2), 422, "agent_quota_exceeded", "agent", what="a third agent's intent")
        # Intents are recorded in groups: the one new agent's refusal must not fail the others'.
        from test_e_policies import run_concurrently
        res = run_concurrently([lambda: intent(h, a3, key=h.k2)] + [lambda: intent(h, a1, key=h.k2) for _ in range(12)])
        check_eq([r.status for r in res], [422] + [201] * 12, "one refused new agent among a dozen admitted intents")
        check_error(h.request("PUT", policy_path(a3), '{"max_intents_per_day": 1}', key=h.k2), 422,
                    "agent_quota_exceeded", "agent", what="a third agent's policy")
        check_eq(h.request("GET", "/v1/mesh/agents/%s" % enc(a3), key=h.k2).status, 404, "the third agent does not exist")
        accepted(h.hb(hb_obj(a1, "0.2", hb_id()), key=h.k2), 1, 0, "known agents keep reporting")
        other = new_agent(tag="quota-other-org")
        accepted(h.hb(hb_obj(other, "0.1", hb_id())), 1, 0, "another org is not limited")
        # One statement of many new agents (a batch of many): counted once each, refused whole past the quota.
        h.psql("UPDATE org_limits SET max_agents = %d WHERE org = '%s'" % (have + 2 + 999, org))
        many = [new_agent(org=org, tag="quota-bulk") for _ in range(1000)]
        r = h.hb(batch([hb_obj(x, "0.000000001", hb_id()) for x in many]), key=h.k2)
        check_error(r, 422, "agent_quota_exceeded", "agent", what="a batch of 1,000 new agents, 999 allowed")
        accepted(h.hb(batch([hb_obj(x, "0.000000001", hb_id()) for x in many[:999]]), key=h.k2),
                 999, 0, "a batch of 999 new agents")
        check_eq(h.psql("SELECT agents FROM org_agents WHERE org = '%s'" % org), str(have + 2 + 999),
                 "each new agent counted once")
    finally:
        h.psql("DELETE FROM org_limits WHERE org = '%s'" % org)


def test_every_window_expires(h):
    """Redis stays bounded: every window hash an agent's heartbeats and intents
    write carries a ttl, whoever wrote it first (MERGE in postgres mode, ACK
    in redis mode, ADMIT), within its grain's (hot_layout.c)."""
    ttl = {"h": 3 * 86400, "d": 40 * 86400, "m": 400 * 86400}
    a = new_agent(tag="truth-ttl")
    watch_cost(h, a)
    now = int(time.time())
    accepted(h.hb(hb_obj(a, "0.25", hb_id(), ts=now - 7200)), 1, 0, "a heartbeat two hours ago")
    accepted(h.hb(hb_obj(a, "0.25", hb_id(), ts=now)), 1, 0, "a heartbeat now")
    admitted(intent(h, a), a, "an intent")
    accepted(h.hb(hb_obj(a, "0.5", hb_id(), ts=now)), 1, 0, "another heartbeat now")
    keys = [k for k in h.redis("--scan", "--pattern", "cm:%s:*" % a).split("\n")
            if re.fullmatch(r"cm:%s:[hdm]:[0-9]+" % re.escape(a), k)]
    check(len(keys) >= 4, "expected two hours, a day and a month of windows, got %r" % keys)
    for k in keys:
        left = int(h.redis("TTL", k))
        check(0 < left <= ttl[k.split(":")[-2]], "window %s has ttl %d" % (k, left))
