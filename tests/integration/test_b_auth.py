"""API keys, agent-bound keys and org tenancy."""

import hashlib
import time
from decimal import Decimal

from harness import (accepted, check, check_eq, check_error, check_json, check_status, dec, enc, hb_id, hb_obj,
                     new_agent, parse_iso)
from test_e_policies import away_from_boundary


def create_key(h, key, role, name, agent=None):
    body = {"role": role, "name": name}
    if agent:
        body["agent"] = agent
    r = h.request("POST", "/v1/keys", body, key=key)
    check_status(r, 201, "create %s key" % role)
    j = r.json
    check(isinstance(j.get("key"), str) and len(j["key"]) >= 16, "created key missing or short: %.200r" % r.text)
    check(isinstance(j.get("id"), str) and j["id"], "created key id missing: %.200r" % r.text)
    return j["key"], j["id"]


def list_keys(h, key):
    r = h.request("GET", "/v1/keys", key=key)
    check_status(r, 200, "list keys")
    check(isinstance(r.json, dict) and isinstance(r.json.get("keys"), list), "key list shape: %.200r" % r.text)
    return r


def test_agent_keys(h):
    away_from_boundary(86400, 30)
    t0 = int(time.time())
    a = new_agent(tag="bound")
    other = new_agent(tag="bound-other")
    name = "sdk-" + hb_id()
    k, kid = create_key(h, h.k1, "agent", name, a)

    # The AXME SDK form: metrics only, agent from the key.
    r = h.hb('{"metrics":{"cost_usd":0.5,"llm_calls":2,"intents_total":3,"intents_succeeded":2,'
             '"intents_failed":1,"avg_latency_ms":12.5,"some_unknown_metric":7}}', key=k)
    check_status(r, 202, "bound key, no agent")
    check_json(r.json, {"accepted": 1, "duplicates": 0, "agents": {a: {"state": "active", "cost_today_usd": Decimal(
        "0.5")}}, "ignored": ["metrics.some_unknown_metric"]}, "202 of a bound key's heartbeat naming no agent")
    # Empty body: a liveness beat.
    accepted(h.hb("", key=k), 1, 0, "bound key, empty body")
    accepted(h.hb(b"  \n", key=k), 1, 0, "bound key, blank body")
    # Naming itself is fine, naming another agent is not.
    accepted(h.hb(hb_obj(a, "0.25", hb_id()), key=k), 1, 0, "bound key naming itself")
    check_error(h.hb(hb_obj(other, "1", hb_id()), key=k), 403, field="agent", what="bound key naming another agent")
    check_error(h.hb('{"heartbeats":[%s,%s]}' % (hb_obj(None, "1", hb_id()), hb_obj(other, "1", hb_id())), key=k),
                403, field="heartbeats[1].agent", what="bound key, batch naming another agent")
    # Bearer form of the agent key.
    accepted(h.hb('{"metrics":{"cost_usd":0.25}}', key=k, bearer=True), 1, 0, "bound key as Bearer")
    # An agent key may not manage keys.
    check_error(h.request("POST", "/v1/keys", {"role": "agent", "name": "x"}, key=k), 403, what="agent key creating a key")
    check_error(h.request("GET", "/v1/keys", key=k), 403, what="agent key listing keys")
    check_error(h.request("DELETE", "/v1/keys/" + kid, key=k), 403, what="agent key revoking a key")
    # It reads its own spend.
    s = h.spend_ok(a, key=k)
    check_eq(dec(s["cost_usd"]), Decimal("1"), "bound agent spend (0.5 + 0.25 + 0.25)")
    check_eq(s["heartbeats"], 5, "bound agent heartbeats")
    check_eq(s["llm_calls"], 2, "llm_calls")
    check_error(h.spend(other, key=k), 403, what="bound key reading another agent's spend")
    row = h.psql("SELECT intents_total, intents_succeeded, intents_failed, avg_latency_ms FROM heartbeats "
                 "WHERE address = '%s' AND intents_total > 0" % a)
    check_eq(row, "3|2|1|12.5", "AXME metrics kept")

    # Key creation validation.
    check_error(h.request("POST", "/v1/keys", {"role": "root", "name": "x"}, key=h.k1), 400, field="role", what="bad role")
    check_error(h.request("POST", "/v1/keys", {"role": "agent", "name": "x", "agent": "nope"}, key=h.k1), 400,
                field="agent", what="bad bound address")
    check_error(h.request("POST", "/v1/keys", {"role": "agent", "name": "x", "agent": "agent://org2/a/b"}, key=h.k1),
                403, what="binding a key to another org's agent")
    check_error(h.request("POST", "/v1/keys", "{", key=h.k1), 400, what="malformed key request")

    # The list shows ids and names, never the key or its hash.
    r = list_keys(h, h.k1)
    entries = [e for e in r.json["keys"] if e.get("id") == kid]
    check_eq(len(entries), 1, "the new key in the list")
    created = entries[0].get("created_at")
    check(t0 <= parse_iso(created) <= time.time(), "created_at %r is not the time of this test" % created)
    check_json(entries[0], {"id": kid, "role": "agent", "name": name, "agent": a, "created_at": created},
               "the new key's entry")
    for secret in (k, hashlib.sha256(k.encode()).hexdigest(), h.k1, hashlib.sha256(h.k1.encode()).hexdigest()):
        check(secret not in r.text and secret.upper() not in r.text, "key list leaks a key or its hash")
    for e in r.json["keys"]:
        check("key" not in e and "key_hash" not in e and "hash" not in e, "key list entry has a secret field: %r" % e)

    # Revocation is immediate.
    check_eq(h.request("DELETE", "/v1/keys/" + kid, key=h.k1).status, 204, "revoke")
    check_error(h.hb("", key=k), 401, what="revoked key right after DELETE")
    check_error(h.spend(a, key=k), 401, what="revoked key reading spend")
    check_error(h.request("DELETE", "/v1/keys/" + kid, key=h.k1), 404, what="revoking twice")
    check_error(h.request("DELETE", "/v1/keys/key_doesnotexist", key=h.k1), 404, what="unknown key id")
    check(all(e.get("id") != kid for e in list_keys(h, h.k1).json["keys"]), "revoked key still listed")


