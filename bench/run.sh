#!/bin/bash
# `make bench`: the costmesh benchmark. Not a test: it asserts nothing and
# only reports. Prints a table and writes bench/results/<date>.md.
#
# Starts a throwaway Redis (AOF as shipped) and PostgreSQL with
# scripts/services.sh, costmeshd built with -O2 (build/bench), and drives it
# with wrk (bench/load.lua) on 127.0.0.1, every load bounded in time:
#   1. single heartbeats (unique ids, 1,000 agents, 64 connections), at the
#      maximum rate, then paced at half of it, then at half of it open-loop
#      (bench/openloop.c: requests sent on a schedule whatever the answers)
#   2. batched heartbeats (100 per request), 60 s, persistence backlog
#      sampled every 5 s from /metrics
#   3. intent admission with a generous policy on every agent, maximum, then
#      paced at half of it
#   4. spend polling (GET .../spend?window=day) while 1 runs
# The paced run of 1 and run 3 start once the rollup worker has summed what
# the runs before left (its lag gauge at 0; the time it took after 2 is
# reported), so that they measure their own load, not a catch-up; run 1's
# split of a request's time by stage comes from /metrics.
# then the same four against costmeshd with COSTMESH_DURABLE=redis (Redis the
# durable point, appendfsync always for that part only; a database of its
# own), the backlog of 2 being the queue (XLEN cm:q), and the time the
# persister takes to empty the queue 2 left,
# and the ceilings, in the same run:
#   (a) bench/http_ceiling.c: the same libmicrohttpd settings and the
#       project's JSON decoder, answering 202 without touching a store
#   (b) redis-benchmark running the project's MERGE script
#       (server/lua/merge.lua) for one heartbeat's three windows, each gated
#       by a policy hash with a limit, pipelined by 16
#   (c) bench/pg_ceiling.c: the project's statements (server/hbrow.c, linked
#       in) back to back on one connection: the group commit's
#       (cm_hbrow_group_sql) at 100 and 1000 rows, the persister's
#       (cm_hbrow_persist_sql) at 2000
#   (d) a candidate, not costmeshd: bench/redis_durable.lua with Redis
#       fsyncing every write (appendfsync always), 64 clients
#   (e) bench/fsync_floor.c: the disk's latency for one 8 KiB write and
#       fdatasync at 50 a second, first, while nothing else runs, and the
#       share of the time a durable write arriving would have waited more
#       than 2 or 10 ms for the flush under way: every durable answer waits
#       for at least one flush, so that share bounds the p99 targets
# plus server RSS and Redis memory at 100,000 agents and PostgreSQL bytes per
# heartbeat, in both modes, and the Redis rebuild after a FLUSHALL with
# 200,000 agents: until /readyz, the first intent, and single heartbeats at
# 1,000 req/s while it runs.
#
# Knobs: BENCH_SHORT=1 (~5 min instead of ~10), BENCH_BUILD (build/bench),
# BENCH_WRAP (a command costmeshd runs under, e.g. a profiler), BENCH_KEEP=1
# (keep the temporary folder, with wrk outputs and extracted scripts),
# BENCH_PORT (18080; the ceiling server uses +1, costmeshd with
# COSTMESH_DURABLE=redis +2), BENCH_REDIS_PORT (16391),
# BENCH_PG_PORT (15491).
#
# "Half the max rate" is paced with wrk's delay() (wrk2 is not available):
# each connection waits CONNS*1000/RATE ms (dithered) between a response and
# its next request, so the achieved rate is a little under the target; the
# table prints the achieved rate. Latency is timed from each request's write.
# That is a closed loop: a stall delays the requests behind it instead of
# queueing them, so it is missed. The open-loop row sends each request at its
# scheduled time and times it from then, so a stall is counted.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD=${BENCH_BUILD:-build/bench}
SHORT=${BENCH_SHORT:-0}
PORT=${BENCH_PORT:-18080}
CEIL_PORT=$((PORT + 1))
R_PORT=$((PORT + 2))
REDIS_PORT=${BENCH_REDIS_PORT:-16391}
PG_PORT=${BENCH_PG_PORT:-15491}
AGENTS=1000
CONNS=64
BATCH_CONNS=16
INTENT_CONNS=64
SPEND_CONNS=16
THREADS=2

if [ "$SHORT" = 1 ]; then
    D_CEIL=5 D_MAX=8 D_PACED=6 D_BATCH=15 D_INTENT=6 D_SPEND=8 D_PG=4 D_REBUILD=20 D_FLOOR=10 REDIS_N=200000 MODE_NAME=short
else
    D_CEIL=10 D_MAX=20 D_PACED=15 D_BATCH=60 D_INTENT=15 D_SPEND=15 D_PG=10 D_REBUILD=30 D_FLOOR=20 REDIS_N=1000000 MODE_NAME=full
fi

say() { echo "bench: ${SECONDS}s: $*" >&2; } # SECONDS: since the start
die() { echo "bench: error: $*" >&2; exit 1; }

for t in wrk redis-benchmark redis-cli curl python3 cc; do
    command -v "$t" >/dev/null 2>&1 || die "$t not found (make bench installs wrk and redis-tools)"
done
[ -x "$BUILD/costmeshd" ] || die "$BUILD/costmeshd not found; run 'make bench'"
[ -x "$BUILD/bench/http_ceiling" ] || die "$BUILD/bench/http_ceiling not found; run 'make bench'"
[ -x "$BUILD/bench/pg_ceiling" ] || die "$BUILD/bench/pg_ceiling not found; run 'make bench'"
[ -x "$BUILD/bench/fsync_floor" ] || die "$BUILD/bench/fsync_floor not found; run 'make bench'"
[ -x "$BUILD/bench/openloop" ] || die "$BUILD/bench/openloop not found; run 'make bench'"

TMP=$(mktemp -d /tmp/cmbench.XXXXXX)
WORK="$TMP/work"
mkdir -p "$WORK"
SERVER_PID=""
SERVER_LOG=""
SRV_PORT=$PORT # the port of the costmeshd running
CEIL_PID=""
BG_PIDS=""
SERVICES_UP=0

svc() { CM_DATA_DIR="$TMP/data" CM_REDIS_PORT=$REDIS_PORT CM_PG_PORT=$PG_PORT sh scripts/services.sh "$@"; }

