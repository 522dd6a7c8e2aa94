"""Issue 15 item 2, billable rates: billing cards (versions, refusals naming the field), a customer's rated usage
by line item against a hand-computed table with a price change in the middle of the period and half-even
rounding at the 9th decimal, the same as CSV parsed back, exact from the tail and from the rollup and after
retries, tenancy; and the rest of item 1: spend split by model, cached vs fresh input."""

import csv
import io
import json
import os
import subprocess
import time
import urllib.parse
import uuid
from decimal import Decimal

from harness import (REPO, accepted, batch, check, check_eq, check_error, check_status, enc, hb_id, hour_start, iso,
                     new_agent, timeout)
from test_e_policies import create_agent_key
from test_g_ctl import ctl, fails, ok
from test_k_readme import replies
from test_n_pricing import card, model, priced_hb, put_card
from test_o_finance import wait_rolled_up

D = Decimal


def uid(tag):
    return "%s-%s" % (tag, uuid.uuid4().hex[:12])


def bill_path(plan):
    return "/v1/mesh/pricing/billing/" + urllib.parse.quote(plan, safe="")


def bill_card(frm, **prices):
    """A billing card body as JSON text, prices as the literal text given (per_run="0.05" -> per_run_usd)."""
    parts = ['"effective_from":"%s"' % (frm if isinstance(frm, str) else iso(frm))]
    parts += ['"per_%s_usd":%s' % (k, v) for k, v in prices.items()]
    return "{" + ",".join(parts) + "}"


def put_bill(h, plan, body, want=201, key=None, what="PUT a billing card version"):
    r = h.request("PUT", bill_path(plan), body, key=h.k1 if key is None else key)
    check_status(r, want, what)
    return r


def usage(h, customer, frm, to, csv_=False, key=None, status=200):
    path = "/v1/mesh/customers/%s/usage%s?from=%s&to=%s" % (enc(customer), ".csv" if csv_ else "",
                                                             urllib.parse.quote(iso(frm)), urllib.parse.quote(iso(to)))
    r = h.request("GET", path, key=h.k1 if key is None else key)
    check_status(r, status, "usage of %s" % customer)
    return r


def bhb(agent, ts, customer, run=None, compute_ms=None, **metrics):
    body = {"agent": agent, "id": hb_id(), "ts": iso(ts), "customer": customer}
    if run:
        body["run_id"] = run
    if compute_ms is not None:
        metrics["compute_ms"] = compute_ms
    body["metrics"] = metrics
    return json.dumps(body)


def lines_of(j):
    """(item, from, to, effective_from, quantity, unit price, amount) per line, as exact values."""
    return [(x["item"], x["from"], x["to"], x["effective_from"], D(str(x["quantity"])),
             None if x["unit_price_usd"] is None else D(str(x["unit_price_usd"])), D(str(x["amount_usd"])),
             int(x["amount_nanos"])) for x in j["lines"]]


