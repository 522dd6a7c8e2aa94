#!/bin/sh
# Run a local Redis and PostgreSQL 15 for costmesh under a data folder.
#
#   sh scripts/services.sh start|env
#   sh scripts/services.sh stop|status [redis|postgresql]   (default: both)
#
# Knobs (environment):
#   CM_DATA_DIR    data folder (default: "$(pwd)/.data")
#   CM_REDIS_PORT  Redis port (default: 6379)
#   CM_PG_PORT     PostgreSQL port (default: 5432)
#
# Several instances with different CM_DATA_DIR and ports can run side by
# side: everything (config, pid files, sockets, logs) lives under the data
# folder, and processes are found through their own pid files only.
set -eu

PROG="services"
CM_DATA_DIR=${CM_DATA_DIR:-"$(pwd)/.data"}
CM_REDIS_PORT=${CM_REDIS_PORT:-6379}
CM_PG_PORT=${CM_PG_PORT:-5432}
PG_BIN=${CM_PG_BIN:-/usr/lib/postgresql/15/bin}
REDIS_SERVER=${CM_REDIS_SERVER:-/usr/bin/redis-server}
REDIS_CLI=${CM_REDIS_CLI:-/usr/bin/redis-cli}
PG_USER=costmesh   # unprivileged system user that runs PostgreSQL as root

say() { echo "$PROG: $*"; }
die() { echo "$PROG: error: $*" >&2; exit 1; }

case "$CM_REDIS_PORT" in ''|*[!0-9]*) die "CM_REDIS_PORT must be a number: '$CM_REDIS_PORT'";; esac
case "$CM_PG_PORT" in ''|*[!0-9]*) die "CM_PG_PORT must be a number: '$CM_PG_PORT'";; esac

