"""Budgets at every level (issue 15 item 3): cost policies on the org, an environment, a customer, a
workflow and a run beside the agent's; the tightest binding limit decides and the 429 names it; admission
exact across threads and replicas; heartbeat cost reaches the scopes; Redis rebuilt after a FLUSHALL;
bad input and tenancy on every new route."""

import time
import urllib.parse
import uuid
from decimal import Decimal

from harness import (PortView, Server, accepted, check, check_eq, check_error, check_json, check_status, dec,
                     free_port, hb_id, hb_obj, new_agent, timeout)
from test_e_policies import away_from_boundary, policy_of, run_concurrently, seconds_to_next, statuses

SCOPES = ("env", "customer", "workflow", "run")


def uid(tag):
    return "%s-%s" % (tag, uuid.uuid4().hex[:12])


def scope_path(kind, sid=None):
    if kind == "org":
        return "/v1/mesh/org/policies/cost"
    plural = {"env": "envs", "customer": "customers", "workflow": "workflows", "run": "runs"}[kind]
    return "/v1/mesh/%s/%s/policies/cost" % (plural, urllib.parse.quote(sid, safe=""))


def put_scope(h, kind, sid, body, key=None, method="PUT", what=None):
    r = h.request(method, scope_path(kind, sid), body, key=h.k1 if key is None else key)
    check_status(r, 200, what or "%s %s policy %s" % (method, kind, sid))
    return r.json


def env_agent(env, org="org1", tag="b"):
    return "agent://%s/%s/%s-%s" % (org, env, tag, uuid.uuid4().hex[:12])


def intent(h, agent, key=None, **scopes):
    body = {"agent": agent}
    body.update(scopes)
    return h.request("POST", "/v1/mesh/intents", body, key=h.k1 if key is None else key)


def check_scope_429(r, scope, scope_id, limit, limit_value, current, period, what):
    e = check_error(r, 429, "cost_policy_breached", what=what)
    check_eq((e.get("scope"), e.get("scope_id"), e.get("limit")), (scope, scope_id, limit),
             "%s: (scope, scope_id, limit) of the 429" % what)
    check_eq((dec(e.get("limit_value")), dec(e.get("current"))), (Decimal(limit_value), Decimal(current)),
             "%s: (limit_value, current)" % what)
    ra = r.headers.get("retry-after")
    check(ra is not None and ra.isdigit() and abs(int(ra) - seconds_to_next(period)) <= 2,
          "%s: Retry-After %r, want about %.0f" % (what, ra, seconds_to_next(period)))
    return e


def wait_status(fn, want, secs, what):
    """Calls fn until it answers `want` (the scopes' cost lags the 202 by one rollup batch)."""
    deadline = time.time() + secs
    seen = []
    while True:
        r = fn()
        seen.append(r.status)
        if r.status == want:
            return r
        check(time.time() < deadline, "%s: no %d within %ss (statuses %s; last %.300r)"
              % (what, want, secs, seen[-5:], r.text))
        time.sleep(0.1)


# ------------------------------------------------------------------ tests

def test_scope_policy_put_get_patch_delete(h):
    """Every scope takes the agent policy's body: PUT replaces, PATCH changes what it names, GET answers it,
    DELETE removes it (then 404); each change is a policy_changed event naming the scope."""
    for kind in SCOPES:
        sid = uid("pol-" + kind)
        got = put_scope(h, kind, sid, '{"max_cost_per_day_usd": 12.5, "max_intents_per_hour": 4}')
        want = policy_of(max_cost_per_day_usd=Decimal("12.5"), max_intents_per_hour=4)
        check_json(got, want, "PUT %s answer" % kind)
        r = h.request("GET", scope_path(kind, sid), key=h.k1)
        check_status(r, 200, "GET %s" % kind)
        check_json(r.json, want, "GET %s" % kind)
        got = put_scope(h, kind, sid, '{"max_cost_per_month_usd": 100, "action_on_breach": "alert"}',
                        method="PATCH")
        check_json(got, policy_of(max_cost_per_day_usd=Decimal("12.5"), max_intents_per_hour=4,
                                  max_cost_per_month_usd=Decimal(100), action_on_breach="alert"),
                   "PATCH %s keeps the other limits" % kind)
        check_status(h.request("DELETE", scope_path(kind, sid), key=h.k1), 204, "DELETE %s" % kind)
        check_error(h.request("GET", scope_path(kind, sid), key=h.k1), 404, "policy_not_found",
                    what="GET %s after DELETE" % kind)
        check_error(h.request("DELETE", scope_path(kind, sid), key=h.k1), 404, "policy_not_found",
                    what="DELETE %s again" % kind)
        r = h.request("GET", "/v1/mesh/events?event_type=policy_changed&limit=50", key=h.k1)
        check_status(r, 200, "events")
        mine = [e["details"] for e in r.json["events"] if e["details"].get("scope_id") == sid]
        check_eq(len(mine), 3, "policy_changed events of %s %s (PUT, PATCH, DELETE)" % (kind, sid))
        check_eq((mine[0].get("scope"), mine[0].get("policy")), (kind, None), "the newest event: the DELETE")
    # The org's own policy, on org2 so that no other test's intents meet it.
    try:
        got = put_scope(h, "org", None, '{"max_intents_per_hour": 0}', key=h.k2)
        check_json(got, policy_of(max_intents_per_hour=0), "PUT org policy")
        a = new_agent(org="org2", tag="bud-org")
        # Other tests' intents of org2 this hour count: current is theirs, whatever it is.
        r = intent(h, a, key=h.k2)
        e = check_error(r, 429, "cost_policy_breached", what="org2's zero limit")
        check_eq((e.get("scope"), e.get("scope_id"), e.get("limit"), e.get("limit_value")),
                 ("org", None, "max_intents_per_hour", 0), "org2's 429")
        check_error(h.request("GET", scope_path("org"), key=h.k1), 404, "policy_not_found",
                    what="org1 sees no policy of org2")
        check_status(intent(h, new_agent(tag="bud-org1")), 201, "org1 is not bound by org2's policy")
    finally:
        h.request("DELETE", scope_path("org"), key=h.k2)
    check_status(intent(h, new_agent(org="org2", tag="bud-org"), key=h.k2), 201, "org2 after DELETE")


