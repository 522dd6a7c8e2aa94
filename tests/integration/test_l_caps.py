"""Caps on an agent's running totals (issue 12, item 1): one agent's reports cannot poison the group
commit that carries other orgs' heartbeats, the request that would pass a cap gets a 422 naming it and
counts nothing, and spend replies are exact whatever the totals."""

import calendar
import contextlib
import re
import subprocess
import threading
import time
from decimal import Decimal

from harness import (TestFailure, accepted, batch, check, check_eq, check_error, dec, enc, hb_id, hb_obj,
                     dedupe_mark, hour_start, new_agent, window_bounds)

CAP = 10 ** 18                  # schema/007_caps.sql: every capped total, per agent and window
INT64_MAX = 2 ** 63 - 1
MILLION = "1000000"             # the largest cost_usd one heartbeat may carry
CAPPED = ("tokens_in", "tokens_out", "tokens_cached", "llm_calls", "tool_calls", "intents_total",
          "intents_succeeded", "intents_failed")
CAP_COLUMNS = {"cost_usd": "cost_nanos", **{m: m for m in CAPPED}}
# COSTMESH_DURABLE=redis checks the caps in ACK against the month's hash in Redis, whose fields are these.
MONTH_FIELDS = {"cost_usd": "cost", "tokens_in": "tin", "tokens_out": "tout", "tokens_cached": "tc",
                "llm_calls": "calls", "tool_calls": "tl", "intents_total": "it", "intents_succeeded": "is",
                "intents_failed": "if"}


def timeout(seconds):
    def deco(fn):
        fn.timeout = seconds
        return fn
    return deco


def check_capped(r, metric, what):
    """A 422 total_limit_exceeded naming the metric and its cap."""
    e = check_error(r, 422, "total_limit_exceeded", field="metrics." + metric, what=what)
    cap = "1000000000" if metric == "cost_usd" else str(CAP)
    check("cap of %s;" % cap in e["message"], "%s: the message does not name the cap %s: %r" % (what, cap, e["message"]))


def month_spend(h, a, t):
    s = h.spend_ok(a, "month", at=t)
    return dec(s["cost_usd"]), s["heartbeats"]


def month_key(a, t):
    """The Redis hash of a's month of t."""
    return "cm:%s:m:%d" % (a, window_bounds("month", t)[0])


def month_fields(h, a, t, *metrics):
    """The Redis month totals of these metrics, as text ("" for a field not there)."""
    fields = [MONTH_FIELDS[m] for m in metrics]
    # One HGET each: redis-cli's output of an HMGET ending in nil loses its last lines to strip().
    return [h.redis("HGET", month_key(a, t), f) for f in fields]


class Senders:
    """Heartbeat requests sent each from a thread of its own, their answers kept by name."""

    def __init__(self, h):
        self.h = h
        self.answers = {}
        self.threads = []

    def start(self, name, body, key=None):
        def send():
            self.answers[name] = self.h.hb(body, key=key or self.h.k1)
        th = threading.Thread(target=send)
        th.start()
        self.threads.append(th)

    def join(self):
        for th in self.threads:
            th.join(30)


def lift_caps(h, sql):
    """Runs sql with the caps lifted, in one transaction: the rows a database attacked before
    schema/007_caps.sql holds."""
    drops = ", ".join("DROP CONSTRAINT IF EXISTS cap_%s" % m for m in CAP_COLUMNS)
    adds = ", ".join("ADD CONSTRAINT cap_%s CHECK (%s <= %d) NOT VALID" % (m, c, CAP) for m, c in CAP_COLUMNS.items())
    h.psql("BEGIN; ALTER TABLE rollup_agent %s; %s; ALTER TABLE rollup_agent %s; COMMIT" % (drops, sql, adds))


def register_quietly(h, address, org):
    """An agent row only, as a first heartbeat long ago would have left it."""
    h.psql("INSERT INTO agents (address, org, health) VALUES ('%s', '%s', 'unknown')" % (address, org))


