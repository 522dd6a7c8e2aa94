"""Several costmeshd behind nginx (issue 17.1): exact ingest and admission across replicas, a replica
killed with kill -9 mid-load while clients retry, background work done once, migrations applied once by
replicas starting together, and a rolling restart with a migration applied while they serve."""

import glob
import os
import threading
import time
from decimal import Decimal
from types import SimpleNamespace

from balancer import behind_nginx, replicas, served, stop_all
from harness import (REPO, ConnError, Harness, PortView, Server, TestFailure, batch, check, check_eq, dec,
                     free_port, hb_id, hb_obj, new_agent, timeout)
from test_e_policies import agent_view, away_from_boundary, put_policy, register

RETRYABLE = (502, 503, 504)  # the balancer found no replica, or one was stopping or lost its store


def send_until_accepted(view, body, key, deadline, abandon=None):
    """POSTs a heartbeat batch through the balancer until 202, resending the very same body (same ids,
    so a batch that committed before its answer was lost counts once) after no answer or a 502/503/504,
    unless the event abandon is set. Returns (the 202, how many tries it took)."""
    tries = 0
    while abandon is None or not abandon.is_set():
        tries += 1
        try:
            r = view.request("POST", "/v1/mesh/heartbeat", body, key=key, timeout=40)
            if r.status == 202:
                return r, tries
            if r.status not in RETRYABLE:
                raise TestFailure("a batch got %d: %.300s" % (r.status, r.text))
        except ConnError:
            pass
        if time.time() > deadline:
            raise TestFailure("a batch was not accepted within the test's time (%d tries)" % tries)
        time.sleep(0.05)
    raise TestFailure("abandoned: the test failed elsewhere")


class Load:
    """writers threads, each sending batches of `size` heartbeats of its own agent through the balancer
    until stopped, retrying as a client should. .acked counts the batches answered 202. A with block
    starts them, and abandons them if it fails, so none outlives its test."""

    def __init__(self, h, view, writers, size, tag):
        self.h, self.view, self.size = h, view, size
        self.agents = [new_agent(tag=tag) for _ in range(writers)]
        self.sent = {a: [] for a in self.agents}  # each agent's acknowledged (id, cost)
        self.acked = 0
        self.retried = 0  # batches that needed more than one try
        self.errors = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.abandon = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(w, a), daemon=True)
                        for w, a in enumerate(self.agents)]

    def _run(self, w, agent):
        deadline = time.time() + 150
        b = 0
        try:
            while not self.stopping.is_set():
                # Costs with all nine decimals: a heartbeat counted twice or lost changes the sum.
                items = [(hb_id(), "0.%09d" % (1 + (w * 7919 + b * 131 + i * 17) % 999999)) for i in range(self.size)]
                body = batch([hb_obj(agent, c, i) for i, c in items])
                r, tries = send_until_accepted(self.view, body, self.h.k1, deadline, self.abandon)
                j = r.json
                if not isinstance(j, dict) or j.get("accepted", 0) + j.get("duplicates", 0) != len(items):
                    raise TestFailure("a 202 that does not account for its batch: %.300s" % r.text)
                with self.lock:
                    self.sent[agent] += items
                    self.acked += 1
                    self.retried += tries > 1
                b += 1
        except Exception as e:  # noqa: BLE001
            with self.lock:
                self.errors.append(e)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, kind, value, tb):
        self.abandon.set()
        for t in self.threads:
            t.join(30)

    def wait_acked(self, n, secs):
        deadline = time.time() + secs
        while self.acked < n and time.time() < deadline and not self.errors:
            time.sleep(0.02)
        check(self.acked >= n, "only %d batches acknowledged within %ds: %s" % (self.acked, secs, self.errors[:1]))

    def stop(self):
        """Each writer finishes the batch it has (until its 202) and stops."""
        self.stopping.set()
        for t in self.threads:
            t.join(180)
        check(not any(t.is_alive() for t in self.threads), "a writer is still running")
        check(not self.errors, "writers failed: %s" % "; ".join(map(str, self.errors[:3])))

    def check_exact(self, what):
        """Every agent's spend is exactly the sum of its 202'd heartbeats, through the API and in
        PostgreSQL's raw rows."""
        for a, items in self.sent.items():
            want_cost = sum(Decimal(c) for _, c in items)
            s = self.h.spend_ok(a, "day")
            check_eq((dec(s["cost_usd"]), s["heartbeats"]), (want_cost, len(items)),
                     "%s: (cost_usd, heartbeats) of %s" % (what, a))
            rows = self.h.psql("SELECT count(*), count(DISTINCT hb_id) FROM heartbeats WHERE address = '%s'" % a)
            check_eq(rows, "%d|%d" % (len(items), len(items)), "%s: raw rows (all, distinct ids) of %s" % (what, a))