def test_scope_policy_bad_input(h):
    sid = uid("bad")
    r = h.request("PUT", scope_path("customer", sid), '{"max_cost_per_dya_usd": 1}', key=h.k1)
    check_error(r, 400, "invalid_field", "max_cost_per_dya_usd", "misspelt limit")
    r = h.request("PUT", scope_path("run", sid), '{"max_cost_per_day_usd": -1}', key=h.k1)
    check_error(r, 400, "invalid_field", "max_cost_per_day_usd", "negative limit")
    r = h.request("PUT", scope_path("env", "no spaces"), '{}', key=h.k1)
    check_error(r, 400, "invalid_field", "env", "an ENV that no address can have")
    r = h.request("PUT", scope_path("workflow", "w" * 129), '{}', key=h.k1)
    check_error(r, 400, "invalid_field", "workflow", "a workflow id of 129 bytes")
    r = h.request("GET", scope_path("customer", "c\x01x"), key=h.k1)
    check_error(r, 400, "invalid_field", "customer", "a control character in the id")
    check_status(h.request("POST", scope_path("run", sid), '{}', key=h.k1), 405, "POST is not a policy method")
    a = new_agent(tag="bud-bad")
    for field, value in (("customer", 7), ("workflow", "w" * 129), ("run_id", "r\u0001")):
        r = h.request("POST", "/v1/mesh/intents", {"agent": a, field: value}, key=h.k1)
        check_error(r, 400, "invalid_field", field, "intent with a bad %s" % field)
    check_eq(h.psql("SELECT count(*) FROM intents WHERE address = '%s'" % a), "0", "no intent recorded")


def test_scope_policy_tenancy(h):
    """Scopes are the key's org's: another org's admin sets its own, an agent key may not touch any."""
    cust = uid("bud-ten")
    agent_key = h.request("POST", "/v1/keys", {"role": "agent", "name": "bud-ten"}, key=h.k1).json["key"]
    for kind, sid in (("org", None), ("env", "test"), ("customer", cust), ("workflow", cust), ("run", cust)):
        for method, body in (("PUT", "{}"), ("PATCH", "{}"), ("GET", None), ("DELETE", None)):
            r = h.request(method, scope_path(kind, sid), body, key=agent_key)
            check_error(r, 403, what="%s %s policy with an agent key" % (method, kind))
    check_error(h.request("GET", scope_path("customer", cust), key=h.k1), 404, "policy_not_found",
                what="nothing was written by the agent key")
    put_scope(h, "customer", cust, '{"max_intents_per_day": 0}', key=h.k2)
    check_error(h.request("GET", scope_path("customer", cust), key=h.k1), 404, "policy_not_found",
                what="org1 does not see org2's customer policy")
    check_status(intent(h, new_agent(tag="bud-ten"), customer=cust), 201, "org1's customer of the same id")
    check_scope_429(intent(h, new_agent(org="org2", tag="bud-ten"), key=h.k2, customer=cust), "customer", cust,
                    "max_intents_per_day", 0, 0, 86400, "org2's customer")
    check_status(h.request("DELETE", scope_path("customer", cust), key=h.k1), 404, "org1 cannot delete it")
    check_status(h.request("DELETE", scope_path("customer", cust), key=h.k2), 204, "org2 deletes it")