stop_pid() { # stop_pid PID [TENTHS]: TERM, then KILL after 10 s (or TENTHS/10 s)
    local pid=$1 i=0 limit=${2:-100}
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt "$limit" ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# pg_signal SIG: the postmaster and every live child of it (the bench's own
# PostgreSQL, started by svc). Fails when the postmaster could not be
# signalled; a child may have exited meanwhile.
pg_signal() {
    local sig=$1 kid
    kill -"$sig" "$PG_PID" || return 1
    for kid in $(cat "/proc/$PG_PID/task/$PG_PID/children" 2>/dev/null); do
        kill -"$sig" "$kid" 2>/dev/null || true
    done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ "${PG_PAUSED:-0}" = 1 ] && { pg_signal CONT || true; }
    for p in $BG_PIDS; do stop_pid "$p"; done
    stop_pid "$CEIL_PID"
    stop_pid "$SERVER_PID"
    if [ "$SERVICES_UP" = 1 ]; then svc stop >/dev/null 2>&1 || say "services stop failed"; fi
    if [ $rc -ne 0 ] && [ -f "$SERVER_LOG" ]; then
        say "costmeshd log (last lines):"
        tail -n 20 "$SERVER_LOG" >&2 || true
    fi
    if [ "${BENCH_KEEP:-0}" = 1 ]; then say "kept $TMP"; else rm -rf "$TMP"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------ measurement

HZ=$(getconf CLK_TCK)

# ticks PID: utime+stime of PID and its reaped children (all threads).
ticks() {
    local line
    line=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    line=${line##*) }
    # shellcheck disable=SC2086
    set -- $line
    echo $(( ${12} + ${13} + ${14} + ${15} ))
}

# pg_ticks: the postmaster, its reaped children, and every live child.
pg_ticks() {
    local pm=$1 sum f line
    sum=$(ticks "$pm")
    for f in /proc/[0-9]*/stat; do
        line=$(cat "$f" 2>/dev/null) || continue
        line=${line##*) }
        # shellcheck disable=SC2086
        set -- $line
        [ "$2" = "$pm" ] && sum=$(( sum + ${12} + ${13} ))
    done
    echo "$sum"
}

snapshot() { # prints "costmeshd redis postgres uptime_ms"
    # The first is whichever server answers HTTP: costmeshd, or http_ceiling
    # while the (a) rows run.
    local s=0 http=${SERVER_PID:-$CEIL_PID}
    [ -n "$http" ] && s=$(ticks "$http")
    echo "$s $(ticks "$REDIS_PID") $(pg_ticks "$PG_PID") $(date +%s%3N)"
}

val() { sed -n "s/.*[ ]$2=\([^ ]*\).*/\1/p" "$1" | tail -n 1; }

ROWS="$WORK/rows.tsv"
: > "$ROWS"

# run_wrk NAME MODE CONNS SECONDS RATE PORT OUTFILE: one wrk run, output kept.
run_wrk() {
    local mode=$2 conns=$3 secs=$4 rate=$5 port=$6 out=$7
    timeout $((secs + 30)) wrk -t$THREADS -c"$conns" -d"${secs}s" --timeout 10s -s bench/load.lua \
        "http://127.0.0.1:$port" -- "$mode" "$KEY" "$NONCE-$1" "$AGENTS" "$rate" "$conns" "$THREADS" > "$out" 2>&1 \
        || { cat "$out" >&2; die "wrk ($1) failed"; }
    grep -q '^RESULT ' "$out" || { cat "$out" >&2; die "wrk ($1) printed no RESULT"; }
}

# run_open NAME MODE CONNS SECONDS RATE PORT OUTFILE: run_wrk's arguments, for
# bench/openloop.c (single heartbeats only; it drains for at most 10 s).
run_open() {
    local conns=$3 secs=$4 rate=$5 port=$6 out=$7
    timeout $((secs + 30)) "$BUILD/bench/openloop" "$port" "$KEY" "$NONCE-$1" "$AGENTS" "$rate" "$conns" "$secs" \
        > "$out" 2>&1 || { cat "$out" >&2; die "openloop ($1) failed"; }
}

# record NAME WRKOUT PER_REQUEST SNAP0 SNAP1 CONNS: appends a table row.
# Columns: name conns req/s hb/s p50 p99 p99.9 (ms) non2xx cpu% of one core
# for costmeshd redis postgres wrk, and the run length.
record() {
    local name=$1 out=$2 per=$3 s0=$4 s1=$5 conns=$6
    local req dur p50 p99 p999 non2xx errs wt
    req=$(val "$out" requests); dur=$(val "$out" duration_us)
    p50=$(val "$out" p50_us); p99=$(val "$out" p99_us); p999=$(val "$out" p999_us)
    non2xx=$(val "$out" non2xx)
    errs=$(( $(val "$out" err_connect) + $(val "$out" err_read) + $(val "$out" err_write) + $(val "$out" err_timeout) ))
    wt=$(val "$out" wrk_ticks)
    awk -v n="$name" -v c="$conns" -v req="$req" -v dur="$dur" -v per="$per" -v p50="$p50" -v p99="$p99" \
        -v p999="$p999" -v bad="$non2xx" -v errs="$errs" -v wt="$wt" -v hz="$HZ" -v s0="$s0" -v s1="$s1" 'BEGIN {
        split(s0, a, " "); split(s1, b, " ");
        wall = (b[4] - a[4]) / 1000.0; if (wall <= 0) wall = dur / 1e6;
        secs = dur / 1e6; rps = req / secs;
        printf "%s\t%d\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\n", n, c, rps, rps * per,
            p50 / 1000, p99 / 1000, p999 / 1000, bad + errs,
            100 * (b[1] - a[1]) / hz / wall, 100 * (b[2] - a[2]) / hz / wall,
            100 * (b[3] - a[3]) / hz / wall, 100 * wt / hz / secs, secs }' >> "$ROWS"
}

col() { awk -F'\t' -v n="$1" -v k="$2" '$1 == n { v = $k } END { print v }' "$ROWS"; }

# phase NAME MODE CONNS SECONDS RATE PER_REQUEST [PORT]: MODE is load.lua's,
# or "open" for single heartbeats from bench/openloop.c at RATE.
phase() {
    local name=$1 mode=$2 conns=$3 secs=$4 rate=$5 per=$6 port=${7:-$SRV_PORT} s0 s1 run=run_wrk
    [ "$mode" = open ] && run=run_open
    say "$name: $mode, $conns connections, ${secs}s$([ "$rate" != 0 ] && echo ", at $rate req/s")"
    s0=$(snapshot)
    $run "$name" "$mode" "$conns" "$secs" "$rate" "$port" "$WORK/$name.out"
    s1=$(snapshot)
    record "$name" "$WORK/$name.out" "$per" "$s0" "$s1" "$conns"
}

# ------------------------------------------------------------- start-up

NONCE="b$(date +%s)"
KEY="bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

say "starting Redis (port $REDIS_PORT) and PostgreSQL (port $PG_PORT) under $TMP/data"
SERVICES_UP=1
svc start >"$WORK/services.log" 2>&1 || { cat "$WORK/services.log" >&2; die "services did not start"; }
# shellcheck disable=SC1091
. "$TMP/data/env"
REDIS_PID=$(tr -dc '0-9' < "$TMP/data/redis/redis.pid")
PG_BASE=$(readlink -f "$TMP/data/pg")
PG_PID=$(head -n 1 "$PG_BASE/data/postmaster.pid" | tr -dc '0-9')
PSQL_AS="psql -X -q -tA -h 127.0.0.1 -p $PG_PORT"
PSQL="$PSQL_AS -U costmesh -d costmesh"

# Extract a C string constant from a project source by compiling it:
# exactly the bytes the server sends.
extract() { # extract FILE NAME OUT
    local c="$WORK/extract_$2.c"
    {
        echo '#include <stdio.h>'
        echo '#include "health.h"'
        sed -n "/^static const char $2\[\] =/,/;\$/p" "$1"
        echo "int main(void) { fputs($2, stdout); return 0; }"
    } > "$c"
    cc -I server -o "$WORK/extract_$2" "$c" || die "cannot extract $2 from $1"
    "$WORK/extract_$2" > "$3"
    [ -s "$3" ] || die "$2 extracted from $1 is empty"
}
extract server/notify.c health_sql "$WORK/health.sql"

# ------------------------------------------------------ (e) the disk's floor

say "disk floor: 8 KiB write + fdatasync at 50/s for ${D_FLOOR}s in PostgreSQL's folder, nothing else running"
"$BUILD/bench/fsync_floor" "$PG_BASE" 50 "$D_FLOOR" > "$WORK/fsync_floor.out" || die "fsync_floor failed"
floor_ms() { awk -v u="$(val "$WORK/fsync_floor.out" "$1")" 'BEGIN { printf "%.2f", u / 1000 }'; }
FLOOR_OVER2=$(val "$WORK/fsync_floor.out" over2_pct)
FLOOR_OVER10=$(val "$WORK/fsync_floor.out" over10_pct)

# ------------------------------------------------------- (a) HTTP ceiling

start_ceiling() {
    "$BUILD/bench/http_ceiling" "$CEIL_PORT" "$@" > "$WORK/ceiling.log" 2>&1 &
    CEIL_PID=$!
    for _ in $(seq 50); do
        curl -s -o /dev/null "http://127.0.0.1:$CEIL_PORT/" && return 0
        sleep 0.1
    done
    die "http_ceiling did not start"
}

start_ceiling
phase ceil_single single $CONNS $D_CEIL 0 1 "$CEIL_PORT"
phase ceil_batch batch $BATCH_CONNS $D_CEIL 0 100 "$CEIL_PORT"
stop_pid "$CEIL_PID"; CEIL_PID=""
start_ceiling handoff
phase ceil_handoff single $CONNS $D_CEIL 0 1 "$CEIL_PORT"
stop_pid "$CEIL_PID"; CEIL_PID=""

# ------------------------------------------------------ (b) Redis ceiling

say "redis ceiling: MERGE script, one heartbeat's 3 windows per call, -P 16, $REDIS_N calls"
SHA=$(redis-cli -p "$REDIS_PORT" SCRIPT LOAD "$(cat server/lua/merge.lua)")
redis-cli -p "$REDIS_PORT" SET cm:epoch 1 >/dev/null
# Each window gated by a policy hash with a limit, as the group commit
# merges an agent that has one (an agent without one costs the gate's read).
redis-cli -p "$REDIS_PORT" HSET cm:rb:p l3 1 >/dev/null
s0=$(snapshot)
t0=$(date +%s%3N)
timeout 120 redis-benchmark -p "$REDIS_PORT" -c 50 -P 16 -r 1000 -n "$REDIS_N" --csv \
    EVALSHA "$SHA" 7 cm:epoch cm:rb:p cm:rb:__rand_int__:h cm:rb:p cm:rb:__rand_int__:d \
    cm:rb:p cm:rb:__rand_int__:m \
    259200 5 cost __rand_int__ tin 1 tout 1 calls 1 hb 1 \
    3456000 5 cost __rand_int__ tin 1 tout 1 calls 1 hb 1 \
    34560000 5 cost __rand_int__ tin 1 tout 1 calls 1 hb 1 > "$WORK/redis_bench.csv" 2>&1 \
    || { cat "$WORK/redis_bench.csv" >&2; die "redis-benchmark failed"; }
t1=$(date +%s%3N)
s1=$(snapshot)
REDIS_CEIL=$(awk -F'","' 'NR == 2 { printf "%.0f", $2 }' "$WORK/redis_bench.csv")
REDIS_CPU=$(awk -v a="$s0" -v b="$s1" -v hz="$HZ" -v ms=$((t1 - t0)) \
    'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.0f", 100 * (y[2] - x[2]) / hz / (ms / 1000) }')
redis-cli -p "$REDIS_PORT" --scan --pattern 'cm:rb:*' | xargs -r -n 500 redis-cli -p "$REDIS_PORT" DEL >/dev/null

# ------------------------------------- (d) a Redis-durable candidate (issue 13)
# The acknowledged step if Redis were the durable point: appendfsync always
# (one fsync per event-loop turn, for every client served in it), 64 clients
# one request at a time, as HTTP clients send single heartbeats.
say "redis-durable candidate: bench/redis_durable.lua, appendfsync always, 64 clients, $((REDIS_N / 5)) calls"
redis-cli -p "$REDIS_PORT" CONFIG SET appendfsync always >/dev/null
SHA_D=$(redis-cli -p "$REDIS_PORT" SCRIPT LOAD "$(cat bench/redis_durable.lua)")
s0=$(snapshot)
t0=$(date +%s%3N)
timeout 300 redis-benchmark -p "$REDIS_PORT" -c 64 -r 100000000 -n "$((REDIS_N / 5))" --csv \
    EVALSHA "$SHA_D" 0 __rand_int__ __rand_int__ > "$WORK/redis_durable.csv" 2>&1 \
    || { cat "$WORK/redis_durable.csv" >&2; die "redis-benchmark (durable candidate) failed"; }
t1=$(date +%s%3N)
s1=$(snapshot)
redis-cli -p "$REDIS_PORT" CONFIG SET appendfsync everysec >/dev/null
REDIS_DURABLE=$(awk -F'","' 'NR == 2 { printf "%.0f", $2 }' "$WORK/redis_durable.csv")
REDIS_DURABLE_P50=$(awk -F'","' 'NR == 2 { printf "%.1f", $5 }' "$WORK/redis_durable.csv")
REDIS_DURABLE_P99=$(awk -F'","' 'NR == 2 { printf "%.1f", $7 }' "$WORK/redis_durable.csv")
REDIS_DURABLE_CPU=$(awk -v a="$s0" -v b="$s1" -v hz="$HZ" -v ms=$((t1 - t0)) \
    'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.0f", 100 * (y[2] - x[2]) / hz / (ms / 1000) }')
redis-cli -p "$REDIS_PORT" --scan --pattern 'cm:bd:*' | xargs -r -n 500 redis-cli -p "$REDIS_PORT" DEL >/dev/null

# ------------------------------------------------------------- costmeshd

# The prefix of the rows measured against costmeshd with COSTMESH_DURABLE=$1.
prefix() { [ "$1" = postgres ] || echo "${1}_"; }

# start_server DURABLE PORT DBNAME: costmeshd with COSTMESH_DURABLE=DURABLE on
# database DBNAME, ready, its AGENTS agents registered and the key cache warm.
start_server() {
    local durable=$1 db=$3 ready=0
    SRV_PORT=$2
    SERVER_LOG="$TMP/costmeshd-$durable.log"
    say "starting costmeshd (durable=$durable) on 127.0.0.1:$SRV_PORT"
    # The rebuild phase registers 100,000 agents in the org, above the default
    # quota; all of the bench's connections (up to 64 + 16) come from 127.0.0.1,
    # more than the per-IP default of 64 allows one address.
    COSTMESH_DURABLE=$durable COSTMESH_ADMIN_KEY=$KEY COSTMESH_ORG=default COSTMESH_MAX_AGENTS_PER_ORG=1000000 \
    COSTMESH_LISTEN=127.0.0.1:$SRV_PORT COSTMESH_REDIS_URL=$COSTMESH_REDIS_URL \
    COSTMESH_DATABASE_URL=postgresql://costmesh@127.0.0.1:$PG_PORT/$db \
    COSTMESH_MAX_PER_IP=256 COSTMESH_LOG_LEVEL=warn ${BENCH_WRAP:-} "$BUILD/costmeshd" > "$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 150); do
        if curl -s "http://127.0.0.1:$SRV_PORT/readyz" 2>/dev/null | grep -q '"ready":true'; then ready=1; break; fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.2
    done
    [ $ready = 1 ] || die "costmeshd (durable=$durable) did not become ready"
    # Warm the key cache and the agents (registration happens on first beat).
    python3 bench/setup.py "$SRV_PORT" "$KEY" agents "$AGENTS" "$NONCE-$(prefix "$durable")warm"
}

# A profiler (BENCH_WRAP) may take a while to write its output.
stop_server() {
    stop_pid "$SERVER_PID" "$([ -n "${BENCH_WRAP:-}" ] && echo 600 || echo 100)"
    SERVER_PID=""
}

metric() { # metric NAME_AND_LABELS: one value from /metrics (sum when several)
    curl -s --max-time 2 "http://127.0.0.1:$SRV_PORT/metrics" |
        awk -v m="$1" 'index($0, m) == 1 { s += $NF; f = 1 } END { if (f) print s; else print "NA" }'
}

# stages OUT: the server's account of its acknowledged requests (/metrics'
# costmesh_ingest_stage_seconds and group counters) into OUT, one line:
# routing queue store hot seconds, requests, groups, their heartbeats.
stages() {
    curl -s --max-time 2 "http://127.0.0.1:$SRV_PORT/metrics" | awk '
        /^costmesh_ingest_stage_seconds_sum/ { split($1, a, "\""); s[a[2]] = $2 }
        /^costmesh_ingest_stage_seconds_count\{stage="queue"\}/ { n = $2 }
        /^costmesh_ingest_groups_total/ { g = $2 }
        /^costmesh_ingest_group_heartbeats_total/ { r = $2 }
        END { print s["routing"], s["queue"], s["store"], s["hot"], n, g, r }' > "$1"
}

qlen() { redis-cli -p "$REDIS_PORT" XLEN cm:q | tr -dc '0-9'; } # the redis-mode queue

wait_drained() { # until the redis-mode queue is empty (at once in postgres mode)
    local t0
    t0=$(date +%s)
    until [ "$(qlen)" = 0 ]; do
        [ $(( $(date +%s) - t0 )) -lt 600 ] || die "the queue did not drain within 600 s"
        sleep 0.1
    done
}

# wait_rollups: until the rollup worker has summed what the runs before
# left (its lag gauge reads 0 twice, a second apart: the gauge is whole
# seconds, set by each batch); prints the seconds it took. A run that
# starts while the worker still catches up on a previous one's rows
# measures both.
wait_rollups() {
    local t0 zero=0
    t0=$(date +%s.%N)
    while [ "$zero" -lt 2 ]; do
        awk -v s="$(date +%s.%N)" -v t="$t0" 'BEGIN { exit !(s - t < 600) }' \
            || die "the rollup worker did not catch up within 600 s"
        if [ "$(metric costmesh_rollup_lag_seconds)" = 0 ]; then zero=$((zero + 1)); else zero=0; fi
        sleep 1
    done
    awk -v s="$(date +%s.%N)" -v t="$t0" 'BEGIN { printf "%.1f\n", s - t - 2 < 0 ? 0 : s - t - 2 }'
}

# Every 5 s: elapsed, backlog of ingest jobs, of the writer connections and
# of Redis (/metrics), heartbeats accepted, and the redis-mode queue.
sample_backlog() {
    local t0 i=0
    sleep 2 # past the connections' start
    t0=$(date +%s)
    while [ $i -le $(((D_BATCH - 4) / 5)) ]; do
        echo "$(( $(date +%s) - t0 )) $(metric 'costmesh_persistence_backlog{stage="ingest_jobs"}') \
$(metric 'costmesh_persistence_backlog{stage="postgres_writer"}') \
$(metric 'costmesh_persistence_backlog{stage="redis"}') $(metric costmesh_heartbeats_accepted_total) $(qlen)"
        i=$((i + 1))
        sleep 5
    done
}

# drain_queue: prints "entries seconds entries/s costmeshd% redis% postgres%"
# of the persister emptying the redis-mode queue.
drain_queue() {
    local n s0 s1
    n=$(qlen)
    say "redis mode: the persister drains $n queued heartbeats"
    s0=$(snapshot)
    wait_drained
    s1=$(snapshot)
    awk -v n="$n" -v a="$s0" -v b="$s1" -v hz="$HZ" 'BEGIN {
        split(a, x, " "); split(b, y, " "); s = (y[4] - x[4]) / 1000.0; if (s <= 0) s = 0.001
        printf "%d %.1f %.0f %.0f %.0f %.0f\n", n, s, n / s, 100 * (y[1] - x[1]) / hz / s,
            100 * (y[2] - x[2]) / hz / s, 100 * (y[3] - x[3]) / hz / s }'
}

# load DURABLE: phases 1 to 4 against the costmeshd on SRV_PORT, their rows
# named with DURABLE's prefix.
load() {
    local durable=$1 p max half s0 s1
    p=$(prefix "$durable")
    # 1. single heartbeats
    stages "$WORK/${p}stages0"
    phase "${p}single_max" single $CONNS $D_MAX 0 1
    stages "$WORK/${p}stages1"
    if [ "$durable" = redis ]; then
        # The same with PostgreSQL's processes stopped for the run: the ACK
        # path's own pace, nothing of PostgreSQL's work sharing the cores
        # (the persister and the rollup worker wait; the queue grows).
        say "1 again with PostgreSQL stopped (SIGSTOP)"
        PG_PAUSED=1
        pg_signal STOP || die "could not stop PostgreSQL"
        phase "${p}single_nopg" single $CONNS $D_MAX 0 1
        pg_signal CONT || die "could not continue PostgreSQL"
        PG_PAUSED=0
        wait_drained
    fi
    max=$(col "${p}single_max" 3)
    half=$(awk -v r="$max" 'BEGIN { printf "%d", r / 2 }')
    wait_rollups > /dev/null
    phase "${p}single_half" single $CONNS $D_PACED "$half" 1
    phase "${p}single_open" open $CONNS $D_PACED "$half" 1

    # 2. batched, the backlog sampled
    sample_backlog > "$WORK/${p}backlog.txt" &
    BG_PIDS="$!"
    phase "${p}batch" batch $BATCH_CONNS $D_BATCH 0 100
    wait $BG_PIDS 2>/dev/null || true
    BG_PIDS=""
    # In redis mode the batched load is the one that outruns the persister;
    # how fast it then empties the queue is the persister's throughput. Timed
    # here, before 3: by the end of 4 the queue has caught up (the spend reads
    # of 4 wait for it), so there would be nothing left to time.
    [ "$durable" = redis ] && drain_queue > "$WORK/drain.txt"
    say "waiting for the rollup worker to sum what 2 left"
    wait_rollups > "$WORK/${p}rollups.txt"

    # 3. intent admission
    say "putting a generous cost policy on $AGENTS agents"
    python3 bench/setup.py "$SRV_PORT" "$KEY" policies "$AGENTS"
    phase "${p}intent_max" intent $INTENT_CONNS $D_INTENT 0 0
    max=$(col "${p}intent_max" 3)
    half=$(awk -v r="$max" 'BEGIN { printf "%d", r / 2 }')
    phase "${p}intent_half" intent $INTENT_CONNS $D_INTENT "$half" 0

    # 4. spend polling while 1 runs
    say "spend: $SPEND_CONNS connections polling while single heartbeats run ($CONNS connections), ${D_SPEND}s"
    s0=$(snapshot)
    run_wrk "${p}spend_hb" single $CONNS $D_SPEND 0 "$SRV_PORT" "$WORK/${p}spend_hb.out" &
    BG_PIDS="$!"
    run_wrk "${p}spend" spend $SPEND_CONNS $D_SPEND 0 "$SRV_PORT" "$WORK/${p}spend.out"
    wait $BG_PIDS || die "heartbeat load during spend failed"
    BG_PIDS=""
    s1=$(snapshot)
    record "${p}spend" "$WORK/${p}spend.out" 0 "$s0" "$s1" $SPEND_CONNS
    record "${p}spend_hb" "$WORK/${p}spend_hb.out" 1 "$s0" "$s1" $CONNS
}

# memory DURABLE: prints "VmRSS_kB VmHWM_kB redis_used_memory redis_keys" after
# heartbeats for MEM_AGENTS distinct agents (stored in PostgreSQL).
MEM_AGENTS=100000
memory() {
    say "memory: heartbeats for $MEM_AGENTS distinct agents"
    python3 bench/setup.py "$SRV_PORT" "$KEY" agents "$MEM_AGENTS" "$NONCE-$(prefix "$1")mem"
    sleep 1
    wait_drained
    echo "$(awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status")" \
        "$(awk '/^VmHWM:/ { print $2 }' "/proc/$SERVER_PID/status")" \
        "$(redis-cli -p "$REDIS_PORT" INFO memory | awk -F: '/^used_memory:/ { print $2 + 0 }')" \
        "$(redis-cli -p "$REDIS_PORT" DBSIZE | tr -dc '0-9')"
}

