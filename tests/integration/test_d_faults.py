"""Faults: graceful stop, server crash, Redis loss, PostgreSQL loss."""

import threading
import time
from decimal import Decimal

from harness import (Server, accepted, batch, check, check_eq, check_error, check_status, dec, hb_id, hb_obj,
                     new_agent, nanos, read_metrics, wait_metric, day_start, hour_start, BACKLOGS, STORE_UP, ConnError,
                     TestFailure)
from test_e_policies import (admitted, agent_view, away_from_boundary, check_breach, intent, put_policy, register,
                             watch_cost)


def timeout(seconds):
    def deco(fn):
        fn.timeout = seconds
        return fn
    return deco


REDIS_UP, PG_UP = STORE_UP % "redis", STORE_UP % "postgres"


def pg_totals(h, address, grain, bucket):
    out = h.psql("SELECT cost_nanos, tokens_in, heartbeats FROM rollup_agent WHERE address = '%s' AND grain = '%s'"
                 " AND bucket = to_timestamp(%d)" % (address, grain, bucket))
    check(out, "no %s rollup row for %s" % (grain, address))
    return [int(x) for x in out.split("|")]


def wait_redis_cost(h, key, want, secs):
    deadline = time.time() + secs
    got = None
    while time.time() < deadline:
        got = h.redis("HGET", key, "cost")
        if got == str(want):
            return
        time.sleep(0.1)
    raise TestFailure("redis HGET %s cost: want %s, got %r after %ss" % (key, want, got, secs))


def test_sigterm_clean(h):
    """SIGTERM: exit 0, no sanitizer report; a restarted server still has the data."""
    a = new_agent(tag="term")
    accepted(h.hb(hb_obj(a, "0.42", hb_id())), 1, 0, "hb")
    h.restart_server()  # fails the test on a non-zero exit or a sanitizer line
    check_eq(dec(h.spend_ok(a)["cost_usd"]), Decimal("0.42"), "spend after restart")


def test_sigterm_while_busy(h):
    """SIGTERM with heartbeats in flight: what was sent before it is accepted, every 202 is durable, the
    exit is clean, and resending every batch afterwards gives the exact totals."""
    a = new_agent(tag="termbusy")
    t = int(time.time()) - 20
    batches = [[(hb_id(), "0.0%02d" % (1 + (b * 7 + i) % 99)) for i in range(50)] for b in range(60)]
    got = {}
    stop = threading.Event()

    def writer():
        for bi, items in enumerate(batches):
            if stop.is_set():
                return
            try:
                r = h.hb(batch([hb_obj(a, c, i, ts=t) for i, c in items]), timeout=15)
                got[bi] = r.status
                if r.status == 503:
                    check_503(r, "shutting_down", "batch %d during shutdown" % bi)
            except ConnError:
                got[bi] = None
            except TestFailure as e:
                got[bi] = str(e)

    th = threading.Thread(target=writer)
    th.start()
    deadline = time.time() + 20
    while len(got) < 5 and time.time() < deadline:
        time.sleep(0.01)
    before = dict(got)  # answered before the SIGTERM
    problems = h.server.stop()
    stop.set()
    th.join(30)
    s = Server(h, h.server.admin_key, h.server.org)
    h.server = s
    s.start()
    check(not problems, "stop under load not clean: %s" % "; ".join(problems))
    check(len(before) >= 5 and set(before.values()) == {202},
          "batches answered before the SIGTERM: want at least 5, all 202, got %r" % before)
    bad = [st for st in got.values() if st not in (202, 503, None)]
    check(not bad, "answers other than 202, 503 with Retry-After, or none during shutdown: %r" % bad)
    # Every batch answered 202 must be all duplicates now; every other one counts once when resent.
    for bi, items in enumerate(batches):
        r = h.hb(batch([hb_obj(a, c, i, ts=t) for i, c in items]))
        check_status(r, 202, "resend of batch %d" % bi)
        if got.get(bi) == 202:
            accepted(r, 0, 50, "resend of batch %d acknowledged before SIGTERM" % bi)
    sp = h.spend_ok(a, "day", at=t)
    check_eq((dec(sp["cost_usd"]), sp["heartbeats"]),
             (sum(Decimal(c) for items in batches for _, c in items), 50 * len(batches)), "totals after the resend")


