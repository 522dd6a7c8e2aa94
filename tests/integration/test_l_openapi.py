"""docs/openapi.yaml is the API as costmeshd serves it: every route of the
route table (`costmeshd --routes`) and no other, each path parameter
declared, every $ref resolving, every error code the server can answer
listed, the version the server's; and GET /openapi.yaml serves the file."""

import glob
import os
import re
import subprocess

from harness import REPO, check, check_eq, check_error, check_status, load_yaml, timeout

DOC = os.path.join(REPO, "docs", "openapi.yaml")
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def load():
    return load_yaml(DOC)


def run(h, flag):
    p = subprocess.run([h.binary, flag], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    check_eq(p.returncode, 0, "costmeshd %s exit code (stderr %r)" % (flag, p.stderr[-300:]))
    return p.stdout.decode()


def route_table(h):
    """{(METHOD, pattern)} of costmeshd --routes, '*' for a path parameter."""
    out = set()
    for line in run(h, "--routes").splitlines():
        m = re.fullmatch(r"([A-Z]+) (/\S*)", line)
        check(m, "costmeshd --routes printed %r" % line)
        out.add((m.group(1), m.group(2)))
    check(len(out) > 20, "costmeshd --routes printed only %d routes" % len(out))
    return out


def pattern(path):
    return re.sub(r"\{[^/{}]+\}", "*", path)


def test_openapi_matches_route_table(h):
    """Every route of the table is documented with its method, and every
    documented operation is a route (HEAD is implied by GET, never listed)."""
    doc = load()
    table = route_table(h)
    documented = set()
    for path, item in doc["paths"].items():
        for m in item:
            if m in METHODS:
                documented.add((m.upper(), pattern(path)))
    missing = sorted(table - documented)
    extra = sorted(documented - table)
    check(not missing and not extra,
          "docs/openapi.yaml and the route table differ:\n  not documented: %s\n  documented, not routed: %s" % (
              ", ".join("%s %s" % r for r in missing) or "-", ", ".join("%s %s" % r for r in extra) or "-"))


def resolve(doc, ref):
    check(ref.startswith("#/"), "$ref %r is not local" % ref)
    node = doc
    for part in ref[2:].split("/"):
        check(isinstance(node, dict) and part in node, "$ref %r does not resolve" % ref)
        node = node[part]
    return node


def refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def test_openapi_is_consistent(h):
    """The document holds together: OpenAPI 3.0, info.version is costmeshd's,
    every $ref resolves, operation ids are unique, every operation answers
    something, and each path's parameters are exactly the ones its template
    names."""
    doc = load()
    check(str(doc.get("openapi", "")).startswith("3.0."), "openapi: %r" % doc.get("openapi"))
    version = run(h, "--version").split()[-1]
    check_eq(str(doc["info"]["version"]), version, "info.version against costmeshd --version")
    for ref in set(refs(doc)):
        resolve(doc, ref)
    ids = []
    for path, item in doc["paths"].items():
        named = set(re.findall(r"\{([^/{}]+)\}", path))
        for m, op in item.items():
            if m not in METHODS:
                continue
            what = "%s %s" % (m.upper(), path)
            ids.append(op.get("operationId"))
            check(op.get("responses"), "%s: no responses" % what)
            params = [resolve(doc, p["$ref"]) if "$ref" in p else p
                      for p in item.get("parameters", []) + op.get("parameters", [])]
            declared = {p["name"] for p in params if p.get("in") == "path"}
            check_eq(declared, named, "%s: path parameters declared" % what)
    check(None not in ids and len(ids) == len(set(ids)), "operationIds missing or repeated: %r" % ids)


def server_error_codes():
    """Every error code a literal in server/*.c answers with."""
    codes = set()
    for path in glob.glob(os.path.join(REPO, "server", "*.c")):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        codes |= set(re.findall(r'\b[1-5][0-9]{2}, *"([a-z][a-z_]+)"', text))
        codes |= set(re.findall(r'cm_buf_add_error\([^,]+, *"([a-z][a-z_]+)"', text))
        codes |= set(re.findall(r'\\"code\\":\\"([a-z][a-z_]+)\\"', text))
    return codes


def test_openapi_lists_every_error_code(h):
    """The Error schema names every code the server can answer."""
    doc = load()
    listed = set(re.findall(r"`([a-z][a-z_]+)`", doc["components"]["schemas"]["Error"]["properties"]["error"]
                            ["properties"]["code"]["description"]))
    codes = server_error_codes()
    check(len(codes) > 15, "found only %d error codes in server/*.c: %r" % (len(codes), sorted(codes)))
    missing = sorted(codes - listed)
    check(not missing, "error codes the server answers but docs/openapi.yaml does not list: %s" % ", ".join(missing))


@timeout(60)
def test_openapi_served(h):
    """GET /openapi.yaml is docs/openapi.yaml as read at start (text/yaml);
    without the file it is a 404 with the JSON error body, logged at start."""
    with open(DOC, "rb") as f:
        want = f.read()
    r = h.request("GET", "/openapi.yaml")
    check_status(r, 200, "GET /openapi.yaml")
    check_eq(r.headers.get("content-type"), "text/yaml; charset=utf-8", "Content-Type")
    check(r.text.encode("utf-8") == want, "GET /openapi.yaml differs from docs/openapi.yaml")
    try:
        h.restart_server({"COSTMESH_OPENAPI_FILE": os.path.join(h.data_dir, "no-such.yaml"),
                          "COSTMESH_LOG_LEVEL": "info"})
        check_error(h.request("GET", "/openapi.yaml"), 404, "not_found", what="GET /openapi.yaml without the file")
        check("event=openapi_missing" in h.server.log_text(), "the missing document is not logged: %s" %
              h.server.log_tail(5))
    finally:
        h.restart_server()