def test_tightest_limit_decides_and_is_named(h):
    away_from_boundary(86400, 20)
    cust, wf, run = uid("bud-c"), uid("bud-w"), uid("bud-r")
    a, b = new_agent(tag="bud-tight-a"), new_agent(tag="bud-tight-b")
    put_scope(h, "customer", cust, {"max_intents_per_day": 3})
    put_scope(h, "workflow", wf, {"max_intents_per_day": 5})
    h.request("PUT", "/v1/mesh/agents/%s/policies/cost" % urllib.parse.quote(a, safe=""),
              {"max_intents_per_day": 10}, key=h.k1)
    for i, x in enumerate((a, b, a)):
        check_status(intent(h, x, customer=cust, workflow=wf), 201, "intent %d of the customer" % i)
    # The customer's 3 binds before the workflow's 5 and agent a's 10, whichever agent asks.
    for x in (a, b):
        check_scope_429(intent(h, x, customer=cust, workflow=wf), "customer", cust, "max_intents_per_day", 3, 3,
                        86400, "4th intent of the customer")
    # Without the customer the workflow still has room; its 5th is the last.
    check_status(intent(h, b, workflow=wf), 201, "4th of the workflow")
    check_status(intent(h, b, workflow=wf, run_id=run), 201, "5th of the workflow")
    check_scope_429(intent(h, b, workflow=wf, run_id=run), "workflow", wf, "max_intents_per_day", 5, 5, 86400,
                    "6th of the workflow")
    # A refusal counted nothing anywhere: agent b is at 4 intents of its own, the run at 1.
    put_scope(h, "run", run, {"max_intents_per_day": 1})
    check_scope_429(intent(h, b, run_id=run), "run", run, "max_intents_per_day", 1, 1, 86400, "the run's 2nd")
    # The hour ends before the day: a breached day limit of a wider scope is named over a narrower hour. In
    # the day's last hour both end together, and the tie goes to the narrower scope (api_intents.c).
    put_scope(h, "run", run, {"max_intents_per_hour": 1})
    if int(time.time()) % 86400 >= 86400 - 3600:
        check_scope_429(intent(h, b, workflow=wf, run_id=run), "run", run, "max_intents_per_hour", 1, 1, 3600,
                        "a day limit and an hour limit ending together")
    else:
        check_scope_429(intent(h, b, workflow=wf, run_id=run), "workflow", wf, "max_intents_per_day", 5, 5, 86400,
                        "a day limit outlasts an hour limit")
    # Same window at two levels: the narrower scope (the agent) is named.
    h.request("PUT", "/v1/mesh/agents/%s/policies/cost" % urllib.parse.quote(a, safe=""),
              {"max_intents_per_day": 2}, key=h.k1)
    e = check_error(intent(h, a, customer=cust), 429, "cost_policy_breached", what="agent and customer both full")
    check_eq((e.get("scope"), e.get("scope_id"), e.get("limit"), e.get("current")),
             ("agent", a, "max_intents_per_day", 2), "the narrower of two day limits")
    check_eq(h.psql("SELECT count(*) FROM intents WHERE customer = '%s'" % cust), "3", "intents of the customer")
    check_eq(h.psql("SELECT count(*) FROM intents WHERE workflow = '%s'" % wf), "5", "intents of the workflow")


def test_alert_scope_never_refuses(h):
    cust = uid("bud-alert")
    put_scope(h, "customer", cust, {"max_intents_per_day": 0, "action_on_breach": "alert"})
    a = new_agent(tag="bud-alert")
    for i in range(2):
        check_status(intent(h, a, customer=cust), 201, "alert scope admits (%d)" % i)
    # Recorded beside the 201, not before it: wait a little for it.
    deadline = time.time() + 5
    while True:
        r = h.request("GET", "/v1/mesh/events?event_type=policy_breached&limit=100", key=h.k1)
        mine = [e for e in r.json["events"] if e["details"].get("scope_id") == cust]
        if mine or time.time() > deadline:
            break
        time.sleep(0.1)
    time.sleep(0.3)
    r = h.request("GET", "/v1/mesh/events?event_type=policy_breached&limit=100", key=h.k1)
    mine = [e for e in r.json["events"] if e["details"].get("scope_id") == cust]
    check_eq(len(mine), 1, "one policy_breached event per window")
    check_json(mine[0]["details"], {"scope": "customer", "scope_id": cust, "limit": "max_intents_per_day",
                                    "limit_value": 0, "current": 0}, "the event's details")
    check_eq(mine[0].get("agent"), a, "the event names the intent's agent")


