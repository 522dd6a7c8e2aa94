"""The README's first examples, run as printed: scripts/examples.sh gives the
blocks `make run` shows (Keys, Heartbeats, Spend, Agents), sh runs them
against this server with $BASE and $ADMIN_KEY set, and every reply is checked
against what the examples wrote. An example that stops working, or expires
(a fixed heartbeat "ts" is refused once it is 7 days old), fails here."""

import json
import os
import subprocess
import time
from decimal import Decimal

from harness import REPO, check, check_eq, dec, day_start, hour_start, iso


def examples(org):
    p = subprocess.run(["sh", os.path.join(REPO, "scripts", "examples.sh"), org], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    check(p.returncode == 0, "examples.sh: exit %d: %s" % (p.returncode, p.stderr.decode()))
    return p.stdout.decode()


def replies(text):
    """The JSON values curl printed one after the other (curl -s adds no newline)."""
    out, decoder, i = [], json.JSONDecoder(parse_float=Decimal), 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        v, i = decoder.raw_decode(text, i)
        out.append(v)
    return out


def test_readme_examples_work(h):
    script = examples(h.org1)
    agent = "agent://%s/production/research-agent" % h.org1
    check(agent in script, "the examples name no %s: %.300r" % (agent, script))
    env = dict(os.environ, BASE="http://127.0.0.1:%d" % h.http_port, ADMIN_KEY=h.k1)
    now = time.time()
    p = subprocess.run(["sh", "-eu"], input=script.encode(), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    check(p.returncode == 0 and not p.stderr, "examples: exit %d, stderr %r" % (p.returncode, p.stderr.decode()))
    got = replies(p.stdout.decode())
    check_eq(len(got), 8, "replies (key, keys, revoke, heartbeat, 3 spends, agents): %r" % got)
    key, keys, revoke, hb, day, month, intent, agents = got

    check(key.get("key", "").startswith("cmk_") and key.get("id", "").startswith("key_"), "new key: %r" % key)
    check_eq({k: key.get(k) for k in ("role", "name", "org", "agent")},
             {"role": "agent", "name": "research", "org": h.org1, "agent": agent}, "new key")
    listed = [k for k in keys["keys"] if k["id"] == key["id"]]
    check(len(listed) == 1 and "key" not in listed[0] and listed[0]["name"] == "research",
          "key list: %r" % keys)
    check_eq(revoke, 204, "revoking the new key by the id the example found")
    r = h.request("GET", "/v1/mesh/agents", key=key["key"])
    check_eq(r.status, 401, "the revoked key is refused")

    # The README shows this reply in full: it must be the one the server gives.
    documented = [l for l in script.splitlines() if l.startswith("# 202 {")]
    check_eq(len(documented), 1, "documented heartbeat replies")
    check_eq(hb, json.loads(documented[0][len("# 202 "):], parse_float=Decimal), "heartbeat reply")

    check_eq((day["agent"], day["window"], day["from"], day["to"]),
             (agent, "day", iso(day_start(now)), iso(day_start(now) + 86400)), "day spend window")
    check_eq((dec(day["cost_usd"]), day["tokens_in"], day["tokens_out"], day["llm_calls"], day["tool_calls"],
              day["heartbeats"], day["intents"]), (Decimal("0.03"), 2100, 850, 4, 0, 1, 0), "day spend")
    check_eq(len(day["series"]), 24, "hourly buckets")
    # The heartbeat's computed "ts" is now: its money is in this hour's bucket.
    this_hour = [b for b in day["series"] if b["from"] == iso(hour_start(now))]
    check(len(this_hour) == 1 and dec(this_hour[0]["cost_usd"]) == Decimal("0.03"),
          "this hour's bucket: %r" % this_hour)

    check_eq((month["window"], month["from"], month["to"], dec(month["cost_usd"]), len(month["series"])),
             ("month", "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z", Decimal(0), 31), "October's spend")
    check_eq((intent["intent_id"], intent["agent"], dec(intent["cost_usd"]), intent["tokens_in"],
              intent["tokens_out"], intent["llm_calls"], intent["heartbeats"]),
             ("int_abc123", agent, Decimal("0.03"), 2100, 850, 4, 1), "intent spend")

    mine = [a for a in agents["agents"] if a["address"] == agent]
    check(len(mine) == 1, "agent list lacks %s: %r" % (agent, agents))
    check_eq((mine[0]["health"], dec(mine[0]["cost_today_usd"]), mine[0]["intents_today"], mine[0]["state"]),
             ("healthy", Decimal("0.03"), 0, "active"), "agent list entry")
    check(all(a["health"] == "healthy" for a in agents["agents"]), "health=healthy lists others: %r" % agents)