def test_billing_cards_versions_and_refusals(h):
    plan = uid("plan")
    t0 = hour_start(time.time()) - 3600
    r = put_bill(h, plan, bill_card(t0, run="0.05", step="0.001"))
    v = r.json["version"]
    check_eq((v["per_run_usd"], v["per_step_usd"], v["per_compute_second_usd"], v["per_outcome_usd"]),
             (D("0.05"), D("0.001"), 0, 0), "prices, absent ones 0")
    put_bill(h, plan, bill_card(t0, run="0.05", step="0.001"), want=200, what="the same version again")
    check_error(h.request("PUT", bill_path(plan), bill_card(t0, run="0.06"), key=h.k1), 409, "version_exists",
                "effective_from", "other prices at an existing effective_from")
    put_bill(h, plan, bill_card(t0 + 86400, run="0.07"), what="a future version")
    r = h.request("GET", bill_path(plan), key=h.k1)
    check_status(r, 200, "GET the plan's versions")
    check_eq([(x["effective_from"], x["in_force"]) for x in r.json["versions"]],
             [(iso(t0), True), (iso(t0 + 86400), False)], "versions oldest first, the one in force")
    r = h.request("GET", "/v1/mesh/pricing/billing", key=h.k1)
    check_status(r, 200, "GET every plan")
    check(any(p["plan"] == plan for p in r.json["plans"]), "the list names the plan")
    check_status(h.request("GET", bill_path(plan), key=h.k2), 404, "another org's plan")
    bad = [
        (bill_card(t0, run="-1"), "per_run_usd", "a negative price"),
        (bill_card(t0, step="0.0000000001"), "per_step_usd", "finer than a nano-dollar"),
        (bill_card(t0, compute_second='"1"'), "per_compute_second_usd", "a price as a string"),
        (bill_card(t0, outcome="1000001"), "per_outcome_usd", "above a million"),
        (bill_card(t0), "per_run_usd", "no price at all"),
        (bill_card(t0 + 60, run="1"), "effective_from", "not on a whole hour"),
        ('{"per_run_usd":1}', "effective_from", "no effective_from"),
        ('{"per_run_usd":1,"effective_from":"%s","currency":"EUR"}' % iso(t0), "currency", "an unknown field"),
        ("[1]", None, "not an object"),
    ]
    for body, field, what in bad:
        r = h.request("PUT", bill_path(plan), body, key=h.k1)
        check_error(r, 400, None, field, what)
    agent_key = create_agent_key(h, h.k1, new_agent(tag="bill"))
    check_status(h.request("PUT", bill_path(plan), bill_card(t0 + 7200, run="1"), key=agent_key), 403,
                 "an agent key writes a card")


