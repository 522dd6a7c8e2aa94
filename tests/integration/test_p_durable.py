"""Redis as the durable point (COSTMESH_DURABLE=redis, docs/guarantees.md section 12), proven by real process
kills whatever mode the suite runs in: each test restarts costmeshd in that mode, with Redis fsyncing every
write as the mode needs, and puts both back as the suite had them. Money is compared exactly (Decimal, nanos)."""

import contextlib
import threading
import time
from decimal import Decimal

from harness import (Server, TestFailure, accepted, batch, check, check_eq, check_error, dec, dedupe_mark, hb_id,
                     hb_obj, hour_start, new_agent, queue_id, read_metrics, timeout, window_bounds, ConnError)

REDIS_MODE = {"COSTMESH_DURABLE": "redis"}
# A key looked up in PostgreSQL is trusted this long: longer than the outages below, so that what they show
# is the queue and not the key lookup (see d_faults.postgres_down for the default).
KEY_CACHE = {"COSTMESH_KEY_CACHE_MS": "120000"}


@contextlib.contextmanager
def durable(h, **env):
    """costmeshd in redis mode (with env) for the block, Redis with appendfsync always; afterwards the queue
    is stored (no acknowledged heartbeat is left to a server that does not drain it) and the server and
    Redis's fsync are as the suite had them."""
    fsync = h.redis("CONFIG", "GET", "appendfsync").split("\n")[1]
    h.redis("CONFIG", "SET", "appendfsync", "always")
    body_ok = False
    try:
        h.restart_server(env=dict(env, **REDIS_MODE))
        yield
        body_ok = True
    finally:
        try:
            if body_ok:
                h.wait_queue()
        finally:
            try:
                h.restart_server()
            finally:
                h.redis("CONFIG", "SET", "appendfsync", fsync)


def restart_redis(h):
    """services.sh start with the mode in its environment: the Redis it starts fsyncs every write; then
    costmeshd ready again."""
    h.services("start", env=REDIS_MODE)
    try:
        h.wait_ready(20)
    except TestFailure as e:
        said = [l for l in h.server.log_text().splitlines() if "redis" in l]
        raise TestFailure("%s; costmeshd's last words on Redis: %s" % (e, " | ".join(said[-4:]))) from None


def start_server(h, env):
    """A new costmeshd once h.server was stopped or killed."""
    s = Server(h, h.server.admin_key, h.server.org, env)
    h.server = s
    s.start()


def costs(n, salt):
    """n costs of nine decimals, each a different number of nano-dollars."""
    return ["0.%09d" % (1 + (salt * 7919 + i * 104729) % 999999937) for i in range(n)]


class Writers:
    """Threads, each sending batches of `size` heartbeats with ids (ts t) of agent until stop(). Every batch
    is kept with its answer: 202, 503 (with its error code), or None for no HTTP answer."""

    def __init__(self, h, agent, t, threads=2, size=10):
        self.h, self.agent, self.t, self.size = h, agent, t, size
        self.lock = threading.Lock()
        self.sent = []  # [items, status, error code]: items [(id, cost)]
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(threads)]
        for th in self.threads:
            th.start()

    def body(self, items):
        return batch([hb_obj(self.agent, c, i, ts=self.t) for i, c in items])

    def _run(self, k):
        n = 0
        while not self.stopping.is_set():
            items = list(zip([hb_id() for _ in range(self.size)], costs(self.size, k * 100000 + n)))
            n += 1
            rec = [items, None, None]
            try:
                r = self.h.hb(self.body(items), timeout=15)
                rec[1] = r.status
                if r.status == 503:
                    rec[2] = r.error().get("code")
                elif r.status == 202:
                    check_eq((r.json["accepted"], r.json["duplicates"]), (self.size, 0), "a new batch's answer")
            except ConnError:
                pass
            except TestFailure as e:
                rec[1] = "bad: %s" % e
            with self.lock:
                self.sent.append(rec)
            time.sleep(0.01)

    def acked(self):
        with self.lock:
            return sum(1 for _, st, _ in self.sent if st == 202)

    def wait_acked(self, n, secs, what):
        deadline = time.time() + secs
        while self.acked() < n:
            check(time.time() < deadline, "%s: fewer than %d batches acknowledged within %ss (%d)" %
                  (what, n, secs, self.acked()))
            time.sleep(0.02)

    def stop(self):
        self.stopping.set()
        for th in self.threads:
            th.join(30)
        check(not any(th.is_alive() for th in self.threads), "a writer did not stop")
        bad = [st for _, st, _ in self.sent if st not in (202, 503, None)]
        check(not bad, "answers other than 202, 503 or none: %r" % bad[:3])

    def resend_all(self):
        """Sends every batch again. One answered 202 must be all duplicates; any other is all new or all
        duplicates (ACK takes a group whole or not at all; the second is a batch made durable whose answer
        was lost). Returns the batches of the second kind."""
        lost_answers = []
        for items, st, _ in self.sent:
            r = self.h.hb(self.body(items))
            if st == 202:
                accepted(r, 0, self.size, "an acknowledged batch sent again")
                continue
            check_eq(r.status, 202, "an unacknowledged batch sent again: %.200s" % r.text)
            got = (r.json["accepted"], r.json["duplicates"])
            check(got in ((self.size, 0), (0, self.size)), "an unacknowledged batch sent again: (accepted, "
                  "duplicates) %r, want all new or all duplicates" % (got,))
            if got == (0, self.size):
                lost_answers.append(items)
        return lost_answers

    def total(self, batches=None):
        """(cost, heartbeats) of batches (default: every batch sent)."""
        items = [x for b in (batches if batches is not None else [s[0] for s in self.sent]) for x in b]
        return sum((Decimal(c) for _, c in items), Decimal(0)), len(items)

    def acked_batches(self):
        return [items for items, st, _ in self.sent if st == 202]


