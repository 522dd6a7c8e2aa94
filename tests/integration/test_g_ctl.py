"""costmeshctl, the command-line client, against a real costmeshd: keys, heartbeats,
spend (money printed exactly as sent), agents, policies, kill switch, intents,
events, one-line server errors, --help everywhere, and a missing key."""

import calendar
import json
import os
import subprocess
import time
from decimal import Decimal

from harness import (HarnessError, SANITIZER_PATTERNS, accepted, batch, check, check_eq, check_json, dec, expected_spend,
                     free_port, hb_id, hb_obj, iso, new_agent, parse_iso)
from test_e_policies import away_from_boundary, policy_of

SUBCOMMANDS = [
    [], ["keys"], ["keys", "create"], ["keys", "list"], ["keys", "revoke"],
    ["policy"], ["policy", "get"], ["policy", "set"], ["policy", "delete"],
    ["spend"], ["agents"], ["kill"], ["resume"], ["events"], ["heartbeat"], ["intent"],
]


class Out:
    def __init__(self, args, code, out, err):
        self.args, self.code, self.out, self.err = args, code, out, err

    def json(self):
        try:
            return json.loads(self.out, parse_float=Decimal)
        except ValueError as e:
            raise AssertionError("costmeshctl %s: stdout is not JSON (%s): %.300r" % (" ".join(self.args), e, self.out))

    def __repr__(self):
        return "<exit %d out=%.400r err=%.400r>" % (self.code, self.out, self.err)


def ctl_path(h):
    p = os.path.join(os.path.dirname(h.binary), "costmeshctl")
    if not os.access(p, os.X_OK):
        raise HarnessError("no executable %s (make %s)" % (p, p))
    return p


