"""Integration test harness for costmeshd (Python 3 stdlib only).

Owns a throwaway Redis + PostgreSQL (through scripts/services.sh), the
costmeshd process under test, and small clients for HTTP, redis-cli and psql.
"""

import calendar
import contextlib
import decimal
import hashlib
import hmac
import http.client
import http.server
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from decimal import Decimal

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PG_BIN = "/usr/lib/postgresql/15/bin"
SANITIZER_PATTERNS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")

decimal.getcontext().prec = 50


class TestFailure(AssertionError):
    """A check failed."""


class HarnessError(Exception):
    """The harness itself could not do its job."""


def children(pid):
    """The pids pid forked that still run (none once it is gone)."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(k) for k in f.read().split()]
    except OSError:
        return []


def read_pid(path):
    """The pid a pid file holds, or None when it cannot be read."""
    try:
        with open(path) as f:
            return int(f.readline().strip())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def paused(pids):
    """pids stopped (SIGSTOP) for the block: their connections stay open and nothing answers, as with a hung
    server or a network partition. They continue after it, whatever happens (those still running)."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def file_tail(path, n=25):
    """The last n lines of a log file, on one line, for an error message."""
    try:
        with open(path, "rb") as f:
            return " | ".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
    except OSError as e:
        return "(%s)" % e


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def check_eq(got, want, what):
    if got != want:
        raise TestFailure("%s: want %r, got %r" % (what, want, got))


def timeout(seconds):
    """Decorator: run.py gives the test this many seconds instead of its default."""
    def deco(fn):
        fn.timeout = seconds
        return fn
    return deco


def load_yaml(path):
    """The YAML file at path, parsed (docker-compose.yml, docs/openapi.yaml)."""
    try:
        import yaml
    except ImportError:
        raise TestFailure("PyYAML is missing: apt-get install python3-yaml (make deps)") from None
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def dec(x):
    """A JSON number (int or Decimal from parse_float) as Decimal."""
    if isinstance(x, bool) or x is None:
        raise TestFailure("not a number: %r" % (x,))
    if isinstance(x, (int, Decimal)):
        return Decimal(x)
    if isinstance(x, str):
        return Decimal(x)
    raise TestFailure("not an exact number (float leaked?): %r" % (x,))


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t)))


def parse_iso(s):
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d+)?Z", s or "")
    if not m:
        raise TestFailure("not an RFC 3339 UTC time: %r" % (s,))
    return calendar.timegm(tuple(int(g) for g in m.groups()) + (0, 0, 0))


def day_start(t):
    return int(t) // 86400 * 86400


def hour_start(t):
    return int(t) // 3600 * 3600


def window_bounds(window, at):
    """[from, to) of the UTC window ("hour", "day", "week" from Monday, "month") containing at, and the
    length of its series' buckets in seconds."""
    at = int(at)
    if window == "hour":
        return hour_start(at), hour_start(at) + 3600, 3600
    if window == "day":
        return day_start(at), day_start(at) + 86400, 3600
    if window == "week":
        monday = day_start(at) - time.gmtime(at).tm_wday * 86400
        return monday, monday + 7 * 86400, 86400
    g = time.gmtime(at)
    first = calendar.timegm((g.tm_year, g.tm_mon, 1, 0, 0, 0))
    return first, first + calendar.monthrange(g.tm_year, g.tm_mon)[1] * 86400, 86400


# The counters a heartbeat's metrics add up to, as the spend replies name them.
COUNTERS = ("tokens_in", "tokens_out", "tokens_cached", "llm_calls", "tool_calls")


MONEY = ("revenue_usd", "refund_usd", "external_spend_usd", "fees_usd")


def margin(m):
    """Known margin of a metrics dict (money as text): revenue - refunds - cost - external spend - fees."""
    d = lambda k: Decimal(m.get(k, "0"))  # noqa: E731
    return d("revenue_usd") - d("refund_usd") - d("cost_usd") - d("external_spend_usd") - d("fees_usd")


