"""The delegation tree and outcomes (issue 14 items 3 and 4): a three-level tree whose children report before
their parent, exact across batches and retries from the tail and from the rollup; the tree with each node's
cost; a tree cap over two replicas; intents ended through POST .../end and through a heartbeat's status, and
the outcome figures of spend replies, abandonment included; tenancy and bad input on every new route."""

import time
from decimal import Decimal

from harness import (PortView, Server, check, check_eq, check_error, check_status, dec, enc, free_port, hb_id,
                     new_agent, timeout)
from test_e_policies import away_from_boundary, create_agent_key, events_of, put_policy, run_concurrently
from test_o_budgets import end_intent, reserve, run_readme_block, scope_path
from test_o_finance import hb, send, settled_now, uid, unit_spend, wait_rolled_up


def spend(h, x, key=None, status=200, hint=None):
    r = h.request("GET", "/v1/mesh/intents/%s/spend%s" % (enc(x), "?agent=" + enc(hint) if hint else ""),
                  key=h.k1 if key is None else key)
    check_status(r, status, "intent spend of %s" % x)
    return r


def tree(h, x, key=None, status=200):
    r = h.request("GET", "/v1/mesh/intents/%s/tree" % enc(x), key=h.k1 if key is None else key)
    check_status(r, status, "tree of %s" % x)
    return r


def end(h, x, body, key=None):
    return h.request("POST", "/v1/mesh/intents/%s/end" % enc(x), body, key=h.k1 if key is None else key)


def cost(j):
    return Decimal(str(j["cost_usd"]))


@timeout(120)
def test_three_level_tree_children_first(h):
    """A root R (agent a), its child C (agent b) and grandchild G (agent c), and a child D that was admitted
    with its parent and reports without naming it. G reports first, then C, then R, in several batches with a
    retry; each intent's self and tree, each node of R's tree, and the root of each are exact at once (tail,
    the worker held back) and after the worker (rollup)."""
    h.restart_server({"COSTMESH_ROLLUP_MS": "600000"})
    try:
        now = settled_now()
        a, b, c = new_agent(tag="tree"), new_agent(tag="tree"), new_agent(tag="tree")
        r_, c_, g_, d_ = uid("R"), uid("C"), uid("G"), uid("D")
        g1, g2 = hb(c, now, hb_id(), g_, {"parent_intent_id": c_}, cost_usd="0.004"), \
            hb(c, now, hb_id(), g_, cost_usd="0.000000001")
        send(h, [g1], 1, 0, "grandchild before anyone")
        send(h, [g1, g2], 1, 1, "grandchild again, with a retry of the first")
        r = h.request("POST", "/v1/mesh/intents", {"agent": b, "intent_id": d_, "parent_intent_id": r_}, key=h.k1)
        check_status(r, 201, "child admitted under its parent")
        send(h, [hb(b, now, hb_id(), c_, {"parent_intent_id": r_}, cost_usd="0.03"),
                 hb(b, now, hb_id(), d_, cost_usd="0.2")], 2, 0, "the children")
        send(h, [hb(a, now, hb_id(), r_, cost_usd="1")], 1, 0, "the root, last")
        want_self = {r_: Decimal(1), c_: Decimal("0.03"), g_: Decimal("0.004000001"), d_: Decimal("0.2")}
        want_tree = {r_: Decimal("1.234000001"), c_: Decimal("0.034000001"), g_: want_self[g_], d_: want_self[d_]}
        parents = {r_: None, c_: r_, g_: c_, d_: r_}
        for phase in ("tail", "rollup"):
            for x in (r_, c_, g_, d_):
                j = spend(h, x).json
                check_eq((cost(j), cost(j["self"]), cost(j["tree"]), j["parent_intent_id"], j["root_intent_id"]),
                         (want_self[x], want_self[x], want_tree[x], parents[x], r_), "%s spend (%s)" % (x, phase))
            check_eq((spend(h, r_).json["tree"]["intents"], spend(h, r_).json["tree"]["heartbeats"]), (4, 5),
                     "root's tree counts (%s)" % phase)
            t = tree(h, r_).json
            check_eq((t["intent_id"], t["intents"], t["truncated"]), (r_, 4, False), "tree head (%s)" % phase)
            nodes = {n["intent_id"]: n for n in t["nodes"]}
            check_eq(set(nodes), {r_, c_, g_, d_}, "tree nodes (%s)" % phase)
            check_eq(t["nodes"][0]["intent_id"], r_, "the root first (%s)" % phase)
            for x, n in nodes.items():
                check_eq((n["parent_intent_id"], dec(n["cost_usd"]), dec(n["tree_cost_usd"]), n["status"]),
                         (parents[x], want_self[x], want_tree[x], None), "node %s (%s)" % (x, phase))
            check_eq([(nodes[x]["depth"], nodes[x]["agents"]) for x in (r_, c_, g_, d_)],
                     [(0, [a]), (1, [b]), (2, [c]), (1, [b])], "depths and agents (%s)" % phase)
            order = [n["intent_id"] for n in t["nodes"]]
            check(order.index(g_) == order.index(c_) + 1, "depth first: G right after C: %s" % order)
            if phase == "tail":
                check_eq(h.psql("SELECT count(*) FROM intent_edge WHERE intent_id IN ('%s', '%s')" % (c_, g_)), "0",
                         "the heartbeats' edges all past the watermark while the tree was read")
                h.restart_server({"COSTMESH_ROLLUP_MS": "20"})
                wait_rolled_up(h)
        check_eq(h.psql("SELECT count(*) FROM intent_edge WHERE intent_id IN ('%s', '%s')" % (c_, g_)), "2",
                 "the worker kept the heartbeats' edges")
    finally:
        h.restart_server()