# pg_bytes DBNAME: prints "rows bytes" of the heartbeats and their rollups.
pg_bytes() {
    local q="$PSQL_AS -U costmesh -d $1"
    $q -c "VACUUM ANALYZE heartbeats, heartbeat_ids, rollup_agent, rollup_intent" >/dev/null 2>&1 || true
    # heartbeats is partitioned: its size is the sum of its partitions'.
    $q -F ' ' -c "SELECT (SELECT count(*) FROM heartbeats),
    (SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits
     WHERE inhparent = 'heartbeats'::regclass) + pg_total_relation_size('heartbeat_ids')
    + pg_total_relation_size('rollup_agent') + pg_total_relation_size('rollup_intent')"
}

start_server postgres "$PORT" costmesh
load postgres
# Bytes per heartbeat of the loads' rows, before the memory phase's agents
# add a rollup row per heartbeat.
pg_bytes costmesh > "$WORK/pg_bytes.txt"
read -r PG_ROWS PG_BYTES < "$WORK/pg_bytes.txt"
memory postgres > "$WORK/memory.txt"
read -r RSS_KB HWM_KB REDIS_MEM REDIS_KEYS < "$WORK/memory.txt"

# ------------------------------- storage of a day of heartbeats (issue 17)

# A day at a fixed rate, as the partitions hold it: DAY_AGENTS agents, one
# heartbeat a minute each, every one with an id and an intent (a new intent
# every 10 heartbeats), written by SQL into the partition of a past day (the
# HTTP path would take hours) with the agent's hour/day/month rollups the
# group commit would have written; the rollup worker sums the intents. What a
# heartbeat costs while its partition is kept, and what stays after the
# retention drops it.
DAY_AGENTS=$([ "$SHORT" = 1 ] && echo 200 || echo 1000)
say "storage: a day of $DAY_AGENTS agents at one heartbeat a minute"
DAY=$($PSQL -c "SELECT to_char((now() AT TIME ZONE 'UTC')::date - 3, 'YYYY-MM-DD')")
DAYP="heartbeats_day_bench"
SIZES_SQL="SELECT pg_total_relation_size('heartbeat_ids'),
    pg_total_relation_size('rollup_agent') + pg_total_relation_size('rollup_intent')"
