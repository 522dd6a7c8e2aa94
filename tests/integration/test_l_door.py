"""At the door: what costmeshd answers before a request reaches a handler.
A body declared over the limit is refused at once and the connection closed
unread; headers over the limit get the JSON error body; HEAD works wherever
GET does; `costmeshd --version`; an empty key name is a 400."""

import json
import re
import subprocess
import time

from harness import (accepted, check, check_eq, check_error, check_status, enc, hb_id, hb_obj, new_agent,
                     exchange, timeout, TestFailure)


def split_reply(raw, what):
    """(status, lower-cased headers, body) of one HTTP/1.1 reply."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    check(sep, "%s: no complete reply: %.300r" % (what, raw))
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    check(m, "%s: not an HTTP status line: %.100r" % (what, lines[0]))
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(m.group(1)), headers, body


def json_error(body, what):
    try:
        j = json.loads(body.decode("utf-8"))
    except ValueError as e:
        raise TestFailure("%s: body is not JSON (%s): %.300r" % (what, e, body)) from None
    e = j.get("error") if isinstance(j, dict) else None
    check(isinstance(e, dict) and e.get("code") and e.get("message"), "%s: no JSON error body: %.300r" % (what, body))
    return e


def metric(h, route, status):
    """costmesh_http_requests_total of route (a regular expression) and status, summed."""
    r = h.request("GET", "/metrics")
    check_status(r, 200, "/metrics")
    return sum(int(n) for n in re.findall(r'^costmesh_http_requests_total\{route="(?:%s)",status="%s"\} (\d+)$'
                                           % (route, status), r.text, re.M))


# ------------------------------------------------------------------ body limit

@timeout(60)
def test_declared_oversize_body_refused_at_once(h):
    """A Content-Length over 1 MiB is answered 413 (JSON) as soon as the
    headers are in, without waiting for the body, and the connection is
    closed: with 60 kB of a declared 4 MiB sent, and with the headers alone
    (the client waits for 100 Continue, which must not come)."""
    head = ("POST /v1/mesh/heartbeat HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n" % (h.k1, 4 * 1024 * 1024)).encode()
    cases = {
        "4 MiB declared, 60 kB sent": head + b"\r\n" + b'{"heartbeats":[' + b" " * 60000,
        "4 MiB declared, headers only, Expect: 100-continue": head + b"Expect: 100-continue\r\n\r\n",
        "4 MiB declared on an unknown path": head.replace(b"/v1/mesh/heartbeat", b"/v1/nope") + b"\r\n",
    }
    before = metric(h, "heartbeat", 413)
    for what, data in cases.items():
        t0 = time.monotonic()
        raw, closed, first = exchange(h, data, limit=8.0)
        dt = time.monotonic() - t0
        status, headers, body = split_reply(raw, what)
        check_eq(status, 413, "%s: status" % what)
        check(first is not None and first < 2.0, "%s: the 413 took %.2fs" % (what, first or dt))
        e = json_error(body, what)
        check_eq(e["code"], "payload_too_large", "%s: error.code" % what)
        check_eq(len(body), int(headers.get("content-length", "-1")), "%s: Content-Length of the 413" % what)
        check("close" in headers.get("connection", "").lower(), "%s: no Connection: close: %r" % (what, headers))
        check(closed and dt < 4.0, "%s: the connection stayed open (%.2fs, closed=%s)" % (what, dt, closed))
    check_eq(metric(h, "heartbeat", 413) - before, 2, "413s counted under route heartbeat")


@timeout(60)
def test_body_limit_itself_unchanged(h):
    """A declared length of exactly 1 MiB is read (and refused by the
    decoder as JSON, not by the door); 1 MiB + 1 is refused at once."""
    limit = 1024 * 1024
    for n, want in ((limit, 400), (limit + 1, 413)):
        body = b"[" + b" " * (n - 2) + b"]"
        r = h.request("POST", "/v1/mesh/heartbeat", body if n == limit else None, key=h.k1,
                      headers=None if n == limit else {"Content-Length": str(n)})
        check_status(r, want, "POST of %d bytes" % n)
        r.error()


# ------------------------------------------------------------------ header limit

@timeout(90)
def test_oversized_headers_get_json(h):
    """Headers over the limits (32 KiB, 100 lines, 8 KiB of request target)
    are refused with the JSON error body, 431 (414 for the target), and the
    connection is closed; up to the limits they are served. Past about
    126 KiB libmicrohttpd answers 431 by itself (test_h_hostile covers it)."""
    def req(target, extra):
        return (b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nx-api-key: " + h.k1.encode() + b"\r\n" +
                extra + b"\r\n")
    big = 40 * 1024
    cases = [
        ("one 40 KiB header", req(b"/v1/mesh/agents", b"X-Big: " + b"a" * big + b"\r\n"), 431,
         "headers_too_large"),
        ("600 headers of 70 bytes", req(b"/healthz", b"".join(b"X-H-%03d: %s\r\n" % (i, b"v" * 60)
                                                              for i in range(600))), 431, "headers_too_large"),
        ("101 headers of 10 bytes", req(b"/healthz", b"".join(b"X-%03d: v\r\n" % i for i in range(101))), 431,
         "headers_too_large"),
        ("1000 headers of 6 bytes", req(b"/healthz", b"a: b\r\n" * 1000), 431, "headers_too_large"),
        ("a 40 KiB cookie", req(b"/", b"Cookie: " + b"; ".join(b"c%d=%s" % (i, b"z" * 60)
                                                                for i in range(600)) + b"\r\n"), 431,
         "headers_too_large"),
        ("a 40 KiB query", req(b"/v1/mesh/agents?x=" + b"q" * big, b""), 414, "uri_too_long"),
        ("a 40 KiB path", req(b"/v1/mesh/agents/" + b"p" * big, b""), 414, "uri_too_long"),
        ("one 100 KiB header", req(b"/healthz", b"X-Big: " + b"b" * (100 * 1024) + b"\r\n"), 431,
         "headers_too_large"),
    ]
    for what, data, want, code in cases:
        raw, closed, _ = exchange(h, data)
        status, headers, body = split_reply(raw, what)
        check_eq(status, want, "%s: status" % what)
        e = json_error(body, what)
        check_eq(e["code"], code, "%s: error.code" % what)
        check(headers.get("content-type", "").startswith("application/json"), "%s: content-type %r" % (
            what, headers.get("content-type")))
        check(closed, "%s: the connection stayed open" % what)
    # Just under the limits: served.
    r = h.request("GET", "/healthz", headers={"X-Fill": "f" * (30 * 1024)})
    check_status(r, 200, "30 KiB of headers")
    r = h.request("GET", "/healthz", headers={"X-%02d" % i: "v" for i in range(90)})
    check_status(r, 200, "90 header lines")
    r = h.request("GET", "/v1/mesh/agents?cursor=" + "c" * (7 * 1024), key=h.k1)
    check_error(r, 400, "invalid_field", "cursor", what="7 KiB query")
    check(metric(h, ".*", 431) >= 4, "431s counted in /metrics")


# ------------------------------------------------------------------ HEAD

def raw_head(h, path, key=None):
    """HEAD on a fresh connection: (status, headers, bytes after the head)."""
    data = b"HEAD " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if key:
        data += b"x-api-key: " + key.encode() + b"\r\n"
    raw, closed, _ = exchange(h, data + b"\r\n")
    check(closed, "HEAD %s: the connection stayed open" % path)
    return split_reply(raw, "HEAD " + path)


@timeout(90)
def test_head_on_get_routes(h):
    """HEAD answers what GET answers, without the body: same status and
    headers (Content-Length of the GET body), counted under the same route;
    it never runs another method's handler (HEAD /v1/keys creates no key)."""
    a = new_agent(tag="head")
    accepted(h.hb(hb_obj(a, "0.25", hb_id()), key=h.k1), 1, 0, "register")
    keys_before = h.request("GET", "/v1/keys", key=h.k1).json["keys"]
    # (path, key, route, whether GET's body is the same twice)
    cases = [("/healthz", None, "healthz", True), ("/readyz", None, "readyz", True), ("/", None, "ui", True),
             ("/ui/app.js", None, "ui", True), ("/openapi.yaml", None, "openapi", True),
             ("/v1/keys", h.k1, "keys", True), ("/v1/mesh/agents/%s" % enc(a), h.k1, "agent", False),
             ("/v1/mesh/agents/%s/spend" % enc(a), h.k1, "agent_spend", False),
             ("/v1/mesh/events?limit=1", h.k1, "events", False)]
    for path, key, route, stable in cases:
        before = metric(h, route, 200)
        g = h.request("GET", path, key=key)
        check_status(g, 200, "GET " + path)
        status, headers, rest = raw_head(h, path, key)
        check_eq(status, 200, "HEAD %s: status" % path)
        check_eq(rest, b"", "HEAD %s: bytes after the head" % path)
        check_eq(headers.get("content-type"), g.headers.get("content-type"), "HEAD %s: Content-Type" % path)
        if stable:
            check_eq(headers.get("content-length"), g.headers.get("content-length"), "HEAD %s: Content-Length" % path)
        check_eq(metric(h, route, 200) - before, 2, "HEAD and GET %s counted under route %s" % (path, route))
    check_eq(len(h.request("GET", "/v1/keys", key=h.k1).json["keys"]), len(keys_before), "keys after HEAD /v1/keys")
    # Errors keep their status; the body is left out.
    status, headers, rest = raw_head(h, "/v1/mesh/heartbeat", h.k1)
    check_eq(status, 405, "HEAD on a POST route")
    check_eq(headers.get("allow"), "POST", "HEAD on a POST route: Allow")
    check_eq(rest, b"", "HEAD on a POST route: body")
    status, _, rest = raw_head(h, "/v1/keys")
    check_eq(status, 401, "HEAD /v1/keys without a key")
    check_eq(rest, b"", "HEAD 401: body")
    r = h.request("POST", "/healthz")
    check_error(r, 405, "method_not_allowed", what="POST /healthz")
    check_eq(r.headers.get("allow"), "GET, HEAD", "POST /healthz: Allow")