@timeout(180)
def test_usage_hand_computed_with_a_price_change(h):
    """Customer C on its own plan: v1 from H0 (run 0.05, step 0.001, compute-second 0.000002), v2 from H0+3h
    (run 0.07, step 0.0015, compute-second 0.000000001). Hand-computed:
      before H0 (no version): 1 step, unpriced;
      v1: runs R1 (first H0) and R2 (first H0+2h) = 2 x 0.05 = 0.10; steps 5 + 1 + 4 = 10 x 0.001 = 0.01;
          compute 1500 + 250 = 1750 ms = 1.75 s x 2000 nanos = 3500 nanos;
      v2: R3 = 1 x 0.07 (R2 continues, billed in v1 already); steps 2 + 1 + 5 = 8 x 0.0015 = 0.012;
          compute 500 + 1000 + 1000 = 2.5 s x 1 nano = 2.5 -> 2 nanos (half-even, down);
          only [H0+3h, H0+4h): 1.5 s -> 2 nanos (half-even, up).
    Another customer's and another org's heartbeats change nothing. Exact from the tail with the worker idle,
    after a retry of every heartbeat, and from the rollup."""
    h.restart_server({"COSTMESH_ROLLUP_MS": "600000"})
    now = int(time.time())
    H0 = hour_start(now) - 5 * 3600
    C, other = uid("cust"), uid("cust")
    R1, R2, R3 = uid("run"), uid("run"), uid("run")
    put_bill(h, C, bill_card(H0, run="0.05", step="0.001", compute_second="0.000002"))
    put_bill(h, C, bill_card(H0 + 3 * 3600, run="0.07", step="0.0015", compute_second="0.000000001"))
    a, b = new_agent(tag="bill"), new_agent(tag="bill")
    items = [
        bhb(a, H0 - 1800, C, llm_calls=1),
        bhb(a, H0 + 600, C, R1, compute_ms=1500, llm_calls=3, tool_calls=2),
        bhb(b, H0 + 3900, C, R1, compute_ms=250, llm_calls=1),
        bhb(a, H0 + 7200, C, R2, tool_calls=4),
        bhb(b, H0 + 3 * 3600 + 60, C, R2, compute_ms=500, llm_calls=2),
        bhb(a, H0 + 3 * 3600 + 1800, C, R3, compute_ms=1000, llm_calls=1),
        bhb(a, H0 + 4 * 3600, C, compute_ms=1000, llm_calls=5),
        bhb(a, H0 + 600, other, uid("run"), compute_ms=99999, llm_calls=77),
    ]
    accepted(h.hb(batch(items)), len(items), 0, "the table as one batch")
    frm, to = H0 - 3600, hour_start(now) + 3600
    want = [
        ("steps", iso(frm), iso(H0), None, D(1), None, D(0), 0),
        ("runs", iso(H0), iso(H0 + 3 * 3600), iso(H0), D(2), D("0.05"), D("0.1"), 100000000),
        ("runs", iso(H0 + 3 * 3600), iso(to), iso(H0 + 3 * 3600), D(1), D("0.07"), D("0.07"), 70000000),
        ("steps", iso(H0), iso(H0 + 3 * 3600), iso(H0), D(10), D("0.001"), D("0.01"), 10000000),
        ("steps", iso(H0 + 3 * 3600), iso(to), iso(H0 + 3 * 3600), D(8), D("0.0015"), D("0.012"), 12000000),
        ("compute_seconds", iso(H0), iso(H0 + 3 * 3600), iso(H0), D("1.75"), D("0.000002"), D("0.0000035"), 3500),
        ("compute_seconds", iso(H0 + 3 * 3600), iso(to), iso(H0 + 3 * 3600), D("2.5"), D("0.000000001"),
         D("0.000000002"), 2),
    ]
    order = {"runs": 0, "steps": 1, "compute_seconds": 2}
    want.sort(key=lambda x: (order[x[0]], x[3] or ""))
    total = 100000000 + 70000000 + 10000000 + 12000000 + 3500 + 2

    def check_all(phase):
        j = usage(h, C, frm, to).json
        check_eq((j["customer"], j["plan"], j["from"], j["to"]), (C, C, iso(frm), iso(to)), phase + ": header")
        check_eq(lines_of(j), want, phase + ": lines")
        check_eq((D(str(j["total_usd"])), int(j["total_nanos"])), (D(total) / 10**9, total), phase + ": total")
        one = usage(h, C, H0 + 3 * 3600, H0 + 4 * 3600).json
        check_eq([(x["item"], D(str(x["quantity"])), int(x["amount_nanos"])) for x in one["lines"]],
                 [("runs", D(1), 70000000), ("steps", D(3), 4500000), ("compute_seconds", D("1.5"), 2)],
                 phase + ": the hour after the change (1.5 nanos rounds up to 2)")
        # The CSV export carries the same lines, parsed back with the csv module.
        r = usage(h, C, frm, to, csv_=True)
        check(r.headers.get("content-type", "").startswith("text/csv"), "CSV content type: %r" % r.headers)
        check(r.text.endswith("\r\n"), "CSV rows end in CRLF")
        rows = list(csv.DictReader(io.StringIO(r.text, newline="")))
        check_eq([(x["item"], x["from"], x["to"], x["effective_from"] or None, D(x["quantity"]),
                   D(x["unit_price_usd"]) if x["unit_price_usd"] else None, D(x["amount_usd"]), int(x["amount_nanos"]))
                  for x in rows], want, phase + ": CSV lines")
        check_eq({(x["customer"], x["plan"]) for x in rows}, {(C, C)}, phase + ": CSV customer and plan")
        check_eq(sum(int(x["amount_nanos"]) for x in rows), total, phase + ": CSV amounts add up to the total")
        return j

    from_tail = check_all("tail")
    accepted(h.hb(batch(items)), 0, len(items), "a retry of every heartbeat")
    check_eq(check_all("after the retry"), from_tail, "the retry changed nothing")
    check_eq(h.psql("SELECT count(*) FROM rollup_billing WHERE customer = '%s'" % C), "0",
             "nothing rolled up while the worker is idle")
    h.restart_server({"COSTMESH_ROLLUP_MS": "20"})
    wait_rolled_up(h)
    check(int(h.psql("SELECT count(*) FROM rollup_billing WHERE customer = '%s'" % C)) > 0, "usage rolled up")
    check_eq(check_all("rollup"), from_tail, "the rollup answers as the tail did")
    # Another org asking about the same customer id sees nothing of it.
    j = usage(h, C, frm, to, key=h.k2).json
    check_eq((j["lines"], int(j["total_nanos"])), ([], 0), "another org's view of the customer")