@timeout(120)
def test_crash_kill9(h):
    a = new_agent(tag="crash")
    watch_cost(h, a)  # the Redis windows checked below
    t = int(time.time()) - 60
    batches = []
    for b in range(40):
        batches.append([(hb_id(), "0.0%02d" % (13 + (b * 100 + i) % 80), (b * 100 + i) % 17) for i in range(100)])
    want = sum((Decimal(c) for items in batches for _, c, _ in items), Decimal(0))
    want_tokens = sum(tk for items in batches for _, _, tk in items)

    def body(items):
        return batch([hb_obj(a, c, i, ts=t, tokens_in=tk) for i, c, tk in items])

    status = {}
    progress = threading.Event()

    def writer():
        for bi, items in enumerate(batches):
            try:
                r = h.hb(body(items), timeout=10)
                status[bi] = (r.status, r.json.get("accepted") if r.status == 202 else None)
            except ConnError:
                status[bi] = (None, None)
            if bi >= 9:
                progress.set()

    th = threading.Thread(target=writer)
    th.start()
    check(progress.wait(40), "writer did not get through 10 batches")
    bad = h.server.kill9()
    th.join(60)
    check(not th.is_alive(), "writer stuck after the crash")
    s = Server(h, h.server.admin_key, h.server.org)
    h.server = s
    s.start()
    check(not bad, "sanitizer report before the crash: %s" % bad[:3])
    acked = [bi for bi, (st, _) in status.items() if st == 202]
    check(len(acked) >= 10, "fewer than 10 batches acknowledged before the kill: %d" % len(acked))
    others = [st for st, _ in status.values() if st not in (202, 503, None)]
    check(not others, "unexpected statuses: %r" % others[:5])
    # A client unsure of its batches resends them all.
    acc_total = sum(n for st, n in status.values() if st == 202)
    for bi, items in enumerate(batches):
        r = h.hb(body(items))
        check_status(r, 202, "resend of batch %d" % bi)
        if bi in acked:
            check_eq((r.json["accepted"], r.json["duplicates"]), (0, 100),
                     "batch %d was acknowledged before the crash: resend must be all duplicates" % bi)
        acc_total += r.json["accepted"]
    # A batch that committed while its answer was lost to the kill is
    # reported by nobody as accepted (its resend finds duplicates), so the
    # replies may account for less than 4000, never more; the stores are
    # checked for exactly 4000 below.
    unanswered = sum(1 for st, _ in status.values() if st != 202)
    check(4000 - 100 * unanswered <= acc_total <= 4000,
          "accepted over all replies: %d, with %d unanswered batches" % (acc_total, unanswered))
    sp = h.spend_ok(a, "day", at=t)
    check_eq(dec(sp["cost_usd"]), want, "total after crash and resend")
    check_eq(sp["tokens_in"], want_tokens, "tokens after crash and resend")
    check_eq(sp["heartbeats"], 4000, "heartbeats after crash and resend")
    check_eq(h.psql("SELECT count(*) FROM heartbeats WHERE address = '%s'" % a), "4000", "heartbeat rows")
    check_eq(h.psql("SELECT count(DISTINCT hb_id) FROM heartbeats WHERE address = '%s'" % a), "4000", "distinct ids")

    # Redis loses everything; the next heartbeat (of another agent) makes
    # the server notice and rebuild the hot windows from PostgreSQL.
    dkey = "cm:%s:d:%d" % (a, day_start(t))
    pg_day = pg_totals(h, a, "d", day_start(t))
    check_eq(pg_day[0], nanos(want), "PostgreSQL day rollup in nanos")
    check_eq(h.redis("HGET", dkey, "cost"), str(pg_day[0]), "Redis day cost (a 202 means merged too)")
    # Calls to Redis sent without waiting for their answer (a group's merge of rows some other
    # request's 202 already covered) could land after the FLUSHALL: let them end first.
    wait_metric(h, BACKLOGS[2], 0, 5, "calls to Redis in flight before FLUSHALL")
    # One script flushes and looks, so that a periodic job finding the epoch gone (and rebuilding)
    # cannot write the key back in between.
    check_eq(h.redis("EVAL", "redis.call('FLUSHALL') return redis.call('EXISTS', KEYS[1])", "1", dkey), "0",
             "key after FLUSHALL")
    trigger = new_agent(tag="crash-trigger")
    accepted(h.hb(hb_obj(trigger, "0.001", hb_id())), 1, 0, "trigger heartbeat")
    wait_redis_cost(h, dkey, pg_day[0], 5)
    hkey = "cm:%s:h:%d" % (a, hour_start(t))
    wait_redis_cost(h, hkey, pg_totals(h, a, "h", hour_start(t))[0], 5)
    check_eq(h.redis("HGET", dkey, "hb"), "4000", "rebuilt heartbeat count")
    check_eq(h.redis("HGET", dkey, "tin"), str(want_tokens), "rebuilt tokens_in")


