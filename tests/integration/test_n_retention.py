"""Raw heartbeats in daily partitions (schema/012_partitions.sql,
server/retention.c): old partitions dropped once rolled up, rollups kept,
the 7-day dedupe in heartbeat_ids, and the upgrade from the unpartitioned
table."""

import datetime
import glob
import os
import subprocess
import time
from decimal import Decimal

from harness import (REPO, PortView, Server, TestFailure, accepted, check, check_eq, check_status, day_start, dec,
                     dedupe_mark, enc, free_port, hb_id, hb_obj, new_agent, timeout)

FAST = {"COSTMESH_RETENTION_DAYS": "30", "COSTMESH_RETENTION_CHECK_MS": "100", "COSTMESH_ROLLUP_MS": "20"}


def day(n):
    """The UTC date n days from today."""
    return datetime.datetime.now(datetime.timezone.utc).date() + datetime.timedelta(days=n)


def aged_partition(h, d, rows):
    """A partition for day d holding rows (address, hb_id, intent_id, nanos),
    as if received that day."""
    name = "heartbeats_%s" % d.strftime("%Y%m%d")
    # One transaction: the maintenance drops an expired partition that is empty.
    h.psql("CREATE TABLE %s PARTITION OF heartbeats FOR VALUES FROM ('%s 00:00:00+00') TO ('%s 00:00:00+00');"
           % (name, d, d + datetime.timedelta(days=1))
           + " INSERT INTO heartbeats (address, hb_id, intent_id, ts, received_at, cost_nanos) VALUES "
           + ", ".join("('%s', '%s', '%s', '%s 01:00:00+00', '%s 01:00:00+00', %d)" % (a, i, x, d, d, n)
                       for a, i, x, n in rows))
    return name


def exists(h, name):
    return h.psql("SELECT to_regclass('%s') IS NOT NULL" % name) == "t"


def wait_for(what, fn, secs=20):
    deadline = time.time() + secs
    while time.time() < deadline:
        if fn():
            return
        time.sleep(0.05)
    check(fn(), "%s within %ss" % (what, secs))


def intent_cost(h, x, a, via=None):
    r = (via or h).request("GET", "/v1/mesh/intents/%s/spend?agent=%s" % (x, enc(a)), key=h.k1)
    check_status(r, 200, "intent spend")
    return dec(r.json["cost_usd"])


@timeout(90)
def test_old_partitions_dropped_once_rolled_up(h):
    a = new_agent(tag="ret")
    x, y = "int-" + hb_id(), "int-" + hb_id()
    # The worker idle: an expired partition with rows past the watermark is kept.
    h.restart_server(dict(FAST, COSTMESH_ROLLUP_MS="600000"))
    kept = aged_partition(h, day(-41), [(a, hb_id(), y, 3 * 10 ** 9)])
    time.sleep(1)  # ten maintenance runs
    check(exists(h, kept), "a partition the rollup worker has not summed was dropped")
    check_eq(intent_cost(h, y, a), Decimal(3), "intent spend from the tail")
    # The worker running: rolled up, then dropped; the rollup keeps the spend.
    h.restart_server(FAST)
    gone = aged_partition(h, day(-40), [(a, hb_id(), x, 5 * 10 ** 9), (a, hb_id(), x, 10 ** 9)])
    young = aged_partition(h, day(-20), [(a, hb_id(), x, 7)])
    wait_for("expired partitions dropped", lambda: not exists(h, gone) and not exists(h, kept))
    check(exists(h, young), "a partition inside the retention was dropped")
    check(exists(h, "heartbeats_%s" % day(CM_AHEAD).strftime("%Y%m%d")), "partitions ready 14 days ahead")
    check_eq(intent_cost(h, x, a), Decimal("6.000000007"), "intent spend after the drop")
    check_eq(intent_cost(h, y, a), Decimal(3), "the other intent after the drop")
    h.restart_server()


CM_AHEAD = 14


@timeout(60)
def test_dedupe_ids_kept_eight_days(h):
    h.restart_server(FAST)
    a = new_agent(tag="ret-ids")
    recent, old = hb_id(), hb_id()
    accepted(h.hb(hb_obj(a, "1", recent)), 1, 0, "first")
    accepted(h.hb(hb_obj(a, "1", old)), 1, 0, "first")
    h.wait_persisted()  # redis mode: the ids reach heartbeat_ids through the queue
    age = "UPDATE heartbeat_ids SET received_at = now() - interval '%s' WHERE key = cm_hb_key('%s', '%s')"
    h.psql(age % ("6 days 23 hours", a, recent))
    h.psql(age % ("8 days 1 minute", a, old))
    wait_for("ids older than 8 days pruned",
             lambda: h.psql("SELECT count(*) FROM heartbeat_ids WHERE key = cm_hb_key('%s', '%s')" % (a, old)) == "0")
    if h.durable_redis:
        # Ids of a week ago: Redis forgot them long since (COSTMESH_DEDUPE_MARK_S); heartbeat_ids is what
        # keeps the 7-day promise.
        check_eq(h.redis("DEL", dedupe_mark(a, recent), dedupe_mark(a, old)), "2", "the ids' Redis marks")
    r = h.hb(hb_obj(a, "1", recent))
    if h.durable_redis:
        # Past its Redis mark a retry is answered accepted (documented); it is counted once, checked below.
        accepted(r, 1, 0, "an id of 7 days ago, past its Redis mark")
    else:
        accepted(r, 0, 1, "an id of 7 days ago is still a duplicate")
    # Past the dedupe window an id is new again (the promise is 7 days).
    accepted(h.hb(hb_obj(a, "1", old)), 1, 0, "an id of 8 days ago")
    check_eq(dec(h.spend_ok(a, "day")["cost_usd"]), Decimal(3), "spend")
    check_eq(h.psql("SELECT count(*) FROM heartbeats WHERE address = '%s'" % a), "3", "raw rows")
    if h.durable_redis:
        # The persister found the week-old retry in heartbeat_ids and took its increments back.
        check_eq(h.redis("HGET", "cm:%s:d:%d" % (a, day_start(time.time())), "cost"), "3000000000",
                 "the day's cost in Redis")
    h.restart_server()