@timeout(180)
def test_cost_cap_attack(h):
    """The attack: batches of 1,000 heartbeats of $1M for one agent, while other orgs report. The month
    takes exactly $1,000,000,000; every batch past it gets 422 naming metrics.cost_usd (a retry cannot
    fix it), counts nothing, and the group commits that carried it answer everyone else 202."""
    a = new_agent(tag="poison")
    t = int(time.time())  # one hour, day and month for every row
    first = batch([hb_obj(a, MILLION, hb_id(), ts=t) for _ in range(1000)])
    accepted(h.hb(first), 1000, 0, "the first batch takes the month to its cap exactly")
    check_eq(month_spend(h, a, t), (Decimal(10 ** 9), 1000), "the month at its cap")

    bystanders = [(new_agent("org2", "bystander"), h.k2) for _ in range(3)] + [(new_agent(tag="bystander"), h.k1)]
    statuses = {x: [] for x, _ in bystanders}
    attacks = []
    lock = threading.Lock()
    done = threading.Event()

    def bystander(x, key):
        n = 0
        while n < 10 or not done.is_set():
            r = h.hb(batch([hb_obj(x, "0.01", hb_id(), ts=t) for _ in range(5)]), key=key)
            n += 1
            with lock:
                statuses[x].append(r.status)

    def attacker():
        for _ in range(4):
            r = h.hb(batch([hb_obj(a, MILLION, hb_id(), ts=t) for _ in range(1000)]))
            with lock:
                attacks.append(r)

    ths = [threading.Thread(target=bystander, args=b) for b in bystanders]
    atk = [threading.Thread(target=attacker) for _ in range(3)]
    for th in ths + atk:
        th.start()
    for th in atk:
        th.join(120)
    done.set()
    for th in ths:
        th.join(60)

    check_eq(len(attacks), 12, "poison batches answered")
    for r in attacks:
        check_capped(r, "cost_usd", "a batch past the cap")
    for x, key in bystanders:
        got = statuses[x]
        check_eq(sorted(set(got)), [202], "%s's answers while the poison batches went (%d sent)" % (x, len(got)))
        s = h.spend_ok(x, "day", at=t, key=key)
        check_eq((dec(s["cost_usd"]), s["heartbeats"]), (Decimal("0.05") * len(got), 5 * len(got)),
                 "%s's day: everything it was answered 202 for" % x)

    # Nothing of a refused batch was counted: not in the rollups, not in the raw rows.
    check_eq(month_spend(h, a, t), (Decimal(10 ** 9), 1000), "the month after the refused batches")
    check_eq(h.psql("SELECT count(*) FROM heartbeats WHERE address = '%s'" % a), "1000", "raw heartbeats")
    check_eq(h.psql("SELECT cost_nanos FROM rollup_agent WHERE address = '%s' AND grain = 'm'" % a), str(CAP),
             "the month's rollup")
    # The whole request is refused: another agent's heartbeat in it is not counted either.
    other = new_agent(tag="same-request")
    r = h.hb(batch([hb_obj(other, "1", hb_id(), ts=t), hb_obj(a, "0.000000001", hb_id(), ts=t)]))
    check_capped(r, "cost_usd", "one nano-dollar past the cap, in a batch with another agent")
    if h.durable_redis:
        # Registration comes before ACK, which refuses the request: the agent exists, with nothing counted.
        s = h.spend_ok(other, "month", at=t)
        check_eq((dec(s["cost_usd"]), s["heartbeats"]), (Decimal(0), 0), "the other agent of the refused request")
        check_eq(month_fields(h, a, t, "cost_usd"), [str(CAP)], "the month in Redis after the refused batches")
    else:
        check_eq(h.spend(other).status, 404, "the other agent of the refused request (never registered)")
    # What adds no cost still passes: a resend of the accepted ids, tokens without cost.
    accepted(h.hb(first), 0, 1000, "the first batch again")
    accepted(h.hb(hb_obj(a, None, hb_id(), ts=t, tokens_in=7)), 1, 0, "tokens without cost at the cost cap")


@timeout(120)
def test_token_cap(h):
    """tokens_in through real traffic: 1,000 heartbeats of 10^15 reach the cap, one more token is a 422
    naming metrics.tokens_in and counts nothing."""
    a = new_agent(tag="tokens")
    t = int(time.time())
    accepted(h.hb(batch([hb_obj(a, "0.5", hb_id(), ts=t, tokens_in=10 ** 15) for _ in range(1000)])), 1000, 0,
             "1,000 heartbeats of 10^15 tokens")
    r = h.hb(hb_obj(a, "1", hb_id(), ts=t, tokens_in=1))
    check_capped(r, "tokens_in", "one token past the cap")
    s = h.spend_ok(a, "month", at=t)
    check_eq((dec(s["cost_usd"]), s["tokens_in"], s["heartbeats"]), (Decimal(500), CAP, 1000),
             "the month after the refused token (its cost not counted either)")
    accepted(h.hb(hb_obj(a, "1", hb_id(), ts=t, tokens_out=1)), 1, 0, "other metrics still count")


