"""The C agent SDK (agent-sdk/) against a real costmeshd: exact money from 4
threads, an outage that loses nothing, lost replies that count once, budget
refusals with the limit filled in, bound keys, and the example agent.

Builds nothing: runs $(BUILD)/sdk_driver and $(BUILD)/sdk_example_agent, which
`make integration` builds first (INTEGRATION_DEPS in mk/sdk.mk). The driver
speaks a line protocol on stdin/stdout (see tests/sdk/driver.c)."""

import os
from decimal import Decimal
import queue
import socket
import subprocess
import threading
import time
import uuid
import http.client
from decimal import Decimal

from harness import (Server, SANITIZER_PATTERNS, accepted, check, check_eq, check_status, dec, enc, hb_id, hb_obj,
                     new_agent, TestFailure)


def timeout(seconds):
    def deco(fn):
        fn.timeout = seconds
        return fn
    return deco


# The harness's patterns, plus TSan's (make test-tsan builds the SDK with it too).
BAD_PATTERNS = tuple(SANITIZER_PATTERNS) + ("WARNING: ThreadSanitizer",)
CM_OK, CM_ETIMEDOUT, CM_ENETWORK, CM_EBUDGET, CM_EKILLED = 0, -5, -6, -7, -8
STATE_ACTIVE, STATE_BLOCKED = 1, 2


# ------------------------------------------------------------------ helpers

def build_dir(h):
    return os.path.dirname(h.binary)


def url_of(h, port=None):
    return "http://127.0.0.1:%d" % (port or h.http_port)


class Driver:
    """One sdk_driver session: a cm_client driven line by line."""

    def __init__(self, h, agent, key=None, url=None, **opts):
        path = os.path.join(build_dir(h), "sdk_driver")
        if not os.access(path, os.X_OK):
            raise TestFailure("no %s: build it first (make ... integration builds $(INTEGRATION_DEPS))" % path)
        args = [path, "session", url or url_of(h), key or h.k1, agent or "-"]
        args += ["%s=%d" % kv for kv in sorted(opts.items())]
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, text=True, bufsize=1)
        self.lines = queue.Queue()
        self.err = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._collect, daemon=True).start()
        first = self._line(30)
        check(first.startswith("ready"), "driver did not start: %r %s" % (first, self.stderr()))

    @staticmethod
    def _pump(f, q):
        for line in f:
            q.put(line.rstrip("\n"))
        q.put(None)

    def _collect(self):
        for line in self.proc.stderr:
            self.err.append(line.rstrip("\n"))

    def stderr(self):
        return " | ".join(self.err[-20:])

    def _line(self, secs):
        try:
            line = self.lines.get(timeout=secs)
        except queue.Empty:
            raise TestFailure("driver gave no answer within %ss; stderr: %s" % (secs, self.stderr()))
        if line is None:
            raise TestFailure("driver exited (%s); stderr: %s" % (self.proc.poll(), self.stderr()))
        return line

    def cmd(self, line, secs=60):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        out = self._line(secs)
        check(not out.startswith("error"), "driver: %s -> %s" % (line, out))
        kv = {}
        for tok in out.split()[1:]:
            k, _, v = tok.partition("=")
            kv[k] = int(v) if v.lstrip("-").isdigit() else v
        return kv

    def report(self, cost, n, threads=1, nintents=1, prefix="i"):
        r = self.cmd("report %s %d %d %d %s" % (cost, n, threads, nintents, prefix))
        check_eq((r["ok"], r["full"], r["err"]), (n * threads, 0, 0), "report %s x %d x %d" % (cost, n, threads))
        return r

    def flush(self, ms):
        return self.cmd("flush %d" % ms, secs=ms / 1000.0 + 30)["rc"]

    def quit(self):
        """Frees the client; checks a clean exit without sanitizer reports."""
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.stdin.close()
        bye = self._line(60)
        check_eq(bye, "bye", "driver quit")
        rc = self.proc.wait(60)
        time.sleep(0.05)
        bad = [l for l in self.err if any(p in l for p in BAD_PATTERNS)]
        check(not bad, "sanitizer report from the SDK: %s" % " | ".join(self.err[:30]))
        check_eq(rc, 0, "driver exit code (stderr: %s)" % self.stderr())

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def session(h, agent, **kw):
    return Driver(h, agent, **kw)