def money_members(cost, **money):
    """The money members of a spend reply whose cost is `cost` and MONEY amounts `money` (Decimal), margin
    included."""
    m = {k: Decimal(money.get(k, 0)) for k in MONEY}
    return dict(m, margin_usd=margin(dict({k: str(v) for k, v in m.items()}, cost_usd=str(cost))))


def outcomes_of(cost, succeeded=0, failed=0, cancelled=0, abandoned=0, per_success=None, failed_spend=0,
                unfinished_spend=0):
    """The outcomes member of a spend reply whose window cost `cost`: intents ended in the window by status,
    those that became abandoned, the cost per successful intent, and the shares of cost on failed and
    unfinished intents (None when the window cost nothing)."""
    share = lambda part: None if not cost else (Decimal(part) / Decimal(cost)).quantize(Decimal("0.000001"))  # noqa: E731
    return {"succeeded": succeeded, "failed": failed, "cancelled": cancelled, "abandoned": abandoned,
            "cost_per_successful_intent_usd": per_success, "failed_spend_share": share(failed_spend),
            "unfinished_spend_share": share(unfinished_spend)}


def expected_totals(hbs, lo, hi, step, head):
    """head (the reply's identity members) with the totals and series of hbs, a list of (ts, metrics) with
    metrics a dict of cost_usd and MONEY (text) and COUNTERS (ints), over [lo, hi) in buckets of step. The
    outcomes are those of heartbeats of no intent (a test of intents sets its own)."""
    want = dict(head, cost_usd=Decimal(0), heartbeats=0, margin_usd=Decimal(0))
    want.update((k, 0) for k in COUNTERS)
    want.update((k, Decimal(0)) for k in MONEY)
    series = [{"from": iso(s), "cost_usd": Decimal(0), "tokens_in": 0, "tokens_out": 0, "llm_calls": 0,
               "margin_usd": Decimal(0)} for s in range(lo, hi, step)]
    for ts, m in hbs:
        if not lo <= ts < hi:
            continue
        b = series[(int(ts) - lo) // step]
        cost = Decimal(m.get("cost_usd", "0"))
        want["cost_usd"] += cost
        b["cost_usd"] += cost
        want["margin_usd"] += margin(m)
        b["margin_usd"] += margin(m)
        want["heartbeats"] += 1
        for k in MONEY:
            want[k] += Decimal(m.get(k, "0"))
        for k in COUNTERS:
            want[k] += m.get(k, 0)
            if k in b:
                b[k] += m.get(k, 0)
    want["series"] = series
    # These heartbeats name no model: nothing is split by model (test_o_billing checks the split).
    want["models"] = []
    want["outcomes"] = outcomes_of(want["cost_usd"])
    return want


def expected_spend(address, hbs, window, at, intents=0):
    """The whole GET .../spend reply for an agent that was sent exactly hbs (see expected_totals) and had
    `intents` admitted in the window."""
    lo, hi, step = window_bounds(window, at)
    return expected_totals(hbs, lo, hi, step, {"agent": address, "window": window, "from": iso(lo), "to": iso(hi),
                                               "granularity": granularity(step), "intents": intents})


def granularity(step):
    """A spend reply's granularity for its series' step (inside the hours kept: docs/operations.md)."""
    return "hour" if step == 3600 else "day"


def check_json(got, want, what):
    """got (a parsed reply) is exactly want: the same keys at every level, the same list lengths, money
    equal as Decimal (never a float), counts as JSON integers, everything else equal."""
    if isinstance(want, dict):
        check(isinstance(got, dict), "%s: want an object, got %.300r" % (what, got))
        extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
        check(not extra and not missing,
              "%s: fields %s missing, %s unexpected in %.400r" % (what, missing, extra, got))
        for k in want:
            check_json(got[k], want[k], "%s.%s" % (what, k))
    elif isinstance(want, list):
        check(isinstance(got, list) and len(got) == len(want), "%s: want %d items, got %.400r" % (what, len(want), got))
        for i, (g, w) in enumerate(zip(got, want)):
            check_json(g, w, "%s[%d]" % (what, i))
    elif isinstance(want, Decimal):
        check_eq(dec(got), want, what)
    elif isinstance(want, int) and not isinstance(want, bool):
        check(type(got) is int, "%s: want the integer %d, got %r" % (what, want, got))
        check_eq(got, want, what)
    else:
        check_eq(got, want, what)


def queue_id(text):
    """A Redis stream id "ms-seq" as a comparable (ms, seq); (0, 0) for none."""
    if not text:
        return (0, 0)
    m = re.fullmatch(r"(\d+)-(\d+)", text)
    check(m is not None, "not a stream id: %r" % (text,))
    return (int(m.group(1)), int(m.group(2)))


def dedupe_mark(agent, hid):
    """The Redis key of a heartbeat id's dedupe mark (COSTMESH_DURABLE=redis): cm:d: and the hex of the
    first 16 bytes of SHA-256 of "<length of agent>:<agent><id>", PostgreSQL's cm_hb_key."""
    text = "%d:%s%s" % (len(agent), agent, hid)
    return "cm:d:" + hashlib.sha256(text.encode("utf-8")).digest()[:16].hex()


def new_agent(org="org1", tag="t"):
    return "agent://%s/test/%s-%s" % (org, tag, uuid.uuid4().hex[:16])


def hb_id():
    return "hb-" + uuid.uuid4().hex


def enc(address):
    return urllib.parse.quote(address, safe="")


def nanos(d):
    """Decimal dollars -> int nano-dollars (exact; test values have <= 9 decimals)."""
    v = Decimal(d) * Decimal(1000000000)
    check(v == v.to_integral_value(), "not a whole number of nanos: %s" % d)
    return int(v)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ConnError(Exception):
    """The request did not get an HTTP answer (refused, reset, timeout)."""


def read_reply(s, limit):
    """Reads from s until the server closes it or `limit` seconds pass.
    Returns (bytes, closed, seconds until the first byte)."""
    s.settimeout(0.2)
    out, first = b"", None
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return out, True, first
        if not chunk:
            return out, True, first
        if first is None:
            first = time.monotonic() - t0
        out += chunk
    return out, False, first


_request_seq = itertools.count()  # next() is atomic under the GIL: the threads of one burst share it


def exchange(h, data, limit=10.0, source="127.0.0.1"):
    """Sends data on a fresh connection from address source; read_reply."""
    s = socket.create_connection(("127.0.0.1", h.http_port), timeout=10, source_address=(source, 0))
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_reply(s, limit)
    finally:
        s.close()


def send_early_answered(conn, method, path, body, headers):
    """conn.request, except that a server which answers before the body is
    sent and closes (costmeshd's 413 for a Content-Length over the limit)
    breaks the pipe: the answer is still there for conn.getresponse(), as
    curl and urllib3 read it."""
    try:
        conn.request(method, path, body=body, headers=headers)
    except (BrokenPipeError, ConnectionResetError):
        if conn.sock is None:  # reset while connecting (a server going away): no answer to read
            raise


class Resp:
    def __init__(self, status, headers, text, body=None, sent_at=None):
        self.status = status
        self.sent_at = sent_at  # time.time() as the request was sent: a reply's "now" is at or after it
        self.headers = headers
        self.text = text
        self.body = body  # the raw bytes, when the reply may not be text (OTLP protobuf)
        self._json = None
        self._parsed = False

    @property
    def json(self):
        if not self._parsed:
            self._parsed = True
            try:
                self._json = json.loads(self.text, parse_float=Decimal, parse_constant=_no_constant)
            except ValueError:
                self._json = None
        return self._json

    def error(self):
        j = self.json
        if not isinstance(j, dict) or not isinstance(j.get("error"), dict):
            raise TestFailure("status %d without a JSON error body: %.300r" % (self.status, self.text))
        return j["error"]

    def __repr__(self):
        return "<%d %.300s>" % (self.status, self.text)


def check_status(r, want, what=""):
    if isinstance(want, int):
        want = (want,)
    if r.status not in want:
        raise TestFailure("%s: want status %s, got %d: %.400s" % (what or "request", "/".join(map(str, want)), r.status, r.text))


def check_error(r, status, code=None, field=None, what=""):
    """r is an error reply with this status, a JSON error body, and the code/field when given."""
    check_status(r, status, what)
    e = r.error()
    check(isinstance(e.get("code"), str) and re.fullmatch(r"[a-z][a-z0-9_]*", e["code"] or ""),
          "%s: error.code not snake_case: %r" % (what, e.get("code")))
    check(isinstance(e.get("message"), str) and e["message"], "%s: error.message missing: %r" % (what, e))
    if code is not None:
        codes = (code,) if isinstance(code, str) else tuple(code)
        check(e["code"] in codes, "%s: want error.code %s, got %r" % (what, "|".join(codes), e["code"]))
    if field is not None:
        check_eq(e.get("field"), field, "%s: error.field" % what)
    return e


# /metrics series the tests read: a store's state (1 up, 0 down), and the work in flight per stage.
STORE_UP = 'costmesh_store_up{store="%s"}'
BACKLOGS = ['costmesh_persistence_backlog{stage="%s"}' % s for s in ("ingest_jobs", "postgres_writer", "redis")]


def read_metrics(h):
    """GET /metrics as {'name{labels}': value}, e.g. m['costmesh_store_up{store="redis"}'] (a float when the
    value has a fraction: the seconds of a summary)."""
    r = h.request("GET", "/metrics")
    check_status(r, 200, "/metrics")
    out = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value) if "." in value else int(value)
    return out