@timeout(90)
def test_heartbeat_cost_reaches_every_scope(h):
    """Heartbeat cost counts in the org, env, run, workflow and customer budgets: the run and workflow a
    heartbeat names or its intent names, its intent's customer. Exact, after one rollup batch."""
    away_from_boundary(86400, 30)
    env, cust, wf, run = uid("benv"), uid("bud-cc"), uid("bud-cw"), uid("bud-cr")
    a, b = env_agent(env, tag="hb-a"), env_agent(env, tag="hb-b")
    put_scope(h, "env", env, '{"max_cost_per_day_usd": 1.0}')
    put_scope(h, "customer", cust, '{"max_cost_per_hour_usd": 0.5}')
    put_scope(h, "workflow", wf, '{"max_cost_per_month_usd": 0.3}')
    put_scope(h, "run", run, '{"max_cost_per_day_usd": 0.2}')
    r = intent(h, a, customer=cust, workflow=wf, run_id=run)
    check_status(r, 201, "the intent naming every scope")
    iid = r.json["intent_id"]
    # 0.15 through the intent alone (no run or workflow on the heartbeat): run, workflow, customer, env.
    accepted(h.hb(hb_obj(a, "0.15", hb_id(), intent=iid)), 1, 0, "hb of the intent")
    # 0.1 naming the run directly, from another agent without an intent: run and env.
    hb = '{"agent":"%s","id":"%s","run_id":"%s","metrics":{"cost_usd":0.1}}' % (b, hb_id(), run)
    accepted(h.hb(hb), 1, 0, "hb naming the run")
    r = wait_status(lambda: intent(h, b, run_id=run), 429, 10, "the run's budget")
    check_scope_429(r, "run", run, "max_cost_per_day_usd", "0.2", "0.25", 86400, "run: 0.15 + 0.1")
    # The workflow (0.15 of 0.3) and the customer (0.15 of 0.5) still admit.
    check_status(intent(h, b, workflow=wf, customer=cust), 201, "workflow and customer below their limits")
    accepted(h.hb(hb_obj(a, "0.2", hb_id(), intent=iid)), 1, 0, "2nd hb of the intent")
    r = wait_status(lambda: intent(h, b, workflow=wf), 429, 10, "the workflow's budget")
    e = check_error(r, 429, "cost_policy_breached", what="workflow")
    check_eq((e.get("scope"), e.get("limit"), dec(e.get("current"))), ("workflow", "max_cost_per_month_usd",
                                                                        Decimal("0.35")), "workflow 429")
    check_status(intent(h, b, customer=cust), 201, "customer at 0.35 of 0.5")
    accepted(h.hb(hb_obj(b, "0.7", hb_id())), 1, 0, "hb of b alone: env only")
    r = wait_status(lambda: intent(h, env_agent(env, tag="hb-c")), 429, 10, "the env's budget")
    check_scope_429(r, "env", env, "max_cost_per_day_usd", "1", "1.15", 86400, "env: 0.15 + 0.1 + 0.2 + 0.7")
    check_status(intent(h, b, customer=cust), 429, "the env binds b's intents too")
    check_eq(h.psql("SELECT cost_nanos FROM rollup_scope WHERE org = 'org1' AND kind = 'customer' AND scope = '%s'"
                    " AND grain = 'd'" % cust), "350000000", "the customer's day in rollup_scope")


@timeout(60)
def test_concurrent_scope_admission_exact(h):
    """80 intents at once from 8 agents of one customer, 10 allowed: exactly 10, whichever agent."""
    away_from_boundary(86400, 30)
    cust = uid("bud-conc")
    put_scope(h, "customer", cust, {"max_intents_per_day": 10})
    agents = [new_agent(tag="bud-conc%d" % i) for i in range(8)]
    res = run_concurrently([lambda i=i: intent(h, agents[i % 8], customer=cust) for i in range(80)])
    st = statuses(res)
    check_eq((st.count(201), st.count(429)), (10, 70), "(201, 429) of 80 intents of one customer, limit 10; all %s"
             % sorted(set(map(str, st))))
    for r in res:
        if r.status == 429:
            e = r.error()
            check_eq((e.get("scope"), e.get("scope_id"), e.get("current")), ("customer", cust, 10), "429 scope")
    check_eq(h.psql("SELECT count(*) FROM intents WHERE customer = '%s'" % cust), "10", "intents recorded")


@timeout(90)
def test_two_replicas_admit_scopes_exactly(h):
    away_from_boundary(86400, 40)
    run, env = uid("bud-repl"), uid("brepl")
    put_scope(h, "run", run, {"max_intents_per_day": 7})
    put_scope(h, "env", env, {"max_intents_per_day": 9})
    view = PortView(h, free_port())
    second = Server(view, h.server.admin_key, h.server.org)
    second.start()
    try:
        fns = []
        for i in range(40):
            tgt = h if i % 2 == 0 else view
            fns.append(lambda tgt=tgt, i=i: tgt.request("POST", "/v1/mesh/intents",
                                                        {"agent": new_agent(tag="bud-repl%d" % i), "run_id": run},
                                                        key=h.k1))
        st = statuses(run_concurrently(fns))
        check_eq((st.count(201), st.count(429)), (7, 33), "(201, 429) of 40 intents of one run over two replicas")
        fns = [lambda i=i: (h if i % 2 == 0 else view).request("POST", "/v1/mesh/intents",
                                                                {"agent": env_agent(env, tag="r%d" % i)}, key=h.k1)
               for i in range(40)]
        st = statuses(run_concurrently(fns))
        check_eq((st.count(201), st.count(429)), (9, 31), "(201, 429) of 40 intents of one env over two replicas")
    finally:
        problems = second.stop()
    check(not problems, "second replica stop: %s" % "; ".join(problems))
    check_eq(h.psql("SELECT count(*) FROM intents WHERE run_id = '%s'" % run), "7", "intents of the run")