@timeout(120)
def test_usage_bills_successful_outcomes(h):
    """Per successful outcome at 0.5 USD: intents of the customer that ended succeeded (a heartbeat's status), in
    the hour they ended. i1 ends in hour H, i2 in H+1h; i3 failed and i4 is another customer's: not billed. A
    retry of every heartbeat changes nothing; the same from the tail and from the rollup."""
    h.restart_server({"COSTMESH_ROLLUP_MS": "600000"})
    now = int(time.time())
    H = hour_start(now) - 2 * 3600
    C, other = uid("cust"), uid("cust")
    put_bill(h, C, bill_card(H - 3600, outcome="0.5"))
    a = new_agent(tag="bill-out")
    i1, i2, i3, i4 = uid("int"), uid("int"), uid("int"), uid("int")

    def ended(ts, customer, intent, status=None, **metrics):
        body = {"agent": a, "id": hb_id(), "ts": iso(ts), "customer": customer, "intent_id": intent,
                "metrics": dict(metrics, llm_calls=1)}
        if status:
            body["status"] = status
        return json.dumps(body)

    items = [ended(H + 10, C, i1), ended(H + 20, C, i1, "succeeded"), ended(H + 3605, C, i2, "succeeded"),
             ended(H + 30, C, i3, "failed"), ended(H + 40, other, i4, "succeeded")]
    accepted(h.hb(batch(items)), len(items), 0, "the intents' heartbeats")

    def outcomes(frm, to):
        j = usage(h, C, frm, to).json
        return [(x["item"], x["effective_from"], D(str(x["quantity"])), int(x["amount_nanos"]))
                for x in j["lines"] if x["item"] == "outcomes"]

    want_all = [("outcomes", iso(H - 3600), D(2), 1000000000)]
    want_first = [("outcomes", iso(H - 3600), D(1), 500000000)]
    check_eq(outcomes(H, H + 7200), want_all, "two successes, from the tail")
    check_eq(outcomes(H, H + 3600), want_first, "the hour i1 ended in")
    accepted(h.hb(batch(items)), 0, len(items), "a retry of every heartbeat")
    check_eq(outcomes(H, H + 7200), want_all, "after the retry")
    h.restart_server({"COSTMESH_ROLLUP_MS": "20"})
    wait_rolled_up(h)
    check_eq(outcomes(H, H + 7200), want_all, "from the rollup")
    check_eq(outcomes(H + 3600, H + 7200), [("outcomes", iso(H - 3600), D(1), 500000000)], "the hour i2 ended in")


def test_usage_default_plan_tenancy_and_bad_input(h):
    now = int(time.time())
    H = hour_start(now) - 3600
    C = uid("cust")
    # A customer without a plan of its own is rated by 'default'.
    put_bill(h, "default", bill_card("2020-01-01T00:00:00Z", run="0.25"), want=(200, 201))
    a = new_agent(tag="bill-def")
    accepted(h.hb(bhb(a, H + 10, C, uid("run"), llm_calls=1)), 1, 0, "a run of the customer")
    j = usage(h, C, H, H + 3600).json
    check_eq(j["plan"], "default", "the default plan")
    check_eq([(x["item"], int(x["amount_nanos"])) for x in j["lines"] if x["item"] == "runs"],
             [("runs", 250000000)], "one run at the default price")
    # Only admin keys read an invoice.
    agent_key = create_agent_key(h, h.k1, a)
    usage(h, C, H, H + 3600, key=agent_key, status=403)
    base = "/v1/mesh/customers/%s/usage" % enc(C)
    bad = [
        ("?from=%s" % urllib.parse.quote(iso(H + 60)), "from", "from not on the hour"),
        ("?from=%s&to=%s" % (urllib.parse.quote(iso(H)), urllib.parse.quote(iso(H))), "to", "to not after from"),
        ("?to=yesterday", "to", "to not a time"),
        ("?from=%s&to=%s" % (urllib.parse.quote(iso(H - 400 * 86400)), urllib.parse.quote(iso(H))), "to",
         "more than 366 days"),
    ]
    for q, field, what in bad:
        for suffix in ("", ".csv"):
            r = h.request("GET", base.replace("/usage", "/usage" + suffix) + q, key=h.k1)
            check_error(r, 400, "invalid_field", field, what + suffix)
    r = h.request("GET", "/v1/mesh/customers/%s/usage" % ("x" * 200), key=h.k1)
    check_error(r, 400, "invalid_field", "id", "an id too long")


