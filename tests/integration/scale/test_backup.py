"""Backup and restore (issue 17.5), as docs/operations.md tells an operator to do it: pg_dump of the
live database, pg_restore into a fresh PostgreSQL (scripts/services.sh under another data folder),
costmeshd started on it with an empty Redis: the same spend, and the dedupe still holds."""

import os
import subprocess

from harness import PG_BIN, Harness, Server, TestFailure, accepted, batch, check, check_eq, check_json, hb_id, \
    hb_obj, new_agent, timeout
from test_e_policies import admitted, agent_view, away_from_boundary, intent, put_policy


def run(cmd, what):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    if p.returncode != 0:
        raise TestFailure("%s failed (%d): %s" % (what, p.returncode, p.stdout.decode("utf-8", "replace")[-2000:]))


def snapshot(h, agents):
    """What a client reads of each agent: its spend in every window, and its view (state, today)."""
    out = {}
    for a in agents:
        out[a] = {w: h.spend_ok(a, w) for w in ("hour", "day", "week", "month")}
        v = agent_view(h, a)
        out[a]["view"] = {k: v.get(k) for k in ("state", "today", "policy")}
    return out


@timeout(150)
def test_restore_a_dump_into_a_fresh_postgresql(h):
    away_from_boundary(3600, 60)
    agents = [new_agent(tag="backup") for _ in range(3)]
    sent = {}
    for n, a in enumerate(agents):
        items = [(hb_id(), "0.%09d" % (7 + n * 1000 + k * 37), 100 + k) for k in range(40)]
        accepted(h.hb(batch([hb_obj(a, c, i, tokens_in=t) for i, c, t in items])), 40, 0, "heartbeats of " + a)
        sent[a] = items
    put_policy(h, agents[0], {"max_intents_per_day": 5, "action_on_breach": "block"})
    for _ in range(2):
        admitted(intent(h, agents[0]), agents[0], "an intent before the backup")
    before = snapshot(h, agents)

    dump = os.path.join(h.data_dir, "costmesh.dump")
    run([PG_BIN + "/pg_dump", "--format=custom", "--file=" + dump, h.db_url], "pg_dump")

    other = Harness(os.path.dirname(h.binary))
    other.k1 = h.k1
    try:
        other.start_services()
        run([PG_BIN + "/pg_restore", "--no-owner", "--exit-on-error", "--dbname=" + other.db_url, dump],
            "pg_restore")
        check_eq(other.redis("DBSIZE"), "0", "keys in the fresh Redis")
        other.server = Server(other, h.k1, h.org1)
        other.server.start(timeout=60)  # /readyz: 200 once Redis is rebuilt from the restored rows
        after = snapshot(other, agents)
        for a in agents:
            check_json(after[a], before[a], "restored reads of %s" % a)
        # The restored heartbeats still deduplicate their ids; a new id counts.
        a = agents[1]
        again = batch([hb_obj(a, c, i, tokens_in=t) for i, c, t in sent[a][:3]])
        accepted(other.hb(again), 0, 3, "ids sent before the backup, sent again to the restored server")
        accepted(other.hb(hb_obj(a, "0.5", hb_id())), 1, 0, "a new heartbeat to the restored server")
        # Admission goes on from the restored count: 2 of 5 used, so 3 more are admitted, then 429.
        got = [intent(other, agents[0]).status for _ in range(4)]
        check_eq(got, [201, 201, 201, 429], "intents after the restore (limit 5, 2 used before)")
        problems = other.server.stop()
        check(not problems, "restored server stop: %s" % "; ".join(problems))
    finally:
        for e in other.teardown():
            if "CM_KEEP_DATA" not in e:
                raise TestFailure("the restore's services: %s" % e)