def test_tree_tenancy_and_bad_input(h):
    """Another org's key finds nothing (404) and may not name this org's agent (403); an agent key sees its
    own part of a tree; bad ids and bodies are refused naming the field."""
    now = settled_now()
    a, b = new_agent(tag="tree-t"), new_agent(tag="tree-t")
    r_, c_ = uid("R"), uid("C")
    send(h, [hb(a, now, hb_id(), r_, cost_usd="1"),
             hb(b, now, hb_id(), c_, {"parent_intent_id": r_}, cost_usd="2")], 2, 0, "root and child")
    for what, r in (("spend", spend(h, r_, key=h.k2, status=404)), ("tree", tree(h, r_, key=h.k2, status=404)),
                    ("end", end(h, r_, {"status": "failed"}, key=h.k2))):
        check_error(r, 404, "intent_not_found", what="org2 reads org1's intent (%s)" % what)
    check_error(spend(h, r_, key=h.k2, status=403, hint=a), 403, "forbidden_org", "agent", "org2 names org1's agent")
    ka = create_agent_key(h, h.k1, a)
    j = spend(h, r_, key=ka).json
    check_eq((cost(j["self"]), cost(j["tree"]), j["tree"]["intents"]), (Decimal(1), Decimal(1), 2),
             "agent key: its own part of the tree")
    check_eq([dec(n["cost_usd"]) for n in tree(h, r_, key=ka).json["nodes"]], [Decimal(1), Decimal(0)],
             "agent key: tree nodes with its own part")
    check_error(spend(h, c_, key=ka, status=404), 404, "intent_not_found", what="agent key, another agent's leaf")
    check_error(spend(h, r_, key=ka, status=403, hint=b), 403, "forbidden_agent", "agent", "agent key names another")
    check_error(spend(h, "x" * 129, status=400), 400, "invalid_field", "intent_id", "intent id too long")
    for body, field in (({"agent": a, "parent_intent_id": "p" * 129}, "parent_intent_id"),
                        ({"agent": a, "intent_id": "same", "parent_intent_id": "same"}, "parent_intent_id"),
                        ({"agent": a, "parent_intent_id": 7}, "parent_intent_id")):
        check_error(h.request("POST", "/v1/mesh/intents", body, key=h.k1), 400, "invalid_field", field,
                    "intent with a bad parent %r" % body)
    for body, field in (({}, "status"), ({"status": "done"}, "status"), ({"status": "failed", "quality": 1.5},
                        "quality"), ({"status": "failed", "quality": -0.1}, "quality"),
                        ({"status": "failed", "quality": "0.5"}, "quality"), ({"status": "failed", "why": 1}, "why")):
        check_error(end(h, r_, body), 400, "invalid_field", field, "end with %r" % body)
    check_eq(spend(h, r_).json["outcome"], None, "bad ends changed nothing")
    check_error(end(h, uid("nobody"), {"status": "failed"}), 404, "intent_not_found", what="end of an unknown intent")