def psql_url(h, url, sql):
    p = subprocess.run(["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-Atc", sql], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    check(p.returncode == 0, "psql: %s" % p.stderr.decode())
    return p.stdout.decode().strip()


@timeout(120)
def test_upgrade_from_the_unpartitioned_table(h):
    """A database at migration 011 with raw rows: after 012 the rows are a
    partition, their ids still dedupe, spend is the same."""
    # A schema of its own in the same database stands for the old database.
    db = "upg_%d" % os.getpid()
    h.psql("CREATE SCHEMA %s" % db)
    url = h.db_url + ("&" if "?" in h.db_url else "?") + "options=-csearch_path%%3D%s" % db
    psql_url(h, url, "CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL"
                     " DEFAULT now())")
    for f in sorted(glob.glob(os.path.join(REPO, "schema", "*.sql"))):
        name = os.path.basename(f)
        if name >= "012":
            break
        p = subprocess.run(["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", f], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        check(p.returncode == 0, "%s: %s" % (name, p.stderr.decode()))
        psql_url(h, url, "INSERT INTO schema_migrations (name) VALUES ('%s')" % name)
    a, x, ids = new_agent(tag="upg"), "int-" + hb_id(), [hb_id() for _ in range(3)]
    # As the release before wrote them: raw rows, their rollups, the intent's.
    psql_url(h, url, "INSERT INTO heartbeats (address, hb_id, intent_id, ts, cost_nanos) VALUES "
             + ", ".join("('%s', '%s', '%s', now(), %d)" % (a, i, x, 10 ** 9) for i in ids))
    psql_url(h, url, "INSERT INTO rollup_agent (address, grain, bucket, cost_nanos, heartbeats) SELECT '%s', g,"
             " date_trunc(u, now(), 'UTC'), 3000000000, 3 FROM (VALUES ('h', 'hour'), ('d', 'day'), ('m', 'month'))"
             " v(g, u)" % a)
    psql_url(h, url, "INSERT INTO agents (address, org, last_heartbeat) VALUES ('%s', 'org1', now())" % a)
    view = PortView(h, free_port())
    # A Redis database of its own, as a database of its own needs (in redis mode the queue drains into
    # the database of whichever replica holds its lease).
    s = Server(view, h.k1, h.org1, dict(FAST, COSTMESH_DATABASE_URL=url,
                                        COSTMESH_REDIS_URL=h.redis_url.rsplit("/", 1)[0] + "/4"))
    view.db_url = url
    try:
        s.start()
        check_eq(psql_url(h, url, "SELECT string_agg(c.relname, ',') FROM pg_inherits i JOIN pg_class c"
                          " ON c.oid = i.inhrelid WHERE i.inhparent = 'heartbeats'::regclass"
                          " AND c.relname = 'heartbeats_until_012'"), "heartbeats_until_012",
                 "the old table is a partition")
        check_eq(psql_url(h, url, "SELECT count(*) FROM heartbeats WHERE address = '%s'" % a), "3", "old rows")
        r = view.request("POST", "/v1/mesh/heartbeat", hb_obj(a, "1", ids[0]), key=h.k1)
        check_status(r, 202, "re-sent old id")
        if h.durable_redis:
            # Redis never saw the id: answered accepted (documented), counted once by heartbeat_ids (below).
            check_eq((r.json["accepted"], r.json["duplicates"]), (1, 0), "an id from before the upgrade")
        else:
            check_eq((r.json["accepted"], r.json["duplicates"]), (0, 1), "an id from before the upgrade is a duplicate")
        r = view.request("POST", "/v1/mesh/heartbeat", hb_obj(a, "2", hb_id(), intent=x), key=h.k1)
        check_status(r, 202, "new hb")
        check_eq((r.json["accepted"], r.json["duplicates"]), (1, 0), "a new id")
        r = view.request("GET", "/v1/mesh/agents/%s/spend?window=day" % enc(a), key=h.k1)
        check_status(r, 200, "spend")
        check_eq(dec(r.json["cost_usd"]), Decimal(5), "spend across the upgrade")
        check_eq(psql_url(h, url, "SELECT count(*) FROM heartbeats WHERE address = '%s'" % a), "4",
                 "raw rows: the old id stored once")
        # The old rows carry an xid (written at 011): the worker sums them too.
        check_eq(intent_cost(h, x, a, via=view), Decimal(5), "intent spend across the upgrade")
    finally:
        problems = s.stop()
        # The stopped server's backends may still be finishing a statement
        # in the schema: a deadlock with the DROP is theirs to lose or ours.
        for attempt in range(10):
            try:
                h.psql("DROP SCHEMA IF EXISTS %s CASCADE" % db)
                break
            except TestFailure:
                if attempt == 9:
                    raise
                time.sleep(0.5)
    check(not problems, "upgraded server stop: %s" % "; ".join(problems))