def wait_metric(h, name, want, secs, what):
    """Polls /metrics until name reads want (the server notices a store going or coming on its own time)."""
    deadline = time.time() + secs
    got = None
    while time.time() < deadline:
        got = read_metrics(h).get(name)
        if got == want:
            return
        time.sleep(0.1)
    raise TestFailure("%s: %s want %r within %ss, got %r" % (what, name, want, secs, got))


class Server:
    """One costmeshd process. env: settings over the harness's own (a value
    of None removes the variable)."""

    def __init__(self, h, admin_key, org, env=None):
        self.h = h
        self.admin_key = admin_key
        self.org = org
        self.env = dict(env or {})
        self.proc = None
        self.log_path = None
        self.log_file = None

    def start(self, timeout=20):
        h = self.h
        h.server_starts += 1
        self.log_path = os.path.join(h.data_dir, "costmeshd-%02d.log" % h.server_starts)
        self.log_file = open(self.log_path, "wb")
        env = dict(os.environ)
        env.update({
            "COSTMESH_LISTEN": "127.0.0.1:%d" % h.http_port,
            "COSTMESH_REDIS_URL": h.redis_url,
            "COSTMESH_DATABASE_URL": h.db_url,
            "COSTMESH_ADMIN_KEY": self.admin_key,
            "COSTMESH_ORG": self.org,
            "COSTMESH_WEB_DIR": os.path.join(REPO, "web"),
            "COSTMESH_OPENAPI_FILE": os.path.join(REPO, "docs", "openapi.yaml"),
            "COSTMESH_LOG_LEVEL": os.environ.get("CM_TEST_LOG_LEVEL", "warn"),
            # The tests' webhook receivers listen on loopback, which
            # costmeshd refuses unless allowed (test_k_webhooks runs without).
            "COSTMESH_WEBHOOK_ALLOW": "127.0.0.0/8",
            "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
            "UBSAN_OPTIONS": "print_stacktrace=1",
        })
        for k, v in self.env.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        self.proc = subprocess.Popen([h.binary], env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.log_file, stderr=self.log_file, cwd=h.data_dir)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError("costmeshd exited with %d at start: %s" % (self.proc.returncode, self.log_tail()))
            try:
                r = h.request("GET", "/readyz", timeout=2)
                if r.status == 200:
                    return
            except ConnError:
                pass
            time.sleep(0.1)
        raise HarnessError("costmeshd /readyz not 200 within %ds: %s" % (timeout, self.log_tail()))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        if not self.log_path:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=25):
        return file_tail(self.log_path, n) if self.log_path else ""

    def crash_summary(self):
        """The gist of a sanitizer report: its ERROR/SUMMARY lines and first frames."""
        out, frames = [], 0
        for l in self.log_text().splitlines():
            if any(p in l for p in SANITIZER_PATTERNS) or "SUMMARY:" in l:
                out.append(l.strip())
                frames = 0
            elif re.match(r"\s+#\d+ ", l) and frames < 4 and out:
                out.append(l.strip())
                frames += 1
        return " | ".join(out[:12])

    def sanitizer_lines(self):
        return [l for l in self.log_text().splitlines() if any(p in l for p in SANITIZER_PATTERNS)]

    def _close_log(self):
        if self.log_file:
            self.log_file.close()
            self.log_file = None

    def stop(self, timeout=30):
        """SIGTERM, wait; returns a list of problems (empty: clean exit 0, clean log)."""
        problems = []
        if self.proc is None:
            return problems
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                problems.append("did not exit within %ds of SIGTERM" % timeout)
                self.proc.kill()
                self.proc.wait(10)
        else:
            problems.append("had already exited (code %d) before SIGTERM" % self.proc.returncode)
        if self.proc.returncode != 0:
            problems.append("exit code %d" % self.proc.returncode)
        self._close_log()
        bad = self.sanitizer_lines()
        if bad:
            problems.append("sanitizer report in %s: %s" % (self.log_path, " | ".join(bad[:5])))
        if problems:
            problems.append("log: " + (self.crash_summary() or self.log_tail(15)))
        self.proc = None
        return problems

    def kill9(self):
        """kill -9 (crash tests); returns sanitizer lines logged before the kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close_log()
        self.proc = None
        return self.sanitizer_lines()


class Harness:
    def __init__(self, build_dir):
        bd = build_dir if os.path.isabs(build_dir) else (
            os.path.abspath(build_dir) if os.path.exists(build_dir) else os.path.join(REPO, build_dir))
        self.binary = os.path.join(bd, "costmeshd")
        if not os.access(self.binary, os.X_OK):
            raise HarnessError("no executable %s" % self.binary)
        self.data_dir = None
        self.services_started = False
        self.server = None
        self.server_starts = 0
        # COSTMESH_DURABLE=redis in the suite's environment reaches services.sh and every costmeshd: a 202
        # is durable in Redis and reaches PostgreSQL through the queue (docs/guarantees.md section 12).
        self.durable_redis = os.environ.get("COSTMESH_DURABLE") == "redis"
        self.k1 = "k1-" + secrets.token_hex(16)
        self.k2 = "k2-" + secrets.token_hex(16)
        self.org1, self.org2 = "org1", "org2"

    # ---------------------------------------------------------- services

    def services_env(self):
        env = dict(os.environ)
        env.update({"CM_DATA_DIR": self.data_dir, "CM_REDIS_PORT": str(self.redis_port),
                    "CM_PG_PORT": str(self.pg_port)})
        return env

    def services(self, cmd, timeout=120, env=None):
        """scripts/services.sh cmd, with env over the suite's environment (COSTMESH_DURABLE=redis: a Redis
        it starts fsyncs every write)."""
        p = subprocess.run(["sh", os.path.join(REPO, "scripts", "services.sh"), cmd],
                           env=dict(self.services_env(), **(env or {})), cwd=REPO, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
        out = p.stdout.decode("utf-8", "replace")
        if p.returncode != 0:
            raise HarnessError("services.sh %s failed (%d): %s" % (cmd, p.returncode, out[-2000:]))
        return out

    def setup(self):
        self.start_services()
        # Bootstrap both orgs: the bootstrap key is stored in PostgreSQL, so
        # K1 stays valid after the restart with K2.
        self.server = Server(self, self.k1, self.org1)
        self.server.start()
        problems = self.server.stop()
        if problems:
            raise HarnessError("first server did not stop cleanly: " + "; ".join(problems))
        self.server = Server(self, self.k2, self.org2)
        self.server.start()

    def start_services(self):
        """A throwaway Redis and PostgreSQL under a new data dir, on free ports; teardown stops them."""
        self.data_dir = tempfile.mkdtemp(prefix="cmit-")
        self.redis_port = free_port()
        self.pg_port = free_port()
        while self.pg_port == self.redis_port:
            self.pg_port = free_port()
        self.http_port = free_port()
        self.services_started = True
        self.services("start")
        env = {}
        with open(os.path.join(self.data_dir, "env")) as f:
            for line in f:
                m = re.match(r"\s*export\s+(\w+)=(.*)$", line.strip())
                if m:
                    env[m.group(1)] = m.group(2).strip().strip("'\"")
        self.redis_url = env.get("COSTMESH_REDIS_URL")
        self.db_url = env.get("COSTMESH_DATABASE_URL")
        if not self.redis_url or not self.db_url:
            raise HarnessError("env file lacks the store URLs: %r" % env)

    def teardown(self):
        errors = []
        if self.server is not None and self.server.proc is not None:
            try:
                p = self.server.proc
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    try:
                        p.wait(20)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait(10)
            except Exception as e:  # noqa: BLE001
                errors.append("server: %s" % e)
            self.server._close_log()
        if self.services_started:
            try:
                self.services("stop", timeout=90)
            except Exception as e:  # noqa: BLE001
                errors.append("services stop: %s" % e)
                self._kill_services()
        if self.data_dir and os.path.isdir(self.data_dir):
            keep = os.environ.get("CM_KEEP_DATA") == "1"
            if keep:
                errors.append("data kept in %s (CM_KEEP_DATA=1)" % self.data_dir)
            else:
                pg = os.path.join(self.data_dir, "pg")
                if os.path.islink(pg):
                    target = os.readlink(pg)
                    if target.startswith("/var/tmp/costmesh-pg-"):
                        shutil.rmtree(target, ignore_errors=True)
                shutil.rmtree(self.data_dir, ignore_errors=True)
        return errors

    def _kill_services(self):
        """Last resort: SIGKILL the services we started, found by their pid files."""
        for pidfile in (self.redis_pidfile(), self.pg_pidfile()):
            pid = read_pid(pidfile)
            try:
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def redis_pidfile(self):
        return os.path.join(self.data_dir, "redis", "redis.pid")

    def pg_base(self):
        pg = os.path.join(self.data_dir, "pg")
        return os.path.realpath(pg)

    def pg_pidfile(self):
        return os.path.join(self.pg_base(), "data", "postmaster.pid")

    def service_pid(self, pidfile):
        """The pid of a service the tests started, from its pid file."""
        pid = read_pid(pidfile)
        if pid is None:
            raise HarnessError("no pid in %s" % pidfile)
        return pid

    def kill9_redis(self):
        pid = self.service_pid(self.redis_pidfile())
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise HarnessError("redis pid %d still alive after SIGKILL" % pid)

    def pg_pids(self):
        """The PostgreSQL server the tests started: its postmaster, then every process it forked."""
        postmaster = self.service_pid(self.pg_pidfile())
        return [postmaster] + children(postmaster)

    def pg_paused(self):
        """PostgreSQL's processes stopped for the block (paused())."""
        return paused(self.pg_pids())

    def redis_paused(self):
        """Redis stopped for the block (paused())."""
        return paused([self.service_pid(self.redis_pidfile())])

    def stop_pg_immediate(self):
        cmd = [PG_BIN + "/pg_ctl", "-D", os.path.join(self.pg_base(), "data"), "-m", "immediate", "-w", "stop"]
        if os.getuid() == 0:
            cmd = ["runuser", "-u", "costmesh", "--"] + cmd
        p = subprocess.run(cmd, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        if p.returncode != 0:
            raise HarnessError("pg_ctl stop failed: %s" % p.stdout.decode("utf-8", "replace"))

    # ---------------------------------------------------------- server

    def restart_server(self, env=None):
        """SIGTERM the running server (checked), start it again (with env: see Server)."""
        problems = self.server.stop()
        s = Server(self, self.server.admin_key, self.server.org, env)
        self.server = s
        s.start()
        if problems:
            raise TestFailure("server stop was not clean: " + "; ".join(problems))

    def ensure_server(self):
        """Between tests: a dead server (crash, sanitizer abort) is restarted."""
        if self.server.alive():
            # A server stuck unready (a store it never got back) would fail
            # every later test: restart it, and blame the test that left it so.
            try:
                self.wait_ready(5)
                return None
            except TestFailure as e:
                why = str(e)
            problems = self.server.stop()
            s = Server(self, self.server.admin_key, self.server.org)
            self.server = s
            s.start()
            return "server left not ready (%s); restarted it%s" % (
                why, ("; its stop: " + "; ".join(problems)) if problems else "")
        code = self.server.proc.returncode if self.server.proc else None
        summary = self.server.crash_summary()
        tail = summary or self.server.log_tail(10)
        s = Server(self, self.server.admin_key, self.server.org)
        self.server = s
        s.start()
        return "server had died (exit %s); log: %s" % (code, tail)

    # ---------------------------------------------------------- clients

    def request(self, method, path, body=None, key=None, headers=None, timeout=30, bearer=False):
        hdrs = dict(headers or {})
        if key is not None:
            if bearer:
                hdrs["Authorization"] = "Bearer " + key
            else:
                hdrs["x-api-key"] = key
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body, default=_json_default)
        if isinstance(body, str):
            body = body.encode("utf-8")
        if body is not None:
            hdrs.setdefault("Content-Type", "application/json")
        # costmeshd allows 64 connections per client address: the suites'
        # bursts (80 intents at once) come from 8 loopback addresses, as from
        # several clients.
        source = ("127.0.6.%d" % (next(_request_seq) % 8 + 1), 0)
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout, source_address=source)
        try:
            sent_at = time.time()
            send_early_answered(conn, method, path, body, hdrs)
            r = conn.getresponse()
            raw = r.read()
            return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, raw.decode("utf-8", "replace"), raw,
                        sent_at)
        except (OSError, http.client.HTTPException) as e:
            raise ConnError("%s %s: %s: %s" % (method, path, type(e).__name__, e)) from None
        finally:
            conn.close()

    def hb(self, body, key=None, **kw):
        return self.request("POST", "/v1/mesh/heartbeat", body, key=self.k1 if key is None else key, **kw)

    def spend(self, address, window=None, at=None, key=None):
        q = {}
        if window:
            q["window"] = window
        if at is not None:
            q["at"] = at if isinstance(at, str) else iso(at)
        path = "/v1/mesh/agents/%s/spend" % enc(address)
        if q:
            path += "?" + urllib.parse.urlencode(q)
        return self.request("GET", path, key=self.k1 if key is None else key)

    def spend_ok(self, address, window=None, at=None, key=None):
        r = self.spend(address, window, at, key)
        check_status(r, 200, "spend of %s" % address)
        check(isinstance(r.json, dict), "spend body is not JSON: %.200r" % r.text)
        return r.json

    def redis(self, *args, timeout=10):
        p = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.redis_port)] + [str(a) for a in args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        if p.returncode != 0:
            raise TestFailure("redis-cli %s failed: %s" % (args, p.stderr.decode()))
        return p.stdout.decode("utf-8", "replace").strip()

    def psql(self, sql, timeout=20):
        p = subprocess.run(["psql", self.db_url, "-X", "-Atc", sql], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout, env=dict(os.environ, PGCONNECT_TIMEOUT="5"))
        if p.returncode != 0:
            raise TestFailure("psql %r failed: %s" % (sql, p.stderr.decode()))
        return p.stdout.decode("utf-8", "replace").strip()

    def wait_persisted(self, secs=20, redis_db=0):
        """Returns once every heartbeat acknowledged before the call is in PostgreSQL: at once in postgres
        mode (a 202 is a commit), else when the queue has been stored up to its last entry at the call."""
        if self.durable_redis:
            self.wait_queue(secs, redis_db)

    def wait_queue(self, secs=20, redis_db=0):
        """Waits until the persister has stored the queue (COSTMESH_DURABLE=redis) up to its last entry at
        the call: its done id reaches that last id."""
        cli = lambda *a: self.redis("-n", redis_db, *a)  # noqa: E731
        last = queue_id(cli("GET", "cm:q:last"))
        deadline = time.time() + secs
        while queue_id(cli("GET", "cm:q:done")) < last:
            check(time.time() < deadline, "the queue did not reach %r within %ss: done %r" %
                  (last, secs, cli("GET", "cm:q:done")))
            time.sleep(0.05)

    def wait_ready(self, timeout):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                last = self.request("GET", "/readyz", timeout=2)
                if last.status == 200:
                    return last
            except ConnError as e:
                last = e
            time.sleep(0.1)
        raise TestFailure("/readyz not 200 within %ss: %r" % (timeout, last))


class PortView:
    """The harness seen through another HTTP port: lets Server run a second replica."""

    def __init__(self, h, port):
        self._h = h
        self.http_port = port
        self.server_starts = 90  # its own log file names (costmeshd-91.log, ...)

    def __getattr__(self, name):
        return getattr(self._h, name)

    def request(self, *a, **kw):
        return Harness.request(self, *a, **kw)


def check_webhook_signature(secret, headers, raw, what="webhook delivery"):
    """A delivery's X-Costmesh-Signature is sha256=HMAC(secret, "<X-Costmesh-Timestamp>.<body>") and its
    timestamp is now, as a receiver checks them to refuse a replay. headers: lowercase names."""
    ts = headers.get("x-costmesh-timestamp") or ""
    check(ts.isdigit() and abs(int(ts) - time.time()) < 60, "%s: X-Costmesh-Timestamp %r is not now" % (what, ts))
    want = "sha256=" + hmac.new(secret.encode(), ts.encode() + b"." + raw, hashlib.sha256).hexdigest()
    check_eq(headers.get("x-costmesh-signature"), want, "%s: X-Costmesh-Signature" % what)


class HookReceiver:
    """A webhook receiver on 127.0.0.1: records each POST as (time, path, lowercase headers, body, JSON) and
    answers answer(json) (200 when not given). port 0 picks a free one."""

    def __init__(self, answer=None, port=0):
        self.got = []
        self.lock = threading.Lock()
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    j = json.loads(raw, parse_float=Decimal)
                except ValueError:
                    j = None
                with rec.lock:
                    rec.got.append((time.time(), self.path, {k.lower(): v for k, v in self.headers.items()}, raw, j))
                self.send_response(answer(j) if answer else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/hook", host="127.0.0.1"):
        return "http://%s:%d%s" % (host, self.port, path)

    def deliveries(self, match=lambda j: True):
        with self.lock:
            return [g for g in self.got if g[4] is not None and match(g[4])]

    def wait(self, n, match=lambda j: True, secs=10):
        deadline = time.time() + secs
        while time.time() < deadline:
            d = self.deliveries(match)
            if len(d) >= n:
                return d
            time.sleep(0.05)
        return self.deliveries(match)

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()
        self.thread.join(10)


def _no_constant(c):
    raise ValueError("non-JSON constant %s in a reply" % c)


def _json_default(o):
    if isinstance(o, Decimal):
        # Only used when a test builds a body from Decimals: keep the exact text.
        raise TypeError("pass money as raw JSON text, not Decimal")
    raise TypeError(repr(o))


def hb_obj(agent, cost=None, hid=None, ts=None, intent=None, **metrics):
    """One heartbeat as JSON text (money kept as the literal text given)."""
    parts = []
    if agent is not None:
        parts.append('"agent":%s' % json.dumps(agent))
    if hid is not None:
        parts.append('"id":%s' % json.dumps(hid))
    if intent is not None:
        parts.append('"intent_id":%s' % json.dumps(intent))
    if ts is not None:
        parts.append('"ts":%s' % json.dumps(ts if isinstance(ts, str) else iso(ts)))
    m = []
    if cost is not None:
        m.append('"cost_usd":%s' % cost)
    for k, v in metrics.items():
        m.append('%s:%s' % (json.dumps(k), v if isinstance(v, str) else json.dumps(v)))
    if m:
        parts.append('"metrics":{%s}' % ",".join(m))
    return "{" + ",".join(parts) + "}"


def batch(items):
    return '{"heartbeats":[' + ",".join(items) + "]}"


def accepted(r, want_acc, want_dup, what):
    check_status(r, 202, what)
    j = r.json
    check(isinstance(j, dict), "%s: 202 body not JSON: %.200r" % (what, r.text))
    check_eq((j.get("accepted"), j.get("duplicates")), (want_acc, want_dup), "%s: (accepted, duplicates)" % what)
    return j