def test_every_capped_metric(h):
    """Each capped total, set at its cap in the month's rollup: one more unit of that metric is a 422
    naming it; the same heartbeat without it is accepted."""
    t = int(time.time())
    for m in CAPPED:
        a = new_agent(tag="cap-" + m.replace("_", "-"))
        accepted(h.hb(hb_obj(a, "0", hb_id(), ts=t)), 1, 0, "registering %s" % a)
        h.wait_persisted()  # redis mode: the registration's rollup row is there to update
        h.psql("UPDATE rollup_agent SET %s = %d WHERE address = '%s' AND grain = 'm'" % (m, CAP, a))
        if h.durable_redis:
            # ACK checks the month's hash: the same total there.
            h.redis("HSET", month_key(a, t), MONTH_FIELDS[m], CAP)
        check_capped(h.hb(hb_obj(a, "1", hb_id(), ts=t, **{m: 1})), m, "one past the cap of %s" % m)
        accepted(h.hb(hb_obj(a, "1", hb_id(), ts=t)), 1, 0, "%s at its cap, a heartbeat without it" % m)
        h.wait_persisted()
        check_eq(h.psql("SELECT %s, cost_nanos FROM rollup_agent WHERE address = '%s' AND grain = 'm'" % (m, a)),
                 "%d|%d" % (CAP, 10 ** 9), "%s's month after the refusal" % m)
        if h.durable_redis:
            check_eq(month_fields(h, a, t, m, "cost_usd"), [str(CAP), str(10 ** 9)],
                     "%s's month in Redis after the refusal" % m)


def test_total_written_before_the_caps(h):
    """A total already past the cap (written before the migration, as the attack could): the agent's next
    heartbeats in that month are refused with 422, never 503, whether the sum overflows bigint or not."""
    a = new_agent(tag="legacy")
    t = int(time.time())
    accepted(h.hb(hb_obj(a, "1", hb_id(), ts=t)), 1, 0, "registering")
    h.wait_persisted()  # redis mode: the registration's rollup row is there to update
    lift_caps(h, "UPDATE rollup_agent SET cost_nanos = %d WHERE address = '%s' AND grain = 'm'" % (INT64_MAX - 10, a))
    if h.durable_redis:
        # ACK checks the month's hash, which has PostgreSQL's total as a rebuild and the persister's merges
        # (maxima) leave it.
        h.redis("HSET", month_key(a, t), "cost", INT64_MAX - 10)
        hour = h.redis("HGETALL", "cm:%s:h:%d" % (a, hour_start(t)))
        refused_before = h.psql("SELECT count(*) FROM persist_refused")
    first = hb_id()
    r = h.hb(hb_obj(a, "1", first, ts=t))
    e = check_error(r, 422, "total_limit_exceeded", what="a sum past bigint")
    if h.durable_redis:
        # ACK finds the month's cost past the cap (its HINCRBY would overflow) and names it.
        check_eq(e.get("field"), "metrics.cost_usd", "the total past the cap, named")
    else:
        check("field" not in e, "an overflow names no single metric: %r" % e)
    check_capped(h.hb(hb_obj(a, None, hb_id(), ts=t, tokens_in=1)), "cost_usd", "a row past the cap cannot grow")
    h.wait_persisted()
    check_eq(h.psql("SELECT cost_nanos, tokens_in FROM rollup_agent WHERE address = '%s' AND grain = 'm'" % a),
             "%d|0" % (INT64_MAX - 10), "the month, unchanged")
    if h.durable_redis:
        check_eq(month_fields(h, a, t, "cost_usd", "tokens_in"), [str(INT64_MAX - 10), ""],
                 "the month in Redis, unchanged")
        check_eq(h.redis("HGETALL", "cm:%s:h:%d" % (a, hour_start(t))), hour, "the hour in Redis, unchanged")
        check_eq(h.redis("EXISTS", dedupe_mark(a, first)), "0", "the refused heartbeat's dedupe mark")
        check_eq(h.psql("SELECT count(*) FROM persist_refused"), refused_before, "entries PostgreSQL refused")


