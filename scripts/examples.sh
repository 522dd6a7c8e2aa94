#!/bin/sh
# Print the README's first examples, the ones `make run` shows, so that the
# README and `make run` never drift apart: every ```sh block of README.md
# preceded by the line "<!-- make run prints this -->", in order.
#
#   sh scripts/examples.sh [ORG]
#
# The examples use $BASE and $ADMIN_KEY, and agents of the org "default";
# ORG (default: default) replaces it, since an admin key acts in its own org.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ORG=${1:-default}

awk -v org="$ORG" '
    $0 == "<!-- make run prints this -->" { marked = 1; next }
    marked && /^```/ {
        if (inside) { marked = 0; inside = 0; print ""; found++ } else inside = 1
        next
    }
    inside {
        gsub(/agent:\/\/default\//, "agent://" org "/")
        gsub(/agent%3A%2F%2Fdefault%2F/, "agent%3A%2F%2F" org "%2F")
        gsub(/"org":"default"/, "\"org\":\"" org "\"")
        print
    }
    END { if (!found) { print "examples: no marked example in README.md" > "/dev/stderr"; exit 1 } }
' "$HERE/../README.md"