def check_503(r, code, what):
    """A 503 with its error code and Retry-After: 1 (every 503 tells the client when to retry)."""
    check_error(r, 503, code, what=what)
    check_eq(r.headers.get("retry-after"), "1", "%s: Retry-After of the 503" % what)


def wait_for(cond, secs, what):
    deadline = time.time() + secs
    while not cond():
        check(time.time() < deadline, "%s: not within %ss" % (what, secs))
        time.sleep(0.05)


@timeout(120)
def test_redis_restart(h):
    a = new_agent(tag="redis")
    watch_cost(h, a)  # the Redis windows checked below
    t = int(time.time()) - 40
    sent = []      # (ids/costs, status)
    lock = threading.Lock()
    stop = threading.Event()
    errors = []

    def writer():
        n = 0
        while not stop.is_set():
            items = [(hb_id(), "0.0%02d" % (1 + (n * 10 + i) % 97)) for i in range(10)]
            n += 1
            try:
                r = h.hb(batch([hb_obj(a, c, i, ts=t) for i, c in items]), timeout=15)
                st = r.status
                if st not in (202, 503):
                    errors.append(repr(r))
                elif st == 503:
                    check_503(r, None, "heartbeat while Redis restarts")
            except ConnError as e:
                st = None
                errors.append(str(e))
            except TestFailure as e:
                st = 503
                errors.append(str(e))
            with lock:
                sent.append((items, st))
            time.sleep(0.02)

    def accepted_since(n):
        with lock:
            return sum(1 for _, st in sent[n:] if st == 202)

    th = threading.Thread(target=writer)
    th.start()
    restarted = False
    try:
        wait_for(lambda: accepted_since(0) >= 3, 20, "three batches accepted before Redis goes")
        h.kill9_redis()
        wait_metric(h, REDIS_UP, 0, 10, "Redis killed")
        r = h.request("GET", "/readyz")
        check_503(r, "not_ready", "/readyz with Redis down")
        check_eq((r.json.get("ready"), r.json.get("redis"), r.json.get("postgres")), (False, "down", "up"),
                 "/readyz stores while Redis is down")
        check_503(h.request("POST", "/v1/mesh/intents", {"agent": a}, key=h.k1), "store_unavailable",
                  "intent with Redis down (admission fails closed)")
        with lock:
            n_gone = len(sent)
        wait_for(lambda: len(sent) >= n_gone + 5, 20, "five batches answered while Redis is down")
        with lock:
            n_down = len(sent)
        h.services("start")
        restarted = True
        h.wait_ready(10)
        wait_metric(h, REDIS_UP, 1, 10, "Redis back")
        wait_for(lambda: accepted_since(n_down) >= 3, 20, "three batches accepted after Redis is back")
    finally:
        stop.set()
        th.join(30)
        if not restarted:
            h.services("start")
    check(not errors, "heartbeats without 202/503 while Redis restarted: %s" % errors[:3])
    during = [st for _, st in sent[n_gone:n_down]]
    if h.durable_redis:
        check(set(during) == {503}, "answers while Redis was down, the durable point (nothing is acknowledged "
              "without it): %r" % during)
    else:
        check(202 in during, "no heartbeat accepted while Redis was down (PostgreSQL is the record): %r" % during)
    # Every 202 was counted: resending those gives only duplicates; 503s are retried.
    want = Decimal(0)
    count = 0
    for items, st in sent:
        body = batch([hb_obj(a, c, i, ts=t) for i, c in items])
        r = h.hb(body)
        check_status(r, 202, "resend")
        if st == 202:
            check_eq(r.json["accepted"], 0, "resend of an acknowledged batch")
        want += sum(Decimal(c) for _, c in items)
        count += len(items)
    sp = h.spend_ok(a, "day", at=t)
    check_eq(dec(sp["cost_usd"]), want, "total")
    check_eq(sp["heartbeats"], count, "heartbeats")
    # The hot windows are rebuilt to PostgreSQL's totals.
    for grain, start in (("h", hour_start(t)), ("d", day_start(t))):
        wait_redis_cost(h, "cm:%s:%s:%d" % (a, grain, start), pg_totals(h, a, grain, start)[0], 5)
    check_eq(pg_totals(h, a, "d", day_start(t))[0], nanos(want), "PostgreSQL day total")
    for name in BACKLOGS:
        wait_metric(h, name, 0, 5, "after Redis is back")