# ------------------------------------------------------------------ version, key names

def test_version(h):
    """costmeshd --version prints its version and exits 0; /healthz says the same."""
    p = subprocess.run([h.binary, "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    check_eq(p.returncode, 0, "costmeshd --version exit code (stderr %r)" % p.stderr[-300:])
    out = p.stdout.decode()
    m = re.fullmatch(r"costmeshd (\d+\.\d+\.\d+)\n", out)
    check(m, "costmeshd --version printed %r" % out)
    r = h.request("GET", "/healthz")
    check_status(r, 200, "/healthz")
    check_eq(r.json, {"status": "ok", "version": m.group(1)}, "/healthz body")
    p = subprocess.run([h.binary, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    check("--version" in p.stdout.decode() and "--routes" in p.stdout.decode(),
          "--help does not name --version and --routes: %r" % p.stdout[:400])


def test_key_name_required(h):
    """A key's name tells it apart in the list: empty or missing is a 400
    naming the field, and no key is made."""
    before = len(h.request("GET", "/v1/keys", key=h.k1).json["keys"])
    for body in ({"role": "agent", "name": ""}, {"role": "admin"}, {"role": "agent", "name": None}):
        r = h.request("POST", "/v1/keys", body, key=h.k1)
        check_error(r, 400, "invalid_field", "name", what="POST /v1/keys %r" % body)
    check_eq(len(h.request("GET", "/v1/keys", key=h.k1).json["keys"]), before, "keys after the refusals")

