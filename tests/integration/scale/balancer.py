"""Replicas of costmeshd behind an nginx of the test's own (Debian's nginx package).

nginx runs in the foreground from a config file in a folder of the harness's data dir, on a free
loopback port, with its pid file, logs and temp files there: the system's nginx and port 80 are never
touched, and it is stopped by its own PID.
"""

import contextlib
import itertools
import os
import signal
import subprocess
import time

from harness import ConnError, HarnessError, PortView, Server, TestFailure, check, free_port

NGINX = "/usr/sbin/nginx"
_log_numbers = itertools.count(100, 10)  # each replica's costmeshd-NNN.log apart from the others'

# The same upstream settings docs/operations.md recommends: a replica that refuses connections is
# skipped for the next one (a POST is passed on only when it was never sent, so nginx never
# doubles one), and the balancer's connections are reused.
CONF = """daemon off;
master_process on;
worker_processes 1;
%(user)s
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %(dir)s/body;
    proxy_temp_path %(dir)s/proxy;
    fastcgi_temp_path %(dir)s/fastcgi;
    uwsgi_temp_path %(dir)s/uwsgi;
    scgi_temp_path %(dir)s/scgi;
    upstream costmesh {
%(servers)s
        keepalive 32;
    }
    server {
        listen 127.0.0.1:%(port)d;
        client_max_body_size 1m;
        location / {
            proxy_pass http://costmesh;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 1s;
            proxy_read_timeout 35s;
            proxy_next_upstream error timeout;
        }
    }
}
"""


class Nginx:
    """An nginx balancing over the given loopback ports; .view is the harness seen through it."""

    def __init__(self, h, ports):
        self.dir = os.path.join(h.data_dir, "nginx-%d" % free_port())
        os.makedirs(self.dir)
        self.port = free_port()
        servers = "\n".join("        server 127.0.0.1:%d max_fails=1 fail_timeout=2s;" % p for p in ports)
        # As root nginx's workers would run as nobody, who cannot enter the harness's data dir.
        user = "user root;" if os.getuid() == 0 else ""
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(CONF % {"dir": self.dir, "port": self.port, "servers": servers, "user": user})
        if not os.access(NGINX, os.X_OK):
            raise HarnessError("no %s: apt-get install nginx (scripts/deps.sh)" % NGINX)
        self.log = open(os.path.join(self.dir, "stderr.log"), "wb")
        self.proc = subprocess.Popen([NGINX, "-p", self.dir, "-c", os.path.join(self.dir, "nginx.conf"),
                                      "-e", os.path.join(self.dir, "error.log")],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        self.view = PortView(h, self.port)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError("nginx exited with %d: %s" % (self.proc.returncode, self.errors()))
            try:
                self.view.request("GET", "/healthz", timeout=2)
                return
            except ConnError:
                time.sleep(0.1)
        self.stop()
        raise HarnessError("nginx did not answer on port %d: %s" % (self.port, self.errors()))

    def errors(self):
        out = []
        for name in ("stderr.log", "error.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    out.append(f.read()[-1500:])
            except OSError:
                pass
        return " | ".join(out)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: workers finish their requests
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def start_replicas(h, n, env=None, db_url=None):
    """n more costmeshd of the harness's org, each on its own port, per-IP limit raised as behind a
    proxy; db_url: another database than the harness's. Returns the Servers (their .h is their view)."""
    out = []
    try:
        for _ in range(n):
            view = PortView(h, free_port())
            view.server_starts = next(_log_numbers)
            if db_url:
                view.db_url = db_url
            e = {"COSTMESH_MAX_PER_IP": "1024"}
            e.update(env or {})
            s = Server(view, h.server.admin_key, h.server.org, e)
            s.start()
            out.append(s)
    except BaseException:
        stop_all(out)
        raise
    return out


def stop_all(servers):
    """SIGTERM each replica still running; returns the problems of their stops."""
    problems = []
    for s in servers:
        if s.proc is not None:
            problems += ["replica on %d: %s" % (s.h.http_port, p) for p in s.stop()]
    return problems


@contextlib.contextmanager
def replicas(h, n, env=None):
    """start_replicas for a with block; they must stop cleanly at its end."""
    reps = start_replicas(h, n, env)
    try:
        yield reps
    finally:
        problems = stop_all(reps)
    check(not problems, "; ".join(problems))


@contextlib.contextmanager
def behind_nginx(h, n):
    """n replicas and an Nginx over them, for a with block: (replicas, nginx)."""
    with replicas(h, n) as reps:
        lb = Nginx(h, [s.h.http_port for s in reps])
        try:
            yield reps, lb
        finally:
            lb.stop()


def served(server, route):
    """How many requests of route (e.g. "heartbeat") the replica answered, from its /metrics."""
    r = server.h.request("GET", "/metrics")
    if r.status != 200:
        raise TestFailure("/metrics of the replica on %d: %d" % (server.h.http_port, r.status))
    n = 0
    for line in r.text.splitlines():
        if line.startswith("costmesh_http_requests_total{") and 'route="%s"' % route in line:
            n += int(line.rpartition(" ")[2])
    return n
