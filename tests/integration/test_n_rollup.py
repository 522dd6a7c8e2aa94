"""The rollups off the acknowledged path (server/rollup.c): exact replies
before and after the worker, a watermark that waits for a transaction still
open, and one count with two replicas."""

import subprocess
import time
from decimal import Decimal

from harness import (PortView, Server, accepted, batch, check, check_eq, check_status, dec, enc, free_port, hb_id,
                     hb_obj, new_agent, read_metrics, timeout)
from test_e_policies import run_concurrently

NANO = Decimal(10) ** 9


def intent_spend(h, x, a, via=None):
    r = (via or h).request("GET", "/v1/mesh/intents/%s/spend?agent=%s" % (x, enc(a)), key=h.k1)
    check_status(r, 200, "intent spend of %s" % x)
    return r.json


def rolled(h, x):
    """The intent's cost as the rollup table alone has it (no tail)."""
    return int(h.psql("SELECT coalesce(sum(cost_nanos), 0) FROM rollup_intent WHERE intent_id = '%s'" % x))


def lo(h):
    return int(h.psql("SELECT lo FROM rollup_watermark"))


def wait_rolled(h, x, want, secs=20):
    deadline = time.time() + secs
    while time.time() < deadline:
        if rolled(h, x) == want:
            return
        time.sleep(0.05)
    check_eq(rolled(h, x), want, "rollup_intent of %s after %ss" % (x, secs))


@timeout(60)
def test_reply_exact_before_and_after_the_worker(h):
    # The worker idle: the reply must come from the raw rows past the watermark.
    h.restart_server({"COSTMESH_ROLLUP_MS": "600000"})
    a, x = new_agent(tag="roll"), "int-" + hb_id()
    t = int(time.time()) - 60
    accepted(h.hb(batch([hb_obj(a, "0.25", hb_id(), ts=t, intent=x, tokens_in=7, llm_calls=1),
                         hb_obj(a, "1.5", hb_id(), ts=t - 3600, intent=x, tokens_out=3),
                         hb_obj(a, "9", hb_id(), ts=t)])), 3, 0, "hbs")
    check_eq(rolled(h, x), 0, "nothing rolled up while the worker is idle")
    s = intent_spend(h, x, a)
    check_eq((dec(s["cost_usd"]), s["tokens_in"], s["tokens_out"], s["llm_calls"], s["heartbeats"]),
             (Decimal("1.75"), 7, 3, 1, 2), "intent spend from the tail")
    # The worker running: the rows move into the rollup, the reply is unchanged.
    h.restart_server({"COSTMESH_ROLLUP_MS": "20"})
    wait_rolled(h, x, int(Decimal("1.75") * NANO))
    check_eq(h.psql("SELECT count(*) FROM cm_rollup_tail() WHERE intent_id = '%s'" % x), "0", "no tail left")
    check_eq(intent_spend(h, x, a), s, "intent spend from the rollup")
    h.restart_server()


@timeout(60)
def test_watermark_waits_for_an_open_transaction(h):
    """A writer that took its transaction id first and commits last: a
    watermark over `seq` or over commit time would skip its row."""
    h.restart_server({"COSTMESH_ROLLUP_MS": "20"})
    a, x = new_agent(tag="roll-open"), "int-" + hb_id()
    accepted(h.hb(hb_obj(a, "1", hb_id(), intent=x)), 1, 0, "first hb")
    wait_rolled(h, x, 10 ** 9)
    slow = subprocess.Popen(["psql", h.db_url, "-X", "-Atq", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        slow.stdin.write("BEGIN;\nINSERT INTO heartbeats (address, hb_id, intent_id, ts, cost_nanos)"
                         " VALUES ('%s', '%s', '%s', now(), 4000000000) RETURNING xid;\n" % (a, hb_id(), x))
        slow.stdin.flush()
        open_xid = int(slow.stdout.readline())
        accepted(h.hb(hb_obj(a, "2", hb_id(), intent=x)), 1, 0, "hb committed after the open one began")
        time.sleep(1.5)  # many worker turns
        check(lo(h) <= open_xid, "watermark %d passed the open transaction %d" % (lo(h), open_xid))
        lag = read_metrics(h).get("costmesh_rollup_lag_seconds", -1)
        check(lag >= 1, "the lag gauge while the watermark is held back: %s" % lag)
        check_eq(dec(intent_spend(h, x, a)["cost_usd"]), Decimal(3), "the open row is not counted yet")
        slow.stdin.write("COMMIT;\n")
        slow.stdin.close()
        check_eq(slow.wait(10), 0, "psql: %s" % slow.stderr.read())
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()
    wait_rolled(h, x, 7 * 10 ** 9)
    check(lo(h) > open_xid, "watermark moved past the committed transaction")
    time.sleep(0.2)
    check_eq(read_metrics(h).get("costmesh_rollup_lag_seconds"), 0, "the lag gauge once caught up")
    check_eq(dec(intent_spend(h, x, a)["cost_usd"]), Decimal(7), "every row counted once")
    h.restart_server()


@timeout(120)
def test_two_replicas_roll_up_once(h):
    h.restart_server({"COSTMESH_ROLLUP_MS": "10"})
    view = PortView(h, free_port())
    second = Server(view, h.server.admin_key, h.server.org, {"COSTMESH_ROLLUP_MS": "10"})
    second.start()
    agents = [new_agent(tag="roll-2r") for _ in range(8)]
    x = "int-" + hb_id()
    try:
        fns = []
        for i in range(200):
            tgt = h if i % 2 == 0 else view
            a = agents[i % len(agents)]
            fns.append(lambda tgt=tgt, a=a, i=i: tgt.hb(batch([hb_obj(a, "0.000000001", hb_id(), intent=x),
                                                               hb_obj(a, "%d" % (i + 1), hb_id(), intent=x)])))
        for r in run_concurrently(fns):
            accepted(r, 2, 0, "two-replica hb")
        want = sum(range(1, 201)) * 10 ** 9 + 200
        wait_rolled(h, x, want, secs=60)
        check_eq(h.psql("SELECT sum(heartbeats) FROM rollup_intent WHERE intent_id = '%s'" % x), "400",
                 "heartbeats rolled up once")
        # The intent is the org's: its spend covers all its agents, whichever one the hint names.
        total = dec(intent_spend(h, x, agents[0], via=view)["cost_usd"])
        check_eq(total, Decimal(want) / NANO, "intent spend over its agents")
    finally:
        problems = second.stop()
    check(not problems, "second replica stop: %s" % "; ".join(problems))
    h.restart_server()