def test_keys_are_per_org(h):
    a = new_agent(tag="k-org")
    k, kid = create_key(h, h.k1, "agent", "org1-key", a)
    _, k2id = create_key(h, h.k2, "agent", "org2-key", new_agent("org2", "k-org"))
    org1_ids = {e["id"] for e in list_keys(h, h.k1).json["keys"]}
    org2_ids = {e["id"] for e in list_keys(h, h.k2).json["keys"]}
    check(kid in org1_ids and kid not in org2_ids, "org1's key is listed in org1 only")
    check(k2id in org2_ids and k2id not in org1_ids, "org2's key is listed in org2 only")
    check_eq(org1_ids & org2_ids, set(), "keys listed in both orgs")
    check_error(h.request("DELETE", "/v1/keys/" + kid, key=h.k2), 404, what="org2 revoking org1's key")
    accepted(h.hb("", key=k), 1, 0, "org1 key still works after org2's attempt")
    check(any(e.get("id") == kid for e in list_keys(h, h.k1).json["keys"]), "org1 no longer lists its key")
    # A new admin key of org1 works at once and stays scoped to org1.
    ka, kaid = create_key(h, h.k1, "admin", "second-admin")
    accepted(h.hb(hb_obj(a, "0.1", hb_id()), key=ka), 1, 0, "new admin key")
    check_error(h.hb(hb_obj("agent://org2/test/x", "0.1", hb_id()), key=ka), 403, field="agent", what="org1 admin on org2")
    check_eq(h.request("DELETE", "/v1/keys/" + kaid, key=h.k1).status, 204, "revoke second admin")
    check_error(h.request("GET", "/v1/keys", key=ka), 401, what="revoked admin key")


def test_tenancy(h):
    a1 = new_agent("org1", "tenant")
    a2 = new_agent("org2", "tenant")
    intent = "int-" + hb_id()
    accepted(h.hb(hb_obj(a1, "2.5", hb_id(), intent=intent), key=h.k1), 1, 0, "org1 hb")
    accepted(h.hb(hb_obj(a2, "1.25", hb_id()), key=h.k2), 1, 0, "org2 hb")
    check_error(h.spend(a1, key=h.k2), 403, what="org2 reading org1's spend")
    check_error(h.spend(a2, key=h.k1), 403, what="org1 reading org2's spend")
    check_error(h.request("GET", "/v1/mesh/intents/%s/spend?agent=%s" % (intent, enc(a1)), key=h.k2), 403,
                what="org2 reading org1's intent spend")
    check_error(h.hb(hb_obj(a1, "1", hb_id()), key=h.k2), 403, field="agent", what="org2 heartbeat on org1's agent")
    r = h.request("GET", "/v1/mesh/agents?limit=1000", key=h.k2)
    check_status(r, 200, "org2 agents")
    addrs = [x["address"] for x in r.json["agents"]]
    check(a2 in addrs, "org2 does not see its own agent")
    check(all(x.startswith("agent://org2/") for x in addrs), "org2 sees other orgs' agents: %r" % addrs[:5])
    r = h.request("GET", "/v1/mesh/agents?limit=1000", key=h.k1)
    addrs = [x["address"] for x in r.json["agents"]]
    check(a1 in addrs and a2 not in addrs, "org1's list wrong")
    check_eq(dec(h.spend_ok(a1, key=h.k1)["cost_usd"]), Decimal("2.5"), "org1 spend unchanged")