def test_spend_split_by_model_cached_and_fresh(h):
    """Model m (input 2.5, output 10, cached 1.25, cache write 3.75 USD per million tokens), hand-computed:
    hb1 priced by the card: 1000 in of which 400 cached and 100 written, 500 out: fresh 500 x 2.5 = 1250000,
    cached 400 x 1.25 = 500000, written 100 x 3.75 = 375000, out 500 x 10 = 5000000 nanos, cost 7125000; the
    cached tokens at the fresh price would cost 1000000: caching saved 500000. hb2 carries the client's cost
    0.01 and 2000 fresh tokens (rated 5000000). hb3 names a model without a card. hb4 names none. Exact from
    the tail with the worker idle, then from the rollup."""
    h.restart_server({"COSTMESH_ROLLUP_MS": "600000"})
    m, m2 = model("split"), model("nocard")
    H = hour_start(time.time()) - 3600
    put_card(h, m, card(H - 3600, "2.5", "10", "1.25", "3.75"))
    a = new_agent(tag="split")
    run = uid("run")
    items = [priced_hb(a, m, H + 10, tokens_in=1000, tokens_cached=400, tokens_cache_write=100, tokens_out=500),
             priced_hb(a, m, H + 20, cost="0.01", tokens_in=2000),
             priced_hb(a, m2, H + 30, cost="0.003", tokens_in=10),
             '{"agent":%s,"id":"%s","ts":"%s","metrics":{"cost_usd":1}}' % (json.dumps(a), hb_id(), iso(H + 40))]
    items = [x[:-1] + ',"run_id":"%s"}' % run for x in items]
    accepted(h.hb(batch(items)), 4, 0, "the heartbeats")
    want = [
        {"model": m, "cost_usd": D("0.017125"), "heartbeats": 2, "tokens_in": 3000, "tokens_fresh": 2500,
         "tokens_cached": 400, "tokens_cache_write": 100, "tokens_out": 500, "rated_heartbeats": 2,
         "fresh_input_cost_usd": D("0.00625"), "cached_input_cost_usd": D("0.0005"),
         "cache_write_cost_usd": D("0.000375"), "output_cost_usd": D("0.005"), "cache_savings_usd": D("0.0005")},
        {"model": m2, "cost_usd": D("0.003"), "heartbeats": 1, "tokens_in": 10, "tokens_fresh": 10,
         "tokens_cached": 0, "tokens_cache_write": 0, "tokens_out": 0, "rated_heartbeats": 0,
         "fresh_input_cost_usd": 0, "cached_input_cost_usd": 0, "cache_write_cost_usd": 0, "output_cost_usd": 0,
         "cache_savings_usd": 0},
    ]
    s = h.spend_ok(a, "hour", at=H)
    check_eq(s["models"], want, "the agent's spend by model")
    check_eq(D(str(s["cost_usd"])), D("1.020125"), "the agent's cost, the unmodelled heartbeat included")
    r = h.request("GET", "/v1/mesh/runs/%s/spend?window=hour&at=%s" % (run, urllib.parse.quote(iso(H))), key=h.k1)
    check_status(r, 200, "the run's spend")
    check_eq(r.json["models"], want, "the run's spend by model")
    check_eq(h.psql("SELECT count(*) FROM rollup_model WHERE unit = '%s'" % run), "0",
             "nothing rolled up while the worker is idle")
    h.restart_server({"COSTMESH_ROLLUP_MS": "20"})
    wait_rolled_up(h)
    check(int(h.psql("SELECT count(*) FROM rollup_model WHERE unit = '%s'" % run)) > 0, "the run's models rolled up")
    check_eq(h.spend_ok(a, "hour", at=H)["models"], want, "the agent's spend by model, from the rollup")
    r = h.request("GET", "/v1/mesh/runs/%s/spend?window=hour&at=%s" % (run, urllib.parse.quote(iso(H))), key=h.k1)
    check_eq(r.json["models"], want, "the run's spend by model, from the rollup")