@timeout(120)
def test_fail_open_admission(h):
    """COSTMESH_ADMISSION_FAIL_OPEN=1: while Redis is down intents are admitted unchecked (over the limit
    too), recorded and logged; once Redis is back they count in the agent's windows like any other."""
    away_from_boundary(86400, 60)
    a = new_agent(tag="failopen")
    register(h, a)
    put_policy(h, a, {"max_intents_per_day": 2})
    h.restart_server(env={"COSTMESH_ADMISSION_FAIL_OPEN": "1"})
    try:
        admitted(intent(h, a), a, "intent with Redis up")
        h.kill9_redis()
        try:
            wait_metric(h, REDIS_UP, 0, 10, "Redis killed")
            for i in range(3):
                admitted(intent(h, a), a, "intent %d with Redis down" % i)
            check_eq((agent_view(h, a)["today"]["intents"], h.spend_ok(a)["intents"]), (4, 4),
                     "intents recorded while Redis is down (agent page, spend)")
        finally:
            h.services("start")
        h.wait_ready(20)
        check_breach(intent(h, a), "max_intents_per_day", 2, 4, 86400, "intent once Redis is back")
        check_eq(agent_view(h, a)["today"]["intents"], 4, "intents once Redis is back")
        check_eq(h.server.log_text().count("event=admission_unchecked"), 3, "unchecked admissions logged")
    finally:
        h.restart_server()


