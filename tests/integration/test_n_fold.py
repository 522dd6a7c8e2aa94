"""Rollups past COSTMESH_ROLLUP_HOURS_DAYS (schema/020_rollup_days.sql, server/fold.c): hour rows folded into
days, the agent, unit and intent spend the same before and after, done once with two replicas, reads of a
folded period at day grain (an hour window there: 400), also from a replica started with the setting 0
afterwards, and 0 keeping every hour."""

import re
import time
from decimal import Decimal

from harness import PortView, Server, check, check_eq, check_error, check_status, day_start, enc, free_port, \
    hb_id, iso, new_agent, timeout
from test_e_policies import away_from_boundary
from test_n_retention import wait_for
from test_o_finance import hb, send, top, uid, unit_spend

FAST = {"COSTMESH_RETENTION_CHECK_MS": "100", "COSTMESH_ROLLUP_MS": "20"}
KEEP = dict(FAST, COSTMESH_ROLLUP_HOURS_DAYS="0")
FOLD = dict(FAST, COSTMESH_ROLLUP_HOURS_DAYS="2", COSTMESH_LOG_LEVEL="debug")
DAY = 86400
# What a fold may change in a reply: the series' points and their grain.
GRAIN = ("series", "granularity")


def spend_of(h, path):
    r = h.request("GET", path, key=h.k1)
    check_status(r, 200, path)
    return r.json


def totals(reply):
    return {k: v for k, v in reply.items() if k not in GRAIN}


def reads(h, a, run, cust, x, old):
    """Every spend read of the old day, keyed by what it is."""
    at = "at=%s" % time.strftime("%Y-%m-%dT12:00:00Z", time.gmtime(old))
    out = {}
    for w in ("day", "week", "month"):
        out["agent " + w] = spend_of(h, "/v1/mesh/agents/%s/spend?window=%s&%s" % (enc(a), w, at))
        out["run " + w] = unit_spend(h, "run", run, w, old + 12 * 3600).json
    out["customer day"] = unit_spend(h, "customer", cust, "day", old + 12 * 3600).json
    out["top runs"] = top(h, "run", "day", old + 12 * 3600, agent=a).json
    out["intent"] = spend_of(h, "/v1/mesh/intents/%s/spend?agent=%s" % (x, enc(a)))
    return out


def hour_rows(h, a, scopes, since=0):
    """The agent's hour rows at or after since in each rollup table (agent, scope, intent, unit); for intents
    and units, the rows not at 00:00 (that one becomes the day's)."""
    c = "bucket >= to_timestamp(%d)" % since
    scope_list = ", ".join("'%s'" % s for s in scopes)
    return tuple(int(h.psql(q)) for q in (
        "SELECT count(*) FROM rollup_agent WHERE address = '%s' AND grain = 'h' AND %s" % (a, c),
        "SELECT count(*) FROM rollup_scope WHERE grain = 'h' AND scope IN (%s) AND %s" % (scope_list, c),
        "SELECT count(*) FROM rollup_intent WHERE address = '%s' AND extract(epoch FROM bucket)::bigint %% 86400 <> 0"
        " AND %s" % (a, c),
        "SELECT count(*) FROM rollup_unit WHERE address = '%s' AND extract(epoch FROM bucket)::bigint %% 86400 <> 0"
        " AND %s" % (a, c)))


# Hour rows the fold may take (some it leaves: past-the-caps sums, schema/020_rollup_days.sql).
FOLDABLE = ("SELECT (SELECT count(*) FROM rollup_agent WHERE grain = 'h' AND bucket < {c}),"
            " (SELECT count(*) FROM rollup_scope WHERE grain = 'h' AND bucket < {c}),"
            " (SELECT count(*) FROM rollup_intent WHERE bucket < {c} AND extract(epoch FROM bucket)::bigint % 86400 <> 0),"
            " (SELECT count(*) FROM rollup_unit WHERE bucket < {c} AND extract(epoch FROM bucket)::bigint % 86400 <> 0)"
            ).format(c="date_trunc('day', now(), 'UTC') - interval '3 days'")


def folded_in_logs(servers):
    """Rows each table had folded, summed over the servers' logs (event=fold lines)."""
    got = [0, 0, 0, 0]
    for s in servers:
        for m in re.finditer(r"event=fold agent=(\d+) scope=(\d+) intent=(\d+) unit=(\d+)", s.log_text()):
            got = [g + int(n) for g, n in zip(got, m.groups())]
    return tuple(got)