def stored(h, a):
    """PostgreSQL's raw rows of agent a: (all, distinct ids)."""
    n, d = h.psql("SELECT count(*), count(DISTINCT hb_id) FROM heartbeats WHERE address = '%s'" % a).split("|")
    return int(n), int(d)


def day_totals(h, a, t):
    s = h.spend_ok(a, "day", at=t)
    return dec(s["cost_usd"]), s["heartbeats"]


def refused_count(h):
    return int(h.psql("SELECT count(*) FROM persist_refused"))


def check_queue_empty(h, what):
    """Nothing waits in the queue and its done id is its last."""
    h.wait_queue()
    check_eq(h.redis("XLEN", "cm:q"), "0", "%s: entries in the queue" % what)
    check_eq(queue_id(h.redis("GET", "cm:q:done")), queue_id(h.redis("GET", "cm:q:last")),
             "%s: the queue's done id against its last" % what)


# The totals ACK keeps (guarantees 12): the hour's and day's cost, the month's capped totals. Other fields
# (heartbeats, tokens in the hour and day) come only from merges of PostgreSQL's totals after a rebuild.
ACK_FIELDS = {"h": ("cost",), "d": ("cost",), "m": ("cost", "tin", "tout", "calls", "tc", "tl", "it", "is", "if")}


def window_keys(a, t):
    return ["cm:%s:%s:%d" % (a, g, window_bounds(w, t)[0]) for g, w in (("h", "hour"), ("d", "day"), ("m", "month"))]


def windows(h, a, t):
    """The totals ACK keeps in a's hour, day and month of t, as {key: {field: value}}; a total at 0 is left
    out (a refused request's increments taken back leave its agents' totals at 0)."""
    out = {}
    for k, g in zip(window_keys(a, t), "hdm"):
        got = h.redis("HMGET", k, *ACK_FIELDS[g]).split("\n")
        out[k] = {f: v for f, v in zip(ACK_FIELDS[g], got) if v not in ("", "0")}
    return out


