"""Replicated stores for the failover tests: a Redis primary, its replica and a
Sentinel; a PostgreSQL primary and its streaming standby (pg_basebackup).

Every process runs on a free loopback port with its files under the harness's
temporary folder, is found again through its own pid file only, and is
stopped by pid at the end of its test or, should the test time out, when the
harness exits (atexit). Sentinel is `redis-server --sentinel` (the binary the
redis-sentinel package links to), never Debian's system service.
"""

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import time

from harness import PG_BIN, HarnessError, children, file_tail, free_port, read_pid

_running = []  # (program, pid file) of every process started here, for atexit
_folders = []  # folders made here outside the harness's, for atexit


def _alive(pid, program=None):
    """pid runs; with program, a process of that name (a stale pid file's pid may have been reused)."""
    if pid is None:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            comm, _, rest = f.read().rpartition(")")
    except OSError:
        return False
    # A zombie is dead already (a container's pid 1 may never reap it).
    return rest.split()[0] != "Z" and (program is None or program in comm)


def _kill9(pid, also_children=False):
    """SIGKILL pid (and its children first read, as a crashed host loses them all); waits until it is gone."""
    for p in [pid] + (children(pid) if also_children else []):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.time() + 10
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.02)
    if _alive(pid):
        raise HarnessError("pid %d still alive after SIGKILL" % pid)


def _stop_by_pidfile(program, pidfile):
    pid = read_pid(pidfile)
    if _alive(pid, program):
        os.kill(pid, signal.SIGKILL)


@atexit.register
def _stop_all():
    for program, pidfile in _running:
        _stop_by_pidfile(program, pidfile)
    for d in _folders:
        shutil.rmtree(d, ignore_errors=True)


def _run(cmd, what, timeout=60, env=None):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, env=env, cwd="/")
    if p.returncode != 0:
        raise HarnessError("%s failed (%d): %s" % (what, p.returncode, p.stdout.decode("utf-8", "replace")[-1500:]))
    return p.stdout.decode("utf-8", "replace")


def _wait(cond, secs, what):
    deadline = time.time() + secs
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise HarnessError("%s: not within %ss" % (what, secs))


# ---------------------------------------------------------------- Redis


class RedisHA:
    """A primary, one replica and one Sentinel (quorum 1, down after 1 s) monitoring them as `name`."""

    def __init__(self, root, name="cmha", durable=False):
        """durable: Redis is costmeshd's durable point (COSTMESH_DURABLE=redis), which needs every write in
        an append-only file fsynced before the reply."""
        self.root = root
        self.name = name
        self.persistence = ['save ""'] + (["appendonly yes", "appendfsync always"] if durable else ["appendonly no"])
        self.primary_port, self.replica_port, self.sentinel_port = free_port(), free_port(), free_port()
        self.dirs = {}

    def cli(self, port, *args):
        p = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port)] + [str(a) for a in args],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        return p.stdout.decode("utf-8", "replace").strip()

    def _start(self, role, port, lines, sentinel=False):
        d = os.path.join(self.root, role)
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "%s.conf" % role)
        pidfile = os.path.join(d, "%s.pid" % role)
        with open(conf, "w") as f:
            f.write("\n".join(["bind 127.0.0.1", "port %d" % port, "dir %s" % d, "daemonize yes",
                               "pidfile %s" % pidfile, "logfile %s" % os.path.join(d, "%s.log" % role)] + lines)
                    + "\n")
        _running.append(("redis", pidfile))
        self.dirs[role] = d
        _run(["redis-server", conf] + (["--sentinel"] if sentinel else []), "starting redis %s" % role)
        _wait(lambda: self.cli(port, "PING") == "PONG" and _alive(read_pid(pidfile)), 10, "redis %s PONG" % role)

    def start(self):
        self._start("primary", self.primary_port, self.persistence)
        self._start("replica", self.replica_port, self.persistence + ["replicaof 127.0.0.1 %d" % self.primary_port])
        _wait(lambda: "master_link_status:up" in self.cli(self.replica_port, "INFO", "replication"), 20,
              "replica in sync")
        self._start("sentinel", self.sentinel_port, [
            "sentinel monitor %s 127.0.0.1 %d 1" % (self.name, self.primary_port),
            "sentinel down-after-milliseconds %s 1000" % self.name,
            "sentinel failover-timeout %s 10000" % self.name], sentinel=True)
        # Sentinel can promote only a replica it has seen in the primary's INFO.
        _wait(lambda: "slave" in self.cli(self.sentinel_port, "SENTINEL", "replicas", self.name), 20,
              "Sentinel knows the replica")

    def primary(self):
        """(host, port) the Sentinel names now."""
        out = self.cli(self.sentinel_port, "SENTINEL", "get-master-addr-by-name", self.name).split()
        return out[0], int(out[1])

    def kill9_primary(self):
        _kill9(read_pid(os.path.join(self.dirs["primary"], "primary.pid")))

    def restart_killed_primary(self):
        """Starts the killed primary again (empty, or with its append-only file when durable) as a replica
        of the primary Sentinel names, as an operator brings a failed node back, and waits until it is in
        sync; returns the seconds that took. (Left to itself, Sentinel makes a returning primary a replica
        only after seeing it as one for 8 s at its 10 s INFO period, and not at all while in TILT.)"""
        host, port = self.primary()
        t = time.time()
        _run(["redis-server", os.path.join(self.dirs["primary"], "primary.conf"), "--replicaof", host, str(port)],
             "restarting redis primary")
        try:
            _wait(lambda: "master_link_status:up" in self.cli(self.primary_port, "INFO", "replication"), 120,
                  "the old primary a replica in sync")
        except HarnessError as e:
            raise HarnessError("%s; the Sentinel's log ends: %s; the old primary's: %s"
                               % (e, self._log_tail("sentinel"), self._log_tail("primary")))
        return time.time() - t

    def _log_tail(self, role):
        return file_tail(os.path.join(self.dirs[role], "%s.log" % role))

    def switch_over(self):
        """A planned failover (SENTINEL FAILOVER): the primary is demoted to a replica, its replica promoted."""
        out = self.cli(self.sentinel_port, "SENTINEL", "FAILOVER", self.name)
        if out != "OK":
            raise HarnessError("SENTINEL FAILOVER: %s" % out)

    def stop(self):
        for role in ("sentinel", "replica", "primary"):
            if role in self.dirs:
                _stop_by_pidfile("redis", os.path.join(self.dirs[role], "%s.pid" % role))


