#!/usr/bin/env python3
"""costmesh integration tests: python3 tests/integration/run.py --build BUILD_DIR

Starts a throwaway Redis + PostgreSQL (scripts/services.sh) and costmeshd,
runs every test_* function of tests/integration/test_*.py (files in name
order, functions in source order), prints one PASS/FAIL line per test and
then "N passed, M failed". Exit status 1 when anything failed.

  --only SUBSTR   run only tests whose name contains SUBSTR (repeatable)
  --suite NAME    run the tests of tests/integration/NAME/ instead (e.g. scale:
                  replicas behind nginx, backup and restore; `make scale`)
  CM_KEEP_DATA=1  keep the temp data dir (logs) for inspection
  CM_TEST_LOG_LEVEL=info  costmeshd log level (default warn)
"""

import argparse
import glob
import importlib.util
import os
import signal
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from harness import Harness, HarnessError, TestFailure, ConnError  # noqa: E402

DEFAULT_TIMEOUT = 60


class Interrupted(BaseException):
    pass


def discover(folder):
    tests = []
    for path in sorted(glob.glob(os.path.join(folder, "test_*.py"))):
        name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        fns = [f for n, f in vars(mod).items() if n.startswith("test_") and callable(f)
               and getattr(f, "__module__", None) == name]
        fns.sort(key=lambda f: f.__code__.co_firstlineno)
        for f in fns:
            tests.append(("%s.%s" % (name[len("test_"):], f.__name__[len("test_"):]), f))
    return tests


def run_one(h, fn, timeout):
    """Runs fn(h) in a thread, bounded; returns None (pass) or a reason."""
    result = {}

    def body():
        try:
            fn(h)
            result["ok"] = True
        except AssertionError as e:  # TestFailure and plain asserts
            result["err"] = str(e) or "assertion failed"
        except ConnError as e:
            result["err"] = "no HTTP answer: %s" % e
        except Exception as e:  # noqa: BLE001
            result["err"] = "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc(limit=6))

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        return "timed out after %ds" % timeout
    return None if result.get("ok") else result.get("err", "unknown error")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True, help="directory holding costmeshd")
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--suite", help="a folder under tests/integration holding another suite")
    args = ap.parse_args()

    def on_term(signum, frame):
        raise Interrupted()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    passed = failed = 0
    harness_failed = False
    h = None
    start = time.time()
    try:
        folder = os.path.join(HERE, args.suite) if args.suite else HERE
        if args.suite:
            sys.path.insert(0, folder)
        tests = discover(folder)
        if args.only:
            tests = [t for t in tests if any(o in t[0] for o in args.only)]
        h = Harness(args.build)
        h.setup()
        for name, fn in tests:
            t0 = time.time()
            timeout = getattr(fn, "timeout", DEFAULT_TIMEOUT)
            err = run_one(h, fn, timeout)
            # A sanitizer report during the test fails it even if the
            # server kept going.
            if h.server is not None:
                bad = h.server.sanitizer_lines()
                seen = getattr(h.server, "_reported", 0)
                if len(bad) > seen:
                    h.server._reported = len(bad)
                    err = (err + "; " if err else "") + "sanitizer report: " + " | ".join(bad[seen:seen + 3])
            try:
                dead = h.ensure_server()
            except HarnessError as e:
                dead = None
                err = (err + "; " if err else "") + "could not restart the server: %s" % e
                print("FAIL %s (%.1fs): %s" % (name, time.time() - t0, err.replace("\n", "\n    ")), flush=True)
                failed += 1
                harness_failed = True
                break
            if dead:
                err = (err + "; " if err else "") + dead
            if err:
                failed += 1
                print("FAIL %s (%.1fs): %s" % (name, time.time() - t0, err.replace("\n", "\n    ")), flush=True)
            else:
                passed += 1
                print("PASS %s (%.1fs)" % (name, time.time() - t0), flush=True)
        # Final graceful stop: exit 0 and a clean sanitizer log.
        if h.server is not None and h.server.proc is not None:
            problems = h.server.stop()
            if problems:
                failed += 1
                print("FAIL shutdown.final_sigterm_clean: %s" % "; ".join(problems), flush=True)
            else:
                passed += 1
                print("PASS shutdown.final_sigterm_clean", flush=True)
    except Interrupted:
        print("harness: interrupted", flush=True)
        harness_failed = True
    except HarnessError as e:
        print("harness: error: %s" % e, flush=True)
        harness_failed = True
    except Exception:  # noqa: BLE001
        print("harness: error: %s" % traceback.format_exc(), flush=True)
        harness_failed = True
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if h is not None:
            for e in h.teardown():
                print("harness: teardown: %s" % e, flush=True)
    print("harness: %.1fs" % (time.time() - start), flush=True)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed or harness_failed else 0


if __name__ == "__main__":
    sys.exit(main())
