#!/bin/sh
# `make run`: start local Redis + PostgreSQL, then run costmeshd in the
# foreground with a bootstrap admin key that persists across runs.
#
#   sh scripts/run.sh BUILD_DIR
#
# Knobs: CM_DATA_DIR, CM_REDIS_PORT, CM_PG_PORT (see services.sh),
# COSTMESH_LISTEN (default 127.0.0.1:8080), COSTMESH_ORG (default "default"),
# COSTMESH_ADMIN_KEY (default: generated once into $CM_DATA_DIR/admin_key).
set -eu

BUILD_DIR=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
CM_DATA_DIR=${CM_DATA_DIR:-"$(pwd)/.data"}
export CM_DATA_DIR

BIN="$BUILD_DIR/costmeshd"
[ -x "$BIN" ] || { echo "run: $BIN not found; build it with 'make'" >&2; exit 1; }

sh "$HERE/services.sh" start

# shellcheck disable=SC1091
. "$CM_DATA_DIR/env"
export COSTMESH_REDIS_URL COSTMESH_DATABASE_URL

KEY_FILE="$CM_DATA_DIR/admin_key"
if [ -z "${COSTMESH_ADMIN_KEY:-}" ]; then
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
  admin key:  $COSTMESH_ADMIN_KEY   (stored in $KEY_FILE)

Try it (in another terminal):

  export ADMIN_KEY=$COSTMESH_ADMIN_KEY

  # create an agent key (shown once: keep the "key" field)
  curl -s -X POST $BASE/v1/keys \\
    -H "Authorization: Bearer \$ADMIN_KEY" -H 'Content-Type: application/json' \\
    -d '{"role":"agent","name":"my-agent","agent":"agent://$COSTMESH_ORG/dev/my-agent"}'

  # send a heartbeat (use the agent key, or the admin key)
  curl -s -X POST $BASE/v1/mesh/heartbeat \\
    -H "Authorization: Bearer \$ADMIN_KEY" -H 'Content-Type: application/json' \\
    -d '{"agent":"agent://$COSTMESH_ORG/dev/my-agent","id":"hb-1","metrics":{"cost_usd":0.03,"tokens_in":2100,"tokens_out":850,"llm_calls":4}}'

  # read today's spend of that agent
  curl -s -H "Authorization: Bearer \$ADMIN_KEY" \\
    '$BASE/v1/mesh/agents/agent%3A%2F%2F$COSTMESH_ORG%2Fdev%2Fmy-agent/spend?window=day'

  # list agents
  curl -s -H "Authorization: Bearer \$ADMIN_KEY" $BASE/v1/mesh/agents

Stop with Ctrl-C; stop Redis/PostgreSQL with 'make services-stop'.

EOF

exec "$BIN"