@timeout(150)
def test_hours_folded_into_days_totals_unchanged(h):
    away_from_boundary(DAY, 90)  # the days folded, and the hours kept, stay the same throughout
    today = day_start(time.time())
    # Heartbeats are taken for the last 7 days: five days back is past the 2 days of hours kept (and the fold's
    # day more).
    old = today - 5 * DAY
    a, run, cust, x = new_agent(tag="fold"), uid("run"), uid("cust"), "int-" + hb_id()
    attrs = {"run_id": run, "customer": cust}
    # Hours of the old day, its 00:00 hour among them (the row the day is folded into), one the next day (a
    # week window spans both), and one today, inside the hours kept.
    times = [old + 600, old + 610, old + 3 * 3600 + 5, old + 13 * 3600, old + DAY - 1, old + DAY + 7200,
             max(today, int(time.time()) - 5)]
    costs = ["1.25", "0.000000001", "2", "3.5", "0.75", "4", "6"]
    h.restart_server(KEEP)
    items = [hb(a, t, hb_id(), x, attrs, cost_usd=c, tokens_in=i + 1, revenue_usd="0.5")
             for i, (t, c) in enumerate(zip(times, costs))]
    send(h, items, len(items), 0, "heartbeats of the old day and today")
    wait_for("the rollup worker past them",
             lambda: h.psql("SELECT count(*) FROM cm_rollup_tail() WHERE address = '%s'" % a) == "0")
    before = reads(h, a, run, cust, x, old)
    check_eq(Decimal(before["agent day"]["cost_usd"]), Decimal("7.500000001"), "the old day's cost, as sent")
    check_eq(before["agent day"]["granularity"], "hour", "granularity of a day with its hours")
    rows, recent = hour_rows(h, a, (run, cust)), hour_rows(h, a, (run, cust), today)
    check(min(rows) > 0, "hour rows of every rollup table: %s" % (rows,))

    # 0 keeps every hour: ten maintenance runs change nothing.
    time.sleep(1)
    check_eq(hour_rows(h, a, (run, cust)), rows, "hour rows with COSTMESH_ROLLUP_HOURS_DAYS=0")
    hour_at = time.strftime("%Y-%m-%dT13:30:00Z", time.gmtime(old))
    r = h.spend(a, "hour", hour_at)
    check_status(r, 200, "an old hour while hours are kept")
    check_eq(Decimal(r.json["cost_usd"]), Decimal("3.5"), "the old hour's cost")

    # Two replicas folding: each row once (what both logs say they folded is what went away).
    before_fold = h.psql(FOLDABLE)
    h.restart_server(FOLD)
    view = PortView(h, free_port())
    second = Server(view, h.server.admin_key, h.server.org, FOLD)
    second.start()
    try:
        wait_for("the old hours folded", lambda: hour_rows(h, a, (run, cust)) == recent, secs=30)
        after = reads(view, a, run, cust, x, old)
    finally:
        problems = second.stop()
    check(not problems, "second replica stop: %s" % "; ".join(problems))
    # A replica with 0 (the setting turned off again) still reads the folded days at day grain.
    first = h.server
    h.restart_server(KEEP)
    left = h.psql(FOLDABLE)
    check_eq(folded_in_logs([first, second]),
             tuple(int(b) - int(n) for b, n in zip(before_fold.split("|"), left.split("|"))),
             "rows folded, summed over both replicas' logs (before %s, left %s)" % (before_fold, left))
    wait_for("the recorded fold read at start", lambda: spend_of(
        h, "/v1/mesh/agents/%s/spend?window=day&at=%s" % (enc(a), iso(old)))["granularity"] == "day", 5)
    off = reads(h, a, run, cust, x, old)
    for what in before:
        check_eq(totals(after[what]), totals(before[what]), what + " after the fold")
        check_eq(off[what], after[what], what + " from a replica with the setting 0")
    day_reply = after["agent day"]
    check_eq(day_reply["granularity"], "day", "granularity of a folded day")
    check_eq([(p["from"], Decimal(p["cost_usd"])) for p in day_reply["series"]],
             [(day_reply["from"], Decimal("7.500000001"))], "a folded day's series: one point")
    check_eq(after["run week"]["granularity"], "day", "granularity of a week")
    check_eq([Decimal(p["cost_usd"]) for p in after["run week"]["series"]],
             [Decimal(p["cost_usd"]) for p in before["run week"]["series"]], "a week's days, folded or not")
    check_error(h.spend(a, "hour", hour_at), 400, "hours_folded", "at", "an hour of a folded day, setting 0")
    now = spend_of(h, "/v1/mesh/agents/%s/spend?window=day" % enc(a))
    check_eq((now["granularity"], Decimal(now["cost_usd"])), ("hour", Decimal(6)), "today, inside the hours kept")
    h.restart_server()