$PSQL -c "VACUUM heartbeat_ids, rollup_agent, rollup_intent" >/dev/null 2>&1 || true
read -r IDS_BEFORE ROLL_BEFORE <<SQL
$($PSQL -F ' ' -c "$SIZES_SQL")
SQL
$PSQL -q -c "CREATE TABLE $DAYP PARTITION OF heartbeats FOR VALUES FROM ('$DAY 00:00:00+00') TO ('$DAY 00:00:00+00'::timestamptz + interval '1 day');
  CREATE TEMP TABLE day_rows AS SELECT 'agent://bench/prod/day-' || a AS address, md5(a || ':' || m) AS hb_id,
    'int-' || a || '-' || (m / 10) AS intent_id, '$DAY 00:00:00+00'::timestamptz + m * interval '1 minute' AS ts,
    1234567::bigint AS cost, 1200::bigint AS tin, 300::bigint AS tout
    FROM generate_series(1, $DAY_AGENTS) a, generate_series(0, 1439) m;
  INSERT INTO heartbeat_ids (key, received_at) SELECT cm_hb_key(address, hb_id), ts FROM day_rows;
  INSERT INTO heartbeats (address, hb_id, intent_id, ts, received_at, cost_nanos, tokens_in, tokens_out, llm_calls)
    SELECT address, hb_id, intent_id, ts, ts, cost, tin, tout, 1 FROM day_rows;
  INSERT INTO rollup_agent (address, grain, bucket, cost_nanos, tokens_in, tokens_out, llm_calls, heartbeats)
    SELECT address, g, date_trunc(u, ts, 'UTC'), sum(cost), sum(tin), sum(tout), count(*), count(*)
    FROM day_rows, (VALUES ('h', 'hour'), ('d', 'day'), ('m', 'month')) v(g, u) GROUP BY 1, 2, 3
    ON CONFLICT DO NOTHING;"
