#!/bin/sh
# `make run`: start local Redis + PostgreSQL, then run costmeshd in the
# foreground with a bootstrap admin key that persists across runs.
#
#   sh scripts/run.sh BUILD_DIR
#
# Knobs: CM_DATA_DIR, CM_REDIS_PORT, CM_PG_PORT (see services.sh),
# COSTMESH_LISTEN (default 127.0.0.1:8080), COSTMESH_ORG (default "default"),
# COSTMESH_ADMIN_KEY (default: generated once into $CM_DATA_DIR/admin_key).
#
# Redis and PostgreSQL keep running after costmeshd stops, for the next run
# (`make services-stop` stops them). A run that fails (a service or
# costmeshd cannot start, costmeshd exits with an error) stops those it
# started itself.
set -eu

BUILD_DIR=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
CM_DATA_DIR=${CM_DATA_DIR:-"$(pwd)/.data"}
export CM_DATA_DIR

BIN="$BUILD_DIR/costmeshd"
[ -x "$BIN" ] || { echo "run: $BIN not found; build it with 'make'" >&2; exit 1; }

# The services not running yet are this run's: it stops them if it fails.
started=""
for svc in redis postgresql; do
    sh "$HERE/services.sh" status "$svc" >/dev/null || started="$started $svc"
done
# shellcheck disable=SC2317  # run by the trap below
on_exit() {
    rc=$?
    if [ "$rc" -ne 0 ] && [ -n "$started" ]; then
        echo "run: failed (status $rc); stopping what this run started:$started" >&2
        for svc in $started; do sh "$HERE/services.sh" stop "$svc" || true; done
    fi
    exit "$rc"
}
trap on_exit EXIT
# Until costmeshd runs, a signal abandons the run; then it is costmeshd's to
# answer (SIGTERM: it drains and exits 0).
pid=""
# shellcheck disable=SC2317  # run by the trap below
on_signal() {
    [ -n "$pid" ] || exit 130
    kill -TERM "$pid" 2>/dev/null || true
}
trap on_signal INT TERM

sh "$HERE/services.sh" start

# shellcheck disable=SC1091
. "$CM_DATA_DIR/env"
export COSTMESH_REDIS_URL COSTMESH_DATABASE_URL

KEY_FILE="$CM_DATA_DIR/admin_key"
# The key itself is never printed: the terminal's scroll-back and logs
# would keep it. Say where it is instead.
KEY_FROM='$COSTMESH_ADMIN_KEY (set by you)'
KEY_GET='$COSTMESH_ADMIN_KEY'
if [ -z "${COSTMESH_ADMIN_KEY:-}" ]; then
    KEY_FROM=$KEY_FILE
    KEY_GET="\$(cat $KEY_FILE)"
    if [ ! -s "$KEY_FILE" ]; then
        (
            umask 077
            od -An -N24 -tx1 /dev/urandom | tr -d ' \n' > "$KEY_FILE.tmp"
            mv "$KEY_FILE.tmp" "$KEY_FILE"
        )
        echo "run: generated admin key in $KEY_FILE"
    fi
    chmod 600 "$KEY_FILE"
    COSTMESH_ADMIN_KEY=$(cat "$KEY_FILE")
fi
COSTMESH_ORG=${COSTMESH_ORG:-default}
COSTMESH_LISTEN=${COSTMESH_LISTEN:-127.0.0.1:8080}
export COSTMESH_ADMIN_KEY COSTMESH_ORG COSTMESH_LISTEN

BASE="http://$COSTMESH_LISTEN"
cat <<EOF

costmesh is starting on $BASE (org "$COSTMESH_ORG")
  redis:      $COSTMESH_REDIS_URL
  postgresql: $COSTMESH_DATABASE_URL
  admin key:  in $KEY_FROM

Try it in another terminal (the README's examples, under "Using it"):

export ADMIN_KEY=$KEY_GET
BASE=$BASE

EOF
sh "$HERE/examples.sh" "$COSTMESH_ORG"
echo "Stop with Ctrl-C; stop Redis/PostgreSQL with 'make services-stop'."
echo

"$BIN" &
pid=$!
rc=0
wait "$pid" || rc=$?
# A signal interrupts wait before costmeshd is done: wait for its own status.
while kill -0 "$pid" 2>/dev/null; do
    rc=0
    wait "$pid" || rc=$?
done
exit "$rc"
