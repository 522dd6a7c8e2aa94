"""GET /v1/mesh/policies (the dashboard's Budgets page): every cost policy of the key's org, widest scope
first, each with its windows' cost and intents, what open reservations hold and its forecast; exact before
the rollup worker has run; paged; admin keys only; bad input named."""

import json
import time
import urllib.parse
import uuid
from decimal import Decimal

from harness import check, check_eq, check_error, check_status, dec, hour_start, iso, parse_iso, timeout, window_bounds
from test_e_policies import away_from_boundary

RANK = ["org", "env", "customer", "workflow", "run", "agent"]


def uid(tag):
    return "%s-%s" % (tag, uuid.uuid4().hex[:12])


def list_all(h, key, limit):
    """Every page of the list, following next_cursor; the items in order."""
    items, cursor, pages = [], None, 0
    while True:
        q = {"limit": limit}
        if cursor is not None:
            q["cursor"] = cursor
        r = h.request("GET", "/v1/mesh/policies?" + urllib.parse.urlencode(q), key=key)
        check_status(r, 200, "policy list page %d" % pages)
        items += r.json["policies"]
        cursor = r.json["next_cursor"]
        pages += 1
        check(pages < 1000, "the pages never end")
        if cursor is None:
            return items


def burn(this_hour, prev_hour, at):
    """forecast.h's burn rate, nano-dollars per hour, at Unix second `at`."""
    into = int(at) % 3600
    return this_hour + prev_hour * (3600 - into) // 3600