DAY_ROWS=$((DAY_AGENTS * 1440))
for _ in $(seq 600); do
    [ "$($PSQL -c "SELECT count(*) FROM cm_rollup_tail() t WHERE t.address LIKE 'agent://bench/prod/day-%'")" = 0 ] && break
    sleep 0.1
done
$PSQL -c "VACUUM ANALYZE $DAYP, heartbeat_ids, rollup_agent, rollup_intent" >/dev/null 2>&1 || true
read -r DAY_RAW <<SQL
$($PSQL -c "SELECT pg_total_relation_size('$DAYP')")
SQL
read -r IDS_AFTER ROLL_AFTER <<SQL
$($PSQL -F ' ' -c "$SIZES_SQL")
SQL
# Ids and rollups share their tables with the other runs: what the day added
# to them (new pages of heap and indexes); the partition is measured whole.
per_hb() { awk -v b="$1" -v n="$DAY_ROWS" 'BEGIN { printf "%.0f", b / n }'; }
DAY_RAW_PER=$(per_hb "$DAY_RAW")
DAY_IDS_PER=$(per_hb $((IDS_AFTER - IDS_BEFORE)))
DAY_ROLL_PER=$(per_hb $((ROLL_AFTER - ROLL_BEFORE)))
$PSQL -q -c "DROP TABLE $DAYP"

# ------------------------------------- Redis rebuild, 100,000 agents more

# After Redis loses its data, costmeshd brings every policy back from
# PostgreSQL, and the hour, day and month windows of every agent whose policy
# has a limit (postgres mode keeps no others); /readyz is 503 until then, and
# an agent's own intent rebuilds that agent first.
REBUILD_AGENTS=100000
say "rebuild: $REBUILD_AGENTS more agents' windows and $((REBUILD_AGENTS / 10)) policies, then every agent's from PostgreSQL"
$PSQL -c "INSERT INTO agents (address, org) SELECT 'agent://default/rebuild/a' || g, 'default'
    FROM generate_series(1, $REBUILD_AGENTS) g ON CONFLICT DO NOTHING" >/dev/null
$PSQL -c "INSERT INTO rollup_agent (address, grain, bucket, cost_nanos, tokens_in, tokens_out, tokens_cached,
    llm_calls, tool_calls, heartbeats, intents_total, intents_succeeded, intents_failed)
    SELECT 'agent://default/rebuild/a' || g, w.grain, date_trunc(w.unit, now(), 'UTC'), g, 0, 0, 0, 0, 0, 1, 0, 0, 0
    FROM generate_series(1, $REBUILD_AGENTS) g CROSS JOIN (VALUES ('h', 'hour'), ('d', 'day'), ('m', 'month')) w(grain, unit)
    ON CONFLICT DO NOTHING" >/dev/null
$PSQL -c "INSERT INTO cost_policies (address, org, max_cost_per_day, action_on_breach, alert_thresholds)
    SELECT 'agent://default/rebuild/a' || g, 'default', 1000000000000, 'block', '500000000,1000000000'
    FROM generate_series(1, $REBUILD_AGENTS / 10) g ON CONFLICT DO NOTHING" >/dev/null
# What the rebuild brings back: every policy, and the current windows of the
# agents whose policy has a limit (server/policy_row.h's test of one).
REBUILD_ALL=$($PSQL -c "SELECT count(*) FROM agents")
REBUILD_WINDOWS=$($PSQL -c "SELECT count(*) FROM rollup_agent WHERE ((grain = 'm'
    AND bucket = date_trunc('month', now(), 'UTC')) OR (grain = 'd' AND bucket = date_trunc('day', now(), 'UTC'))
    OR (grain = 'h' AND bucket >= date_trunc('hour', now(), 'UTC') - interval '1 hour'))
    AND address IN (SELECT address FROM cost_policies WHERE num_nonnulls(max_intents_per_hour, max_intents_per_day,
    max_cost_per_hour, max_cost_per_day, max_cost_per_month) > 0)")
REBUILD_POLICIES=$($PSQL -c "SELECT count(*) FROM cost_policies")
# Single heartbeats keep coming at a fixed rate from a second before the
# flush: their latency shows what the rebuild's writes, which share
# costmeshd's Redis connection with them, cost the live traffic.
REBUILD_RATE=1000
say "rebuild: single heartbeats at $REBUILD_RATE req/s for ${D_REBUILD}s around it"
run_wrk rebuild_hb single $CONNS $D_REBUILD $REBUILD_RATE "$PORT" "$WORK/rebuild_hb.out" &
BG_PIDS="$!"
sleep 1
# ASYNC: a synchronous FLUSHALL of these 700,000 keys holds Redis itself for
# most of a second, which is the flush's cost, not the rebuild's.
redis-cli -p "$REDIS_PORT" FLUSHALL ASYNC >/dev/null
t0=$(date +%s%N)
# The first intent after the flush finds the mirror gone (the heartbeats
# may have started the rebuild already) and is answered after its own
# agent's part.
FIRST_INTENT_S=$(curl -s -o /dev/null -w '%{time_total}' -X POST "http://127.0.0.1:$PORT/v1/mesh/intents" \
    -H "x-api-key: $KEY" -d '{"agent":"agent://default/rebuild/a7"}')
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/readyz")" = 200 ]; do
    [ $(( ($(date +%s%N) - t0) / 1000000000 )) -lt 600 ] || die "the rebuild did not end within 600 s"
    sleep 0.05