@timeout(120)
def test_postgres_down(h):
    a = new_agent(tag="pgdown")
    t = int(time.time()) - 50
    acked = {}  # id -> cost, every heartbeat that got 202
    pending = []  # (id, cost) not yet acknowledged

    def send(hid, cost):
        r = h.hb(hb_obj(a, cost, hid, ts=t), timeout=20)
        if r.status == 202:
            acked[hid] = cost
        elif r.status == 503:
            check_503(r, None, "heartbeat with PostgreSQL down or coming back")
        return r

    # Redis mode: an agent first seen while PostgreSQL is down cannot be registered, so it gets 503s.
    newcomer = new_agent(tag="pgdown-new")
    for i in range(5):
        check_status(send(hb_id(), "0.11"), 202, "baseline")
    h.stop_pg_immediate()
    try:
        # Down for 3 s (the server's reconnect backoff grows meanwhile).
        deadline = time.time() + 3
        n503 = 0
        while time.time() < deadline:
            hid, cost = hb_id(), "0.07"
            r = send(hid, cost)
            if h.durable_redis:
                check_status(r, 202, "a registered agent's heartbeat with PostgreSQL down (queued in Redis)")
                r = h.hb(hb_obj(newcomer, cost, hid, ts=t), timeout=20)
                check_503(r, "store_unavailable", "a new agent's heartbeat with PostgreSQL down")
            else:
                check(r.status != 202, "202 while PostgreSQL is down: %r" % r)
                check_503(r, "store_unavailable", "heartbeat with PostgreSQL down")
            pending.append((hid, cost))
            n503 += 1
            time.sleep(0.1)
        check(n503 > 0, "no heartbeat sent while PostgreSQL was down")
        wait_metric(h, PG_UP, 0, 10, "PostgreSQL stopped")
        r = h.request("GET", "/readyz")
        check_503(r, "not_ready", "/readyz with PostgreSQL down")
        check_eq(r.json.get("postgres"), "down", "/readyz postgres")
        check_503(h.spend(a), "store_unavailable", "spend with PostgreSQL down")
    finally:
        h.services("start")
    t_up = time.time()
    ok = False
    while time.time() - t_up < 15:
        r = send(hb_id(), "0.5")
        if r.status == 202:
            ok = True
            break
        check_status(r, 503, "heartbeat while PostgreSQL comes back")
        time.sleep(0.2)
    check(ok, "no 202 within 15 s of PostgreSQL's return")
    h.wait_ready(15)
    # Ready means every pool requests are served from is back, intents' own included: each pool
    # reconnects on its own schedule, and an intent once got 503 right after /readyz said 200.
    admitted(intent(h, a), a, "an intent as soon as /readyz is 200 again")
    wait_metric(h, PG_UP, 1, 5, "PostgreSQL back")
    if h.durable_redis:
        for hid, cost in pending:
            accepted(h.hb(hb_obj(newcomer, cost, hid, ts=t)), 1, 0, "retry of a new agent's 503'd heartbeat")
        sp = h.spend_ok(newcomer, "day", at=t)
        check_eq((dec(sp["cost_usd"]), sp["heartbeats"]), (Decimal("0.07") * len(pending), len(pending)),
                 "the new agent's retried heartbeats")
    else:
        for hid, cost in pending:
            r = send(hid, cost)
            check_status(r, 202, "retry of a 503'd heartbeat")
    for hid, cost in list(acked.items()):
        accepted(h.hb(hb_obj(a, cost, hid, ts=t)), 0, 1, "resend of an acknowledged heartbeat")
    want = sum((Decimal(c) for c in acked.values()), Decimal(0))
    sp = h.spend_ok(a, "day", at=t)
    check_eq(dec(sp["cost_usd"]), want, "total")
    check_eq(sp["heartbeats"], len(acked), "heartbeats")
    check_eq(h.psql("SELECT count(*), count(DISTINCT hb_id) FROM heartbeats WHERE address = '%s'" % a),
             "%d|%d" % (len(acked), len(acked)), "rows (all, distinct)")
    if h.durable_redis:
        check_eq(h.redis("XLEN", "cm:q"), "0", "the queue once PostgreSQL is back and a read waited for it")