def ctl(h, *args, key=None, url=None, env_extra=None, no_key=False):
    """Runs costmeshctl ARGS with COSTMESH_URL/COSTMESH_API_KEY; fails the test on a sanitizer report."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COSTMESH_")}
    env["COSTMESH_URL"] = url or "http://127.0.0.1:%d" % h.http_port
    if not no_key:
        env["COSTMESH_API_KEY"] = h.k1 if key is None else key
    env["ASAN_OPTIONS"] = "detect_leaks=1"
    env.update(env_extra or {})
    p = subprocess.run([ctl_path(h)] + list(args), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    r = Out(list(args), p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"))
    bad = [l for l in r.err.splitlines() if any(s in l for s in SANITIZER_PATTERNS)]
    check(not bad, "costmeshctl %s: sanitizer report: %s" % (" ".join(args), " | ".join(bad[:3])))
    return r


def ok(r, what=""):
    check(r.code == 0, "%s: costmeshctl %s: want exit 0, got %r" % (what, " ".join(r.args), r))
    return r


def fails(r, code, want_in_err, what=""):
    """Exit status `code` and exactly one stderr line containing want_in_err."""
    check_eq(r.code, code, "%s: exit status of costmeshctl %s (%r)" % (what, " ".join(r.args), r))
    lines = r.err.splitlines()
    check(len(lines) == 1, "%s: want one error line, got %r" % (what, r.err))
    check(lines[0].startswith("costmeshctl"), "%s: error line not prefixed: %r" % (what, lines[0]))
    check(want_in_err in lines[0], "%s: want %r in the error line, got %r" % (what, want_in_err, lines[0]))
    return lines[0]


def table(out):
    """Rows of a printed table, split on runs of two or more blanks."""
    import re
    return [re.split(r"\s{2,}", l.strip()) for l in out.splitlines() if l.strip()]


def register(h, address, cost="0"):
    ok(ctl(h, "heartbeat", address, "--cost", cost), "registering heartbeat")


# ------------------------------------------------------------------ tests

def test_help_for_every_subcommand(h):
    for sub in SUBCOMMANDS:
        r = ctl(h, *(sub + ["--help"]), no_key=True)
        ok(r, "--help")
        check("usage: costmeshctl" in r.out, "costmeshctl %s --help: no usage text: %r" % (" ".join(sub), r))
        check(r.err == "", "costmeshctl %s --help wrote to stderr: %r" % (" ".join(sub), r.err))
    r = ok(ctl(h, "--help", no_key=True))
    for name in ("keys", "policy", "spend", "agents", "kill", "resume", "events", "heartbeat", "intent"):
        check("  %s " % name in r.out, "costmeshctl --help does not list %s: %r" % (name, r.out))


def test_usage_errors(h):
    fails(ctl(h), 2, "missing command", "no command")
    fails(ctl(h, "frobnicate"), 2, "unknown command", "unknown command")
    fails(ctl(h, "keys"), 2, "missing action", "keys without action")
    fails(ctl(h, "agents", "--bogus"), 2, "unknown option --bogus", "unknown option")
    fails(ctl(h, "spend"), 2, "missing argument", "spend without ADDR")
    fails(ctl(h, "spend", "agent://org1/a/b", "--window", "year"), 2, "--window must be one of", "bad window")
    fails(ctl(h, "heartbeat", "agent://org1/a/b", "--cost", "abc"), 2, "--cost must be a number", "bad cost")
    fails(ctl(h, "heartbeat", "agent://org1/a/b", "--tokens-in", "-5"), 2, "--tokens-in must be a whole number",
          "negative tokens")
    fails(ctl(h, "policy", "set", "agent://org1/a/b"), 2, "at least one", "empty policy set")
    fails(ctl(h, "policy", "set", "agent://org1/a/b", "--thresholds", "0.5,,0.9"), 2, "--thresholds", "bad list")
    fails(ctl(h, "agents", "--limit"), 2, "needs a value", "option without value")


def test_missing_api_key(h):
    r = ctl(h, "agents", no_key=True)
    line = fails(r, 2, "COSTMESH_API_KEY", "no key")
    check("not set" in line, "missing key message: %r" % line)
    fails(ctl(h, "agents", key=""), 2, "COSTMESH_API_KEY is not set", "empty key")
    # A wrong key reaches the server: its 401, on one line.
    fails(ctl(h, "agents", key="wrong-" + hb_id()), 1, "costmeshctl: 401 ", "unknown key")


def test_unreachable_server(h):
    r = ctl(h, "agents", url="http://127.0.0.1:%d" % free_port())
    fails(r, 1, "cannot reach the server", "refused connection")
    fails(ctl(h, "agents", url="ftp://x"), 2, "COSTMESH_URL", "bad URL scheme")


def test_keys_create_list_revoke(h):
    a = new_agent(tag="ctl-key")
    name = "ctl-" + hb_id()[3:15]
    r = ok(ctl(h, "keys", "create", "--role", "agent", "--name", name, "--agent", a, "--json"), "create --json")
    j = r.json()
    key, kid = j.get("key"), j.get("id")
    check(isinstance(key, str) and key and isinstance(kid, str) and kid, "create reply: %r" % j)
    check_eq(j.get("agent"), a, "bound agent in the create reply")
    # The table form prints the key first.
    r = ok(ctl(h, "keys", "create", "--role", "admin", "--name", name + "-adm", "--interop-env", "staging"),
           "create (table)")
    rows = table(r.out)
    check_eq(rows[0][0], "key", "first line of keys create")
    adm_key = rows[0][1]
    adm_id = dict((x[0], x[1]) for x in rows if len(x) == 2)["id"]
    check("shown only this once" in r.err, "keys create notice: %r" % r.err)
    # The new admin key works, and the list shows both keys.
    r = ok(ctl(h, "keys", "list", key=adm_key), "list with the new admin key")
    rows = table(r.out)
    check_eq(rows[0][:5], ["ID", "ROLE", "NAME", "AGENT", "INTEROP_ENV"], "keys list header")
    mine = {x[0]: x for x in rows[1:]}
    check(kid in mine and adm_id in mine, "keys list lacks %s/%s: %r" % (kid, adm_id, r.out))
    check_eq(mine[kid][1:5], ["agent", name, a, "-"], "agent key row")
    check_eq(mine[adm_id][1:5], ["admin", name + "-adm", "-", "staging"], "admin key row")
    check(key not in r.out and adm_key not in r.out, "keys list shows a key")
    lj = ok(ctl(h, "keys", "list", "--json")).json()
    check(any(k["id"] == kid for k in lj["keys"]), "keys list --json lacks %s" % kid)
    # The bound key sends a heartbeat for its agent.
    r = ok(ctl(h, "heartbeat", a, "--cost", "0.25", key=key), "heartbeat with the agent key")
    check("accepted 1" in r.out, "heartbeat output: %r" % r.out)
    # Revoke: refused at once, and a second revoke is a 404.
    r = ok(ctl(h, "keys", "revoke", kid), "revoke")
    check(kid in r.out, "revoke output: %r" % r.out)
    fails(ctl(h, "heartbeat", a, "--cost", "0.25", key=key), 1, "costmeshctl: 401 ", "revoked key")
    fails(ctl(h, "keys", "revoke", kid), 1, "costmeshctl: 404 not_found", "revoke twice")
    ok(ctl(h, "keys", "revoke", adm_id), "revoke the admin key")
    lj = ok(ctl(h, "keys", "list", "--json")).json()
    check(not any(k["id"] in (kid, adm_id) for k in lj["keys"]), "revoked keys still listed")
    # An agent key may not manage keys.
    fails(ctl(h, "keys", "create", "--role", "agent", "--name", "x", key=key), 1, "401", "revoked key again")


def test_heartbeat_and_spend_exact(h):
    away_from_boundary(86400, 30)
    a = new_agent(tag="ctl-spend")
    now = int(time.time())
    hid = hb_id()
    r = ok(ctl(h, "heartbeat", a, "--cost", "0.1", "--tokens-in", "2100", "--tokens-out", "850",
               "--llm-calls", "4", "--id", hid, "--intent", "int-ctl-1", "--ts", iso(now)), "heartbeat 0.1")
    check("accepted 1, duplicates 0 (id %s)" % hid in r.out, "heartbeat output: %r" % r.out)
    check(("%s  state active  cost today 0.1" % a) in r.out, "heartbeat agent line: %r" % r.out)
    r = ok(ctl(h, "heartbeat", a, "--cost", "0.1", "--id", hid, "--ts", iso(now)), "same id again")
    check("accepted 0, duplicates 1" in r.out, "duplicate output: %r" % r.out)
    # 0.1 + 0.2 must read 0.3, and a 15-digit amount must keep every digit:
    # both go wrong when money passes through a double and printf.
    ok(ctl(h, "heartbeat", a, "--cost", "0.2", "--ts", iso(now)), "heartbeat 0.2")
    ok(ctl(h, "heartbeat", a, "--cost", "999999.999999999", "--ts", iso(now), "--json"), "heartbeat 999999.999999999")
    sent = [(now, {"cost_usd": "0.1", "tokens_in": 2100, "tokens_out": 850, "llm_calls": 4}),
            (now, {"cost_usd": "0.2"}), (now, {"cost_usd": "999999.999999999"})]
    total = "1000000.299999999"
    day = expected_spend(a, sent, "day", now)
    check_eq(day["cost_usd"], Decimal(total), "the test's own sum")
    check_json(ok(ctl(h, "spend", a, "--json"), "spend --json").json(), day, "spend --json")
    r = ok(ctl(h, "spend", a), "spend table")
    rows = table(r.out)
    kv = dict((x[0], x[1]) for x in rows if len(x) == 2)
    check_eq(kv, {"agent": a, "window": "day", "from": day["from"], "to": day["to"], "cost_usd": total,
                  "tokens_in": "2100", "tokens_out": "850", "tokens_cached": "0", "llm_calls": "4", "tool_calls": "0",
                  "heartbeats": "3", "intents": "0", "revenue_usd": "0", "refund_usd": "0", "external_spend_usd": "0",
                  "fees_usd": "0", "margin_usd": "-" + total}, "spend table totals (money as exact text)")
    hdr = [i for i, x in enumerate(rows) if x[0] == "FROM"]
    check(len(hdr) == 1, "spend table has no series header: %r" % r.out)
    busy = iso(now // 3600 * 3600)
    check_eq(rows[hdr[0] + 1:], [[b["from"]] + ([total, "2100", "850", "4", "-" + total] if b["from"] == busy
                                                else ["0"] * 5)
                                 for b in day["series"]], "series rows in the table")
    # Other windows.
    for window, at in (("week", now), ("hour", now), ("month", calendar.timegm((2020, 1, 15, 0, 0, 0)))):
        j = ok(ctl(h, "spend", a, "--window", window, "--at", iso(at), "--json")).json()
        check_json(j, expected_spend(a, sent, window, at), "spend --window %s --at %s" % (window, iso(at)))
    r = ok(ctl(h, "spend", a, "--window", "hour", "--at", iso(now)))
    check_eq(dict((x[0], x[1]) for x in table(r.out) if len(x) == 2).get("cost_usd"), total,
             "spend --window hour table")


def test_agents_table(h):
    away_from_boundary(86400, 30)
    a = new_agent(tag="ctl-agents")
    t0 = int(time.time())
    register(h, a, "1.5")
    r = ok(ctl(h, "agents", "--limit", "1000"), "agents")
    rows = table(r.out)
    check_eq(rows[0], ["ADDRESS", "HEALTH", "LAST_HEARTBEAT", "INTENTS_TODAY", "COST_TODAY_USD", "STATE"],
             "agents header")
    mine = [x for x in rows if x[0] == a]
    check_eq(len(mine), 1, "rows of the agent in `agents`")
    row = mine[0]
    check_eq((row[1], row[3], row[4], row[5]), ("healthy", "0", "1.5", "active"), "agent row")
    check(t0 <= parse_iso(row[2]) <= time.time(), "last heartbeat column %r is not this test's heartbeat" % row[2])
    j = ok(ctl(h, "agents", "--health", "healthy", "--limit", "1000", "--json")).json()
    check(all(x["health"] == "healthy" for x in j["agents"]), "--health healthy filter")
    check(any(x["address"] == a for x in j["agents"]), "agents --json lacks the agent")
    fails(ctl(h, "agents", "--limit", "0"), 1, "costmeshctl: 400 invalid_field (limit): ", "limit 0")


def test_policy_round_trip(h):
    a = new_agent(tag="ctl-policy")
    register(h, a)
    r = ok(ctl(h, "policy", "set", a, "--max-cost-per-day", "50.123456789", "--max-intents-per-hour", "100",
               "--action", "alert", "--thresholds", "0.5,0.9"), "policy set")
    kv = dict((x[0], x[1]) for x in table(r.out))
    check_eq(kv.get("max_cost_per_day_usd"), "50.123456789", "policy set: max_cost_per_day_usd")
    check_eq(kv.get("max_intents_per_hour"), "100", "policy set: max_intents_per_hour")
    check_eq(kv.get("max_cost_per_hour_usd"), "unlimited", "policy set: absent limit")
    check_eq(kv.get("action_on_breach"), "alert", "policy set: action")
    check_eq(kv.get("alert_thresholds"), "[0.5,0.9]", "policy set: thresholds")
    r = ok(ctl(h, "policy", "set", a, "--max-cost-per-hour", "0.1", "--thresholds", "0.333333333,1"))
    kv3 = dict((x[0], x[1]) for x in table(r.out))
    check_eq((kv3.get("max_cost_per_hour_usd"), kv3.get("alert_thresholds")), ("0.1", "[0.333333333,1]"),
             "policy set: digits kept")
    r = ok(ctl(h, "policy", "set", a, "--max-cost-per-hour", "none", "--thresholds", "0.5,0.9"),
           "policy set again")
    j = ok(ctl(h, "policy", "get", a, "--json")).json()
    check_json(j, policy_of(max_cost_per_day_usd=Decimal("50.123456789"), max_intents_per_hour=100,
                            action_on_breach="alert", alert_thresholds=[Decimal("0.5"), Decimal("0.9")]),
               "policy get --json")
    kv2 = dict((x[0], x[1]) for x in table(ok(ctl(h, "policy", "get", a)).out))
    check_eq(kv2, {"max_intents_per_hour": "100", "max_intents_per_day": "unlimited",
                   "max_cost_per_hour_usd": "unlimited", "max_cost_per_day_usd": "50.123456789",
                   "max_cost_per_month_usd": "unlimited", "max_cost_per_intent_tree_usd": "unlimited",
                   "action_on_breach": "alert", "alert_thresholds": "[0.5,0.9]"},
             "policy get table")
    check_eq(kv, kv2, "policy set's table (the same policy)")
    # set changes only what it names: the other limits stay.
    j = ok(ctl(h, "policy", "set", a, "--max-cost-per-month", "7", "--json")).json()
    check_eq((dec(j.get("max_cost_per_day_usd")), j.get("max_intents_per_hour"), dec(j.get("max_cost_per_month_usd")),
              j.get("action_on_breach")), (Decimal("50.123456789"), 100, Decimal(7), "alert"),
             "policy after setting one more limit")
    j = ok(ctl(h, "policy", "set", a, "--max-cost-per-day", "none", "--json")).json()
    check_eq((j.get("max_cost_per_day_usd"), dec(j.get("max_cost_per_month_usd"))), (None, Decimal(7)),
             "--max-cost-per-day none clears that limit only")
    r = ok(ctl(h, "policy", "delete", a), "policy delete")
    check("deleted" in r.out, "policy delete output: %r" % r.out)
    fails(ctl(h, "policy", "get", a), 1, "costmeshctl: 404 ", "policy get after delete")
    # The server's validation error, field and all, on one line.
    fails(ctl(h, "policy", "set", a, "--max-cost-per-day", "-1"), 1,
          "costmeshctl: 400 invalid_field (max_cost_per_day_usd): ", "negative limit")


def test_scope_policies_and_intents(h):
    """policy get|set|delete of a scope (customer:ID, env:ENV...), intents naming the scope, its 429 line."""
    cust = "ctl-cust-" + hb_id()[3:15]
    a = new_agent(tag="ctl-scope")
    j = ok(ctl(h, "policy", "set", "customer:" + cust, "--max-intents-per-day", "1", "--json")).json()
    check_json(j, policy_of(max_intents_per_day=1), "policy set customer:ID")
    kv = dict((x[0], x[1]) for x in table(ok(ctl(h, "policy", "get", "customer:" + cust)).out))
    check_eq((kv.get("max_intents_per_day"), kv.get("max_cost_per_day_usd")), ("1", "unlimited"), "policy get table")
    ok(ctl(h, "intent", a, "--customer", cust, "--workflow", "ctl-wf", "--run", "ctl-run"), "1st intent")
    line = fails(ctl(h, "intent", a, "--customer", cust), 3, "costmeshctl: 429 cost_policy_breached", "2nd")
    check("[scope customer %s]" % cust in line and "max_intents_per_day" in line, "429 line: %r" % line)
    ok(ctl(h, "intent", a), "without the customer")
    check_eq(h.psql("SELECT workflow || ' ' || run_id FROM intents WHERE customer = '%s'" % cust), "ctl-wf ctl-run",
             "the intent's workflow and run")
    r = ok(ctl(h, "policy", "delete", "customer:" + cust), "policy delete customer:ID")
    check("deleted" in r.out, "delete output: %r" % r.out)
    fails(ctl(h, "policy", "get", "customer:" + cust), 1, "costmeshctl: 404 policy_not_found", "after delete")
    fails(ctl(h, "policy", "get", "team:x"), 2, "TARGET must be", "an unknown scope")
    fails(ctl(h, "policy", "get", "run:"), 2, "TARGET must be", "a scope without its id")
    fails(ctl(h, "policy", "set", "env:bad env", "--max-intents-per-day", "1"), 1,
          "costmeshctl: 400 invalid_field (env): ", "an env no address can have")
    # A reservation: --estimate, then intent-end releases what is left.
    j = ok(ctl(h, "intent", a, "--estimate", "0.25", "--json")).json()
    check_eq(dec(j.get("reserved_usd")), Decimal("0.25"), "intent --estimate reserves")
    r = ok(ctl(h, "intent-end", j["intent_id"], "--agent", a), "intent-end")
    check_eq(r.out.strip(), "ended intent %s: released 0.25 USD" % j["intent_id"], "intent-end output")
    fails(ctl(h, "intent-end", j["intent_id"]), 1, "costmeshctl: 404 reservation_not_found", "ended twice")
    fails(ctl(h, "intent", a, "--estimate", "lots"), 2, "--estimate", "a non-number estimate")


def test_kill_resume_intent_and_events(h):
    a = new_agent(tag="ctl-kill")
    register(h, a)
    r = ok(ctl(h, "kill", a), "kill")
    check_eq(r.out.strip(), "%s  state killed" % a, "kill output")
    fails(ctl(h, "intent", a), 1, "costmeshctl: 403 agent_killed", "intent of a killed agent")
    r = ok(ctl(h, "resume", a), "resume")
    check_eq(r.out.strip(), "%s  state active" % a, "resume output")
    r = ok(ctl(h, "intent", a, "--intent-id", "int-ctl-" + hb_id()[3:11]), "intent after resume")
    check(r.out.startswith("admitted intent int-ctl-"), "intent output: %r" % r.out)
    # A policy that is already reached: 429, its reason, exit 3.
    ok(ctl(h, "policy", "set", a, "--max-intents-per-day", "1"), "policy 1 intent/day")
    line = fails(ctl(h, "intent", a), 3, "costmeshctl: 429 cost_policy_breached", "intent over the limit")
    check("max_intents_per_day" in line and "retry after" in line, "429 line: %r" % line)
    # The idempotency key answers the first answer again.
    idem = "ctl-idem-" + hb_id()[3:15]
    ok(ctl(h, "policy", "delete", a))
    r1 = ok(ctl(h, "intent", a, "--idempotency-key", idem, "--json")).json()
    r2 = ok(ctl(h, "intent", a, "--idempotency-key", idem, "--json")).json()
    check_eq(r2, r1, "repeat with the same Idempotency-Key")
    # Events: the kill and the resume, newest first (each is recorded before its answer).
    j = ok(ctl(h, "events", "--type", "agent_killed", "--limit", "50", "--json")).json()
    check(all(e["event_type"] == "agent_killed" for e in j["events"]), "events --type filter")
    check_eq([(e["agent"], e["details"]) for e in j["events"] if e["agent"] == a], [(a, {})],
             "agent_killed events of %s" % a)
    r = ok(ctl(h, "events", "--limit", "1000"), "events table")
    rows = table(r.out)
    check_eq(rows[0], ["ID", "TS", "TYPE", "AGENT", "DETAILS"], "events header")
    types = [x[2] for x in rows[1:] if len(x) > 3 and x[3] == a]
    check("agent_resumed" in types and "agent_killed" in types, "events of %s: %r" % (a, types))
    check(types.index("agent_resumed") < types.index("agent_killed"), "events not newest first: %r" % types)
    ids = [int(x[0]) for x in rows[1:]]
    check_eq(ids, sorted(ids, reverse=True), "event ids in the table")


def test_server_errors_one_line(h):
    # The example of the issue: a bad amount, with its code, field and message.
    a = new_agent(tag="ctl-err")
    line = fails(ctl(h, "heartbeat", a, "--cost", "1e12"), 1,
                 "costmeshctl: 400 invalid_field (metrics.cost_usd): metrics.cost_usd must be", "cost out of range")
    check(len(line) < 400, "error line too long: %r" % line)
    fails(ctl(h, "heartbeat", "agent://nope"), 1, "costmeshctl: 400 invalid_field (agent): ", "bad address")
    fails(ctl(h, "spend", "not-an-address"), 1, "costmeshctl: 400 ", "spend of a bad address")
    fails(ctl(h, "spend", new_agent(tag="ctl-never")), 1, "costmeshctl: 404 agent_not_found", "unknown agent")
    fails(ctl(h, "spend", a, "--at", "yesterday"), 1, "costmeshctl: 400 invalid_field (at): ", "bad --at")
    fails(ctl(h, "kill", new_agent(org="org2", tag="ctl-foreign")), 1, "costmeshctl: 403 ", "another org's agent")
    fails(ctl(h, "heartbeat", a, "--ts", "1999-01-01T00:00:00Z"), 1, "costmeshctl: 400 ", "ts too old")


def test_address_percent_encoding(h):
    # Every character the address grammar allows besides letters and digits.
    a = "agent://org1/te.st_env/Na-me.x_%s" % hb_id()[3:15]
    register(h, a, "0.5")
    j = ok(ctl(h, "spend", a, "--json")).json()
    check_eq((j["agent"], dec(j["cost_usd"])), (a, Decimal("0.5")), "spend of an address with . _ -")
    ok(ctl(h, "policy", "set", a, "--max-cost-per-hour", "3"))
    check_eq(dec(ok(ctl(h, "policy", "get", a, "--json")).json()["max_cost_per_hour_usd"]), Decimal(3),
             "policy of an address with . _ -")


def test_intent_parent_end_and_tree(h):
    """intent --parent opens a child; intent end records an outcome (the same again: exit 0; another status: the
    server's 409, exit 1; no --status: usage, exit 2); intent tree lists the tree depth first with each node's
    cost and its subtree's."""
    a = new_agent(tag="ctl-tree")
    root, child = "ctl-root-" + hb_id(), "ctl-child-" + hb_id()
    ok(ctl(h, "intent", a, "--intent-id", root), "root")
    ok(ctl(h, "intent", a, "--intent-id", child, "--parent", root), "child")
    accepted(h.hb(batch([hb_obj(a, "0.25", hb_id(), intent=root), hb_obj(a, "0.5", hb_id(), intent=child)])), 2, 0,
             "their costs")
    r = ok(ctl(h, "intent", "end", child, "--status", "failed", "--quality", "0.2"), "end")
    check_eq(r.out.strip(), "intent %s ended failed (quality 0.2)" % child, "end output")
    ok(ctl(h, "intent", "end", child, "--status", "failed"), "the same end again")
    fails(ctl(h, "intent", "end", child, "--status", "succeeded"), 1, "409", "another status")
    fails(ctl(h, "intent", "end", child), 2, "--status", "no status")
    rows = table(ok(ctl(h, "intent", "tree", root), "tree").out)
    check_eq(rows, [["INTENT_ID", "PARENT", "DEPTH", "COST_USD", "TREE_COST_USD", "STATUS"],
                    [root, "-", "0", "0.25", "0.75", "-"], [child, root, "1", "0.5", "0.5", "failed"]], "tree table")