done
REBUILD_S=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
wait $BG_PIDS || die "heartbeat load during the rebuild failed"
BG_PIDS=""
# One pass of the health sweep (every 15 s on each replica) over all of them;
# the second pass is the steady state (the first records their new health).
$PSQL -f "$WORK/health.sql" >/dev/null
t1=$(date +%s%N)
$PSQL -f "$WORK/health.sql" >/dev/null
SWEEP_MS=$(awk -v a="$t1" -v b="$(date +%s%N)" 'BEGIN { printf "%.0f", (b - a) / 1e6 }')
SWEEP_AGENTS=$($PSQL -c "SELECT count(*) FROM agents")
say "rebuild: $REBUILD_S s; the first intent after the flush answered in ${FIRST_INTENT_S} s"

stop_server

# ------------------------------------------ costmeshd, COSTMESH_DURABLE=redis

# The same loads with Redis as the durable point, Redis fsyncing every write
# before it answers (as scripts/services.sh configures it for this mode) for
# this part only. costmeshd gets a database of its own, so its bytes per
# heartbeat are its own and persist_mark starts from nothing, and an emptied
# Redis (the mirror the rebuild above made is not its business).
say "redis mode: appendfsync always, database costmesh_redis"
redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
redis-cli -p "$REDIS_PORT" CONFIG SET appendfsync always >/dev/null
$PSQL_AS -U postgres -d postgres -c "CREATE DATABASE costmesh_redis OWNER costmesh" >/dev/null
start_server redis "$R_PORT" costmesh_redis
load redis
read -r R_DRAIN_N R_DRAIN_S R_DRAIN_RATE R_DRAIN_CS R_DRAIN_CR R_DRAIN_CP < "$WORK/drain.txt"
pg_bytes costmesh_redis > "$WORK/redis_pg_bytes.txt"
read -r R_PG_ROWS R_PG_BYTES < "$WORK/redis_pg_bytes.txt"
memory redis > "$WORK/redis_memory.txt"
read -r R_RSS_KB R_HWM_KB R_REDIS_MEM R_REDIS_KEYS < "$WORK/redis_memory.txt"
stop_server
redis-cli -p "$REDIS_PORT" CONFIG SET appendfsync everysec >/dev/null
$PSQL_AS -U postgres -d postgres -c "DROP DATABASE costmesh_redis" >/dev/null

# ------------------------------------------------- (c) PostgreSQL ceiling

# The persister's batch is BATCH (2000) entries in server/persist.c.
PG_CEILINGS="group:100 group:1000 persist:2000"
for c in $PG_CEILINGS; do
    stmt=${c%:*} rows=${c#*:}
    say "postgres ceiling: $stmt statement with $rows rows per statement, ${D_PG}s"
    s0=$(snapshot)
    "$BUILD/bench/pg_ceiling" "host=127.0.0.1 port=$PG_PORT user=costmesh dbname=costmesh" \
        "$stmt" "$rows" "$D_PG" "$AGENTS" "pgc$stmt$rows$NONCE" > "$WORK/pg_$stmt$rows.out" \
        || die "pg_ceiling failed"
    sleep 0.5 # let the postmaster reap the backend, so its CPU is counted
    s1=$(snapshot)
    secs=$(val "$WORK/pg_$stmt$rows.out" seconds)
    awk -v a="$s0" -v b="$s1" -v hz="$HZ" -v s="$secs" \
        'BEGIN { split(a, x, " "); split(b, y, " "); printf " pg_cpu=%.0f\n", 100 * (y[3] - x[3]) / hz / s }' \
        >> "$WORK/pg_$stmt$rows.out"
done
PG_CEIL_1000=$(val "$WORK/pg_group1000.out" rows_per_s)

# ---------------------------------------------------------------- report

DATE=$(date -u +%Y-%m-%d)
mkdir -p bench/results
OUT="bench/results/$DATE.md"
[ "$SHORT" = 1 ] && OUT="bench/results/$DATE-short.md"
# A run under a profiler is not a result: keep it apart.
[ -n "${BENCH_WRAP:-}" ] && OUT="${OUT%.md}-wrapped.md"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

CEIL_SINGLE=$(col ceil_single 3)
PG_PER_HB=$(ratio "$PG_BYTES" "$PG_ROWS" | awk '{ printf "%.0f", $1 }')
R_PG_PER_HB=$(ratio "$R_PG_BYTES" "$R_PG_ROWS" | awk '{ printf "%.0f", $1 }')
CEIL_BATCH_HB=$(col ceil_batch 4)
PG_CEIL_PERSIST=$(val "$WORK/pg_persist2000.out" rows_per_s)
# The backlog of 2 (sample_backlog's columns): in postgres mode the ingest
# jobs and the writer connections' queue, in redis mode the ingest jobs and
# the queue in Redis.
backlog_of() { # backlog_of P: one line per sample, "elapsed backlog accepted"
    awk -v q="$([ -n "$1" ] && echo 1 || echo 0)" '$2 != "NA" { print $1, $2 + (q ? $6 : $3), $5 }' "$WORK/${1}backlog.txt"
}
# Flat: the backlog never grew past BOUND, and its last third averages no
# more than its first third plus a quarter of that bound; and the
# heartbeats/s of the last third is at least 90% of the first third's.
# The bound in postgres mode is what the closed-loop connections can hold in
# flight (one job each, plus the writer's statement); in redis mode, that
# plus two of the persister's batches (one being stored, one arriving).
backlog_flat() { # backlog_flat P BOUND
    backlog_of "$1" | awk -v bound="$2" '
    { n++; t[n] = $1; b[n] = $2; acc[n] = $3 }
    END {
        if (n < 3) { print "no"; exit }
        k = int(n / 3); if (k < 1) k = 1
        for (i = 1; i <= k; i++) { f += b[i] } ; for (i = n - k + 1; i <= n; i++) { l += b[i] }
        r1 = (acc[1 + k] - acc[1]) / (t[1 + k] - t[1] + 1e-9)
        r2 = (acc[n] - acc[n - k]) / (t[n] - t[n - k] + 1e-9)
        max = 0; for (i = 1; i <= n; i++) if (b[i] > max) max = b[i]
        ok = max <= bound && l / k <= f / k + bound / 4 && r2 >= 0.9 * r1
        printf "%s (heartbeats/s first third %.0f, last third %.0f)\n", ok ? "yes" : "no", r1, r2 }'
}
backlog_series() { backlog_of "$1" | awk '{ printf "%s%d", (NR > 1 ? " " : ""), $2 }'; }
BACKLOG_FLAT=$(backlog_flat "" $((BATCH_CONNS + 1)))
R_BACKLOG_FLAT=$(backlog_flat redis_ $((BATCH_CONNS + 2 * 2000)))

# label_of NAME SECS: a row's name in the tables (a redis-mode row, named
# redis_..., says so).
label_of() {
    local n=$1 mode=""
    case $n in redis_*) n=${n#redis_} mode=", durable=redis" ;; esac
    case $n in
        ceil_single) echo "(a) HTTP-only ceiling, single heartbeat" ;;
        ceil_batch) echo "(a) HTTP-only ceiling, 100 per request" ;;
        ceil_handoff) echo "(a') HTTP-only + suspend/resume hand-off" ;;
        single_max) echo "1. single heartbeats, max$mode" ;;
        single_nopg) echo "1. single heartbeats, max$mode, PostgreSQL stopped (SIGSTOP) for the run" ;;
        single_half) echo "1. single heartbeats, paced to half$mode" ;;
        single_open) echo "1. single heartbeats, open loop at half$mode" ;;
        batch) echo "2. batched (100/request), ${2%.*} s$mode" ;;
        intent_max) echo "3. intent admission, max$mode" ;;
        intent_half) echo "3. intent admission, paced to half$mode" ;;
        spend) echo "4. spend polling (during 1)$mode" ;;
        spend_hb) echo "4. single heartbeats during spend$mode" ;;
        *) echo "$1" ;;
    esac
}