@timeout(150)
def test_ingest_and_admission_exact_across_replicas(h):
    """Three replicas behind nginx under concurrent heartbeats and intents: every agent's spend is the
    exact sum it sent, an intent limit admits exactly its number, and every replica took its share."""
    away_from_boundary(86400, 90)
    with behind_nginx(h, 3) as (reps, lb):
        limited = new_agent(tag="repl-adm")
        register(lb.view, limited)
        put_policy(lb.view, limited, {"max_intents_per_day": 11, "action_on_breach": "block"})
        outcomes = []

        def intents():
            for i in range(8):
                r = lb.view.request("POST", "/v1/mesh/intents", {"agent": limited}, key=h.k1,
                                    headers={"Idempotency-Key": "adm-" + hb_id()})
                outcomes.append(r.status)

        its = [threading.Thread(target=intents, daemon=True) for _ in range(6)]
        with Load(h, lb.view, 6, 20, "repl-hb") as load:
            for t in its:
                t.start()
            for t in its:
                t.join(120)
            load.wait_acked(60, 60)
            load.stop()
        check_eq((outcomes.count(201), outcomes.count(429), len(outcomes)), (11, 37, 48),
                 "(201, 429, all) of 48 intents through three replicas, limit 11")
        check_eq(agent_view(h, limited)["today"]["intents"], 11, "today.intents of the limited agent")
        load.check_exact("three replicas")
        shares = [(served(s, "heartbeat"), served(s, "intents")) for s in reps]
        check(all(hb > 0 and it > 0 for hb, it in shares),
              "every replica answers heartbeats and intents; (heartbeat, intents) per replica: %r" % shares)


@timeout(180)
def test_replica_killed_mid_load(h):
    """kill -9 of one of three replicas while six clients send through nginx and retry with the same ids:
    every batch is acknowledged in the end, nothing acknowledged is lost and nothing is counted twice."""
    away_from_boundary(86400, 120)
    with behind_nginx(h, 3) as (reps, lb):
        with Load(h, lb.view, 6, 10, "repl-kill") as load:
            load.wait_acked(60, 90)
            victim = reps[1]
            before = served(victim, "heartbeat")
            victim.kill9()
            load.wait_acked(load.acked + 150, 90)
            load.stop()
        check(before > 0, "the killed replica had served no heartbeat before the kill")
        # A client's retry of a batch that did commit counts nothing (what a retry after a lost 202 does).
        a = load.agents[0]
        again = batch([hb_obj(a, c, i) for i, c in load.sent[a][:10]])
        r, _ = send_until_accepted(lb.view, again, h.k1, time.time() + 30)
        check_eq((r.json.get("accepted"), r.json.get("duplicates")), (0, 10), "an acknowledged batch sent again")
        load.check_exact("after a replica's kill -9 (%d batches needed a retry)" % load.retried)


@timeout(120)
def test_health_sweep_once_per_period(h):
    """Every replica ticks the health sweep every 15 s, but one pass per period runs for the fleet (the
    periodic_runs claim), and each agent's change is recorded once, not once per replica."""
    with replicas(h, 3):
        agents = [new_agent(tag="repl-health") for _ in range(5)]
        for a in agents:
            register(h, a)
        names = ",".join("'%s'" % a for a in agents)
        # 200 s of silence: degraded, as the next pass will find.
        h.psql("UPDATE agents SET last_heartbeat = now() - interval '200 seconds' WHERE address IN (%s)" % names)
        t0 = time.time()
        runs0 = int(h.psql("SELECT runs FROM periodic_runs WHERE job = 'health_sweep'"))
        # Four processes tick (the harness's server and three replicas): 31 s hold 2 passes, at most 3.
        time.sleep(31)
        runs = int(h.psql("SELECT runs FROM periodic_runs WHERE job = 'health_sweep'")) - runs0
        took = time.time() - t0
        check(2 <= runs <= 3, "health sweep passes in %.0f s with four replicas ticking: %d (want 2 or 3)" %
              (took, runs))
        got = h.psql("SELECT address, count(*) FROM events WHERE event_type = 'health_changed'"
                     " AND address IN (%s) GROUP BY address ORDER BY address" % names)
        check_eq(got, "\n".join("%s|1" % a for a in sorted(agents)), "health_changed events per agent")
        check_eq(h.psql("SELECT count(*) FROM agents WHERE address IN (%s) AND health = 'degraded'" % names),
                 "5", "agents recorded degraded")


