#!/usr/bin/env python3
"""Set-up requests of the costmesh benchmark (bench/run.sh), over one
keep-alive connection to 127.0.0.1.

  setup.py PORT KEY policies AGENTS     PUT a generous cost policy on
                                        agent://default/bench/a0..a<AGENTS-1>
  setup.py PORT KEY agents AGENTS NONCE one heartbeat for each of those
                                        agents, in batches of 1000

Exits non-zero on the first unexpected status."""
import http.client
import json
import sys
import urllib.parse

POLICY = json.dumps({
    "max_intents_per_hour": 1000000000,
    "max_intents_per_day": 1000000000,
    "max_cost_per_day_usd": 1000000,
    "max_cost_per_month_usd": 1000000,
    "action_on_breach": "block",
})


def call(conn, method, path, key, body, want):
    conn.request(method, path, body=body,
                 headers={"x-api-key": key, "Content-Type": "application/json"})
    r = conn.getresponse()
    text = r.read()
    if r.status != want:
        sys.exit(f"setup: {method} {path} answered {r.status}: {text[:200]!r}")


def main():
    port, key, what, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    if what == "policies":
        for a in range(n):
            addr = urllib.parse.quote(f"agent://default/bench/a{a}", safe="")
            call(conn, "PUT", f"/v1/mesh/agents/{addr}/policies/cost", key, POLICY, 200)
    elif what == "agents":
        nonce = sys.argv[5]
        for start in range(0, n, 1000):
            hbs = [{"agent": f"agent://default/bench/a{a}", "id": f"{nonce}-mem-{a}",
                    "metrics": {"cost_usd": 0.001, "tokens_in": 10, "llm_calls": 1}}
                   for a in range(start, min(n, start + 1000))]
            call(conn, "POST", "/v1/mesh/heartbeat", key, json.dumps({"heartbeats": hbs}), 202)
    else:
        sys.exit(f"setup: unknown action {what}")


if __name__ == "__main__":
    main()