fmt_table() {
    echo "| run | conns | req/s | heartbeats/s | p50 ms | p99 ms | p99.9 ms | errors | costmeshd % | redis % | postgres % | wrk % | of ceiling |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    while IFS=$'\t' read -r n c rps hbs p50 p99 p999 bad cs cr cp cw secs; do
        # A redis-mode row: named so, compared with its own mode's max and
        # also with (a) and the postgres-mode row of the same load.
        local label ceil="" p="" also=""
        label=$(label_of "$n" "$secs")
        case $n in redis_*) p=redis_ ;; esac
        [ -n "$p" ] && also=", $(ratio "$rps" "$CEIL_SINGLE") of (a)"
        case ${n#"$p"} in
            single_max) ceil="$(ratio "$rps" "$CEIL_SINGLE") of (a)"
                        [ -n "$p" ] && also=", $(ratio "$rps" "$(col single_max 3)")x durable=postgres" ;;
            single_nopg) ceil="$(ratio "$rps" "$CEIL_SINGLE") of (a)"
                         also=", $(ratio "$rps" "$(col "${p}single_max" 3)")x with PostgreSQL running" ;;
            single_half | single_open) ceil="$(ratio "$rps" "$(col "${p}single_max" 3)") of max" ;;
            batch) ceil="$(ratio "$hbs" "$CEIL_BATCH_HB") of (a)"
                   if [ -n "$p" ]; then
                       also=", $(ratio "$hbs" "$PG_CEIL_PERSIST") of (c) persist 2000 rows, $(ratio "$hbs" "$(col batch 4)")x durable=postgres"
                   else
                       also=", $(ratio "$hbs" "$PG_CEIL_1000") of (c) 1000 rows"
                   fi ;;
            intent_max) ceil="$(ratio "$rps" "$CEIL_SINGLE") of (a)"
                        [ -n "$p" ] && also=", $(ratio "$rps" "$(col intent_max 3)")x durable=postgres" ;;
            intent_half) ceil="$(ratio "$rps" "$(col "${p}intent_max" 3)") of max" ;;
            spend) ceil="$(ratio "$rps" "$CEIL_SINGLE") of (a)"; also="" ;;
            spend_hb) ceil="$(ratio "$rps" "$CEIL_SINGLE") of (a)"; also=""
                      cs="(above)"; cr="(above)"; cp="(above)" ;;
        esac
        [ "$hbs" = 0 ] && hbs="-"
        echo "| $label | $c | $rps | $hbs | $p50 | $p99 | $p999 | $bad | $cs | $cr | $cp | $cw | $ceil$also |"
    done < "$ROWS"
    echo "| the persister emptying the queue 2 left, durable=redis: $R_DRAIN_N heartbeats in $R_DRAIN_S s | 1 | | $R_DRAIN_RATE | | | | | $R_DRAIN_CS | $R_DRAIN_CR | $R_DRAIN_CP | | $(ratio "$R_DRAIN_RATE" "$PG_CEIL_PERSIST") of (c) persist 2000 rows |"
    echo "| (b) Redis MERGE ceiling, 3 windows per call, -P 16 | 50 | $REDIS_CEIL | $REDIS_CEIL | | | | | | $REDIS_CPU | | | 1. used $(ratio "$(col single_max 4)" "$REDIS_CEIL") of it |"
    echo "| (d) candidate: Redis as the durable point (appendfsync always), dedupe + 3 windows + queue per call | 64 | $REDIS_DURABLE | $REDIS_DURABLE | $REDIS_DURABLE_P50 | $REDIS_DURABLE_P99 | | | | $REDIS_DURABLE_CPU | | | $(ratio "$REDIS_DURABLE" "$CEIL_SINGLE") of (a) |"
    local c stmt rows f
    for c in $PG_CEILINGS; do
        stmt=${c%:*} rows=${c#*:} f="$WORK/pg_${c/:/}.out"
        echo "| (c) PostgreSQL ${stmt}_sql, $rows rows/statement | 1 | $(val "$f" statements | awk -v s="$(val "$f" seconds)" '{ printf "%.0f", $1 / s }') | $(val "$f" rows_per_s) | $(val "$f" ms_per_statement) (mean) | | | | | | $(val "$f" pg_cpu) | | |"
    done
}

# cpu_table: each process's CPU per answered request in the runs that set
# the single-heartbeat and admission maxima, beside what a request may cost
# in all for the machine's cores to serve 0.3 x and 0.6 x (a): where the
# time goes, from the same run. The load generator's share is in it because
# it shares the cores, as in every row of the table above.
cpu_table() {
    local cores n
    cores=$(nproc)
    echo "| CPU per answered request, us (cpu % x 10,000 / req/s; the (a) rows' server is http_ceiling) | req/s | server | Redis | PostgreSQL | load generator | all |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for n in ceil_single ceil_handoff single_max redis_single_max redis_single_nopg intent_max redis_intent_max; do
        awk -F'\t' -v n="$n" -v label="$(label_of "$n")" '$1 == n {
            us = 1e4 / $3; printf "| %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n", label, $3,
                $9 * us, $10 * us, $11 * us, $12 * us, ($9 + $10 + $11 + $12) * us }' "$ROWS"
    done
    for n in 0.3 0.6; do
        awk -v c="$cores" -v a="$CEIL_SINGLE" -v k="$n" 'BEGIN {
            printf "| what %s x (a) leaves a request on %d cores, all processes together | %.0f | | | | | %.0f |\n",
                k, c, k * a, c * 1e6 / (k * a) }'
    done
}

# stage_table: where a request of each mode's single-heartbeat maximum
# spent its time, by the server's own clock (stages, around run 1), beside
# the whole of it, connections / req/s (Little's law: a closed loop keeps
# every connection's request in flight; wrk's own mean is not used, it
# weighs requests unevenly): what is left is the HTTP layer and the load
# generator. The group commits' size is from the same counters.
stage_table() {
    local p
    echo "| where a request of run 1 spent its time, mean ms (server: /metrics' costmesh_ingest_stage_seconds; whole: connections / req/s) | routing | queue | store | hot | HTTP and client | whole | heartbeats per group commit |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for p in "" redis_; do
        [ -f "$WORK/${p}stages1" ] || continue
        awk -v label="$(label_of "${p}single_max")" -v conns="$(col "${p}single_max" 2)" \
            -v rps="$(col "${p}single_max" 3)" '
            NR == FNR { for (i = 1; i <= 7; i++) a[i] = $i; next }
            { n = $5 - a[5]; if (n <= 0 || rps <= 0) exit
              for (i = 1; i <= 4; i++) { d[i] = 1000 * ($i - a[i]) / n; sum += d[i] }
              whole = 1000 * conns / rps
              printf "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f |\n", label, d[1], d[2], d[3], d[4],
                  whole - sum, whole, ($6 > a[6]) ? ($7 - a[7]) / ($6 - a[6]) : 0 }' \
            "$WORK/${p}stages0" "$WORK/${p}stages1"
    done
}