@timeout(120)
def test_outcomes_in_spend_replies(h):
    """In one run: I1 ends succeeded through POST .../end (twice: the same answer; then another status: 409),
    I2 failed through a heartbeat's status, I3 goes on, I4 falls silent past the abandonment setting. The run's
    and the agent's spend count them, the cost per successful intent is the ended intents' cost over the one
    success, and the shares of spend on failed and unfinished intents are exact; abandonment is reported. The
    same from the raw rows past the watermark (the worker held back) and from the rollups."""
    h.restart_server({"COSTMESH_INTENT_ABANDON_S": "5", "COSTMESH_ROLLUP_MS": "600000"})
    try:
        now = settled_now()
        a, run = new_agent(tag="outc"), uid("run")
        i1, i2, i3, i4 = uid("I1"), uid("I2"), uid("I3"), uid("I4")
        at = {"run_id": run}
        send(h, [hb(a, now, hb_id(), i1, at, cost_usd="0.3"), hb(a, now, hb_id(), i2, at, cost_usd="0.5"),
                 hb(a, now, hb_id(), i3, at, cost_usd="1"), hb(a, now, hb_id(), None, at, cost_usd="0.2")],
             4, 0, "the run's work")
        r = end(h, i1, '{"status": "succeeded", "quality": 0.85}')
        check_status(r, 200, "end I1")
        check_eq((r.json["intent_id"], r.json["status"], dec(r.json["quality"])), (i1, "succeeded", Decimal("0.85")),
                 "end reply")
        again = end(h, i1, '{"status": "succeeded", "quality": 0.85}')
        check_status(again, 200, "end I1 again")
        check_eq(again.json, r.json, "a repeated end answers the same")
        check_error(end(h, i1, {"status": "failed"}), 409, "intent_already_ended", "status", "end I1 as failed")
        send(h, [hb(a, now, hb_id(), i2, dict(at, status="failed"), cost_usd="0.25")], 1, 0, "I2 fails")
        check_error(end(h, i2, {"status": "succeeded"}), 409, "intent_already_ended", "status",
                    "end of an intent its heartbeat ended")
        check_eq(spend(h, i2).json["outcome"]["status"], "failed", "I2's outcome from its heartbeat")
        send(h, [hb(a, now, hb_id(), i4, at, cost_usd="0.05")], 1, 0, "I4 reports, then falls silent")
        time.sleep(6)
        send(h, [hb(a, int(time.time()), hb_id(), i3, at, cost_usd="0.1")], 1, 0, "I3 goes on")
        total = Decimal("2.4")
        want = {"succeeded": 1, "failed": 1, "cancelled": 0, "abandoned": 1,
                "cost_per_successful_intent_usd": Decimal("1.05"),
                "failed_spend_share": (Decimal("0.75") / total).quantize(Decimal("0.000001")),
                "unfinished_spend_share": (Decimal("1.15") / total).quantize(Decimal("0.000001"))}
        for phase in ("tail", "rollup"):
            for what, j in (("run", unit_spend(h, "run", run, "day", now).json), ("agent", h.spend_ok(a, "day", now))):
                check_eq(cost(j), total, "%s cost (%s)" % (what, phase))
                got = {k: (dec(v) if isinstance(v, (int, float)) and k.endswith(("usd", "share")) else v)
                       for k, v in j["outcomes"].items()}
                check_eq(got, want, "%s outcomes (%s)" % (what, phase))
            check_eq((spend(h, i4).json["abandoned"], spend(h, i3).json["abandoned"], spend(h, i1).json["abandoned"]),
                     (True, False, False), "abandoned: silent and not ended only (%s)" % phase)
            if phase == "tail":
                check_eq(h.psql("SELECT count(*) FROM cm_rollup_tail() WHERE address = '%s'" % a), "7",
                         "the agent's rows all past the watermark while its outcomes were read")
                h.restart_server({"COSTMESH_INTENT_ABANDON_S": "5", "COSTMESH_ROLLUP_MS": "20"})
                wait_rolled_up(h)
        j = spend(h, i1).json["outcome"]
        check_eq((j["status"], dec(j["quality"])), ("succeeded", Decimal("0.85")), "I1's outcome")
    finally:
        h.restart_server()


