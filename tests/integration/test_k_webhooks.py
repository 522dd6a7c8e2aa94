"""Webhooks: DELETE, the deliveries GET shows, the outbox across a kill -9, one org's dead webhook next to
another org's, addresses refused without COSTMESH_WEBHOOK_ALLOW, signed timestamps."""

import re
import socket
import threading
import time
from collections import Counter

from harness import (HookReceiver, PortView, Server, accepted, check, check_eq, check_error, check_status, check_webhook_signature,
                     enc, free_port, hb_id, hb_obj, new_agent, TestFailure)


def timeout(seconds):
    def deco(fn):
        fn.timeout = seconds
        return fn
    return deco


# What server/webhook.c promises: attempts per delivery, deliveries in flight per org, deliveries GET shows.
MAX_ATTEMPTS = 6
PER_ORG = 4
SHOWN = 20
HOOK = "/v1/mesh/webhook"


def put_hook(h, key, url, secret):
    r = h.request("PUT", HOOK, {"url": url, "secret": secret}, key=key)
    check_status(r, 200, "PUT webhook %s" % url)
    return r


def get_hook(h, key):
    r = h.request("GET", HOOK, key=key)
    check_status(r, 200, "GET webhook")
    check(isinstance(r.json, dict) and isinstance(r.json.get("deliveries"), list), "GET webhook shape: %.300r" % r.text)
    return r.json


def delivery_of(h, key, event_id):
    for d in get_hook(h, key)["deliveries"]:
        if d.get("event_id") == event_id:
            return d
    return None


def wait_delivery(h, key, event_id, status, secs):
    """The delivery of event_id once GET shows it in status."""
    deadline = time.time() + secs
    d = None
    while time.time() < deadline:
        d = delivery_of(h, key, event_id)
        if d and d.get("status") == status:
            return d
        time.sleep(0.1)
    raise TestFailure("delivery of event %s not %s within %ss: %r" % (event_id, status, secs, d))


def agent_in(h, key, org, tag):
    a = new_agent(org=org, tag=tag)
    accepted(h.hb(hb_obj(a, "0", hb_id()), key=key), 1, 0, "register %s" % a)
    return a


def toggle(h, key, address, kill=True):
    """Kills (or resumes) the agent: an event that goes to the webhook. Returns its event id."""
    kind = "kill" if kill else "resume"
    check_status(h.request("POST", "/v1/mesh/agents/%s/%s" % (enc(address), kind), key=key), 200, kind)
    r = h.request("GET", "/v1/mesh/events?limit=1&event_type=agent_%s" % ("killed" if kill else "resumed"), key=key)
    check_status(r, 200, "events")
    ev = r.json["events"][0]
    check_eq(ev.get("agent"), address, "newest agent_%s event's agent" % kind)
    return ev["id"]


def is_time(s):
    return isinstance(s, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s) is not None


def wait_log(h, pattern, secs=5):
    deadline = time.time() + secs
    while time.time() < deadline:
        m = re.search(pattern, h.server.log_text())
        if m:
            return m
        time.sleep(0.1)
    raise TestFailure("no log line matching %r; log: %s" % (pattern, h.server.log_tail(10)))


# ------------------------------------------------------------------ tests

@timeout(60)
def test_delete_webhook(h):
    """DELETE answers 204 and removes the webhook and its deliveries, pending ones too; 404 when there is none;
    an agent key gets 403."""
    a = agent_in(h, h.k2, "org2", "hook-del")
    r = h.request("POST", "/v1/keys", {"role": "agent", "name": "hook-del", "agent": a}, key=h.k2)
    check_status(r, 201, "agent key")
    put_hook(h, h.k2, "http://127.0.0.1:%d/nobody" % free_port(), "s-del")
    check_error(h.request("DELETE", HOOK, key=r.json["key"]), 403, what="DELETE webhook with an agent key")
    # A delivery to a port where nothing listens stays pending, retried.
    ev = toggle(h, h.k2, a)
    wait_delivery(h, h.k2, ev, "pending", 5)
    r = h.request("DELETE", HOOK, key=h.k2)
    check_status(r, 204, "DELETE webhook")
    check_eq(r.text, "", "DELETE webhook body")
    check_error(h.request("GET", HOOK, key=h.k2), 404, "webhook_not_found", what="GET after DELETE")
    check_error(h.request("DELETE", HOOK, key=h.k2), 404, "webhook_not_found", what="DELETE again")
    rec = HookReceiver()
    try:
        # An event while there is no webhook is sent nowhere, and the pending delivery went with the webhook:
        # a new webhook receives neither.
        toggle(h, h.k2, a, kill=False)
        put_hook(h, h.k2, rec.url(), "s-del2")
        check_eq(get_hook(h, h.k2)["deliveries"], [], "deliveries of the new webhook")
        time.sleep(2.5)
        check_eq(len(rec.deliveries(lambda j: j.get("agent") == a)), 0, "deliveries of events from before the PUT")
        ev2 = toggle(h, h.k2, a)
        d = rec.wait(1, lambda j: j.get("id") == ev2)
        check_eq(len(d), 1, "delivery of the event after the new PUT")
    finally:
        rec.close()
        h.request("DELETE", HOOK, key=h.k2)