def hold_mark(h):
    """A psql session holding persist_mark's row (FOR UPDATE): the persister's next batch waits on it.
    Returns the session; COMMIT releases it."""
    import subprocess
    p = subprocess.Popen(["psql", h.db_url, "-X", "-q", "-At"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    p.stdin.write("BEGIN;\nSELECT ms FROM persist_mark WHERE id = 1 FOR UPDATE;\n")
    p.stdin.flush()
    check(p.stdout.readline().strip().isdigit(), "persist_mark locked")
    return p


def release(lock):
    lock.communicate("COMMIT;\n", timeout=30)


def persister_waits(h, secs=20):
    """Waits until a costmeshd backend waits on a lock in a statement on persist_mark (the persister,
    mid-batch)."""
    q = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%persist_mark%'"
    deadline = time.time() + secs
    while h.psql(q) == "0":
        check(time.time() < deadline, "the persister did not reach persist_mark within %ss" % secs)
        time.sleep(0.05)


def mark(h):
    return tuple(int(x) for x in h.psql("SELECT ms, seq FROM persist_mark WHERE id = 1").split("|"))


def queue_entries(h):
    """The queue's entries, oldest first: [(id, payload)]."""
    lines = h.redis("XRANGE", "cm:q", "-", "+").split("\n") if h.redis("XLEN", "cm:q") != "0" else []
    check(len(lines) % 3 == 0, "XRANGE output: %r" % lines[:6])
    out = []
    for i in range(0, len(lines), 3):
        check_eq(lines[i + 1], "p", "an entry's field")
        out.append((lines[i], lines[i + 2]))
    return out


def tag_of(a):
    """The unique end of agent a's address, as it appears in a queue entry whatever the JSON escapes."""
    return a.rsplit("-", 1)[1]


def register(h, a, t):
    accepted(h.hb(hb_obj(a, "0", hb_id(), ts=t)), 1, 0, "registering %s" % a)


@timeout(180)
def test_redis_kill9_loses_nothing_acknowledged(h):
    """kill -9 of Redis while two writers send batches with ids: every 202 was in the AOF. After Redis
    restarts, each acknowledged batch sent again is all duplicates, and spend and PostgreSQL's rows hold
    exactly the acknowledged batches (plus any batch whose 202 the kill cut off, found by its resend: at
    most one per writer), nothing refused."""
    with durable(h):
        a = new_agent(tag="pd-redis9")
        t = int(time.time()) - 60
        register(h, a, t)
        refused_before = refused_count(h)
        w = Writers(h, a, t)
        killed = False
        try:
            w.wait_acked(10, 30, "before the kill")
            h.kill9_redis()
            killed = True
            with w.lock:
                n_down = len(w.sent)
            deadline = time.time() + 20
            while len(w.sent) < n_down + 4:
                check(time.time() < deadline, "no batch answered while Redis was down")
                time.sleep(0.02)
            with w.lock:
                during = [(st, code) for _, st, code in w.sent[n_down:]]
            restart_redis(h)
            killed = False
            n_back = w.acked()
            w.wait_acked(n_back + 5, 30, "after Redis is back")
        finally:
            w.stop()
            if killed:
                restart_redis(h)
        check(set(during) == {(503, "store_unavailable")}, "answers while Redis was down: want only 503 "
              "store_unavailable (nothing is acknowledged without it), got %r" % sorted(set(during), key=str))
        acked_cost, acked_n = w.total(w.acked_batches())
        # Before anything unacknowledged is sent again: exactly the acknowledged, and the batches the kill cut
        # off after their ACK (their resend below finds them duplicates).
        before = (day_totals(h, a, t), stored(h, a))
        lost = w.resend_all()
        check(len(lost) <= 2, "batches durable without their 202: %d, more than the two in flight" % len(lost))
        print("    %d batches acknowledged, %d answered 503 while Redis was down, %d durable without their 202"
              % (len(w.acked_batches()), len(during), len(lost)), flush=True)
        lost_cost, lost_n = w.total(lost)
        check_eq(before, ((acked_cost + lost_cost, acked_n + lost_n + 1), (acked_n + lost_n + 1,) * 2),
                 "spend (cost, heartbeats) and rows (all, distinct) after the restart: the acknowledged batches")
        cost, n = w.total()
        check_eq((day_totals(h, a, t), stored(h, a)), ((cost, n + 1), (n + 1, n + 1)),
                 "spend and rows once every batch was sent again")
        check_eq(refused_count(h), refused_before, "entries in persist_refused")
        check_queue_empty(h, "after Redis's kill")


@timeout(180)
def test_costmeshd_kill9_mid_batch(h):
    """kill -9 of costmeshd while writers send and the persister is in the middle of a batch (it waits on
    persist_mark's row, held here): a new costmeshd drains what was queued; every batch sent again (the
    acknowledged ones are all duplicates) leaves exact totals and each id once in PostgreSQL."""
    with durable(h):
        a = new_agent(tag="pd-crash")
        t = int(time.time()) - 60
        register(h, a, t)
        h.wait_queue()
        w = Writers(h, a, t)
        lock = None
        try:
            w.wait_acked(5, 30, "before the persister is held")
            lock = hold_mark(h)
            persister_waits(h)
            w.wait_acked(w.acked() + 10, 30, "while the persister waits")
            queued = int(h.redis("XLEN", "cm:q"))
            check(queued >= 50, "entries queued while the persister waits: %d" % queued)
            bad = h.server.kill9()
            release(lock)
            lock = None
        finally:
            w.stop()
            if lock is not None:
                release(lock)
        check(not bad, "sanitizer report before the kill: %s" % bad[:3])
        start_server(h, REDIS_MODE)
        lost = w.resend_all()
        print("    killed with %d entries queued; %d batches acknowledged, %d durable without their 202"
              % (queued, len(w.acked_batches()), len(lost)), flush=True)
        cost, n = w.total()
        check_eq(day_totals(h, a, t), (cost, n + 1), "spend after the kill and the resend")
        check_eq(stored(h, a), (n + 1, n + 1), "rows (all, distinct): each id once")
        check_queue_empty(h, "after costmeshd's kill")


@timeout(180)
def test_postgres_down_queue_drains_once_back(h):
    """PostgreSQL stopped while a registered agent sends: every batch still gets 202 (queued in Redis, which
    grows); once PostgreSQL is back every acknowledged heartbeat is stored once, the spend read waiting for
    the queue, and the queue is empty."""
    with durable(h, **KEY_CACHE):
        a = new_agent(tag="pd-pgdown")
        t = int(time.time()) - 60
        register(h, a, t)
        h.wait_queue()
        w = Writers(h, a, t, threads=1, size=5)
        pg_down = False
        try:
            w.wait_acked(3, 30, "before PostgreSQL stops")
            h.stop_pg_immediate()
            pg_down = True
            n_stop = w.acked()
            w.wait_acked(n_stop + 10, 30, "while PostgreSQL is down")
            queued = int(h.redis("XLEN", "cm:q"))
            check(queued >= 5 * 10, "entries queued while PostgreSQL is down: %d" % queued)
            h.services("start", env=REDIS_MODE)
            pg_down = False
        finally:
            w.stop()
            if pg_down:
                h.services("start", env=REDIS_MODE)
        h.wait_ready(20)
        check_eq({st for _, st, _ in w.sent}, {202}, "answers before, during and after the outage")
        cost, n = w.total()
        check_eq(day_totals(h, a, t), (cost, n + 1), "spend once PostgreSQL is back")
        check_eq(stored(h, a), (n + 1, n + 1), "rows (all, distinct)")
        check_queue_empty(h, "once PostgreSQL is back")
        accepted(h.hb(w.body(w.sent[0][0])), 0, 5, "the first batch again")


@timeout(180)
def test_batch_drained_twice_is_stored_once(h):
    """Entries already stored queued again with their own ids, at or below persist_mark (as a persister killed
    between its commit and the trim leaves them; heartbeats without an id too), are skipped: nothing counts
    twice. An entry above the mark whose (agent, id) is stored (a retry past its Redis mark) is found a
    duplicate: not stored, and its increments of the Redis windows taken back."""
    with durable(h):
        a = new_agent(tag="pd-twice")
        t = int(time.time()) - 60
        register(h, a, t)
        h.wait_queue()
        first = [(hb_id(), c) for c in costs(12, 1)] + [(None, c) for c in costs(4, 2)]
        body = batch([hb_obj(a, c, i, ts=t) for i, c in first])
        lock = hold_mark(h)
        try:
            accepted(h.hb(body), 16, 0, "the batch")
            copies = [(i, p) for i, p in queue_entries(h) if tag_of(a) in p]
        finally:
            release(lock)
        check_eq(len(copies), 16, "the batch's entries, copied while the persister waited")
        h.wait_queue()
        want = (sum((Decimal(c) for _, c in first), Decimal(0)), 17)
        check_eq(day_totals(h, a, t), want, "spend of the batch")
        rows = int(h.psql("SELECT count(*) FROM heartbeats WHERE address = '%s'" % a))
        check_eq(rows, 17, "rows of the batch")
        win = windows(h, a, t)
        at = mark(h)
        check(all(queue_id(i) <= at for i, _ in copies), "the copies' ids %s..%s at or below persist_mark %r" %
              (copies[0][0], copies[-1][0], at))

        # Queued again with their own ids while costmeshd is stopped: a stream numbers an entry past its last
        # one, so the stream starts over, holding the copies alone.
        problems = h.server.stop()
        check(not problems, "stop: %s" % "; ".join(problems))
        h.redis("DEL", "cm:q")
        for i, p in copies:
            check_eq(h.redis("XADD", "cm:q", i, "p", p), i, "a copy queued again")
        start_server(h, REDIS_MODE)
        deadline = time.time() + 20
        while h.redis("XLEN", "cm:q") != "0":
            check(time.time() < deadline, "the copies were not drained within 20 s")
            time.sleep(0.05)
        check_eq(day_totals(h, a, t), want, "spend after the batch was drained twice")
        check_eq(h.psql("SELECT count(*) FROM heartbeats WHERE address = '%s'" % a), "17", "rows")
        check_eq(windows(h, a, t), win, "the Redis windows after the batch was drained twice")
        check_eq(mark(h), at, "persist_mark")

        # A retry of a stored id after Redis forgot it: above the mark, answered accepted, counted in the
        # windows by ACK; PostgreSQL has the id, so the persister takes the increments back.
        hid, c = first[0]
        check_eq(h.redis("DEL", dedupe_mark(a, hid)), "1", "the id's Redis mark")
        dups = read_metrics(h)["costmesh_queue_duplicates_total"]
        lock = hold_mark(h)
        try:
            accepted(h.hb(hb_obj(a, c, hid, ts=t)), 1, 0, "a stored id past its Redis mark")
            entries = [(i, p) for i, p in queue_entries(h) if tag_of(a) in p]
            counted = windows(h, a, t)
        finally:
            release(lock)
        check_eq(len(entries), 1, "the retry's entries in the queue")
        check(queue_id(entries[0][0]) > at, "the retry's entry %s is above persist_mark %r" % (entries[0][0], at))
        hkey = window_keys(a, t)[0]
        check_eq(int(counted[hkey]["cost"]) - int(win[hkey]["cost"]), int(Decimal(c) * 10 ** 9),
                 "the hour's cost in Redis with the retry counted")
        h.wait_queue()
        check_eq(windows(h, a, t), win, "the Redis windows once the persister found the duplicate")
        check_eq(day_totals(h, a, t), want, "spend after the retry")
        check_eq(h.psql("SELECT count(*) FROM heartbeats WHERE address = '%s'" % a), "17", "rows after the retry")
        ms, seq = queue_id(entries[0][0])
        check_eq(h.psql("SELECT count(*) FROM persist_dup WHERE ms = %d AND seq = %d" % (ms, seq)), "1",
                 "the retry's entry kept in persist_dup")
        check_eq(read_metrics(h)["costmesh_queue_duplicates_total"], dups + 1, "entries found duplicates")


@timeout(120)
def test_late_retry_counted_once(h):
    """COSTMESH_DEDUPE_MARK_S=1: an id sent again once it is stored and its Redis mark expired is answered
    accepted (documented), and counted once by spend, PostgreSQL's rows and the Redis windows once the
    persister has run."""
    with durable(h, COSTMESH_DEDUPE_MARK_S="1"):
        a = new_agent(tag="pd-late")
        t = int(time.time()) - 60
        hid = hb_id()
        accepted(h.hb(hb_obj(a, "1.000000007", hid, ts=t)), 1, 0, "the heartbeat")
        h.wait_queue()
        once = windows(h, a, t)
        check_eq([once[k].get("cost") for k in window_keys(a, t)], ["1000000007"] * 3, "hour, day, month cost")
        deadline = time.time() + 10
        while h.redis("EXISTS", dedupe_mark(a, hid)) == "1":
            check(time.time() < deadline, "the id's Redis mark did not expire")
            time.sleep(0.1)
        accepted(h.hb(hb_obj(a, "1.000000007", hid, ts=t)), 1, 0, "the late retry (answered accepted)")
        check_eq(day_totals(h, a, t), (Decimal("1.000000007"), 1), "spend after the late retry")
        check_eq(stored(h, a), (1, 1), "rows after the late retry")
        check_eq(windows(h, a, t), once, "the Redis windows after the persister found the retry")


@timeout(120)
def test_queue_bound(h):
    """COSTMESH_QUEUE_MAX=1000 (the least allowed), PostgreSQL stopped: 1,000 heartbeats queue, then
    heartbeats get 503 queue_full with Retry-After and nothing of them is kept; once PostgreSQL is back every
    acknowledged one is stored and the refused ones are taken when sent again."""
    with durable(h, COSTMESH_QUEUE_MAX="1000", **KEY_CACHE):
        a = new_agent(tag="pd-full")
        t = int(time.time()) - 60
        register(h, a, t)
        h.wait_queue()
        batches = [[(hb_id(), c) for c in costs(100, 10 + b)] for b in range(11)]
        body = lambda b: batch([hb_obj(a, c, i, ts=t) for i, c in b])  # noqa: E731
        h.stop_pg_immediate()
        try:
            for b in batches[:10]:
                accepted(h.hb(body(b)), 100, 0, "a batch while the queue has room")
            check_eq(h.redis("XLEN", "cm:q"), "1000", "entries queued")
            last = h.redis("GET", "cm:q:last")
            for what, r in (("a batch", h.hb(body(batches[10]))), ("one heartbeat", h.hb(hb_obj(a, "1", hb_id(), ts=t)))):
                check_error(r, 503, "queue_full", what="%s with 1,000 queued" % what)
                check_eq(r.headers.get("retry-after"), "1", "%s with 1,000 queued: Retry-After" % what)
            check_eq((h.redis("XLEN", "cm:q"), h.redis("GET", "cm:q:last")), ("1000", last), "the queue after the 503s")
            check_eq(h.redis("EXISTS", dedupe_mark(a, batches[10][0][0])), "0", "a refused heartbeat's mark")
        finally:
            h.services("start", env=REDIS_MODE)
        h.wait_ready(20)
        h.wait_queue(30)
        acked_cost = sum((Decimal(c) for b in batches[:10] for _, c in b), Decimal(0))
        check_eq(day_totals(h, a, t), (acked_cost, 1001), "spend once PostgreSQL is back")
        check_eq(stored(h, a), (1001, 1001), "rows")
        check_queue_empty(h, "once PostgreSQL is back")
        accepted(h.hb(body(batches[10])), 100, 0, "the refused batch sent again")
        check_eq(day_totals(h, a, t), (acked_cost + sum(Decimal(c) for _, c in batches[10]), 1101), "spend")


@timeout(120)
def test_cap_refuses_the_request_whole(h):
    """A request one of whose rows would take a month total of its agent past 10^18 is refused whole: 422
    total_limit_exceeded naming metrics.<name>, no Redis window changed, no mark kept, nothing queued; its
    other agent's heartbeat is not counted (that agent is registered: documented)."""
    with durable(h):
        t = int(time.time())
        for metric, fill, past, column in (("cost_usd", "1000000", "0.000000001", "cost_nanos"),
                                           ("tool_calls", 10 ** 15, 1, "tool_calls")):
            a = new_agent(tag="pd-cap")

            def row(hid, n):
                """A heartbeat of a adding n of the metric (half a dollar besides, when it is not the cost)."""
                return hb_obj(a, n, hid, ts=t) if metric == "cost_usd" else hb_obj(a, "0.5", hid, ts=t, **{metric: n})

            accepted(h.hb(batch([row(hb_id(), fill) for _ in range(1000)])), 1000, 0,
                     "%s: the month to its cap exactly" % metric)
            other = new_agent(tag="pd-cap-other")
            h.wait_queue()  # the persister's merges of PostgreSQL's totals (after a rebuild) are in the windows
            before = (windows(h, a, t), windows(h, other, t), h.redis("GET", "cm:q:last"))
            ids = [hb_id(), hb_id()]
            r = h.hb(batch([hb_obj(other, "1", ids[0], ts=t), row(ids[1], past)]))
            check_error(r, 422, "total_limit_exceeded", field="metrics." + metric, what="%s: one past the cap" % metric)
            check_eq((windows(h, a, t), windows(h, other, t), h.redis("GET", "cm:q:last")), before,
                     "%s: the Redis windows of both agents and the queue's last id after the refusal" % metric)
            check_eq([h.redis("EXISTS", dedupe_mark(x, i)) for x, i in ((other, ids[0]), (a, ids[1]))], ["0", "0"],
                     "%s: the refused heartbeats' marks" % metric)
            check_eq(day_totals(h, other, t), (Decimal(0), 0), "%s: the other agent's day" % metric)
            check_eq(h.psql("SELECT %s FROM rollup_agent WHERE address = '%s' AND grain = 'm'" % (column, a)),
                     str(10 ** 18), "%s: the month in PostgreSQL" % metric)
            accepted(h.hb(hb_obj(other, "1", ids[0], ts=t)), 1, 0, "%s: the other agent's id alone" % metric)