@timeout(120)
def test_postgres_unresponsive(h):
    """PostgreSQL stops answering without closing its connections (a hung server, a network partition):
    its processes stopped for 5 s, longer than the key cache's 2 s. Redis mode: a registered agent's
    heartbeats keep getting 202 at once, its key going on as PostgreSQL last said it was while it is
    asked again (before, every request waited on that lookup once the cache entry aged). Postgres mode:
    the heartbeats wait for PostgreSQL, then each is answered 202. Either way every 202 counts once."""
    a = new_agent(tag="pghung")
    t = int(time.time()) - 50
    accepted(h.hb(hb_obj(a, "0.25", hb_id(), ts=t)), 1, 0, "baseline (the agent registered, the key looked up)")
    acked = {}  # id -> cost
    answers = []
    lookups = read_metrics(h)["costmesh_key_lookups_total"]

    def send(hid, cost):
        r = h.hb(hb_obj(a, cost, hid, ts=t), timeout=30)
        answers.append(r.status)
        if r.status == 202:
            acked[hid] = cost

    with h.pg_paused():
        if h.durable_redis:
            paused_at = time.time()
            late = 0  # answered after the key's cache entry aged (COSTMESH_KEY_CACHE_MS, 2 s)
            while time.time() < paused_at + 5:
                hid = hb_id()
                r = h.hb(hb_obj(a, "0.5", hid, ts=t), timeout=2)
                check_status(r, 202, "a registered agent's heartbeat with PostgreSQL unresponsive")
                acked[hid] = "0.5"
                late += time.time() > paused_at + 2.5
                time.sleep(0.1)
            check(late >= 5, "only %d heartbeats answered once the key's cache entry aged" % late)
        else:
            senders = [threading.Thread(target=send, args=(hb_id(), "0.5")) for _ in range(3)]
            for th in senders:
                th.start()
            time.sleep(5)
            check_eq(answers, [], "answers before PostgreSQL is back (a 202 is its commit)")
    if h.durable_redis:
        check(read_metrics(h)["costmesh_key_lookups_total"] > lookups, "the aged key was not asked about again")
    else:
        for th in senders:
            th.join(30)
        check_eq(answers, [202] * 3, "the heartbeats that waited for PostgreSQL")
    h.wait_persisted(30)
    for hid, cost in list(acked.items()):
        accepted(h.hb(hb_obj(a, cost, hid, ts=t)), 0, 1, "resend of an acknowledged heartbeat")
    want = Decimal("0.25") + sum((Decimal(c) for c in acked.values()), Decimal(0))
    sp = h.spend_ok(a, "day", at=t)
    check_eq((dec(sp["cost_usd"]), sp["heartbeats"]), (want, len(acked) + 1), "the agent's day")