@timeout(120)
def test_policy_list_shows_every_scope_with_usage(h):
    # Inside one hour (and so one day) from the first heartbeat to the read.
    away_from_boundary(3600, 60)
    env, customer, workflow, run = uid("env"), uid("cust"), uid("wf"), uid("run")
    agent = "agent://org1/%s/%s" % (env, uid("worker"))
    policies = {
        ("env", env): {"max_cost_per_hour_usd": 2, "action_on_breach": "alert"},
        ("customer", customer): {"max_cost_per_day_usd": "10.5", "max_intents_per_day": 5},
        ("workflow", workflow): {"max_cost_per_month_usd": 100},
        ("run", run): {"max_intents_per_hour": 3},
        ("agent", agent): {"max_cost_per_day_usd": 20},
    }
    for (kind, sid), body in policies.items():
        path = ("/v1/mesh/agents/%s/policies/cost" % urllib.parse.quote(sid, safe="") if kind == "agent" else
                "/v1/mesh/%ss/%s/policies/cost" % (kind, urllib.parse.quote(sid, safe="")))
        text = "{" + ",".join("%s:%s" % (json.dumps(k), v if not isinstance(v, str) or k.startswith("max_") else
                                          json.dumps(v)) for k, v in body.items()) + "}"
        check_status(h.request("PUT", path, text, key=h.k1), 200, "PUT %s policy" % kind)

    # Spend: 0.75 in the previous hour (when it is today) and 1.25 now, all of the run, workflow and
    # customer; then an intent of the customer reserving 2.
    now = time.time()
    prev_ts = hour_start(now) - 1800
    same_day = int(prev_ts) // 86400 == int(now) // 86400
    for cost, ts in (("0.75", prev_ts), ("1.25", now)):
        r = h.hb('{"agent":%s,"id":%s,"ts":%s,"run_id":%s,"workflow":%s,"customer":%s,"metrics":{"cost_usd":%s}}'
                 % (json.dumps(agent), json.dumps(uid("hb")), json.dumps(iso(ts)), json.dumps(run),
                    json.dumps(workflow), json.dumps(customer), cost))
        check_status(r, 202, "heartbeat of %s" % cost)
    r = h.request("POST", "/v1/mesh/intents", {"agent": agent, "customer": customer, "estimated_cost_usd": 2},
                  key=h.k1)
    check_status(r, 201, "intent reserving 2")
    t0 = time.time()

    # Read at once: the scopes' cost is exact before the rollup worker sums it (the tail is read too).
    r = h.request("GET", "/v1/mesh/policies?limit=1000", key=h.k1)
    t1 = time.time()
    check_status(r, 200, "policy list")
    mine = {(p["scope"], p["scope_id"]): p for p in r.json["policies"]
            if (p["scope"], p["scope_id"]) in policies}
    check_eq(sorted(mine), sorted(policies), "our scopes in the list")
    day_cost = Decimal("2") if same_day else Decimal("1.25")
    for key, p in mine.items():
        kind = key[0]
        what = "%s %s" % key
        check_eq(dec(p["hour"]["cost_usd"]), Decimal("1.25"), what + ": hour cost")
        check_eq(dec(p["today"]["cost_usd"]), day_cost, what + ": today's cost")
        check(dec(p["month"]["cost_usd"]) >= day_cost, what + ": month cost %s" % p["month"]["cost_usd"])
        # The intent names the customer only: its run and workflow count none.
        counted = kind in ("env", "customer", "agent")
        check_eq((p["hour"]["intents"], p["today"]["intents"]), (1, 1) if counted else (0, 0), what + ": intents")
        check_eq(dec(p["reserved_usd"]), Decimal(2) if counted else Decimal(0), what + ": reserved_usd")
        got = {k: v for k, v in p["policy"].items() if k in policies[key]}
        check_eq({k: dec(v) for k, v in got.items() if k.startswith("max_")},
                 {k: Decimal(str(v)) for k, v in policies[key].items() if k.startswith("max_")}, what + ": policy")
        cost_limits = [k for k in policies[key] if k.startswith("max_cost")]
        if not cost_limits:
            check("forecast" not in p, what + ": a forecast without a cost limit")
            continue
        # The burn of the last hour: 1.25 + the part of 0.75 inside it, as of the reply's time.
        f = p["forecast"]
        b = dec(f["burn_rate_usd_per_hour"]) * 10**9
        hi, lo = burn(1250000000, 750000000, t0), burn(1250000000, 750000000, t1 + 1)
        check(lo <= b <= hi, "%s: burn rate %s, want between %d and %d nanos" % (what, b, lo, hi))
        check_eq(sorted(f["exhaustion"]), sorted(cost_limits), what + ": exhaustion's limits")
    # Each cost limit's exhaustion at that burn: spent + burn reaches the limit, or null when its window
    # ends first. The reply's time is between t0 and t1.
    windows = {"max_cost_per_hour_usd": ("hour", "hour"), "max_cost_per_day_usd": ("day", "today"),
               "max_cost_per_month_usd": ("month", "month")}
    predicted = 0
    for key, p in mine.items():
        for lim, at in p.get("forecast", {}).get("exhaustion", {}).items():
            window, member = windows[lim]
            left = (dec(p["policy"][lim]) - dec(p[member]["cost_usd"])) * 10**9
            b = dec(p["forecast"]["burn_rate_usd_per_hour"]) * 10**9
            end = window_bounds(window, t0)[1]
            due = [t + int(-(-left * 3600 // b)) for t in (int(t0), int(t1) + 1)]
            what = "%s %s: %s runs out at %r" % (key[0], key[1], lim, at)
            if at is None:
                check(due[1] >= end, what + ", want %s" % iso(due[0]))
            else:
                predicted += 1
                check(due[0] <= parse_iso(at) <= due[1] and parse_iso(at) < end, what + ", want %s" % iso(due[0]))
    check(predicted > 0 or window_bounds("hour", t0)[1] - t0 < 45 * 60,
          "the env's hourly limit of 2 should run out within the hour at this burn")

    # Paged, with a limit of 2: every policy once, widest scope first, then by id.
    items = list_all(h, h.k1, 2)
    keys = [(p["scope"], p["scope_id"] or "") for p in items]
    check_eq(len(keys), len(set(keys)), "a policy listed twice across pages")
    check_eq(keys, sorted(keys, key=lambda k: (RANK.index(k[0]), k[1])), "the list's order")
    check(all(k in keys for k in policies), "a policy missing across pages")

    # Another org's admin sees none of these; an agent key may not list.
    other = [(p["scope"], p["scope_id"]) for p in list_all(h, h.k2, 1000)]
    check(not any(k in policies for k in other), "org2 sees org1's policies")
    agent_key = h.request("POST", "/v1/keys", {"role": "agent", "name": "lister"}, key=h.k1).json["key"]
    check_error(h.request("GET", "/v1/mesh/policies", key=agent_key), 403, what="an agent key lists policies")

    # Bad input names its field.
    for q, field in (("limit=0", "limit"), ("limit=x", "limit"), ("cursor=nokind", "cursor"),
                     ("cursor=team%3Ax", "cursor")):
        check_error(h.request("GET", "/v1/mesh/policies?" + q, key=h.k1), 400, "invalid_field", field, what=q)

    # A deleted policy leaves the list.
    check_status(h.request("DELETE", "/v1/mesh/runs/%s/policies/cost" % run, key=h.k1), 204, "DELETE run policy")
    left = [(p["scope"], p["scope_id"]) for p in list_all(h, h.k1, 1000)]
    check(("run", run) not in left and ("customer", customer) in left, "after DELETE: %r" % left[-5:])
