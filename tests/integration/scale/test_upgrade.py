"""The previous release's costmeshd (built from git history: previous.py) beside this one behind nginx, on one
Redis and one PostgreSQL, while this one applies the pending migration (issue 17.1): the rules of
docs/operations.md ("Schema migrations and rolling upgrades") checked in practice. The old binary keeps
writing and reading on the expanded schema (rule 1), no column it knows is dropped or changed (rule 2),
it starts again on the schema with a migration it does not know (rules 5 and 6 of the upgrade steps: the
rollback), and every heartbeat sent through either is counted once, in the raw rows, the agent's spend
and the rollup worker's groupings, whichever binary's worker summed it."""

import os
from decimal import Decimal

from balancer import Nginx, served, stop_all
from harness import Harness, PortView, Server, check, check_eq, free_port, timeout
from previous import build, newest_migration, previous_commit
from test_e_policies import away_from_boundary
from test_n_retention import wait_for
from test_replicas import Load, as_superuser, fresh_database

DB = "cm_side_by_side"


class Own(PortView):
    """A PortView whose spend reads and psql go to its own port and database too (Load checks through
    them)."""
    spend = Harness.spend
    spend_ok = Harness.spend_ok
    psql = Harness.psql


def replica(h, url, binary, log_number):
    """A costmeshd of binary on its own port and the database url (not started), bootstrapping the key
    Load sends with (k1, org1's) into that database."""
    view = Own(h, free_port())
    view.db_url, view.binary, view.server_starts = url, binary, log_number
    return Server(view, h.k1, h.org1, {"COSTMESH_MAX_PER_IP": "1024"})


def columns(view):
    """{(table, column): (type, nullable)} of the public schema."""
    out = {}
    for line in view.psql("SELECT table_name, column_name, data_type, is_nullable"
                                   " FROM information_schema.columns WHERE table_schema = 'public'").splitlines():
        t, c, typ, null = line.split("|")
        out[(t, c)] = (typ, null)
    return out


def check_expand_only(before, after):
    """Rule 2: every column the old binary knows is still there, of its type, nullable if it was."""
    for key, (typ, null) in sorted(before.items()):
        check(key in after, "migration dropped or renamed %s.%s" % key)
        check_eq(after[key][0], typ, "type of %s.%s after the migration" % key)
        check(null == "NO" or after[key][1] == "YES", "migration made %s.%s NOT NULL" % key)


def more_served(server, since, secs, what):
    """Waits until the replica answered more heartbeat requests than since."""
    wait_for(what, lambda: served(server, "heartbeat") > since, secs)


@timeout(240)
def test_old_and_new_binaries_side_by_side(h):
    away_from_boundary(86400, 150)
    migration = newest_migration()
    commit = previous_commit(migration)
    with open(os.path.join(h.data_dir, "previous-build.log"), "wb") as log:
        old_binary = build(commit, log)
    url = fresh_database(h, DB)
    old, new = replica(h, url, old_binary, 300), replica(h, url, h.binary, 310)
    try:
        old.start()
        applied = "SELECT count(*) FROM schema_migrations WHERE name = '%s'" % migration
        check_eq(old.h.psql(applied), "0", "%s applied by the release before it (%s)" % (migration, commit))
        before = columns(old.h)
        check(("heartbeats", "cost_nanos") in before, "the old schema's columns read: %d" % len(before))
        lb = Nginx(h, [old.h.http_port, new.h.http_port])
        try:
            # Load's reads and raw-row checks go to the new binary's database (the fresh one).
            with Load(new.h, lb.view, 4, 10, "side") as load:
                load.wait_acked(15, 60)
                # The new binary applies the migration while the old one serves the load.
                new.start(timeout=60)
                check_eq(new.h.psql(applied), "1", "%s applied once" % migration)
                mark = load.acked
                more_served(new, 0, 30, "the new binary serving heartbeats")
                more_served(old, served(old, "heartbeat"), 30, "the old binary writing after the migration")
                for a in load.agents:  # and reading
                    check(old.h.spend_ok(a, "day")["heartbeats"] > 0, "the old binary's spend of %s" % a)
                load.wait_acked(mark + 30, 60)
                # A rollback: the old binary starts on a schema with a migration it does not know.
                problems = old.stop()
                check(not problems, "old binary's stop under load: %s" % "; ".join(problems))
                old.start(timeout=30)
                more_served(old, 0, 30, "the old binary, started again on the expanded schema")
                # The end of the roll: the old one stopped for good, the new one alone.
                problems = old.stop()
                check(not problems, "old binary's last stop: %s" % "; ".join(problems))
                mark = load.acked
                load.wait_acked(mark + 10, 60)
                load.stop()
            load.check_exact("old and new binaries behind nginx (%d batches needed a retry)" % load.retried)
        finally:
            lb.stop()
        check_expand_only(before, columns(new.h))
        # The rollup worker's groupings: each heartbeat once, whichever binary moved the watermark past it.
        agents = ", ".join("'%s'" % a for a in load.sent)
        wait_for("the rollup worker past the load", lambda: new.h.psql(
            "SELECT count(*) FROM cm_rollup_tail() WHERE address IN (%s)" % agents) == "0", 30)
        for a, items in load.sent.items():
            got = new.h.psql("SELECT sum(cost_nanos), sum(heartbeats) FROM rollup_unit"
                                      " WHERE kind = 'agent' AND unit = '%s'" % a)
            want = sum(Decimal(c) for _, c in items) * 10 ** 9
            check_eq(got, "%d|%d" % (want, len(items)), "rollup_unit of %s (cost nanos, heartbeats)" % a)
    finally:
        problems = stop_all([old, new])
        as_superuser(h, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % DB)
    check(not problems, "; ".join(problems))