def store_stalled(h, paused, store, hbs, min_drops):
    """COSTMESH_STORE_DEADLINE_MS (2 s here) while `store`'s processes are stopped (`paused`): the heartbeats
    of `hbs` (what, "fresh" or "registered", the status they get while it is stopped) and an intent are
    answered while it still is, not when it comes back; the deadline's drops are logged. Sent again once it
    is back, each counts once, whether or not the first attempt was stored late; one acknowledged before is
    a duplicate."""
    agents = {"registered": new_agent(tag="deadline"), "fresh": new_agent(tag="deadlinenew")}
    t = int(time.time()) - 50
    h.restart_server(env={"COSTMESH_STORE_DEADLINE_MS": "2000"})
    try:
        a = agents["registered"]
        accepted(h.hb(hb_obj(a, "0.25", hb_id(), ts=t)), 1, 0, "baseline (the agent registered, the key looked up)")
        sends = [(what, agents[who], hb_id(), want) for what, who, want in hbs]
        iid = "deadline-" + hb_id()
        answers = {}

        def send_hb(what, agent, hid, _):
            answers[what] = h.hb(hb_obj(agent, "0.5", hid, ts=t), timeout=60)

        def send_intent():
            answers["an intent"] = intent(h, a, intent_id=iid, timeout=60)

        senders = [threading.Thread(target=send_hb, args=x) for x in sends] + [threading.Thread(target=send_intent)]
        with paused():
            for th in senders:
                th.start()
            for th in senders:
                th.join(12)
            while_stopped = dict(answers)
        for th in senders:
            th.join(60)
        for what, _, _, want in sends + [("an intent", None, None, 503)]:
            check(what in while_stopped, "%s was not answered while %s was stopped" % (what, store))
            if want == 503:
                check_error(while_stopped[what], 503, "store_unavailable", what=what + " past the deadline")
            else:
                accepted(while_stopped[what], 1, 0, what + " while %s was stopped" % store)
        check(h.server.log_text().count('reason="no answer within 2000 ms"') >= min_drops,
              "the deadline's drops logged: %s" % h.server.log_tail(20))
        h.wait_ready(30)
        for what, agent, hid, want in sends:
            j = h.hb(hb_obj(agent, "0.5", hid, ts=t)).json
            check_eq(j.get("accepted", 0) + j.get("duplicates", 0), 1, "%s sent again: %r" % (what, j))
            if want == 202:
                check_eq(j.get("duplicates"), 1, "%s, acknowledged, sent again: %r" % (what, j))
        # An ADMIT that Redis ran when it woke, after costmeshd gave it up, leaves the intent's key in flight
        # for CM_HOT_PENDING_TTL (30 s): its retries get 409 until then (docs/operations.md).
        deadline = time.time() + 45
        r = intent(h, a, intent_id=iid)
        while r.status == 409 and store == "Redis" and time.time() < deadline:
            check_error(r, 409, "idempotency_key_in_use", what="the intent sent again while its key is in flight")
            time.sleep(1)
            r = intent(h, a, intent_id=iid)
        admitted(r, a, "the intent sent again")
        h.wait_persisted(30)
        for who, agent in agents.items():
            n = sum(1 for _, x, _, _ in sends if x == agent)
            base = (Decimal("0.25"), 1) if who == "registered" else (Decimal(0), 0)
            sp = h.spend_ok(agent, "day", at=t)
            check_eq((dec(sp["cost_usd"]), sp["heartbeats"]), (base[0] + Decimal("0.5") * n, base[1] + n),
                     "the %s agent's day" % who)
        check_eq(agent_view(h, a)["today"]["intents"], 1, "the agent's intents today")
    finally:
        h.restart_server()


@timeout(180)
def test_store_deadline_postgres(h):
    """PostgreSQL hung: what needs a write to it gets 503 once the deadline passes (a new agent's heartbeat
    in either mode, a registered agent's in postgres mode, an intent's record); in redis mode a registered
    agent's heartbeat does not need it (d_faults.postgres_unresponsive)."""
    hbs = [("a new agent's heartbeat", "fresh", 503)]
    if not h.durable_redis:
        hbs.append(("a registered agent's heartbeat", "registered", 503))
    store_stalled(h, h.pg_paused, "PostgreSQL", hbs, 2)


@timeout(240)
def test_store_deadline_redis(h):
    """Redis hung: intent admission fails closed (503) once the deadline passes instead of waiting for it;
    heartbeats get 202 in postgres mode, where the commit is the durable point and the hot windows are
    healed later, and 503 in redis mode, where Redis is."""
    want = 503 if h.durable_redis else 202
    hbs = [("a new agent's heartbeat", "fresh", want), ("a registered agent's heartbeat", "registered", want)]
    store_stalled(h, h.redis_paused, "Redis", hbs, 1)


@timeout(60)
def test_readyz_503_has_error_body(h):
    """Contract, Errors: every 4xx/5xx has a JSON body {"error":{...}} -- /readyz's 503 too."""
    h.stop_pg_immediate()
    try:
        deadline = time.time() + 10
        r = h.request("GET", "/readyz")
        while r.status == 200 and time.time() < deadline:
            h.hb(hb_obj(new_agent(tag="rz"), "1", hb_id()))  # lets the server notice
            time.sleep(0.1)
            r = h.request("GET", "/readyz")
    finally:
        h.services("start")
    h.wait_ready(15)
    check_503(r, "not_ready", "/readyz with PostgreSQL down")