@timeout(90)
def test_redis_flush_rebuilds_scopes(h):
    """After a FLUSHALL the scopes' policies, intent counts and cost come back from PostgreSQL."""
    away_from_boundary(86400, 40)
    cust, env = uid("bud-flush"), uid("bflush")
    a = env_agent(env, tag="flush")
    put_scope(h, "customer", cust, {"max_intents_per_day": 2})
    put_scope(h, "env", env, '{"max_cost_per_day_usd": 0.5}')
    for i in range(2):
        check_status(intent(h, new_agent(tag="bud-flush"), customer=cust), 201, "customer intent %d" % i)
    accepted(h.hb(hb_obj(a, "0.75", hb_id())), 1, 0, "hb over the env's limit")
    wait_status(lambda: intent(h, a), 429, 10, "env budget before the flush")
    check_eq(h.redis("FLUSHALL"), "OK", "FLUSHALL")
    deadline = time.time() + 10
    got = {}
    while len(got) < 2:
        check(time.time() < deadline, "scopes not enforced again within 10 s of the flush: %s" % got)
        for name, fn in (("customer", lambda: intent(h, new_agent(tag="bud-flush"), customer=cust)),
                         ("env", lambda: intent(h, a))):
            if name in got:
                continue
            r = fn()
            check(r.status in (429, 503), "after FLUSHALL the %s intent got %r" % (name, r))
            if r.status == 429:
                got[name] = r
        time.sleep(0.2)
    check_scope_429(got["customer"], "customer", cust, "max_intents_per_day", 2, 2, 86400, "customer rebuilt")
    check_scope_429(got["env"], "env", env, "max_cost_per_day_usd", "0.5", "0.75", 86400, "env rebuilt")


