#!/usr/bin/env bash
# Issue 11's figures: the cost of crossing servers, in one run per scenario (chatbench
# --layout both: local as A, across as B, alternating), on a two-server cluster on a fresh
# MySQL database and a private Redis (so that its command counts are this cluster's only).
#
#   benches/route.sh BIN_DIR OUT_DIR
#
# BIN_DIR holds chatserver and chatbench; OUT_DIR gets one JSON and one table per scenario.
# Environment: ROUTE_ROUNDS (3), ROUTE_DURATION (5), ROUTE_PORT (17400: servers on it and +1,
# Redis on +2), BENCH_MYSQL (mysql://root@127.0.0.1:3306), ROUTE_ONLY_PAIRS=1 (the two pairs
# runs only), ROUTE_DB=1 (the database's work per message: see below). Stops only what it
# started.
set -euo pipefail
BIN=${1:?BIN_DIR}
OUT=${2:?OUT_DIR}
ROUNDS=${ROUTE_ROUNDS:-3}
DUR=${ROUTE_DURATION:-5}
PORT=${ROUTE_PORT:-17400}
MYSQL_URL=${BENCH_MYSQL:-mysql://root@127.0.0.1:3306}
N1=127.0.0.1:$PORT
N2=127.0.0.1:$((PORT + 1))
RPORT=$((PORT + 2))
DBNAME=cc_route_$$
PREFIX=ccroute$$:
mkdir -p "$OUT"
PIDS=()

sql() { mariadb --protocol=TCP -h 127.0.0.1 -P 3306 -u root -N -B -e "$1"; }
cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    sql "DROP DATABASE IF EXISTS \`$DBNAME\`"
}
trap cleanup EXIT

redis-server --port "$RPORT" --save '' --appendonly no --bind 127.0.0.1 \
    >"$OUT/redis.log" 2>&1 &
RPID=$!
PIDS+=("$RPID")
for _ in $(seq 100); do
    redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break
    sleep 0.1
done
sql "CREATE DATABASE \`$DBNAME\` DEFAULT CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci"
DB="$MYSQL_URL/$DBNAME?prefer_socket=false"
start() {
    "$BIN/chatserver" --listen "$1" --db "$DB" --redis "redis://127.0.0.1:$RPORT" \
        --channel-prefix "$PREFIX" --node-id "$2" --argon2-m-kib 64 --log-level warn \
        --max-registrations-per-min 0 >"$OUT/$2.log" 2>&1 </dev/null &
    PIDS+=("$!")
    eval "$3=$!"
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null && return
        sleep 0.1
    done
    echo "$2 did not start" >&2
    exit 1
}
start "$N1" route1 P1
start "$N2" route2 P2
COMMON=(--targets "$N1,$N2" --server-pid "$P1" --server-pid "$P2"
    --redis "redis://127.0.0.1:$RPORT" --timeout 300)
run() {
    local name=$1
    shift
    echo "== $name: chatbench $*" | tee "$OUT/$name.txt"
    "$BIN/chatbench" "$@" "${COMMON[@]}" --json "$OUT/$name.json" | tee -a "$OUT/$name.txt"
}
# ROUTE_DB=1: what the database does per message instead of the scenarios below. Each layout
# is run on its own (local, across, alternating, ROUNDS times, windows 16 and 1), and around
# each run the MariaDB server's CPU (/proc/PID/stat, user + system) and its counters are read:
# one line per run in OUT/db.txt with msgs/s, the chat servers' and MariaDB's CPU in µs a
# message, commits, statements (Questions) per commit and InnoDB row-lock waits and wait time.
if [ "${ROUTE_DB:-0}" = 1 ]; then
    MPID=$(pgrep -x mariadbd || pgrep -x mysqld)
    ticks() { awk '{print $14 + $15}' "/proc/$MPID/stat"; }
    # Com_commit, Innodb_row_lock_time, Innodb_row_lock_waits, Questions (sorted by name).
    counters() {
        sql "SHOW GLOBAL STATUS WHERE Variable_name IN ('Com_commit', 'Questions', \
            'Innodb_row_lock_waits', 'Innodb_row_lock_time')" | awk '{printf "%s ", $2}'
    }
    HZ=$(getconf CLK_TCK)
    for w in 16 1; do
        for _ in $(seq "$ROUNDS"); do
            for layout in local across; do
                read -r c0 lt0 lw0 q0 <<<"$(counters)"
                t0=$(ticks)
                out=$("$BIN/chatbench" pairs --layout "$layout" --users 100 --window "$w" \
                    --duration "$DUR" "${COMMON[@]}")
                t1=$(ticks)
                read -r c1 lt1 lw1 q1 <<<"$(counters)"
                field() { awk -v k="$1" '$1 == k {print $2}' <<<"$out"; }
                sent=$(field sent)
                awk -v l="$layout" -v w="$w" -v r="$(field msgs_per_sec)" \
                    -v s="$(field server_cpu_us_per_msg)" -v t=$((t1 - t0)) -v hz="$HZ" \
                    -v n="$sent" -v c=$((c1 - c0)) -v q=$((q1 - q0)) -v lw=$((lw1 - lw0)) \
                    -v lt=$((lt1 - lt0)) 'BEGIN { printf "%-6s w%-2s %9.0f msgs/s  server %5.2f µs  mariadb %5.2f µs  %5d commits  %5.1f statements/commit  %5d lock waits  %5d ms waiting\n", l, w, r, s, t * 1e6 / hz / n, c, q / (c > 0 ? c : 1), lw, lt }' \
                    | tee -a "$OUT/db.txt"
            done
        done
    done
    exit 0
fi
if [ "${ROUTE_ONLY_10K:-0}" != 1 ]; then
run pairs-w1 pairs --layout both --rounds "$ROUNDS" --users 100 --window 1 --duration "$DUR"
run pairs-w16 pairs --layout both --rounds "$ROUNDS" --users 100 --window 16 --duration "$DUR"
[ "${ROUTE_ONLY_PAIRS:-0}" = 1 ] && exit 0
run group-1000 group --layout both --rounds "$ROUNDS" --users 1000 --senders 1 --duration "$DUR"
# ROUTE_PROFILE=1: a profile of node 1 while pairs cross the servers (window 16): 5 s into a
# 12 s run, `perf record -g` for 4 s; the top of `perf report` goes to OUT/perf-node1.txt.
if [ "${ROUTE_PROFILE:-0}" = 1 ] && command -v perf >/dev/null; then
    ( sleep 8; perf record -g -o "$OUT/perf-node1.data" -p "$P1" -- sleep 4 ) \
        >"$OUT/perf-record.log" 2>&1 &
    PERF=$!
    run profile-pairs-w16 pairs --layout across --users 100 --window 16 --duration 12
    wait "$PERF"
    set +o pipefail # head closes the pipe early
    perf report -i "$OUT/perf-node1.data" --no-children --sort comm,sym --stdio -g none \
        2>/dev/null | grep -v '^#' | grep -v '^$' | head -80 >"$OUT/perf-node1.txt"
    perf report -i "$OUT/perf-node1.data" --no-children --sort comm --stdio -g none \
        2>/dev/null | grep -v '^#' | grep -v '^$' | head -20 >"$OUT/perf-node1-threads.txt"
    rm -f "$OUT/perf-node1.data"
    set -o pipefail
fi
fi

# Last: 10,000 members (their disconnects keep the servers busy for a while after it).
run group-10000 group --layout across --users 10000 --senders 1 --duration "$DUR" \
    --concurrency 16
