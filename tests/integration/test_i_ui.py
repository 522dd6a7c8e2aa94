"""The web dashboard in a real browser: tests/ui/dashboard.mjs drives Debian's
Chromium (through playwright-core from web/node_modules) against the server
under test. Missing node, Chromium or the built dashboard fail the test."""

import os
import re
import secrets
import shutil
import subprocess

from harness import REPO, Server, TestFailure, check
from test_e_policies import away_from_boundary

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCRIPT = os.path.join(REPO, "tests", "ui", "dashboard.mjs")
WEB = os.path.join(REPO, "web")


def timeout(seconds):
    def deco(fn):
        fn.timeout = seconds
        return fn
    return deco


def build_dir(h):
    return os.path.dirname(h.binary)


def ensure_dashboard(h):
    """The server under test serves the dashboard; costmeshd looks for it in
    COSTMESH_WEB_DIR (default "web", relative to its working directory), and
    reads it once at start."""
    missing = [p for p in ("index.html", "app.js", "app.css", "node_modules/chart.js/dist/chart.umd.js",
                           "node_modules/playwright-core/package.json")
               if not os.path.exists(os.path.join(WEB, p))]
    if missing:
        raise TestFailure("the dashboard is not built (missing %s): run `make web` (npm ci in web/)"
                          % ", ".join("web/" + m for m in missing))
    r = h.request("GET", "/")
    if r.status == 200 and "/ui/app.js" in r.text:
        return
    # The harness starts costmeshd in its temp data dir: point it at web/.
    os.environ["COSTMESH_WEB_DIR"] = WEB
    h.restart_server()
    r = h.request("GET", "/")
    check(r.status == 200 and "/ui/app.js" in r.text,
          "GET / does not serve web/index.html even with COSTMESH_WEB_DIR=%s: %d %.200s" % (WEB, r.status, r.text))


def run_in_own_org(h, fn):
    """Runs fn(key, org) against a server bootstrapping an org of its own, so that every figure of the
    org (the dashboard's cards) is what fn wrote; then gives the harness its server back."""
    home = h.server
    check(not home.stop(), "the server did not stop cleanly before the UI test")
    h.server = Server(h, "kui-" + secrets.token_hex(16), "ui" + secrets.token_hex(4))
    h.server.start()
    try:
        return fn(h.server.admin_key, h.server.org)
    finally:
        problems = h.server.stop()
        h.server = Server(h, home.admin_key, home.org)
        h.server.start()
        check(not problems, "server stop after the UI test: %s" % "; ".join(problems))


@timeout(480)
def test_dashboard_in_chromium(h):
    node = shutil.which("node")
    check(node is not None, "node is missing: install nodejs (make deps); the UI test needs it")
    check(os.access(CHROMIUM, os.X_OK), "%s is missing: apt-get install -y chromium (the UI test needs it)" % CHROMIUM)
    ensure_dashboard(h)
    # Its figures are sums over the UTC day, week and month of now: keep a run inside one day.
    away_from_boundary(86400, 240)
    shots = os.path.join(build_dir(h), "screenshots")

    def run(key, org):
        env = dict(os.environ)
        env.update({
            "SERVER_URL": "http://127.0.0.1:%d" % h.http_port,
            "ADMIN_KEY": key,
            "AGENT_ORG": org,
            "SCREENSHOT_DIR": shots,
            "CHROMIUM": CHROMIUM,
            "UI_TEST_TIMEOUT_MS": "180000",
        })
        try:
            return subprocess.run([node, SCRIPT], cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=210)
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode("utf-8", "replace")
            raise TestFailure("tests/ui/dashboard.mjs did not finish within 210 s:\n" + out[-4000:]) from None

    p = run_in_own_org(h, run)
    out = p.stdout.decode("utf-8", "replace")
    if p.returncode != 0:
        fails = [l for l in out.splitlines() if l.startswith("FAIL")]
        raise TestFailure("tests/ui/dashboard.mjs exited %d (%s):\n%s"
                          % (p.returncode, "; ".join(fails[:5]) or "no FAIL line", out[-4000:]))
    check(re.search(r"^\d+ passed, 0 failed$", out, re.M) is not None, "tests/ui/dashboard.mjs printed no summary:\n" + out[-2000:])
    for name in ("login.png", "agents.png", "agent.png", "events.png", "agents-narrow.png", "budgets.png", "pricing.png"):
        check(os.path.getsize(os.path.join(shots, name)) > 1000, "screenshot %s is missing or empty" % name)
