"""docker-compose.yml and deploy/Dockerfile, checked statically: no image can
be pulled or built where the tests run, so these read the files (the compose
file with PyYAML) for what `docker compose` and the image must do, and run
the costmeshd service's entrypoint script with a stand-in costmeshd."""

import os
import re
import subprocess
import tempfile

from harness import REPO, check, check_eq, load_yaml

COMPOSE = os.path.join(REPO, "docker-compose.yml")
DOCKERFILE = os.path.join(REPO, "deploy", "Dockerfile")


def compose():
    return load_yaml(COMPOSE)


def strings(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)
    elif isinstance(node, str):
        yield node


def stages():
    """The Dockerfile's stages, each as its list of instructions (continued
    lines joined), keyed by the stage's name (or its index)."""
    with open(DOCKERFILE, encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", f.read())
    out, cur = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            cur = out.setdefault(m.group(1) or str(len(out)), [])
        if cur is not None:
            cur.append(line)
    return out


def runtime_stage():
    """The last stage: what the image is."""
    return list(stages().values())[-1]


def test_compose_needs_no_variable_for_down_and_logs(h):
    # ${VAR:?msg} or ${VAR?msg} makes every compose command fail while VAR
    # is unset, `down` and `logs` included.
    required = [s for s in strings(compose()) if re.search(r"\$\{\w+:?\?", s)]
    check(not required, "docker-compose.yml requires variables for every command: %s" % required)


def test_compose_costmeshd_refuses_to_start_without_admin_key(h):
    svc = compose()["services"]["costmeshd"]
    check_eq(svc["environment"].get("COSTMESH_ADMIN_KEY"), "${COSTMESH_ADMIN_KEY:-}",
             "costmeshd's COSTMESH_ADMIN_KEY is passed through")
    entry = svc.get("entrypoint")
    check(isinstance(entry, list) and entry, "costmeshd has no entrypoint that checks COSTMESH_ADMIN_KEY: %r" % entry)
    # Compose turns $$ into $ and substitutes a lone $ itself: the script's
    # own variables must all be written $$.
    lone = [s for s in entry if "$" in s.replace("$$", "")]
    check(not lone, "entrypoint has $ that compose would substitute: %r" % lone)
    argv = [s.replace("$$", "$") for s in entry] + ["--version"]
    with tempfile.TemporaryDirectory() as d:
        stub = os.path.join(d, "costmeshd")
        with open(stub, "w") as f:
            f.write('#!/bin/sh\necho "costmeshd ran with $*"\n')
        os.chmod(stub, 0o755)
        env = {k: v for k, v in os.environ.items() if k != "COSTMESH_ADMIN_KEY"}
        env["PATH"] = d + os.pathsep + env.get("PATH", "")
        for key in (None, ""):
            if key is not None:
                env["COSTMESH_ADMIN_KEY"] = key
            r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)
            check(r.returncode != 0 and "COSTMESH_ADMIN_KEY" in r.stderr and "ran" not in r.stdout,
                  "COSTMESH_ADMIN_KEY=%r: rc %d, stdout %r, stderr %r" % (key, r.returncode, r.stdout, r.stderr))
        env["COSTMESH_ADMIN_KEY"] = "k" * 48
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)
        check_eq((r.returncode, r.stdout.strip()), (0, "costmeshd ran with --version"),
                 "entrypoint with a key set (stderr %r)" % r.stderr)


def test_compose_publishes_on_loopback_unless_configured(h):
    published = 0
    for name, svc in compose()["services"].items():
        for p in svc.get("ports") or []:
            published += 1
            host_ip = p.get("host_ip") if isinstance(p, dict) else None
            if not isinstance(p, dict):
                # [HOST_IP:]PUBLISHED:TARGET, where HOST_IP may be ${VAR:-default}
                m = re.fullmatch(r"(?:(\$\{\w+:-[^}]*\}|[0-9.]+):)?\d+:\d+(?:/\w+)?", str(p))
                check(m is not None, "%s: port %r is not HOST_IP:PUBLISHED:TARGET" % (name, p))
                host_ip = m.group(1)
            default = re.fullmatch(r"\$\{\w+:-([^}]*)\}", host_ip or "")
            check_eq(default.group(1) if default else host_ip, "127.0.0.1",
                     "%s publishes %r on (by default)" % (name, p))
    check(published > 0, "docker-compose.yml publishes no port")


def test_compose_costmeshd_healthcheck_asks_readyz(h):
    svc = compose()["services"]["costmeshd"]
    test = (svc.get("healthcheck") or {}).get("test")
    check(isinstance(test, list) and test[:1] == ["CMD"], "costmeshd has no CMD health check: %r" % test)
    port = svc["environment"]["COSTMESH_LISTEN"].rsplit(":", 1)[1]
    check("http://127.0.0.1:%s/readyz" % port in test, "the health check does not ask /readyz on port %s: %r" % (port, test))
    # The program it runs must be in the image.
    installs = " ".join(l for l in runtime_stage() if "apt-get install" in l).split()
    check(test[1] in installs, "the image does not install %s, which the health check runs" % test[1])


def test_image_carries_costmeshctl(h):
    st = stages()
    build = st.get("build") or []
    check(any(l.startswith("RUN") and "make" in l and "build/costmeshctl" in l for l in build),
          "the build stage does not build costmeshctl")
    for src in ("ctl/", "mk/ctl.mk"):
        check(any(re.match(r"COPY\s+(\S+\s+)*%s\s" % re.escape(src), l) for l in build),
              "the build stage does not copy %s" % src)
    check(any(re.match(r"COPY\s+--from=build\s.*/build/costmeshctl\s.*/usr/local/bin/?$", l) for l in runtime_stage()),
          "the image has no /usr/local/bin/costmeshctl")


def test_image_serves_openapi(h):
    """The image carries docs/openapi.yaml and costmeshd is told where."""
    rt = runtime_stage()
    m = [re.match(r"COPY\s+docs/openapi\.yaml\s+(\S+)$", l) for l in rt]
    dest = next((x.group(1) for x in m if x), None)
    check(dest, "the image does not copy docs/openapi.yaml")
    path = dest + "openapi.yaml" if dest.endswith("/") else dest
    env = " ".join(l for l in rt if l.startswith("ENV"))
    check(re.search(r"\bCOSTMESH_OPENAPI_FILE=%s(\s|$)" % re.escape(path), env),
          "the image does not set COSTMESH_OPENAPI_FILE=%s: %r" % (path, env))