# ----------------------------------------------------------- PostgreSQL


def _as_pg(cmd):
    """PostgreSQL refuses to run as root: as root, run cmd as the costmesh user (scripts/services.sh creates it)."""
    return ["runuser", "-u", "costmesh", "--"] + cmd if os.getuid() == 0 else cmd


class PgHA:
    """A primary and a streaming standby that acknowledges each commit before the primary answers it
    (synchronous_standby_names): a commit the primary confirmed survives the primary's loss."""

    STANDBY_NAME = "cmstandby"

    def __init__(self, root):
        self.root = root
        if os.getuid() == 0:
            # The costmesh user may not be able to reach the harness's folder (a private TMPDIR, as
            # make test-tsan uses): the clusters go where it can, as scripts/services.sh does.
            self.root = tempfile.mkdtemp(prefix="costmesh-pgha-", dir="/var/tmp")
            _folders.append(self.root)
        self.primary_port, self.standby_port = free_port(), free_port()
        self.started = []

    def _data(self, node):
        return os.path.join(self.root, node, "data")

    def _pg_ctl(self, node, *args, timeout=60):
        return _run(_as_pg([PG_BIN + "/pg_ctl", "-D", self._data(node)] + list(args)), "pg_ctl %s %s" % (node, args),
                    timeout=timeout)

    def _start(self, node, port):
        base = os.path.join(self.root, node)
        opts = "-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s" % (port, base)
        _running.append(("postgres", os.path.join(self._data(node), "postmaster.pid")))
        self.started.append(node)
        self._pg_ctl(node, "-l", os.path.join(base, "postgres.log"), "-o", opts, "-w", "-t", "60", "start")

    def psql(self, port, sql, db="postgres", user="postgres"):
        return _run(["psql", "-X", "-Atq", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port), "-U", user,
                     "-d", db, "-c", sql], "psql %r" % sql, env=dict(os.environ, PGCONNECT_TIMEOUT="5")).strip()

    def start(self):
        os.makedirs(self.root, exist_ok=True)
        if os.getuid() == 0:
            _run(["chown", "costmesh:", self.root], "chown")
        for node in ("primary", "standby"):
            _run(_as_pg(["mkdir", "-m", "700", os.path.join(self.root, node)]), "mkdir %s" % node)
        _run(_as_pg([PG_BIN + "/initdb", "-D", self._data("primary"), "-A", "trust", "-U", "postgres",
                     "--encoding=UTF8", "--locale=C"]), "initdb")
        self._start("primary", self.primary_port)
        self.psql(self.primary_port, "CREATE ROLE costmesh LOGIN")
        self.psql(self.primary_port, "CREATE DATABASE costmesh OWNER costmesh ENCODING 'UTF8'")
        _run(_as_pg([PG_BIN + "/pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres",
                     "-D", self._data("standby"), "-X", "stream", "-c", "fast"]), "pg_basebackup")
        conf = os.path.join(self._data("standby"), "postgresql.auto.conf")
        _run(_as_pg(["sh", "-c", "printf \"%s\\n\" >> '%s' && touch '%s'" % (
            "primary_conninfo = 'host=127.0.0.1 port=%d user=postgres application_name=%s'" % (
                self.primary_port, self.STANDBY_NAME), conf,
            os.path.join(self._data("standby"), "standby.signal"))]), "standby settings")
        self._start("standby", self.standby_port)
        # Only now that the standby streams: commits wait for it from here on. The standby's copy of the
        # settings predates this line, so once promoted it waits for no one.
        self.psql(self.primary_port, "ALTER SYSTEM SET synchronous_standby_names = '%s'" % self.STANDBY_NAME)
        self.psql(self.primary_port, "SELECT pg_reload_conf()")
        _wait(lambda: self.psql(self.primary_port, "SELECT sync_state FROM pg_stat_replication") == "sync", 20,
              "standby synchronous")

    def url(self):
        """libpq's multi-host URL: the one of the two that takes writes."""
        return "postgresql://costmesh@127.0.0.1:%d,127.0.0.1:%d/costmesh?target_session_attrs=read-write" % (
            self.primary_port, self.standby_port)

    def read_url(self):
        """For reads that may lag: the standby while there is one, else the other."""
        return "postgresql://costmesh@127.0.0.1:%d,127.0.0.1:%d/costmesh?target_session_attrs=prefer-standby" % (
            self.standby_port, self.primary_port)

    def kill9_primary(self):
        _kill9(read_pid(os.path.join(self._data("primary"), "postmaster.pid")), also_children=True)

    def promote(self):
        self._pg_ctl("standby", "-w", "-t", "60", "promote")

    def stop(self):
        for node in self.started:
            pid = read_pid(os.path.join(self._data(node), "postmaster.pid"))
            if _alive(pid, "postgres"):
                self._pg_ctl(node, "-m", "immediate", "-w", "stop")
        if self.root in _folders:
            shutil.rmtree(self.root, ignore_errors=True)