@timeout(120)
def test_tree_cap_over_two_replicas(h):
    """An orchestrator's policy caps its trees at $1. Under that cap, a child is admitted; once the tree's
    heartbeats (a child's and a grandchild's, reported by other agents) reach it, every new intent under the
    root, through either replica, concurrently, is refused 429 naming the root; another root and an intent
    without a parent are not; one policy_breached event names the tree."""
    away_from_boundary(3600, 30)
    o, s = new_agent(tag="cap-o"), new_agent(tag="cap-s")
    put_policy(h, o, '{"max_cost_per_intent_tree_usd": 1}')
    check_eq(dec(h.request("GET", "/v1/mesh/agents/%s/policies/cost" % enc(o), key=h.k1)
                 .json["max_cost_per_intent_tree_usd"]), Decimal(1), "the cap in the policy")
    r_, other = uid("R"), uid("R2")
    for x in (r_, other):
        check_status(h.request("POST", "/v1/mesh/intents", {"agent": o, "intent_id": x}, key=h.k1), 201, "root")
    now = int(time.time())
    send(h, [hb(s, now, hb_id(), uid("C"), {"parent_intent_id": r_}, cost_usd="0.6")], 1, 0, "a child's cost")
    r = h.request("POST", "/v1/mesh/intents", {"agent": o, "parent_intent_id": r_}, key=h.k1)
    check_status(r, 201, "a child under the cap")
    c2 = r.json["intent_id"]
    send(h, [hb(s, now, hb_id(), uid("G"), {"parent_intent_id": c2}, cost_usd="0.4")], 1, 0,
         "a grandchild's cost reaches the cap")
    view = PortView(h, free_port())
    second = Server(view, h.server.admin_key, h.server.org)
    second.start()
    try:
        fns = [lambda tgt=(h if i % 2 == 0 else view), p=(r_ if i % 3 else c2): tgt.request(
            "POST", "/v1/mesh/intents", {"agent": o, "parent_intent_id": p}, key=h.k1) for i in range(12)]
        res = run_concurrently(fns)
        for i, r in enumerate(res):
            check_error(r, 429, "cost_policy_breached", what="intent %d under the capped tree" % i)
            e = r.error()
            check_eq((e.get("scope"), e.get("scope_id"), e.get("limit"), e.get("root_intent_id"),
                      dec(e.get("limit_value")), dec(e.get("current"))),
                     ("intent_tree", r_, "max_cost_per_intent_tree_usd", r_, Decimal(1), Decimal(1)),
                     "429 %d names the root" % i)
            check("retry-after" not in r.headers, "a tree cap has no Retry-After: %r" % r.headers)
        for tgt in (h, view):
            check_status(tgt.request("POST", "/v1/mesh/intents", {"agent": o, "parent_intent_id": other}, key=h.k1),
                         201, "another root's tree")
            check_status(tgt.request("POST", "/v1/mesh/intents", {"agent": o}, key=h.k1), 201, "no parent")
    finally:
        problems = second.stop()
    check(not problems, "second replica stop: %s" % "; ".join(problems))
    evs = [e for e in events_of(h, o, "policy_breached")
           if e["details"].get("limit") == "max_cost_per_intent_tree_usd"]
    check_eq([e["details"].get("root_intent_id") for e in evs], [r_], "one policy_breached for the tree")
    check_eq(cost(spend(h, r_).json["tree"]), Decimal(1), "the tree's cost")
    # Another agent without the cap is not refused under the same root: the cap is the asking agent's policy's.
    check_status(h.request("POST", "/v1/mesh/intents", {"agent": s, "parent_intent_id": r_}, key=h.k1), 201,
                 "an agent whose policy sets no tree cap")


@timeout(60)
def test_end_records_the_outcome_and_releases_the_reservation(h):
    """One POST .../end does both jobs: with an outcome it records it and releases what is left of the intent's
    reservation (so the agent's budget admits again at once); a repeat answers the kept outcome and releases
    nothing; an end without a body then finds no reservation (404). A tree cap on a scope's policy is refused
    naming the field."""
    away_from_boundary(86400, 30)
    a = new_agent(tag="end-both")
    put_policy(h, a, '{"max_cost_per_day_usd": 10}')
    r = reserve(h, a, "4")
    check_status(r, 201, "reserve 4 of 10")
    i1 = r.json["intent_id"]
    check_error(reserve(h, a, "7"), 429, "cost_policy_breached", what="4 reserved + 7 > 10")
    send(h, [hb(a, int(time.time()), hb_id(), i1, cost_usd="1.5")], 1, 0, "the intent spends 1.5")
    r = end(h, i1, '{"status": "succeeded", "quality": 0.5}')
    check_status(r, 200, "end with an outcome")
    check_eq(sorted(r.json), ["ended_at", "intent_id", "quality", "released_usd", "status"], "end reply fields")
    check_eq((r.json["intent_id"], r.json["status"], dec(r.json["quality"]), dec(r.json["released_usd"])),
             (i1, "succeeded", Decimal("0.5"), Decimal("2.5")), "the outcome, and 4 - 1.5 released")
    check_status(reserve(h, a, "7"), 201, "spent 1.5 + 7 <= 10 once released")
    again = end(h, i1, '{"status": "succeeded", "quality": 0.5}')
    check_status(again, 200, "the same end again")
    check_eq(dict(again.json, released_usd=None), dict(r.json, released_usd=None), "the kept outcome again")
    check_eq(dec(again.json["released_usd"]), Decimal(0), "nothing left to release")
    check_error(end_intent(h, i1), 404, "reservation_not_found", what="an end without a body after the release")
    check_eq(spend(h, i1).json["outcome"]["status"], "succeeded", "the outcome in the intent's spend")
    r = h.request("PUT", scope_path("env", "test"), '{"max_cost_per_intent_tree_usd": 1}', key=h.k1)
    check_error(r, 400, "invalid_field", "max_cost_per_intent_tree_usd", "a tree cap on a scope's policy")