def as_superuser(h, sql):
    """psql as the cluster's superuser (scripts/services.sh trusts postgres on loopback)."""
    host = h.db_url.split("@", 1)[1].rsplit("/", 1)[0]
    return Harness.psql(SimpleNamespace(db_url="postgresql://postgres@%s/postgres" % host), sql)


def fresh_database(h, name):
    """A new empty database of costmesh's role next to the harness's; returns its URL."""
    as_superuser(h, "DROP DATABASE IF EXISTS %s" % name)
    as_superuser(h, "CREATE DATABASE %s OWNER costmesh" % name)
    return h.db_url.rsplit("/", 1)[0] + "/" + name


@timeout(90)
def test_migrations_applied_once_by_replicas_starting_together(h):
    """Three replicas started at once on an empty database: one applies the migrations under the
    advisory lock while the others wait, each migration is recorded once, and all three serve."""
    url = fresh_database(h, "cm_repl_migrate")
    reps, errors = [], []
    try:
        for _ in range(3):
            view = PortView(h, free_port())
            view.db_url = url
            view.server_starts = 200 + 10 * len(reps)
            reps.append(Server(view, h.server.admin_key, h.server.org))
        ths = [threading.Thread(target=lambda s=s: _start(s, errors), daemon=True) for s in reps]
        for t in ths:
            t.start()
        for t in ths:
            t.join(60)
        check(not errors, "replicas starting together: %s" % "; ".join(errors[:3]))
        want = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "schema", "*.sql")))
        # Harness.psql reads the view's own db_url: the fresh database.
        got = Harness.psql(reps[0].h, "SELECT name, count(*) FROM schema_migrations GROUP BY name ORDER BY name")
        check_eq(got, "\n".join("%s|1" % n for n in want), "schema_migrations after three concurrent starts")
        a = new_agent(org=h.server.org, tag="repl-mig")
        for s in reps:
            r = s.h.request("POST", "/v1/mesh/heartbeat", hb_obj(a, "0.5", hb_id()), key=h.server.admin_key)
            check_eq(r.status, 202, "a heartbeat through a replica of the fresh database")
        check_eq(Harness.psql(reps[0].h, "SELECT count(*) FROM heartbeats"), "3", "heartbeats in the fresh database")
    finally:
        problems = stop_all(reps)
        as_superuser(h, "DROP DATABASE IF EXISTS cm_repl_migrate WITH (FORCE)")
    check(not problems, "; ".join(problems))


def _start(server, errors):
    try:
        server.start(timeout=45)
    except Exception as e:  # noqa: BLE001
        errors.append(str(e))


@timeout(180)
def test_rolling_restart_with_a_migration(h):
    """Two replicas serve through nginx; a new release's migration (additive, as docs/operations.md asks)
    is applied while they run, then each replica is stopped and started again in turn, under load:
    every batch is acknowledged in the end and the totals are exact; the contract step drops the
    column once no binary uses it."""
    away_from_boundary(86400, 120)
    try:
        with behind_nginx(h, 2) as (reps, lb):
            with Load(h, lb.view, 4, 10, "repl-roll") as load:
                load.wait_acked(20, 60)
                # Expand: a column with a default and an index built without blocking writers, as the
                # first replica of a new release would apply them while the old ones still write.
                h.psql("ALTER TABLE agents ADD COLUMN IF NOT EXISTS test_release_note text NOT NULL DEFAULT ''")
                h.psql("CREATE INDEX CONCURRENTLY IF NOT EXISTS agents_test_release_note"
                       " ON agents (test_release_note)")
                for i, s in enumerate(reps):
                    problems = s.stop()
                    check(not problems, "replica %d stop under load: %s" % (i, "; ".join(problems)))
                    mark = load.acked
                    s.start()
                    load.wait_acked(mark + 20, 60)
                load.stop()
            load.check_exact("after a rolling restart (%d batches needed a retry)" % load.retried)
    finally:
        h.psql("DROP INDEX IF EXISTS agents_test_release_note")
        h.psql("ALTER TABLE agents DROP COLUMN IF EXISTS test_release_note")
