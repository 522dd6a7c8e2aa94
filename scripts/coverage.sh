#!/bin/sh
# Print the share of the lines of server/*.c that ran, from the gcov counters
# a --coverage build left under BUILD/obj/server (make coverage):
#
#   unit: 25.1% of 9876 lines of server/*.c (2479)
#
# Usage: sh scripts/coverage.sh BUILD LABEL
# A file whose counters are missing (it never ran) counts as 0 %.
set -eu
[ $# -eq 2 ] || { echo "usage: sh scripts/coverage.sh BUILD LABEL" >&2; exit 2; }
obj="$1/obj/server"
[ -d "$obj" ] || { echo "coverage: no $obj: build with --coverage first (make coverage)" >&2; exit 1; }
# gcov -n prints, for each source file it reads, "File 'x'" then "Lines
# executed:P% of N"; headers inlined into a .c come too and are left out.
gcov -n -o "$obj" server/*.c 2>/dev/null | awk -v label="$2" '
    /^File / { f = $2; gsub("\047", "", f); next }
    /^Lines executed:/ && f ~ /^server\/[^\/]*\.c$/ {
        pct = $2; sub(/^executed:/, "", pct); sub(/%$/, "", pct)
        total += $4; ran += pct * $4 / 100; f = ""
    }
    END {
        if (!total) { print "coverage: gcov read no server/*.c line" > "/dev/stderr"; exit 1 }
        printf "%s: %.1f%% of %d lines of server/*.c (%d)\n", label, 100 * ran / total, total, ran + 0.5
    }'