@timeout(60)
def test_readme_trees_example(h):
    """The README's tree example, run as printed after its root (the run example's intent, with 0.4 spent) is
    this test's own: the spend and tree of the root, the end (its outcome, nothing reserved to release) and
    the run's outcomes."""
    from test_k_readme import replies
    a = "agent://%s/production/research-agent" % h.org1
    root, sub1, sub2, run = uid("int_run42"), uid("int_sub1"), uid("int_sub2"), uid("run")
    check_status(h.request("POST", "/v1/mesh/intents", {"agent": a, "intent_id": root, "run_id": run}, key=h.k1),
                 201, "the root")
    send(h, [hb(a, int(time.time()), hb_id(), root, cost_usd="0.4")], 1, 0, "the root's cost")
    out = replies(run_readme_block(h, "trees", ("int_run42_1", root), ("int_sub1", sub1), ("int_sub2", sub2),
                                   ("hb-sub2-1", hb_id()), ("run-42", run)))
    check_eq(len(out), 6, "replies (intent, heartbeat, spend, tree, end, run spend): %r" % out)
    spent, nodes, ended, run_spend = out[2], out[3], out[4], out[5]
    check_eq((cost(spent["self"]), cost(spent["tree"]), spent["tree"]["intents"]), (Decimal("0.4"), Decimal("0.45"), 3),
             "the root's self and tree")
    check_eq([n["intent_id"] for n in nodes["nodes"]], [root, sub1, sub2], "the tree, depth first")
    check_eq((ended["intent_id"], ended["status"], dec(ended["quality"]), dec(ended["released_usd"])),
             (root, "succeeded", Decimal("0.9"), Decimal(0)), "the end")
    check_eq((run_spend["outcomes"]["succeeded"], dec(run_spend["outcomes"]["cost_per_successful_intent_usd"])),
             (1, Decimal("0.4")), "the run's outcomes")


@timeout(60)
def test_tree_cap_named_before_a_window_limit(h):
    """The tree is one more level of the same admission: when it and a window's limit are both reached, the
    429 names the tree (no window ends it: no Retry-After); an intent outside the tree gets the window's."""
    away_from_boundary(86400, 30)
    o, s_ = new_agent(tag="cap-w"), new_agent(tag="cap-w")
    put_policy(h, o, '{"max_intents_per_day": 1, "max_cost_per_intent_tree_usd": 0.5}')
    r_ = uid("R")
    check_status(h.request("POST", "/v1/mesh/intents", {"agent": o, "intent_id": r_}, key=h.k1), 201, "the root")
    send(h, [hb(s_, int(time.time()), hb_id(), uid("C"), {"parent_intent_id": r_}, cost_usd="0.5")], 1, 0,
         "a child's cost reaches the cap")
    r = h.request("POST", "/v1/mesh/intents", {"agent": o, "parent_intent_id": r_}, key=h.k1)
    e = check_error(r, 429, "cost_policy_breached", what="under the capped tree, the day's intents used up")
    check_eq((e.get("scope"), e.get("scope_id"), e.get("limit"), e.get("retry_after_s")),
             ("intent_tree", r_, "max_cost_per_intent_tree_usd", None), "the tree is named")
    check("retry-after" not in r.headers, "no Retry-After for a tree: %r" % r.headers)
    r = h.request("POST", "/v1/mesh/intents", {"agent": o}, key=h.k1)
    e = check_error(r, 429, "cost_policy_breached", what="no parent, the day's intents used up")
    check_eq((e.get("scope"), e.get("scope_id"), e.get("limit")), ("agent", o, "max_intents_per_day"),
             "outside the tree, the window's limit")
    check("retry-after" in r.headers, "a window's limit has a Retry-After: %r" % r.headers)