def run_readme_block(h, marker, *subs):
    """The README's sh block after <!-- tested: marker -->, with each (old, new) of subs replaced (its org
    and ids made this test's own), run as printed against this server; its stdout."""
    import os
    import re
    import subprocess
    from harness import REPO
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    m = re.search(r"<!-- tested: %s -->\n```sh\n(.*?)```" % marker, text, re.S)
    check(m, "README has no block marked <!-- tested: %s -->" % marker)
    script = m.group(1).replace("agent://default/", "agent://%s/" % h.org1)
    for old, new in subs:
        script = script.replace(old, new)
    env = dict(os.environ, BASE="http://127.0.0.1:%d" % h.http_port, ADMIN_KEY=h.k1)
    p = subprocess.run(["sh", "-eu"], input=script.encode(), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    check(p.returncode == 0 and not p.stderr, "example: exit %d, stderr %r" % (p.returncode, p.stderr.decode()))
    return p.stdout.decode()


def test_readme_budget_example(h):
    """The README's budget example, run as printed (its org and customer made this test's own)."""
    from test_k_readme import replies
    cust, run = uid("readme"), uid("readme-run")
    out = replies(run_readme_block(h, "budgets", ("acme", cust), ("run-7", run)))
    check_eq(len(out), 5, "replies (policy, 3 intents, 204): %r" % out)
    check_json(out[0], policy_of(max_intents_per_day=2, max_cost_per_month_usd=Decimal(100)), "the PUT's reply")
    check(all("intent_id" in x for x in out[1:3]), "two intents admitted: %r" % out[1:3])
    e = out[3].get("error", {})
    check_eq((e.get("code"), e.get("scope"), e.get("scope_id"), e.get("limit"), e.get("limit_value"),
              e.get("current")), ("cost_policy_breached", "customer", cust, "max_intents_per_day", 2, 2),
             "the third: refused, naming the customer")
    check(e.get("message", "").startswith("the customer's max_intents_per_day is reached"), "message: %r" % e)
    check_eq(out[4], 204, "DELETE")
    check_eq(h.psql("SELECT count(*) FROM intents WHERE run_id = '%s'" % run), "2", "the run named by the intents")

def scope_events(h, sid, event_type):
    r = h.request("GET", "/v1/mesh/events?event_type=%s&limit=200" % event_type, key=h.k1)
    check_status(r, 200, "events")
    return [e for e in r.json["events"] if e["details"].get("scope_id") == sid]


@timeout(60)
def test_scope_cost_thresholds_and_breach_events(h):
    """A scope's cost crossing its alert thresholds and its limit (from heartbeats, not intents) records
    threshold_crossed and policy_breached once each, naming the scope; alert mode still admits."""
    away_from_boundary(86400, 30)
    wf = uid("bud-thr")
    put_scope(h, "workflow", wf, '{"max_cost_per_day_usd": 1, "action_on_breach": "alert",'
                                 ' "alert_thresholds": [0.5, 1]}')
    a = new_agent(tag="bud-thr")
    hb = '{"agent":"%s","id":"%s","workflow":"%s","metrics":{"cost_usd":%s}}'
    accepted(h.hb(hb % (a, hb_id(), wf, "0.6")), 1, 0, "0.6 of the workflow's 1")
    deadline = time.time() + 10
    while not scope_events(h, wf, "threshold_crossed"):
        check(time.time() < deadline, "no threshold_crossed for the workflow within 10 s")
        time.sleep(0.1)
    accepted(h.hb(hb % (a, hb_id(), wf, "0.5")), 1, 0, "1.1 of 1")
    while not scope_events(h, wf, "policy_breached"):
        check(time.time() < deadline, "no policy_breached for the workflow within 10 s")
        time.sleep(0.1)
    accepted(h.hb(hb % (a, hb_id(), wf, "0.1")), 1, 0, "1.2 of 1: nothing new")
    time.sleep(1.5)
    mark = {"scope": "workflow", "scope_id": wf, "limit": "max_cost_per_day_usd", "limit_value": Decimal(1)}
    check_json([e["details"] for e in scope_events(h, wf, "threshold_crossed")],
               [dict(mark, current=Decimal("1.1"), threshold=Decimal(1)),
                dict(mark, current=Decimal("0.6"), threshold=Decimal("0.5"))], "threshold_crossed, newest first")
    check_json([e["details"] for e in scope_events(h, wf, "policy_breached")], [dict(mark, current=Decimal("1.1"))],
               "one policy_breached")
    check_status(intent(h, a, workflow=wf), 201, "an alert scope admits")


# ------------------------------------------------------------------ reservations (issue 15 item 4)

def reserve(h, agent, est, key=None, **scopes):
    body = '{"agent":"%s","estimated_cost_usd":%s%s}' % (
        agent, est, "".join(',"%s":"%s"' % kv for kv in scopes.items()))
    return h.request("POST", "/v1/mesh/intents", body, key=h.k1 if key is None else key)


def end_intent(h, iid, key=None, agent=None):
    path = "/v1/mesh/intents/%s/end" % urllib.parse.quote(iid, safe="")
    if agent:
        path += "?agent=" + urllib.parse.quote(agent, safe="")
    return h.request("POST", path, key=h.k1 if key is None else key)


@timeout(60)
def test_burst_overshoots_without_reservations_not_with_them(h):
    """20 intents at once against a $5 budget with nothing spent yet: without estimates all are admitted
    (each then spends $1: $20 against $5); with estimated_cost_usd 1 exactly 5 are."""
    away_from_boundary(86400, 30)
    plain, held = uid("bplain"), uid("bheld")
    for env in (plain, held):
        put_scope(h, "env", env, '{"max_cost_per_day_usd": 5}')
    st = statuses(run_concurrently([lambda i=i: intent(h, env_agent(plain, tag="p%d" % i)) for i in range(20)]))
    check_eq(st.count(201), 20, "without estimates every intent of the burst is admitted: %s" % st)
    res = run_concurrently([lambda i=i: reserve(h, env_agent(held, tag="r%d" % i), "1") for i in range(20)])
    st = statuses(res)
    check_eq((st.count(201), st.count(429)), (5, 15), "(201, 429) with estimates of $1 against $5: %s" % st)
    for r in res:
        if r.status == 201:
            check_eq(dec(r.json.get("reserved_usd")), Decimal(1), "reserved_usd in the 201")
        else:
            e = r.error()
            check_eq((e.get("scope"), e.get("limit"), dec(e.get("current"))),
                     ("env", "max_cost_per_day_usd", Decimal(5)), "429: spent + reserved = 5")


@timeout(60)
def test_reservation_drawn_down_and_released(h):
    """Heartbeats of an intent draw its reservation down (spent + reserved stays what it was); ending it
    releases the rest; only its own agent (or an unbound key) may end it; a second end finds nothing."""
    away_from_boundary(86400, 30)
    env = uid("bdraw")
    a, b = env_agent(env, tag="draw-a"), env_agent(env, tag="draw-b")
    put_scope(h, "env", env, '{"max_cost_per_day_usd": 10}')
    r1 = reserve(h, a, "4")
    check_status(r1, 201, "reserve 4 of 10")
    i1 = r1.json["intent_id"]
    check_status(reserve(h, b, "4"), 201, "reserve 4 more: 8 of 10")
    e = check_error(reserve(h, b, "2.000000001"), 429, "cost_policy_breached", what="8 + 2.000000001 > 10")
    check_eq(dec(e.get("current")), Decimal(8), "current = spent 0 + reserved 8")
    accepted(h.hb(hb_obj(a, "1.5", hb_id(), intent=i1)), 1, 0, "1.5 spent by the intent")
    # Once the rollup counted it for the env: spent 1.5 + reserved 2.5 + 4 = 8, unchanged.
    time.sleep(1.5)
    e = check_error(reserve(h, b, "2.000000001"), 429, "cost_policy_breached", what="still 8 after the heartbeat")
    check_eq(dec(e.get("current")), Decimal(8), "spent 1.5 + reserved 6.5")
    agent_key = h.request("POST", "/v1/keys", {"role": "agent", "name": "draw", "agent": b}, key=h.k1).json["key"]
    check_error(end_intent(h, i1, key=agent_key), 404, "reservation_not_found", what="b's key ends a's intent")
    r = end_intent(h, i1, agent=a)
    check_status(r, 200, "end the intent")
    check_json(r.json, {"intent_id": i1, "agent": a, "released_usd": Decimal("2.5")}, "what was left")
    check_error(end_intent(h, i1), 404, "reservation_not_found", what="ending it again")
    check_status(reserve(h, b, "4.5"), 201, "spent 1.5 + reserved 4 + 4.5 = 10")
    check_error(end_intent(h, "no-such-" + uid("i")), 404, "reservation_not_found", what="an unknown intent")


@timeout(60)
def test_reservation_expires_with_an_event(h):
    env = uid("bexp")
    a = env_agent(env, tag="exp")
    put_scope(h, "env", env, '{"max_cost_per_day_usd": 1}')
    h.restart_server({"COSTMESH_RESERVATION_TTL": "2"})
    try:
        r = reserve(h, a, "1")
        check_status(r, 201, "reserve the whole budget")
        iid = r.json["intent_id"]
        check_status(reserve(h, a, "0.1"), 429, "nothing left while it is reserved")
        deadline = time.time() + 10
        while True:
            ev = [e for e in h.request("GET", "/v1/mesh/events?event_type=reservation_expired&limit=100",
                                       key=h.k1).json["events"] if e["details"].get("intent_id") == iid]
            if ev:
                break
            check(time.time() < deadline, "no reservation_expired event within 10 s of a 2 s TTL")
            time.sleep(0.2)
        check_json([(e["agent"], e["details"]) for e in ev], [(a, {"intent_id": iid, "released_usd": Decimal(1)})],
                   "one reservation_expired event")
        check_status(reserve(h, a, "1"), 201, "the budget is free again")
        check_error(end_intent(h, iid), 404, "reservation_not_found", what="ending an expired intent")
    finally:
        h.restart_server()


def test_reservation_bad_input(h):
    a = new_agent(tag="bud-resv-bad")
    for v in ('-1', '"1"', '1000000.000000001'):
        r = h.request("POST", "/v1/mesh/intents", '{"agent":"%s","estimated_cost_usd":%s}' % (a, v), key=h.k1)
        check_error(r, 400, "invalid_field", "estimated_cost_usd", "estimated_cost_usd %s" % v)
    check_error(end_intent(h, "x" * 129), 400, "invalid_field", "intent_id", "a 129-byte intent id")
    check_error(end_intent(h, "x", agent="not-an-address"), 400, "invalid_field", "agent", "a bad ?agent=")
    check_error(end_intent(h, "x", key=h.k2, agent=a), 403, what="another org's agent")


@timeout(60)
def test_redis_flush_restores_open_reservations(h):
    """After a FLUSHALL the open reservations are held again (what is left of each estimate after what its
    agent spent); an ended one is not."""
    away_from_boundary(86400, 30)
    env = uid("brest")
    a = env_agent(env, tag="rest")
    put_scope(h, "env", env, '{"max_cost_per_day_usd": 5}')
    r = reserve(h, a, "3")
    check_status(r, 201, "reserve 3")
    accepted(h.hb(hb_obj(a, "0.5", hb_id(), intent=r.json["intent_id"])), 1, 0, "0.5 of it spent")
    r = reserve(h, a, "1")
    check_status(r, 201, "reserve 1 more")
    check_status(end_intent(h, r.json["intent_id"]), 200, "end it")
    time.sleep(1.5)  # the rollup counts the 0.5 for the env
    check_eq(h.redis("FLUSHALL"), "OK", "FLUSHALL")
    deadline = time.time() + 10
    while True:
        r = reserve(h, a, "2.500000001")
        if r.status != 503:
            break
        check(time.time() < deadline, "admission not back within 10 s of the flush")
        time.sleep(0.2)
    e = check_error(r, 429, "cost_policy_breached", what="spent 0.5 + reserved 2.5 + 2.500000001 > 5")
    check_eq((e.get("scope"), dec(e.get("current"))), ("env", Decimal(3)), "spent 0.5 + the restored 2.5")
    check_status(reserve(h, a, "2"), 201, "3 + 2 = 5 fits: the ended reservation was not restored")


def test_readme_reservations_example(h):
    """The README's burst, run as printed: 10 admitted without estimates, 5 and 5 with them."""
    lines = [l.split() for l in run_readme_block(h, "reservations").splitlines()]
    check_eq(lines, [["10", "201"], ["5", "201"], ["5", "429"]], "the two bursts' statuses")


# ------------------------------------------------------------------ forecasts (issue 15 item 5)

@timeout(60)
def test_forecast_in_the_heartbeat_reply_and_alert_before_the_limit(h):
    """$1 spent in this hour (nothing before): a burn of $1/hour; the day's $1.016666667 runs out in 61 s
    (0.016666667 h, rounded up), inside the default one-hour horizon, so exhaustion_predicted is recorded
    once, before the limit is reached; the month's $1000 does not run out this month; an agent without a
    cost limit has no forecast."""
    from harness import parse_iso
    away_from_boundary(86400, 90)
    away_from_boundary(3600, 30)  # the burn is this hour's cost: the test stays inside one hour
    a = new_agent(tag="bud-fc")
    h.request("PUT", "/v1/mesh/agents/%s/policies/cost" % urllib.parse.quote(a, safe=""),
              '{"max_cost_per_day_usd": 1.016666667, "max_cost_per_month_usd": 1000}', key=h.k1)
    t0 = time.time()
    j = accepted(h.hb(hb_obj(a, "1", hb_id())), 1, 0, "$1")
    fc = j.get("forecasts", {}).get(a)
    check(fc is not None, "no forecast of %s in %.300r" % (a, j))
    check_eq(dec(fc["burn_rate_usd_per_hour"]), Decimal(1), "burn rate")
    ex = fc["exhaustion"]
    check_eq(sorted(ex), ["max_cost_per_day_usd", "max_cost_per_month_usd"], "the cost limits set")
    check_eq(ex["max_cost_per_month_usd"], None, "the month's limit outlasts the month at $1/hour")
    at = parse_iso(ex["max_cost_per_day_usd"])
    check(abs(at - (t0 + 61)) <= 3, "predicted at %s, want about 61 s from now" % ex["max_cost_per_day_usd"])
    deadline = time.time() + 5
    while True:
        ev = [e for e in h.request("GET", "/v1/mesh/events?event_type=exhaustion_predicted&agent=%s"
                                   % urllib.parse.quote(a, safe=""), key=h.k1).json["events"]]
        if ev or time.time() > deadline:
            break
        time.sleep(0.1)
    check_eq(len(ev), 1, "exhaustion_predicted events")
    d = ev[0]["details"]
    check_eq((d.get("limit"), dec(d.get("limit_value")), dec(d.get("current")), dec(d.get("burn_rate_usd_per_hour")),
              d.get("predicted_at")), ("max_cost_per_day_usd", Decimal("1.016666667"), Decimal(1), Decimal(1),
                                       ex["max_cost_per_day_usd"]), "the event's details")
    breaches = h.request("GET", "/v1/mesh/events?event_type=policy_breached&agent=%s" % urllib.parse.quote(a, safe=""),
                         key=h.k1).json["events"]
    check_eq(breaches, [], "predicted before the limit is reached: no breach yet")
    # Once per window: another heartbeat predicts it again, and records nothing new.
    j = accepted(h.hb(hb_obj(a, "0.001", hb_id())), 1, 0, "$0.001 more")
    check(j["forecasts"][a]["exhaustion"]["max_cost_per_day_usd"] is not None, "still predicted: %.300r" % j)
    time.sleep(0.5)
    n = len(h.request("GET", "/v1/mesh/events?event_type=exhaustion_predicted&agent=%s"
                      % urllib.parse.quote(a, safe=""), key=h.k1).json["events"])
    check_eq(n, 1, "exhaustion_predicted once per window")
    # The agent page and the spend reply carry the same forecast (as of their own second).
    v = h.request("GET", "/v1/mesh/agents/%s" % urllib.parse.quote(a, safe=""), key=h.k1).json
    sp = h.spend_ok(a, window="day")
    for what, fc in (("agent page", v.get("forecast")), ("spend reply", sp.get("forecast"))):
        check(fc is not None, "%s without a forecast" % what)
        check_eq(dec(fc["burn_rate_usd_per_hour"]), Decimal("1.001"), "%s: burn" % what)
        check_eq(fc["exhaustion"]["max_cost_per_month_usd"], None, "%s: the month" % what)
        left = parse_iso(fc["exhaustion"]["max_cost_per_day_usd"]) - time.time()
        check(50 <= left <= 62, "%s: the day's limit runs out in %.0f s, want about 57" % (what, left))
    # The 429 of a limit reached carries the binding scope's forecast.
    h.request("PATCH", "/v1/mesh/agents/%s/policies/cost" % urllib.parse.quote(a, safe=""),
              '{"max_cost_per_day_usd": 1}', key=h.k1)
    e = check_error(intent(h, a), 429, "cost_policy_breached", what="the day's $1 reached")
    fc = e.get("forecast")
    check(fc is not None and dec(fc["burn_rate_usd_per_hour"]) == Decimal("1.001"), "429 forecast: %.300r" % e)
    check(abs(parse_iso(fc["exhaustion"]["max_cost_per_day_usd"]) - time.time()) <= 3, "exhausted now: %r" % fc)
    check_eq(fc["exhaustion"]["max_cost_per_month_usd"], None, "429 forecast of the month")
    b = new_agent(tag="bud-fc-none")
    j = accepted(h.hb(hb_obj(b, "1", hb_id())), 1, 0, "an agent without a policy")
    check("forecasts" not in j, "no forecasts without a cost limit: %.300r" % j)
    check("forecast" not in h.spend_ok(b, window="day"), "no forecast in the spend of an agent without a policy")