def ingest_backlog(h):
    m = re.search(r'^costmesh_persistence_backlog\{stage="ingest_jobs"\} (\d+)$', h.request("GET", "/metrics").text,
                  re.M)
    check(m is not None, "/metrics lacks the ingest backlog")
    return int(m.group(1))


def wait_for(what, cond, secs=20):
    deadline = time.time() + secs
    while not cond():
        if time.time() > deadline:
            raise TestFailure("timed out waiting for " + what)
        time.sleep(0.02)


def wait_writer_blocked(h, what):
    """Waits until one group commit (the ingest's first writer) waits on a lock."""
    wait_for(what, lambda: h.psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'") == "1")


@contextlib.contextmanager
def stall_rule_off(h):
    """costmeshd with COSTMESH_INGEST_STALL_MS=0: a second group commit goes only once 256 heartbeats wait, so a
    writer held on a lock keeps the small requests behind it queued, which the tests using this build their one
    group on; the default server again after."""
    h.restart_server(env={"COSTMESH_INGEST_STALL_MS": "0"})
    try:
        yield
    finally:
        h.restart_server()


def hold_lock(h, sql):
    """A psql session that has run sql (a SELECT ... FOR UPDATE in an open transaction) and printed one line;
    COMMIT it with .communicate("COMMIT;\n")."""
    p = subprocess.Popen(["psql", h.db_url, "-X", "-q", "-At"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    p.stdin.write("BEGIN;\n%s;\n" % sql)
    p.stdin.flush()
    return p, p.stdout.readline().strip()


@contextlib.contextmanager
def first_group_held(h, blocker, t):
    """A group commit held on a lock while the body runs: the heartbeat it carries is of the registered agent
    `blocker`, whose rollup rows are locked (COSTMESH_DURABLE=redis, where no statement holds them: of a new
    agent, whose registration waits on org1's locked agent counter). Yields the Senders that sent it as
    "first"; once the body is done, checks the group was not answered, lets the lock go, and expects its 202."""
    if h.durable_redis:
        sql, first = "SELECT agents FROM org_agents WHERE org = 'org1' FOR UPDATE", new_agent(tag="first")
    else:
        sql = "SELECT count(*) FROM (SELECT 1 FROM rollup_agent WHERE address = '%s' FOR UPDATE) l" % blocker
        first = blocker
    senders = Senders(h)
    lock = None
    try:
        lock, _ = hold_lock(h, sql)
        senders.start("first", hb_obj(first, "1", hb_id(), ts=t))
        wait_writer_blocked(h, "the first group to wait on the lock")
        yield senders
        check("first" not in senders.answers, "the first group was answered while its lock was held")
    finally:
        if lock is not None:
            lock.communicate("COMMIT;\n", timeout=20)
        senders.join()
    accepted(senders.answers["first"], 1, 0, "the first group, once the lock went")


@timeout(120)
def test_refused_request_is_split_out(h):
    """Deterministically one group: the writer waits on a row lock while two requests past a cap and
    bystanders of both orgs queue (fewer rows than a second writer waits for); when the lock goes, one
    group commit carries them all. It fails, is split, and only the two requests at fault get 422; every
    other is answered 202 and counted once."""
    with stall_rule_off(h):
        if h.durable_redis:
            quota_refusal_is_split_out(h)
        else:
            cap_refusal_is_split_out(h)


def cap_refusal_is_split_out(h):
    t = int(time.time())
    blocker = new_agent(tag="blocker")
    accepted(h.hb(hb_obj(blocker, "1", hb_id(), ts=t)), 1, 0, "registering the blocker")
    poisoned = [new_agent(tag="capped") for _ in range(2)]
    for a in poisoned:
        accepted(h.hb(hb_obj(a, "0", hb_id(), ts=t)), 1, 0, "registering %s" % a)
        h.psql("UPDATE rollup_agent SET cost_nanos = %d WHERE address = '%s' AND grain = 'm'" % (CAP, a))
    bystanders = [(new_agent("org2", "queued"), h.k2) for _ in range(6)] + [(new_agent(tag="queued"), h.k1)
                                                                            for _ in range(6)]
    innocent = new_agent(tag="same-request")
    lock = None
    senders = Senders(h)
    answers, start = senders.answers, senders.start

    try:
        lock, row = hold_lock(h, "SELECT count(*) FROM (SELECT 1 FROM rollup_agent WHERE address = '%s' FOR UPDATE) l"
                              % blocker)
        check_eq(row, "3", "the blocker's rollup rows locked")
        start("writer", hb_obj(blocker, "1", hb_id(), ts=t))
        wait_writer_blocked(h, "the writer to wait on the lock")
        start("capped0", hb_obj(poisoned[0], "1", hb_id(), ts=t))
        for i, (x, key) in enumerate(bystanders):
            start("bystander%d" % i, batch([hb_obj(x, "0.25", hb_id(), ts=t) for _ in range(4)]), key)
            if i == 5:
                start("capped1", batch([hb_obj(innocent, "3", hb_id(), ts=t), hb_obj(poisoned[1], "0.5", hb_id(), ts=t)]))
        wait_for("every request to queue", lambda: ingest_backlog(h) == 1 + 2 + len(bystanders))
    finally:
        if lock is not None:
            lock.communicate("COMMIT;\n", timeout=20)
    senders.join()
    accepted(answers["writer"], 1, 0, "the blocked writer's request")
    for a, name in zip(poisoned, ("capped0", "capped1")):
        check_capped(answers[name], "cost_usd", "%s, a request past the cap in the group" % name)
        check_eq(h.psql("SELECT count(*) FROM heartbeats WHERE address = '%s'" % a), "1",
                 "%s's raw heartbeats: the registration only" % a)
    check_eq(h.spend(innocent).status, 404, "the other agent of a refused request (never registered)")
    for i, (x, key) in enumerate(bystanders):
        accepted(answers["bystander%d" % i], 4, 0, "bystander %d in the same group" % i)
        s = h.spend_ok(x, "day", at=t, key=key)
        check_eq((dec(s["cost_usd"]), s["heartbeats"]), (Decimal(1), 4), "bystander %d's day" % i)
    check_eq(ingest_backlog(h), 0, "ingest backlog after every answer")


def quota_refusal_is_split_out(h):
    """COSTMESH_DURABLE=redis: no group commit holds rollup rows, and what PostgreSQL can still refuse on the
    acknowledged path is a group's registration of its new agents (the org's quota). Deterministically one
    group: the writer's registration waits on org1's agent counter while two requests naming a new agent
    past org2's quota and bystanders of both orgs queue; when the lock goes, one registration carries them
    all. It fails, the group is split, and only the two requests at fault get 422; every other is answered
    202 and counted once."""
    t = int(time.time())
    bystanders = [(new_agent("org2", "queued"), h.k2) for _ in range(6)] + [(new_agent(tag="queued"), h.k1)
                                                                            for _ in range(6)]
    innocent = new_agent("org2", "same-request")
    for x, key in bystanders + [(innocent, h.k2)]:
        accepted(h.hb(hb_obj(x, "0", hb_id(), ts=t), key=key), 1, 0, "registering %s" % x)
    writer = new_agent(tag="writer")
    refused = [new_agent("org2", "past-quota") for _ in range(2)]
    have = int(h.psql("SELECT agents FROM org_agents WHERE org = 'org2'"))
    h.psql("INSERT INTO org_limits (org, max_agents) VALUES ('org2', %d)" % have)
    senders = Senders(h)
    answers, start = senders.answers, senders.start

    lock = None
    try:
        lock, row = hold_lock(h, "SELECT agents FROM org_agents WHERE org = 'org1' FOR UPDATE")
        check(row.isdigit(), "org1's agent counter locked: %r" % row)
        start("writer", hb_obj(writer, "1", hb_id(), ts=t))
        wait_writer_blocked(h, "the writer's registration to wait on the lock")
        start("refused0", hb_obj(refused[0], "1", hb_id(), ts=t), h.k2)
        for i, (x, key) in enumerate(bystanders):
            start("bystander%d" % i, batch([hb_obj(x, "0.25", hb_id(), ts=t) for _ in range(4)]), key)
            if i == 5:
                start("refused1", batch([hb_obj(innocent, "3", hb_id(), ts=t), hb_obj(refused[1], "0.5", hb_id(), ts=t)]),
                      h.k2)
        wait_for("every request to queue", lambda: ingest_backlog(h) == 1 + 2 + len(bystanders))
    finally:
        if lock is not None:
            lock.communicate("COMMIT;\n", timeout=20)
        senders.join()
        h.psql("DELETE FROM org_limits WHERE org = 'org2'")
    accepted(answers["writer"], 1, 0, "the blocked writer's request")
    for name in ("refused0", "refused1"):
        check_error(answers[name], 422, "agent_quota_exceeded", "agent", what="%s, a request past the quota" % name)
    for x in refused:
        check_eq(h.spend(x, key=h.k2).status, 404, "%s, past the quota (never registered)" % x)
    s = h.spend_ok(innocent, "day", at=t, key=h.k2)
    check_eq((dec(s["cost_usd"]), s["heartbeats"]), (Decimal(0), 1), "the other agent of a refused request")
    for i, (x, key) in enumerate(bystanders):
        accepted(answers["bystander%d" % i], 4, 0, "bystander %d in the same group" % i)
        s = h.spend_ok(x, "day", at=t, key=key)
        check_eq((dec(s["cost_usd"]), s["heartbeats"]), (Decimal(1), 5), "bystander %d's day" % i)
    check_eq(ingest_backlog(h), 0, "ingest backlog after every answer")


@timeout(120)
def test_second_writer_takes_only_a_large_group(h):
    """With the stall rule off (COSTMESH_INGEST_STALL_MS=0), while the first group commit waits on a lock, a
    request of fewer heartbeats than a second writer waits for (ingest.c SPARE_ROWS, 256) stays queued; one of
    300 goes to the second writer at once and takes the queued one with it; the first is answered when the lock
    goes. Each heartbeat counted once."""
    with stall_rule_off(h):
        second_writer_takes_only_a_large_group(h)


def second_writer_takes_only_a_large_group(h):
    t = int(time.time())
    blocker = new_agent(tag="blocker")
    small_agent = new_agent(tag="small")
    big_agents = [new_agent(tag="big") for _ in range(3)]
    for x in [blocker, small_agent] + big_agents:
        accepted(h.hb(hb_obj(x, "0", hb_id(), ts=t)), 1, 0, "registering %s" % x)
    with first_group_held(h, blocker, t) as senders:
        answers = senders.answers
        senders.start("small", batch([hb_obj(small_agent, "0.5", hb_id(), ts=t) for _ in range(10)]))
        wait_for("the small request to queue", lambda: ingest_backlog(h) == 2)
        time.sleep(1)
        check("small" not in answers, "10 heartbeats went to a second writer: %r" % answers.get("small"))
        big = batch([hb_obj(big_agents[i % 3], "0.001", hb_id(), ts=t) for i in range(300)])
        accepted(h.hb(big), 300, 0, "300 heartbeats while the first group waits")
        wait_for("the small request's answer", lambda: "small" in answers)
        accepted(answers["small"], 10, 0, "the small request, in the second writer's group")
    check_eq(h.spend_ok(small_agent, "day", at=t)["heartbeats"], 11, "the small agent's heartbeats")
    check_eq(sum(h.spend_ok(x, "day", at=t)["heartbeats"] for x in big_agents), 303, "the big batch's heartbeats")
    check_eq(ingest_backlog(h), 0, "ingest backlog after every answer")


@timeout(120)
def test_stalled_writer_does_not_hold_the_others(h):
    """With the default COSTMESH_INGEST_STALL_MS (100), a small request sent while the first group commit waits
    on a lock goes to the second writer once the first has run that long, and is answered while the lock is
    still held; the first is answered when the lock goes. Each heartbeat counted once."""
    t = int(time.time())
    blocker, small_agent = new_agent(tag="blocker"), new_agent(tag="small")
    for x in (blocker, small_agent):
        accepted(h.hb(hb_obj(x, "0", hb_id(), ts=t)), 1, 0, "registering %s" % x)
    with first_group_held(h, blocker, t):
        small = batch([hb_obj(small_agent, "0.5", hb_id(), ts=t) for _ in range(10)])
        accepted(h.hb(small, timeout=15), 10, 0, "10 heartbeats while the first group waits on a lock")
    check_eq(h.spend_ok(small_agent, "day", at=t)["heartbeats"], 11, "the small agent's heartbeats")
    check_eq(ingest_backlog(h), 0, "ingest backlog after every answer")


def week_across_two_months():
    """The start of a recent month that is not a Monday: its ISO week spans two months."""
    y, m = time.gmtime()[:2]
    while True:
        start = calendar.timegm((y, m, 1, 0, 0, 0, 0, 0, 0))
        if time.gmtime(start).tm_wday != 0:
            return start
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)


def rollup_rows(a, rows):
    """VALUES for rollup_agent hour rows: (bucket, cost_nanos, tokens_in, llm_calls)."""
    return ", ".join("('%s', 'h', to_timestamp(%d), %d, %d, %d, 1)" % (a, b, c, tin, calls) for b, c, tin, calls in rows)


def test_spend_of_a_week_across_two_months(h):
    """A week's reply sums the last hours of one month and the first of the next, each month at its cap,
    exactly: the sum (2 * 10^18 nano-dollars) is past what one month may hold."""
    a = new_agent(tag="week")
    register_quietly(h, a, "org1")
    b = week_across_two_months()
    rows = [(b - 3600, CAP - 1, CAP, CAP), (b, CAP, CAP - 3, 1)]
    h.psql("INSERT INTO rollup_agent (address, grain, bucket, cost_nanos, tokens_in, llm_calls, heartbeats) VALUES "
           + rollup_rows(a, rows))
    r = h.spend(a, "week", at=b)
    check_eq(r.status, 200, "spend of the week: %.300s" % r.text)
    s = r.json
    check('"cost_usd":1999999999.999999999,' in r.text, "the week's cost as text: %.300s" % r.text)
    check_eq(s["from"], time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(b - time.gmtime(b).tm_wday * 86400)),
             "the week's start")
    check_eq(dec(s["cost_usd"]), Decimal(2 * CAP - 1) / 10 ** 9, "the week's cost")
    check_eq((s["tokens_in"], s["llm_calls"], s["heartbeats"]), (2 * CAP - 3, CAP + 1, 2), "the week's counters")
    days = {x["from"]: x for x in s["series"]}
    last = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(b - 86400))
    first = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(b))
    check_eq((dec(days[last]["cost_usd"]), days[last]["tokens_in"]), (Decimal(CAP - 1) / 10 ** 9, CAP),
             "the last day of the first month")
    check_eq((dec(days[first]["cost_usd"]), days[first]["tokens_in"]), (Decimal(CAP) / 10 ** 9, CAP - 3),
             "the first day of the second month")