def spend_day(h, a):
    return h.spend_ok(a, window="day")


def away_from_boundary(period, margin):
    left = (int(time.time()) // period + 1) * period - time.time()
    if left < margin:
        time.sleep(left + 1)


def start_server(h):
    s = Server(h, h.server.admin_key, h.server.org)
    h.server = s
    s.start()


# ------------------------------------------------------------------ tests

@timeout(180)
def test_four_threads_exact_money(h):
    """4 threads x 25,000 reports of 0.001 arrive as exactly 100 (and exact counts)."""
    away_from_boundary(86400, 60)
    a = new_agent(tag="sdk-exact")
    d = session(h, a, flush_ms=100, max_batch=7)
    try:
        d.report("0.001", 25000, threads=4, nintents=20, prefix="int")
        check_eq(d.flush(60000), CM_OK, "flush after 100,000 reports")
        st = d.cmd("stats")
        check_eq(st["reports"], 100000, "reports recorded")
        check_eq(st["cost_acked_nanos"], 100 * 10**9, "cost acknowledged (nanos)")
        check_eq((st["heartbeats_dropped"], st["pending_intents"]), (0, 0), "nothing dropped or pending")
        s = spend_day(h, a)
        check_eq(dec(s["cost_usd"]), Decimal("100"), "spend cost_usd")
        check_eq((s["tokens_in"], s["tokens_out"], s["llm_calls"]), (300000, 200000, 100000), "spend counts")
        check(s["heartbeats"] == st["heartbeats_acked"] and s["heartbeats"] <= 100000,
              "heartbeats are coalesced per intent: spend says %s, SDK acked %s" % (s["heartbeats"], st["heartbeats_acked"]))
        state = d.cmd("state")
        check_eq(state["state"], STATE_ACTIVE, "agent state from the heartbeat reply")
        check_eq(state["cost_today_nanos"], 100 * 10**9, "cost_today from the heartbeat reply")
        d.quit()
    finally:
        d.kill()


@timeout(180)
def test_outage_loses_nothing(h):
    """Server stopped mid-stream: reports keep being accepted, nothing is lost once it is back."""
    away_from_boundary(86400, 90)
    a = new_agent(tag="sdk-outage")
    d = session(h, a, flush_ms=100, max_batch=3, backoff_ms=50, backoff_max_ms=400, timeout_ms=2000)
    restarted = False
    try:
        d.report("0.001", 1000, threads=2, nintents=5, prefix="before")
        check_eq(d.flush(20000), CM_OK, "flush before the outage")
        check_eq(dec(spend_day(h, a)["cost_usd"]), Decimal("2"), "spend before the outage")
        # A frozen batch may be in flight when the server goes away.
        d.report("0.001", 500, threads=4, nintents=5, prefix="edge")
        problems = h.server.stop()
        check(not problems, "server stop: %s" % "; ".join(problems))
        d.report("0.001", 5000, threads=4, nintents=9, prefix="during")
        check_eq(d.flush(800), CM_ETIMEDOUT, "flush while the server is down")
        st = d.cmd("stats")
        check_eq(st["last_error"], CM_ENETWORK, "last_error while down")
        check(st["pending_intents"] > 0, "data kept while down: %r" % st)
        d.report("0.001", 1000, threads=4, nintents=3, prefix="during2")
        time.sleep(1.0)  # a few retries against a closed port
        start_server(h)
        restarted = True
        d.report("0.001", 250, threads=4, nintents=2, prefix="after")
        check_eq(d.flush(60000), CM_OK, "flush after the restart")
        st = d.cmd("stats")
        check(st["retries"] >= 1, "the SDK retried: %r" % st)
        want = Decimal("0.001") * (2000 + 2000 + 20000 + 4000 + 1000)
        check_eq(st["cost_acked_nanos"], int(want * 10**9), "cost acknowledged by the SDK")
        check_eq(st["heartbeats_dropped"], 0, "dropped heartbeats")
        s = spend_day(h, a)
        check_eq(dec(s["cost_usd"]), want, "spend after the outage (nothing lost, nothing doubled)")
        check_eq(s["llm_calls"], 29000, "llm_calls after the outage")
        d.quit()
    finally:
        d.kill()
        if not restarted and not h.server.alive():
            start_server(h)


class LossyProxy:
    """Forwards HTTP to costmeshd; for the first `drop` distinct heartbeat
    bodies it forwards the request (the server accepts it) but closes the
    connection without the reply, as a timeout or a reset would. The resend
    of such a body gets through."""

    def __init__(self, h, drop):
        self.h = h
        self.drop = drop
        self.dropped = 0
        self.dropped_heartbeats = 0
        self.seen = set()
        self.forwarded = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            c.settimeout(30)
            f = c.makefile("rb")
            line = f.readline().decode("latin-1").split()
            if len(line) < 2:
                return
            method, path = line[0], line[1]
            headers = {}
            while True:
                l = f.readline().decode("latin-1")
                if l in ("\r\n", "\n", ""):
                    break
                k, _, v = l.partition(":")
                headers[k.strip().lower()] = v.strip()
            body = f.read(int(headers.get("content-length", "0")))
            fwd = {k: v for k, v in headers.items() if k in ("x-api-key", "content-type", "authorization")}
            conn = http.client.HTTPConnection("127.0.0.1", self.h.http_port, timeout=30)
            conn.request(method, path, body=body, headers=fwd)
            r = conn.getresponse()
            data = r.read()
            conn.close()
            with self.lock:
                self.forwarded += 1
                lose = (path.startswith("/v1/mesh/heartbeat") and self.dropped < self.drop and r.status == 202
                        and body not in self.seen)
                self.seen.add(body)
                if lose:
                    self.dropped += 1
                    self.dropped_heartbeats += body.count(b'"id":')
            if lose:
                return  # the server has it; the client never hears
            head = "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n" % (
                r.status, len(data))
            ra = r.getheader("Retry-After")
            if ra:
                head += "Retry-After: %s\r\n" % ra
            c.sendall(head.encode() + b"\r\n" + data)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.sock.close()


@timeout(120)
def test_lost_replies_count_once(h):
    """Batches the server accepted but whose replies were lost are resent with the same ids: counted once."""
    away_from_boundary(86400, 60)
    a = new_agent(tag="sdk-lost")
    p = LossyProxy(h, drop=3)
    d = session(h, a, url=url_of(h, p.port), flush_ms=100, max_batch=2, backoff_ms=20, backoff_max_ms=100)
    try:
        d.report("0.003", 1000, threads=2, nintents=5, prefix="lost")
        check_eq(d.flush(30000), CM_OK, "flush through the lossy proxy")
        st = d.cmd("stats")
        check_eq(p.dropped, 3, "replies dropped by the proxy")
        check_eq(st["retries"], 3, "resends (%r)" % st)
        check_eq(st["heartbeats_duplicate"], p.dropped_heartbeats,
                 "every heartbeat of a resent body is a duplicate at the server (%r)" % st)
        s = spend_day(h, a)
        check_eq(dec(s["cost_usd"]), Decimal("6"), "spend with lost replies")
        check_eq(s["llm_calls"], 2000, "llm_calls with lost replies")
        # The server counted each heartbeat once: those it accepted while the
        # reply was lost are the ones the SDK later saw as duplicates.
        check_eq(s["heartbeats"], st["heartbeats_acked"] + st["heartbeats_duplicate"],
                 "server heartbeats vs SDK accepted + duplicates")
        d.quit()
    finally:
        d.kill()
        p.close()


@timeout(90)
def test_budget_refusal_fills_decision(h):
    """Over a max_cost_per_day_usd policy: cm_intent_begin says CM_EBUDGET with the limit, its value, current,
    Retry-After; the heartbeat reply's "blocked" reaches cm_agent_state and the callback; kill gives CM_EKILLED."""
    away_from_boundary(86400, 60)
    a = new_agent(tag="sdk-budget")
    accepted(h.hb(hb_obj(a, "0", hb_id())), 1, 0, "register")
    r = h.request("PUT", "/v1/mesh/agents/%s/policies/cost" % enc(a),
                  '{"max_cost_per_day_usd": 1.5, "action_on_breach": "block"}', key=h.k1)
    check_status(r, 200, "PUT policy")
    d = session(h, a, flush_ms=100)
    try:
        i = d.cmd("intent sdk-first")
        check_eq((i["rc"], i["status"], i["intent_id"]), (CM_OK, 201, "sdk-first"), "intent under the limit")
        i = d.cmd("intent -")
        check(i["rc"] == CM_OK and i["intent_id"] not in ("-", ""), "server-generated intent id: %r" % i)
        d.report("0.5", 4, threads=1, nintents=1, prefix="sdk-first")
        check_eq(d.flush(20000), CM_OK, "flush the spend")
        st = d.cmd("state")
        check_eq(st["state"], STATE_BLOCKED, "cm_agent_state after the heartbeat reply")
        check_eq(st["cost_today_nanos"], 2 * 10**9, "cost today from the reply")
        check(st["callbacks"] >= 1 and st["last_cb"] == STATE_BLOCKED, "on_state callback: %r" % st)
        i = d.cmd("intent sdk-second")
        check_eq((i["rc"], i["name"], i["status"], i["code"]), (CM_EBUDGET, "CM_EBUDGET", 429, "cost_policy_breached"),
                 "intent over the limit")
        check_eq(i["limit"], "max_cost_per_day_usd", "decision.limit")
        check_eq((i["limit_value_exact"], i["current_exact"]), (1500000000, 2000000000), "decision exact values")
        check_eq((Decimal(i["limit_value"]), Decimal(i["current"])), (Decimal("1.5"), Decimal("2")), "decision values")
        want = (int(time.time()) // 86400 + 1) * 86400 - time.time()
        check(abs(i["retry_after_s"] - want) <= 3, "retry_after_s %r, want about %.0f" % (i["retry_after_s"], want))
        # Raising the limit admits again; killing refuses with CM_EKILLED.
        r = h.request("PUT", "/v1/mesh/agents/%s/policies/cost" % enc(a), '{"max_cost_per_day_usd": 100}', key=h.k1)
        check_status(r, 200, "raise the limit")
        check_eq(d.cmd("intent sdk-third")["rc"], CM_OK, "intent after raising the limit")
        check_eq(d.cmd("state")["state"], STATE_ACTIVE, "state after an admitted intent")
        check_status(h.request("POST", "/v1/mesh/agents/%s/kill" % enc(a), key=h.k1), 200, "kill")
        i = d.cmd("intent sdk-fourth")
        check_eq((i["rc"], i["status"], i["code"]), (CM_EKILLED, 403, "agent_killed"), "intent of a killed agent")
        check_status(h.request("POST", "/v1/mesh/agents/%s/resume" % enc(a), key=h.k1), 200, "resume")
        check_eq(d.cmd("intent sdk-fifth")["rc"], CM_OK, "intent after resume")
        d.quit()
    finally:
        d.kill()


@timeout(60)
def test_bound_key_without_agent(h):
    """A key bound to one agent: the SDK leaves "agent" out, and both reports and intents work."""
    a = new_agent(tag="sdk-bound")
    r = h.request("POST", "/v1/keys", {"role": "agent", "name": "sdk-" + hb_id(), "agent": a}, key=h.k1)
    check_status(r, 201, "create a bound agent key")
    d = session(h, None, key=r.json["key"], flush_ms=100)
    try:
        d.report("0.25", 3, nintents=1, prefix="bound")
        check_eq(d.flush(20000), CM_OK, "flush with a bound key")
        check_eq(dec(spend_day(h, a)["cost_usd"]), Decimal("0.75"), "spend of the bound agent")
        check_eq(d.cmd("state")["state"], STATE_ACTIVE, "state from the reply (single agent)")
        check_eq(d.cmd("intent bound-1")["rc"], CM_OK, "intent with a bound key")
        d.quit()
    finally:
        d.kill()


@timeout(60)
def test_example_agent(h):
    """The example agent in agent-sdk/examples runs end to end (shared library)."""
    path = os.path.join(build_dir(h), "sdk_example_agent")
    check(os.access(path, os.X_OK), "no %s: build it first" % path)
    a = new_agent(tag="sdk-example")
    env = dict(os.environ, COSTMESH_URL=url_of(h), COSTMESH_API_KEY=h.k1, COSTMESH_AGENT=a,
               ASAN_OPTIONS="detect_leaks=1:abort_on_error=0")
    p = subprocess.run([path, "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=50)
    out = p.stdout + p.stderr
    check_eq(p.returncode, 0, "example exit code: %s" % out[-1500:])
    check(not any(x in out for x in BAD_PATTERNS), "sanitizer report: %s" % out[-1500:])
    check("flush: success" in p.stdout, "example output: %s" % out[-800:])
    check_eq(dec(spend_day(h, a)["cost_usd"]), Decimal("0.075"), "spend of the example agent (2 tasks x 3 x 0.0125)")


@timeout(60)
def test_intent_end(h):
    """cm_intent_end records an intent's outcome (200), a repeat answers the same, another status is CM_EHTTP with
    intent_already_ended, an unknown intent CM_EINVAL (404), a bad status is refused before any request; the
    intent's spend shows the outcome."""
    a = new_agent(tag="sdk-end")
    x = "sdk-end-" + hb_id()
    d = session(h, a, flush_ms=100)
    try:
        check_eq(d.cmd("intent " + x)["rc"], CM_OK, "begin")
        for what in ("end", "repeated end"):
            e = d.cmd("end %s succeeded 0.9" % x)
            check_eq((e["name"], e["status"], e["intent_id"]), ("CM_OK", 200, x), what)
        e = d.cmd("end %s failed" % x)
        check_eq((e["name"], e["status"], e["code"]), ("CM_EHTTP", 409, "intent_already_ended"), "another status")
        e = d.cmd("end nobody-%s failed" % x)
        check_eq((e["name"], e["status"], e["code"]), ("CM_EINVAL", 404, "intent_not_found"), "unknown intent")
        e = d.cmd("end %s done" % x)
        check_eq((e["name"], e["status"]), ("CM_EINVAL", 0), "bad status, no request")
        d.quit()
    finally:
        d.kill()
    r = h.request("GET", "/v1/mesh/intents/%s/spend" % x, key=h.k1)
    check_status(r, 200, "intent spend")
    check_eq((r.json["outcome"]["status"], dec(r.json["outcome"]["quality"])), ("succeeded", Decimal("0.9")),
             "the outcome the SDK recorded")


@timeout(60)
def test_money_and_intent_attributes(h):
    """cm_intent_begin_attrs gives the intent a run and a customer that its reports inherit on the server;
    cm_report_money sums revenue, refunds, external spend and fees per intent beside the cost, exactly, into
    the run's and the agent's margin; an attribute with a control character is refused before sending."""
    away_from_boundary(3600, 30)
    a = new_agent(tag="sdk-money")
    run, cust, x = "run-" + uuid.uuid4().hex[:12], "cust-" + uuid.uuid4().hex[:12], "int-" + uuid.uuid4().hex[:12]
    d = session(h, a, flush_ms=100)
    try:
        r = d.cmd("intent %s %s - - %s" % (x, run, cust))
        check_eq((r["name"], r["intent_id"]), ("CM_OK", x), "intent with attributes")
        check_eq(d.cmd("intent - run\x01 - - -")["name"], "CM_EINVAL", "control character in run_id")
        for _ in range(3):
            check_eq(d.cmd("money %s 0.1 0.5 0.05 0.01 0.002" % x)["name"], "CM_OK", "money report")
        check_eq(d.cmd("money %s 0 -1 0 0 0" % x)["name"], "CM_EINVAL", "negative revenue")
        check_eq(d.flush(20000), CM_OK, "flush")
    finally:
        d.quit()
    want = {"cost_usd": "0.3", "revenue_usd": "1.5", "refund_usd": "0.15", "external_spend_usd": "0.03",
            "fees_usd": "0.006", "margin_usd": "1.014"}
    for path in ("/v1/mesh/runs/%s/spend" % run, "/v1/mesh/customers/%s/spend" % cust,
                 "/v1/mesh/agents/%s/spend" % enc(a)):
        r = h.request("GET", path, key=h.k1)
        check_status(r, 200, path)
        check_eq({k: str(r.json[k]) for k in want}, want, "money of %s" % path)