# Absolute path without requiring it to exist yet.
case "$CM_DATA_DIR" in
    /*) ;;
    *) CM_DATA_DIR="$(pwd)/$CM_DATA_DIR" ;;
esac

REDIS_DIR="$CM_DATA_DIR/redis"
REDIS_CONF="$REDIS_DIR/redis.conf"
REDIS_PID="$REDIS_DIR/redis.pid"
REDIS_LOG="$REDIS_DIR/redis.log"
ENV_FILE="$CM_DATA_DIR/env"
PG_LINK="$CM_DATA_DIR/pg"        # the PostgreSQL base (dir, or symlink to it)

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

# ---------------------------------------------------------------- helpers

# pid_alive PID NAME: true when PID runs a process whose name contains NAME
# (guards against a stale pid file whose pid was reused).
pid_alive() {
    [ -n "$1" ] || return 1
    kill -0 "$1" 2>/dev/null || return 1
    if [ -r "/proc/$1/comm" ]; then
        case "$(cat "/proc/$1/comm" 2>/dev/null)" in
            *"$2"*) return 0 ;;
            *) return 1 ;;
        esac
    fi
    return 0
}

read_pid() {
    if [ -f "$1" ]; then
        head -n 1 "$1" 2>/dev/null | tr -dc '0-9' || true
    fi
}

# Run a command as the PostgreSQL owner (costmesh when root, else ourselves).
as_pg() {
    if [ "$IS_ROOT" -eq 1 ]; then
        if command -v runuser >/dev/null 2>&1; then
            (cd / && runuser -u "$PG_USER" -- "$@")
        else
            # su needs one command string; quote each argument.
            cmd=""
            for a in "$@"; do
                cmd="$cmd '$(printf '%s' "$a" | sed "s/'/'\\\\''/g")'"
            done
            (cd / && su -s /bin/sh "$PG_USER" -c "$cmd")
        fi
    else
        "$@"
    fi
}

ensure_pg_user() {
    [ "$IS_ROOT" -eq 1 ] || return 0
    if ! id -u "$PG_USER" >/dev/null 2>&1; then
        say "creating system user '$PG_USER' to run PostgreSQL (it refuses to run as root)"
        useradd --system --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$PG_USER" 2>/dev/null \
            || id -u "$PG_USER" >/dev/null 2>&1 \
            || die "could not create user '$PG_USER'"
    fi
}

# Where the PostgreSQL base directory lives (holds data/, run/ and the log).
#
# Normally it is $CM_DATA_DIR/pg. As root, PostgreSQL runs as the
# unprivileged user 'costmesh', which must be able to traverse every parent
# of that path. We give CM_DATA_DIR itself o+x (traverse only, no listing;
# this is what makes `mktemp -d` dirs work) but never change permissions of
# folders we do not own, such as /root. If 'costmesh' still cannot reach the
# folder, or the path is too long for a Unix socket (~107 bytes), the base
# goes to /var/tmp/costmesh-pg-<cksum of the absolute data dir> (stable per
# data dir, survives reboots on Debian, traversable) and $CM_DATA_DIR/pg is
# a symlink to it, so the same data dir always finds the same database.
pg_base() {
    if [ -L "$PG_LINK" ]; then
        readlink "$PG_LINK"
        return 0
    fi
    if [ -d "$PG_LINK" ]; then
        echo "$PG_LINK"
        return 0
    fi
    echo ""
}

choose_pg_base() {
    existing=$(pg_base)
    if [ -n "$existing" ]; then
        echo "$existing"
        return 0
    fi
    use_local=1
    # ".s.PGSQL.NNNNN" under "$CM_DATA_DIR/pg/run/" must fit in sun_path.
    if [ "${#CM_DATA_DIR}" -gt 80 ]; then
        use_local=0
    elif [ "$IS_ROOT" -eq 1 ]; then
        chmod o+x "$CM_DATA_DIR"
        if ! as_pg test -x "$CM_DATA_DIR" 2>/dev/null; then
            use_local=0
        fi
    fi
    if [ "$use_local" -eq 1 ]; then
        echo "$PG_LINK"
    else
        key=$(printf '%s' "$CM_DATA_DIR" | cksum | awk '{print $1}')
        echo "/var/tmp/costmesh-pg-$key"
    fi
}

redis_running() { pid_alive "$(read_pid "$REDIS_PID")" redis; }

pg_running() {
    b=$(pg_base)
    [ -n "$b" ] || return 1
    pid_alive "$(read_pid "$b/data/postmaster.pid")" postgres
}

# The ports the running services were started with (empty when unknown).
redis_conf_port() { awk '$1 == "port" {print $2}' "$REDIS_CONF" 2>/dev/null || true; }
pg_conf_port() { awk '$1 == "port" {print $3}' "$1/costmesh.conf" 2>/dev/null || true; }

# same_port NAME VAR WANT RUNNING: a service this data folder already runs
# must be on the port the environment file will name, else costmeshd would
# be sent to whatever else listens there.
same_port() {
    [ -z "$4" ] || [ "$4" = "$3" ] \
        || die "$1 from $CM_DATA_DIR already runs on port $4, not $2=$3: set $2=$4, or stop it first (make services-stop)"
}

redis_url() { echo "redis://127.0.0.1:$CM_REDIS_PORT/0"; }
db_url() { echo "postgresql://costmesh@127.0.0.1:$CM_PG_PORT/costmesh"; }

print_env() {
    echo "export COSTMESH_REDIS_URL=$(redis_url)"
    echo "export COSTMESH_DATABASE_URL=$(db_url)"
}

# ------------------------------------------------------------------ redis

# With COSTMESH_DURABLE=redis a 202 is durable once Redis answers, which
# needs every write in the AOF first (docs/guarantees.md section 12).
if [ "${COSTMESH_DURABLE:-postgres}" = redis ]; then REDIS_FSYNC=always; else REDIS_FSYNC=everysec; fi

start_redis() {
    if redis_running; then
        same_port redis CM_REDIS_PORT "$CM_REDIS_PORT" "$(redis_conf_port)"
        say "redis already running (pid $(read_pid "$REDIS_PID"))"
        # Started before in the other mode: fsync as this one needs.
        "$REDIS_CLI" -h 127.0.0.1 -p "$CM_REDIS_PORT" CONFIG SET appendfsync "$REDIS_FSYNC" >/dev/null
        return 0
    fi
    [ -x "$REDIS_SERVER" ] || die "$REDIS_SERVER not found; run scripts/deps.sh"
    if "$REDIS_CLI" -h 127.0.0.1 -p "$CM_REDIS_PORT" ping >/dev/null 2>&1; then
        die "port $CM_REDIS_PORT already has a Redis not started from $CM_DATA_DIR; pick another CM_REDIS_PORT"
    fi
    mkdir -p "$REDIS_DIR"
    rm -f "$REDIS_PID"
    cat > "$REDIS_CONF" <<EOF
# Generated by scripts/services.sh; rewritten on every start.
bind 127.0.0.1
port $CM_REDIS_PORT
dir $REDIS_DIR
appendonly yes
appendfsync $REDIS_FSYNC
save ""
daemonize yes
pidfile $REDIS_PID
logfile $REDIS_LOG
EOF
    say "starting redis on 127.0.0.1:$CM_REDIS_PORT (data: $REDIS_DIR)"
    "$REDIS_SERVER" "$REDIS_CONF" || die "redis-server failed to start; see $REDIS_LOG"
    i=0
    while [ "$i" -lt 100 ]; do
        if [ "$("$REDIS_CLI" -h 127.0.0.1 -p "$CM_REDIS_PORT" ping 2>/dev/null || true)" = "PONG" ] \
            && redis_running; then
            say "redis ready (pid $(read_pid "$REDIS_PID"))"
            return 0
        fi
        # Gave up early if the daemon wrote its pid file and then died.
        pid=$(read_pid "$REDIS_PID")
        if [ -n "$pid" ] && ! pid_alive "$pid" redis; then
            break
        fi
        i=$((i + 1))
        sleep 0.1
    done
    tail -n 20 "$REDIS_LOG" >&2 2>/dev/null || true
    die "redis did not answer PONG on port $CM_REDIS_PORT within 10 s (port in use? pick another CM_REDIS_PORT); see $REDIS_LOG"
}

stop_redis() {
    pid=$(read_pid "$REDIS_PID")
    if ! pid_alive "$pid" redis; then
        say "redis not running"
        rm -f "$REDIS_PID"
        return 0
    fi
    port=$(redis_conf_port)
    say "stopping redis (pid $pid)"
    # nosave: no RDB snapshot; the append-only file already holds the data.
    "$REDIS_CLI" -h 127.0.0.1 -p "${port:-$CM_REDIS_PORT}" shutdown nosave >/dev/null 2>&1 \
        || kill -TERM "$pid" 2>/dev/null || true
    i=0
    while pid_alive "$pid" redis; do
        i=$((i + 1))
        if [ "$i" -ge 100 ]; then
            die "redis (pid $pid) did not stop within 10 s"
        fi
        sleep 0.1
    done
    rm -f "$REDIS_PID"
    say "redis stopped"
}

# ------------------------------------------------------------- postgresql

psql_admin() {
    PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$CM_PG_PORT" -U postgres -d postgres "$@"
}

start_pg() {
    [ -x "$PG_BIN/pg_ctl" ] || die "$PG_BIN/pg_ctl not found; run scripts/deps.sh (postgresql 15)"
    ensure_pg_user
    base=$(choose_pg_base)
    pgdata="$base/data"
    sockdir="$base/run"
    log="$base/postgres.log"

    if pg_running; then
        same_port postgresql CM_PG_PORT "$CM_PG_PORT" "$(pg_conf_port "$pgdata")"
        say "postgresql already running (pid $(read_pid "$pgdata/postmaster.pid"))"
    else
        # 0: accepting, 1: rejecting (starting or stopping): a PostgreSQL holds the port.
        isready=0
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$CM_PG_PORT" -t 2 || isready=$?
        if [ "$isready" -le 1 ]; then
            die "port $CM_PG_PORT already has a PostgreSQL not started from $CM_DATA_DIR; pick another CM_PG_PORT"
        fi
        mkdir -p "$base" "$sockdir"
        if [ "$base" != "$PG_LINK" ] && [ ! -e "$PG_LINK" ]; then
            ln -s "$base" "$PG_LINK"
            say "postgresql base is $base (linked from $PG_LINK)"
        fi
        if [ "$IS_ROOT" -eq 1 ]; then
            chown -R "$PG_USER:" "$base"
        fi
        chmod 700 "$base"
        if [ ! -f "$pgdata/PG_VERSION" ]; then
            say "initializing postgresql cluster in $pgdata"
            rm -rf "$pgdata"
            as_pg "$PG_BIN/initdb" -D "$pgdata" -A trust -U postgres \
                --encoding=UTF8 --locale=C >"$base/initdb.log" 2>&1 \
                || { tail -n 20 "$base/initdb.log" >&2; die "initdb failed; see $base/initdb.log"; }
        fi
        # Our settings live in costmesh.conf (rewritten each start so port
        # changes apply); postgresql.conf includes it once.
        conf="$pgdata/costmesh.conf"
        cat > "$conf" <<EOF
# Generated by scripts/services.sh; rewritten on every start.
listen_addresses = '127.0.0.1'
port = $CM_PG_PORT
unix_socket_directories = '$sockdir'
fsync = on
synchronous_commit = on
max_connections = 100
shared_buffers = 128MB
EOF
        if ! grep -q "^include_if_exists = 'costmesh.conf'" "$pgdata/postgresql.conf"; then
            printf "\n# costmesh local settings\ninclude_if_exists = 'costmesh.conf'\n" \
                >> "$pgdata/postgresql.conf"
        fi
        if [ "$IS_ROOT" -eq 1 ]; then
            chown "$PG_USER:" "$conf" "$pgdata/postgresql.conf"
        fi
        rm -f "$pgdata/postmaster.pid"   # stale: no live postmaster owns it
        say "starting postgresql on 127.0.0.1:$CM_PG_PORT (data: $pgdata)"
        if ! as_pg "$PG_BIN/pg_ctl" -D "$pgdata" -l "$log" -w -t 60 start >/dev/null; then
            tail -n 20 "$log" >&2 2>/dev/null || true
            die "postgresql failed to start (port $CM_PG_PORT in use? pick another CM_PG_PORT); see $log"
        fi
        say "postgresql ready (pid $(read_pid "$pgdata/postmaster.pid"))"
    fi

    # Role and database for the server, created once.
    if [ "$(psql_admin -tA -c "SELECT 1 FROM pg_roles WHERE rolname = 'costmesh'")" != "1" ]; then
        say "creating role costmesh"
        psql_admin -c "CREATE ROLE costmesh LOGIN"
    fi
    if [ "$(psql_admin -tA -c "SELECT 1 FROM pg_database WHERE datname = 'costmesh'")" != "1" ]; then
        say "creating database costmesh"
        psql_admin -c "CREATE DATABASE costmesh OWNER costmesh ENCODING 'UTF8'"
    fi
}

stop_pg() {
    base=$(pg_base)
    pid=""
    [ -n "$base" ] && pid=$(read_pid "$base/data/postmaster.pid")
    if ! pid_alive "$pid" postgres; then
        say "postgresql not running"
        return 0
    fi
    say "stopping postgresql (pid $pid)"
    as_pg "$PG_BIN/pg_ctl" -D "$base/data" -m fast -w -t 60 stop >/dev/null \
        || die "pg_ctl stop failed; see $base/postgres.log"
    say "postgresql stopped"
}

# ------------------------------------------------------------------- main

status_redis() {
    if redis_running; then
        say "redis running (pid $(read_pid "$REDIS_PID"), data $REDIS_DIR)"
    else
        say "redis not running"
        return 3
    fi
}

status_pg() {
    if pg_running; then
        say "postgresql running (pid $(read_pid "$(pg_base)/data/postmaster.pid"), data $(pg_base)/data)"
    else
        say "postgresql not running"
        return 3
    fi
}

usage() {
    echo "usage: $0 start|env" >&2
    echo "       $0 stop|status [redis|postgresql]" >&2
    echo "  env: CM_DATA_DIR (default ./.data), CM_REDIS_PORT (6379), CM_PG_PORT (5432)" >&2
    exit 2
}

cmd=${1:-}
which=${2:-both}
case "$which" in redis|postgresql|both) ;; *) usage ;; esac
case "$cmd" in
    start)
        mkdir -p "$CM_DATA_DIR"
        start_redis
        start_pg
        print_env > "$ENV_FILE"
        say "environment written to $ENV_FILE"
        ;;
    stop)
        case "$which" in
            redis) stop_redis ;;
            postgresql) stop_pg ;;
            both) stop_pg; stop_redis ;;
        esac
        ;;
    status)
        case "$which" in
            redis) status_redis ;;
            postgresql) status_pg ;;
            both) rc=0; status_redis || rc=$?; status_pg || rc=$?; exit "$rc" ;;
        esac
        ;;
    env)
        print_env
        ;;
    *)
        usage
        ;;
esac