def test_spend_past_int64_is_exact(h):
    """Rows written before the caps may hold anything up to bigint's maximum: a week of three such hours,
    and an intent's hours, sum past int64 and are still answered exactly."""
    a = new_agent(tag="week-legacy")
    register_quietly(h, a, "org1")
    b = week_across_two_months()
    rows = [(b - 7200, INT64_MAX, INT64_MAX, INT64_MAX), (b - 3600, INT64_MAX, 1, 1), (b, INT64_MAX, INT64_MAX, 2)]
    lift_caps(h, "INSERT INTO rollup_agent (address, grain, bucket, cost_nanos, tokens_in, llm_calls, heartbeats)"
                 " VALUES " + rollup_rows(a, rows))
    r = h.spend(a, "week", at=b)
    s = r.json
    check_eq(r.status, 200, "spend of a week past int64: %.300s" % r.text)
    check_eq(dec(s["cost_usd"]), Decimal(3 * INT64_MAX) / 10 ** 9, "the week's cost")
    check('"cost_usd":27670116110.564327421,' in r.text, "the week's cost as text: %.300s" % r.text)
    check_eq((s["tokens_in"], s["llm_calls"], s["heartbeats"]), (2 * INT64_MAX + 1, INT64_MAX + 3, 3),
             "the week's counters")
    last = [x for x in s["series"] if x["from"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(b - 86400))]
    check_eq(dec(last[0]["cost_usd"]), Decimal(2 * INT64_MAX) / 10 ** 9, "the day of two such hours")

    x = "int-" + hb_id()
    h.psql("INSERT INTO rollup_intent (address, intent_id, bucket, cost_nanos, tokens_in, heartbeats) VALUES "
           + ", ".join("('%s', '%s', to_timestamp(%d), %d, %d, 1)" % (a, x, b + k * 3600, INT64_MAX, INT64_MAX)
                       for k in range(3)))
    r = h.request("GET", "/v1/mesh/intents/%s/spend?agent=%s" % (x, enc(a)), key=h.k1)
    check_eq(r.status, 200, "intent spend past int64: %.300s" % r.text)
    check_eq((dec(r.json["cost_usd"]), r.json["tokens_in"], r.json["heartbeats"]),
             (Decimal(3 * INT64_MAX) / 10 ** 9, 3 * INT64_MAX, 3), "the intent's totals")