def test_ctl_usage(h):
    now = int(time.time())
    H = hour_start(now) - 3600
    C = uid("cust")
    put_bill(h, C, bill_card(H, step="0.002", compute_second="0.5"))
    a = new_agent(tag="bill-ctl")
    accepted(h.hb(bhb(a, H + 10, C, compute_ms=1234, llm_calls=2, tool_calls=1)), 1, 0, "a heartbeat")
    out = ok(ctl(h, "usage", "--customer", C, "--from", iso(H), "--to", iso(H + 3600)), "usage").out
    check("steps" in out and "0.006" in out and "0.617" in out and "total_usd 0.623" in out,
          "the table shows the lines and the total: %r" % out)
    out = ok(ctl(h, "usage", "--customer", C, "--from", iso(H), "--to", iso(H + 3600), "--csv"), "usage --csv").out
    rows = list(csv.DictReader(io.StringIO(out, newline="")))
    check_eq([(x["item"], x["quantity"], x["amount_usd"]) for x in rows],
             [("steps", "3", "0.006"), ("compute_seconds", "1.234", "0.617")], "the CSV")
    fails(ctl(h, "usage", "--customer", C, "--from", iso(H + 5)), 1, "from", "a bad --from")
    fails(ctl(h, "usage"), 2, "--customer", "no customer")


def test_readme_billing_example_works(h):
    """The README's billing block, run as printed (its customer and agent renamed for this test): the card is
    written, the heartbeat's run, steps and compute-seconds come back rated as the README shows, and the CSV
    has the same lines."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    marker = "<!-- test_o_billing runs this -->\n```sh\n"
    check(marker in readme, "the README has no block marked for this test")
    block = readme.split(marker, 1)[1].split("```", 1)[0]
    C, a = uid("globex"), new_agent(tag="readme-bill")
    script = block.replace("globex", C).replace("agent://default/production/research-agent", a)
    script = script.replace("hb-globex-1", hb_id())
    check(script.count(C) >= 4, "the block names the example customer")
    env = dict(os.environ, BASE="http://127.0.0.1:%d" % h.http_port, ADMIN_KEY=h.k1)
    p = subprocess.run(["sh", "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    check(p.returncode == 0, "the block: exit %d: %s" % (p.returncode, p.stderr.decode()))
    text = p.stdout.decode()
    head, csv_text = text.split("customer,plan,item", 1)
    out = replies(head)
    check_eq(len(out), 3, "three JSON replies: %r" % out)
    check_eq(out[0]["version"]["per_run_usd"], D("0.05"), "the PUT's reply")
    u = out[2]
    check_eq([(x["item"], D(str(x["quantity"])), D(str(x["amount_usd"]))) for x in u["lines"]],
             [("runs", 1, D("0.05")), ("steps", 5, D("0.005")), ("compute_seconds", D("12.5"), D("0.00125"))],
             "the lines the README shows")
    check_eq((D(str(u["total_usd"])), u["total_nanos"]), (D("0.05625"), "56250000"), "the README's total")
    rows = list(csv.DictReader(io.StringIO("customer,plan,item" + csv_text, newline="")))
    check_eq([(x["item"], x["amount_nanos"]) for x in rows],
             [("runs", "50000000"), ("steps", "5000000"), ("compute_seconds", "1250000")], "the CSV")