@timeout(90)
def test_deliveries_shown_and_abandoned_logged(h):
    """GET shows the newest deliveries: delivered with its status, abandoned after the last attempt with the
    answer and the error; the abandonment's log line names the event, the host and the reason."""
    good = agent_in(h, h.k2, "org2", "hook-good")
    bad = agent_in(h, h.k2, "org2", "hook-bad")
    secret = "s-shown"
    rec = HookReceiver(answer=lambda j: 500 if j.get("agent") == bad else 200)
    try:
        put_hook(h, h.k2, rec.url("/shown"), secret)
        ev = toggle(h, h.k2, good)
        got = rec.wait(1, lambda j: j.get("id") == ev)
        check_eq(len(got), 1, "deliveries of the good event")
        t, path, hdrs, raw, j = got[0]
        check_eq((path, j.get("event_type"), j.get("agent"), j.get("org")), ("/shown", "agent_killed", good, "org2"),
                 "delivered body")
        check_webhook_signature(secret, hdrs, raw)
        d = wait_delivery(h, h.k2, ev, "delivered", 5)
        check_eq((d.get("event_type"), d.get("attempts"), d.get("last_status"), d.get("last_error")),
                 ("agent_killed", 1, 200, None), "delivered delivery")
        check(is_time(d.get("created_at")) and is_time(d.get("last_attempt_at")), "delivery times: %r" % d)
        check_eq(d.get("next_attempt_at"), None, "next_attempt_at of a delivered delivery")

        evb = toggle(h, h.k2, bad)
        d = wait_delivery(h, h.k2, evb, "abandoned", 40)
        check_eq((d.get("attempts"), d.get("last_status")), (MAX_ATTEMPTS, 500), "abandoned delivery")
        check("500" in (d.get("last_error") or ""), "last_error of an abandoned delivery: %r" % d)
        sent = rec.deliveries(lambda j: j.get("id") == evb)
        check_eq(len(sent), MAX_ATTEMPTS, "attempts the receiver saw")
        check(len({s[3] for s in sent}) == 1, "the attempts sent different bodies")
        for s in sent:
            check_webhook_signature(secret, s[2], s[3], "attempt of the abandoned delivery")
        wait_log(h, r"event=webhook_abandoned event_id=%d host=127\.0\.0\.1 .*reason=\"[^\"]*500" % evb)

        # The newest first, SHOWN of them.
        for i in range(SHOWN // 2 + 1):
            toggle(h, h.k2, good, kill=False)
            toggle(h, h.k2, good, kill=True)
        shown = get_hook(h, h.k2)["deliveries"]
        check_eq(len(shown), SHOWN, "deliveries shown")
        ids = [x.get("event_id") for x in shown]
        check_eq(ids, sorted(ids, reverse=True), "deliveries newest first")
        check(evb not in ids, "an older delivery is shown before the %d newest" % SHOWN)
    finally:
        rec.close()
        h.request("DELETE", HOOK, key=h.k2)


@timeout(120)
def test_delivery_survives_kill9(h):
    """A delivery not yet made when costmeshd is killed -9 is made after the restart, once."""
    a = agent_in(h, h.k2, "org2", "hook-crash")
    port = free_port()
    secret = "s-crash"
    put_hook(h, h.k2, "http://127.0.0.1:%d/crash" % port, secret)
    ev = toggle(h, h.k2, a)
    # Nothing listens yet: the first attempt fails and the delivery waits for its retry.
    deadline = time.time() + 10
    d = None
    while time.time() < deadline:
        d = delivery_of(h, h.k2, ev)
        if d and d.get("attempts", 0) >= 1 and d.get("last_error"):
            break
        time.sleep(0.05)
    check(d and d.get("status") == "pending" and d.get("last_error"), "delivery after a refused attempt: %r" % d)
    bad = h.server.kill9()
    check(not bad, "sanitizer report before the kill: %s" % bad)
    s = Server(h, h.server.admin_key, h.server.org)
    h.server = s
    s.start()
    rec = HookReceiver(port=port)
    try:
        got = rec.wait(1, lambda j: j.get("id") == ev, secs=45)
        check_eq(len(got), 1, "deliveries of the event after the restart")
        check_webhook_signature(secret, got[0][2], got[0][3])
        wait_delivery(h, h.k2, ev, "delivered", 5)
        time.sleep(1.5)
        check_eq(len(rec.deliveries(lambda j: j.get("id") == ev)), 1, "deliveries of the event in the end")
    finally:
        rec.close()
        h.request("DELETE", HOOK, key=h.k2)


@timeout(90)
def test_two_replicas_deliver_each_once(h):
    """Two replicas claim from one outbox: every event recorded through either is delivered, once."""
    view = PortView(h, free_port())
    second = Server(view, h.server.admin_key, h.server.org)
    second.start()
    rec = HookReceiver()
    try:
        put_hook(h, h.k2, rec.url("/replicas"), "s-repl")
        agents = [agent_in(h, h.k2, "org2", "hook-repl") for _ in range(2)]
        ids = []
        for i in range(15):
            for tgt, a in ((h, agents[0]), (view, agents[1])):
                ids.append(toggle(tgt, h.k2, a, kill=i % 2 == 0))
        rec.wait(len(ids), lambda j: j.get("id") in ids, secs=20)
        time.sleep(1.5)
        counts = Counter(g[4]["id"] for g in rec.deliveries(lambda j: j.get("id") in ids))
        check_eq(sorted(counts), sorted(ids), "events delivered")
        check(all(n == 1 for n in counts.values()), "deliveries per event: %r" % {k: n for k, n in counts.items() if n > 1})
    finally:
        rec.close()
        h.request("DELETE", HOOK, key=h.k2)
        problems = second.stop()
    check(not problems, "second replica stop: %s" % "; ".join(problems))


class DeadListener:
    """Accepts connections and never answers; counts them."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.conns.append(c)

    def close(self):
        self.stop = True
        self.thread.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


@timeout(120)
def test_dead_webhook_does_not_delay_another_org(h):
    """org1's webhook accepts and never answers; org1's events before and after org2's do not hold org2's
    delivery back, org1 gets at most PER_ORG connections at a time, and none of its deliveries is dropped."""
    dead = DeadListener()
    rec = HookReceiver()
    try:
        a1 = agent_in(h, h.k1, "org1", "hook-dead")
        a2 = agent_in(h, h.k2, "org2", "hook-alive")
        put_hook(h, h.k1, "http://127.0.0.1:%d/dead" % dead.port, "s-dead")
        put_hook(h, h.k2, rec.url("/alive"), "s-alive")
        kill = True
        for _ in range(10):
            toggle(h, h.k1, a1, kill)
            kill = not kill
        t0 = time.time()
        ev = toggle(h, h.k2, a2)
        for _ in range(10):
            toggle(h, h.k1, a1, kill)
            kill = not kill
        got = rec.wait(1, lambda j: j.get("id") == ev, secs=8)
        check(got, "org2's delivery not made within 8 s next to org1's dead webhook (%.1fs)" % (time.time() - t0))
        check(len(dead.conns) <= PER_ORG, "org1's dead webhook got %d connections; want at most %d at a time"
              % (len(dead.conns), PER_ORG))
        wait_delivery(h, h.k2, ev, "delivered", 5)
        mine = get_hook(h, h.k1)["deliveries"]
        check_eq(len(mine), 20, "org1's deliveries shown")
        check(all(d.get("status") == "pending" for d in mine), "org1's deliveries: %r" % mine)
    finally:
        for key in (h.k1, h.k2):
            h.request("DELETE", HOOK, key=key)
        dead.close()
        rec.close()


@timeout(150)
def test_internal_addresses_refused(h):
    """Without COSTMESH_WEBHOOK_ALLOW a webhook on loopback, in any spelling, is refused when costmeshd would
    connect: the delivery is abandoned at once with the reason, logged with the event and the host, and the
    receiver sees nothing. With the allow list the same URL is delivered."""
    rec = HookReceiver()
    h.restart_server(env={"COSTMESH_WEBHOOK_ALLOW": None})
    try:
        a = agent_in(h, h.k2, "org2", "hook-ssrf")
        kill = True
        for host in ("127.0.0.1", "2130706433", "[::ffff:127.0.0.1]", "localhost", "0x7f.1", "0.0.0.0"):
            put_hook(h, h.k2, rec.url("/ssrf", host=host), "s-ssrf")
            ev = toggle(h, h.k2, a, kill)
            kill = not kill
            d = wait_delivery(h, h.k2, ev, "abandoned", 10)
            check_eq((d.get("attempts"), d.get("last_status")), (1, None), "refused delivery to %s" % host)
            err = d.get("last_error") or ""
            check("refused" in err and ("loopback" in err or "unspecified" in err),
                  "last_error of the delivery to %s: %r" % (host, err))
            wait_log(h, r"event=webhook_abandoned event_id=%d host=\S+ .*reason=\"[^\"]*refused" % ev)
        check_eq(rec.got, [], "requests that reached the loopback receiver")
    finally:
        h.restart_server()
    try:
        put_hook(h, h.k2, rec.url("/allowed"), "s-ssrf")
        ev = toggle(h, h.k2, a, kill)
        check_eq(len(rec.wait(1, lambda j: j.get("id") == ev)), 1, "delivery with COSTMESH_WEBHOOK_ALLOW=127.0.0.0/8")
    finally:
        rec.close()
        h.request("DELETE", HOOK, key=h.k2)