verdict() { awk "BEGIN { exit !($1) }" && echo PASS || echo MISS; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
thousands() { echo "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }

# targets P MODE RSS_KB FLAT PG_BYTES_PER_HB: the targets' rows for the rows
# named P.
targets() {
    local p=$1 m=$2 rss=$3 flat=$4 per=$5 max hb secs imax during loss
    max=$(col "${p}single_max" 3) hb=$(col "${p}batch" 4) secs=$(col "${p}batch" 13)
    imax=$(col "${p}intent_max" 3) during=$(col "${p}spend_hb" 3)
    loss=$(awk -v a="$max" -v b="$during" 'BEGIN { printf "%.0f", 100 * (1 - b / a) }')
    local k why
    for k in 0.3 0.6; do
        why="issue 13's bar"; [ "$k" = 0.6 ] && why="the goal beyond it"
        echo "| single heartbeats >= $k x HTTP-only ceiling ($why)$m | $(ratio "$max" "$CEIL_SINGLE") x ($max / $CEIL_SINGLE req/s) | $(verdict "$max >= $k * $CEIL_SINGLE") |"
    done
    echo "| single heartbeats p99 <= 10 ms at half the max rate$m | $(col "${p}single_half" 6) ms at $(col "${p}single_half" 3) req/s (the disk alone held a write over 10 ms $FLOOR_OVER10 % of the time, (e)) | $(verdict "$(col "${p}single_half" 6) <= 10") |"
    echo "| batched >= 60,000 heartbeats/s for 60 s, backlog flat$m | $hb hb/s over $secs s, flat: ${flat%% *} | $(verdict "$hb >= 60000 && \"${flat%% *}\" == \"yes\" && $SHORT != 1")$([ "$SHORT" = 1 ] && echo " (short run)") |"
    echo "| intent admission p99 <= 2 ms at half the max rate$m | $(col "${p}intent_half" 6) ms at $(col "${p}intent_half" 3) req/s (the disk alone held a write over 2 ms $FLOOR_OVER2 % of the time, (e)) | $(verdict "$(col "${p}intent_half" 6) <= 2") |"
    echo "| intent admission max >= 0.3 x HTTP-only ceiling$m | $(ratio "$imax" "$CEIL_SINGLE") x ($imax / $CEIL_SINGLE req/s) | $(verdict "$imax >= 0.3 * $CEIL_SINGLE") |"
    echo "| $SPEND_CONNS clients polling spend cost single heartbeats <= 15 % of their rate$m | $loss % ($max -> $during req/s) | $(verdict "$loss <= 15") |"
    echo "| PostgreSQL bytes per heartbeat <= 200$m | $per | $(verdict "$per <= 200") |"
    echo "| server RSS <= 64 MiB with $(thousands $MEM_AGENTS) active agents$m | $(mib "$rss") | $(verdict "$rss <= 64 * 1024") |"
}

report() {
    echo "# costmesh benchmark, $DATE ($MODE_NAME run)"
    echo
    echo "Command: \`make bench\`$([ "$SHORT" = 1 ] && echo " with BENCH_SHORT=1")."
    echo "Machine: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)),"\
         "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r);"\
         "$(redis-server --version | awk '{ print $3 }' | tr -d 'v='), PostgreSQL $($PSQL -c 'SHOW server_version' | awk '{ print $1 }'),"\
         "libmicrohttpd $(pkg-config --modversion libmicrohttpd 2>/dev/null), wrk -t$THREADS; everything on loopback."
    echo
    echo "CPU columns are percent of one core over the run (200 = both cores; the costmeshd column of the (a)"
    echo "rows is http_ceiling's); errors are non-2xx answers plus"
    echo "socket errors. \"Paced to half\" runs use wrk's delay() per connection (no wrk2); their req/s is what"
    echo "was achieved. Latencies are wrk's, from each request's write to its response. The \"open loop\" row is"
    echo "bench/openloop.c at the same target: each request is sent at its scheduled time, or as soon as a"
    echo "connection is free, and timed from its scheduled time, so a stall counts (its wrk % is the generator's)."
    echo "Rows marked durable=redis are the same loads against costmeshd with COSTMESH_DURABLE=redis (Redis"
    echo "with appendfsync always for them only, a database of its own), run after the postgres-mode ones; the"
    echo "persister's row is the queue the batched load (2) left, stored into PostgreSQL before 3 starts. The"
    echo "\"PostgreSQL stopped\" row is redis mode's run 1 again with PostgreSQL's processes stopped (SIGSTOP) for its"
    echo "length: the acknowledged path alone (it needs no PostgreSQL for registered agents and known keys); the"
    echo "queue it leaves is drained before the next run."
    echo
    fmt_table
    echo
    cpu_table
    echo
    stage_table
    echo
    echo "| measure | value |"
    echo "|---|---:|"
    echo "| costmeshd RSS after $(thousands $MEM_AGENTS) agents (VmRSS; peak VmHWM) | $(mib "$RSS_KB") (peak $(mib "$HWM_KB")) |"
    echo "| Redis used_memory after $(thousands $MEM_AGENTS) agents ($REDIS_KEYS keys) | $(mib $((REDIS_MEM / 1024))) |"
    echo "| PostgreSQL bytes per heartbeat (heartbeats + rollups, $PG_ROWS rows) | $PG_PER_HB |"
    echo "| durable=redis: costmeshd RSS after $(thousands $MEM_AGENTS) agents (VmRSS; peak VmHWM) | $(mib "$R_RSS_KB") (peak $(mib "$R_HWM_KB")) |"
    echo "| durable=redis: Redis used_memory after $(thousands $MEM_AGENTS) agents, queue empty ($R_REDIS_KEYS keys, dedupe marks included) | $(mib $((R_REDIS_MEM / 1024))) |"
    echo "| durable=redis: PostgreSQL bytes per heartbeat (heartbeats + rollups, $R_PG_ROWS rows) | $R_PG_PER_HB |"
    echo "| a day at one heartbeat a minute ($DAY_AGENTS agents, $DAY_ROWS rows): bytes per heartbeat while kept (raw partition + dedupe id + rollups) | $((DAY_RAW_PER + DAY_IDS_PER + DAY_ROLL_PER)) ($DAY_RAW_PER + $DAY_IDS_PER + $DAY_ROLL_PER) |"
    echo "| the same day once the retention dropped its partition and its ids expired (rollups only) | $DAY_ROLL_PER |"
    echo "| persistence backlog every 5 s during 2 (ingest jobs + writer queue) | $(backlog_series "") |"
    echo "| backlog flat during 2 | $BACKLOG_FLAT |"
    echo "| durable=redis: backlog every 5 s during 2 (ingest jobs + XLEN cm:q) | $(backlog_series redis_) |"
    echo "| durable=redis: backlog flat during 2 | $R_BACKLOG_FLAT |"
    echo "| the rollup worker summing what 2 left, until its lag gauge reads 0 (3 starts after it; in durable=redis after the queue drained) | $(cat "$WORK/rollups.txt") s; durable=redis $(cat "$WORK/redis_rollups.txt") s |"
    echo "| Redis rebuild after FLUSHALL, $REBUILD_ALL agents ($REBUILD_WINDOWS current windows of agents with a limit, $REBUILD_POLICIES policies): until /readyz is 200 | $REBUILD_S s |"
    echo "| the first intent after that FLUSHALL (its agent rebuilt on demand) | $(awk -v s="$FIRST_INTENT_S" 'BEGIN { printf "%.1f ms", s * 1000 }') |"
    echo "| single heartbeats at $REBUILD_RATE req/s for ${D_REBUILD} s from a second before that FLUSHALL: answered, non-2xx, p99 / p99.9 | $(val "$WORK/rebuild_hb.out" requests), $(val "$WORK/rebuild_hb.out" non2xx), $(awk -v a="$(val "$WORK/rebuild_hb.out" p99_us)" -v b="$(val "$WORK/rebuild_hb.out" p999_us)" 'BEGIN { printf "%.1f / %.1f ms", a / 1000, b / 1000 }') |"
    echo "| one health sweep pass over $SWEEP_AGENTS agents (psql, steady state) | $SWEEP_MS ms |"
    echo "| (e) the disk: one 8 KiB write + fdatasync, 50 a second for $D_FLOOR s before any load (bench/fsync_floor.c, PostgreSQL's folder): p50 / p90 / p99 / p99.9 / max | $(floor_ms p50_us) / $(floor_ms p90_us) / $(floor_ms p99_us) / $(floor_ms p999_us) / $(floor_ms max_us) ms |"
    echo "| (e) share of that time a durable write arriving would have waited more than 2 ms / 10 ms for the flush under way alone (over 1 %: no open-loop p99 at or under that bound, whatever the design) | $FLOOR_OVER2 % / $FLOOR_OVER10 % |"
    echo
    echo "| target | result | |"
    echo "|---|---|---|"
    targets "" "" "$RSS_KB" "$BACKLOG_FLAT" "$PG_PER_HB"
    targets redis_ ", durable=redis" "$R_RSS_KB" "$R_BACKLOG_FLAT" "$R_PG_PER_HB"
}

report > "$OUT"
cat "$OUT"
say "written to $OUT"
