#!/usr/bin/env python3
"""Line coverage of C sources from gcc --coverage counters, summed exactly.

  python3 scripts/coverage.py [--files] TITLE OBJDIR SOURCE...

Asks gcov (JSON, on stdout: it writes no files) for each SOURCE, whose
counters are OBJDIR/<name>.gcno and .gcda, and prints the total share of its
executable lines that ran, under TITLE; with --files, one line per source
first. A source without counters yet (never run) counts all its lines as
not run. Only the lines of SOURCE itself count, not those of the headers
it includes.
"""

import gzip
import json
import os
import subprocess
import sys


def lines_of(objdir, source):
    """{line number: ran} for the executable lines of source."""
    p = subprocess.run(["gcov", "--json-format", "--stdout", "--object-directory", objdir, source],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if p.returncode != 0:
        sys.exit("coverage: gcov %s: %s" % (source, p.stderr.decode("utf-8", "replace").strip()))
    out = p.stdout
    if out[:2] == b"\x1f\x8b":
        out = gzip.decompress(out)
    ran = {}
    for doc in out.decode("utf-8").splitlines():
        if not doc.strip():
            continue
        for f in json.loads(doc)["files"]:
            if os.path.normpath(f["file"]) != os.path.normpath(source):
                continue
            for l in f["lines"]:
                # A line holding several functions (or an inlined copy) is
                # listed once per function: it ran if any of them did.
                ran[l["line_number"]] = ran.get(l["line_number"], False) or l["count"] > 0
    return ran


def pct(n, d):
    return 100.0 * n / d if d else 0.0


def main(argv):
    files = "--files" in argv
    args = [a for a in argv if a != "--files"]
    if len(args) < 3:
        sys.exit(__doc__)
    title, objdir, sources = args[0], args[1], sorted(args[2:])
    total_run = total = 0
    rows = []
    for src in sources:
        ran = lines_of(objdir, src)
        n, r = len(ran), sum(ran.values())
        total, total_run = total + n, total_run + r
        rows.append((src, r, n))
    if files:
        width = max(len(s) for s in sources)
        print("%-*s  %6s  %6s  %6s" % (width, "file", "lines", "run", "cover"))
        for src, r, n in rows:
            print("%-*s  %6d  %6d  %5.1f%%" % (width, src, n, r, pct(r, n)))
    print("coverage: %s: %.1f%% of %d lines of %d files (%d run)"
          % (title, pct(total_run, total), total, len(sources), total_run))


if __name__ == "__main__":
    main(sys.argv[1:])
