#!/usr/bin/env bash
# benches/run.sh: reproduces the figures of BENCHMARKS.md in one command.
#
#   benches/run.sh              build (cargo build --release), start everything, run every
#                               scenario, print the summary, stop everything it started
#   benches/run.sh --summary DIR   print the summary of the results in DIR again
#
# What it starts (and stops on exit, whatever happens: trap EXIT):
#   single   chatserver on SQLite (a fresh file), 127.0.0.1:$PORT        pairs, group
#   node1/2  two chatservers on a fresh MySQL database cc_bench_<pid> and Redis with the channel
#            prefix ccbench<pid>: , 127.0.0.1:$PORT+1 and +2             pairs/group cluster
#   nginx    the repository's nginx.conf in front of node1/2, 127.0.0.1:$PORT+3
#   idle     a fresh SQLite chatserver, 127.0.0.1:$PORT+4                idle
#   logins   a fresh SQLite chatserver with the default argon2 (m=19456 KiB, t=2, p=1),
#            127.0.0.1:$PORT+5                                           logins
# Every server but `logins` runs with --argon2-m-kib 64: pairs/group/idle do not measure the
# password hash, and a 19 MiB hash per setup login would only slow the setup (and, for idle,
# inflate the RSS with hashing memory). MariaDB and Redis must already run; they are never
# stopped or flushed: only the database and the Redis keys of this run are removed.
#
# Environment:
#   BENCH_OUT        results folder (default target/bench-results/<date>-<pid>): one JSON and
#                    one text file per run, server logs, summary.txt
#   BENCH_PORT       first port (default 17000; uses PORT..PORT+5)
#   BENCH_ROUNDS     repetitions of the key scenarios, to show the spread (default 3)
#   BENCH_DURATION   seconds of measured load per run (default 5)
#   BENCH_IDLE_USERS idle connections asked for (default 20000; chatbench caps N at the
#                    open-file limit minus a margin)
#   BENCH_MYSQL      MySQL server URL without database (default mysql://root@127.0.0.1:3306)
#   BENCH_REDIS      Redis URL (default redis://127.0.0.1:6379)
#   BENCH_NO_BUILD=1 use the existing target/release binaries
#   NGINX            the nginx binary (default: nginx on the PATH or /usr/sbin/nginx)
set -euo pipefail

SUMMARY_ONLY=
if [ "${1:-}" = --summary ]; then # benches/run.sh --summary DIR: the summary of a past run
    [ -d "${2:-}" ] || { echo "usage: $0 [--summary RESULTS_DIR]" >&2; exit 2; }
    SUMMARY_ONLY=1
    BENCH_OUT=$(cd "$2" && pwd)
fi
cd "$(dirname "$0")/.."
ROOT=$PWD
PORT=${BENCH_PORT:-17000}
ROUNDS=${BENCH_ROUNDS:-3}
DUR=${BENCH_DURATION:-5}
IDLE_USERS=${BENCH_IDLE_USERS:-20000}
MYSQL_URL=${BENCH_MYSQL:-mysql://root@127.0.0.1:3306}
REDIS_URL=${BENCH_REDIS:-redis://127.0.0.1:6379}
OUT=${BENCH_OUT:-$ROOT/target/bench-results/$(date +%Y%m%d-%H%M%S)-$$}
DBNAME=cc_bench_$$
PREFIX=ccbench$$:
STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
BENCH_TIMEOUT=180 # chatbench's own hard bound per run (setup included), seconds
KILL_AFTER=400    # and the shell's, in case chatbench hangs anyway

SINGLE=127.0.0.1:$PORT
NODE1=127.0.0.1:$((PORT + 1))
NODE2=127.0.0.1:$((PORT + 2))
LB=127.0.0.1:$((PORT + 3))
IDLE=127.0.0.1:$((PORT + 4))
LOGINS=127.0.0.1:$((PORT + 5))

say() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "error: $*"; exit 1; }

RUN=$OUT/run
[ -n "$SUMMARY_ONLY" ] || mkdir -p "$RUN"
FAILED=()

# ---------------------------------------------------------------------------------------------
# Starting and stopping (only what this script started, by pid)

PIDS=()       # chat servers, in start order
declare -A PID=()
NGINX_PID=
DB_CREATED=

port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/${1%:*}/${1##*:}" 2>/dev/null; }

mysql_host() { local h=${MYSQL_URL#*://}; h=${h##*@}; printf '%s' "${h%%/*}"; }
sql() {
    local hp
    hp=$(mysql_host)
    mariadb --protocol=TCP -h "${hp%:*}" -P "${hp##*:}" -u root -N -B -e "$1"
}

cleanup() {
    local pid i
    set +e
    if [ -n "$NGINX_PID" ] && kill -0 "$NGINX_PID" 2>/dev/null; then
        kill -QUIT "$NGINX_PID"
    fi
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}" $NGINX_PID; do
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "pid $pid did not stop in 10 s: killing it"
            kill -KILL "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
    done
    if [ -n "$DB_CREATED" ]; then
        sql "DROP DATABASE IF EXISTS \`$DBNAME\`" || say "could not drop database $DBNAME"
    fi
    # Only this run's keys (the channel prefix is unique to it).
    redis-cli -u "$REDIS_URL" --scan --pattern "${PREFIX}*" 2>/dev/null |
        xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1
    rm -f /tmp/ccbench-$$-*.db /tmp/ccbench-$$-*.db-wal /tmp/ccbench-$$-*.db-shm
}
trap cleanup EXIT
trap 'say interrupted; exit 130' INT TERM

# start_server NAME ADDR DB [FLAGS...]: starts a chatserver, waits until it listens; its pid
# goes to PID[NAME].
start_server() {
    local name=$1 addr=$2 db=$3 pid i
    shift 3
    port_open "$addr" && die "$addr is taken (set BENCH_PORT)"
    # Every bench registers its users from this one address: no registration limit. No HTTP
    # front unless a bench asks for one (--http in FLAGS): several servers run at once.
    CHAT_HTTP=${CHAT_HTTP:-off} "$BIN/chatserver" --listen "$addr" --db "$db" --log-level warn \
        --max-registrations-per-min 0 "$@" \
        >"$RUN/$name.log" 2>&1 </dev/null &
    pid=$!
    PIDS+=("$pid")
    PID[$name]=$pid
    for ((i = 0; i < 300; i++)); do
        port_open "$addr" && { say "$name: pid $pid on $addr"; return; }
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$RUN/$name.log" >&2; die "$name did not start"; }
        sleep 0.1
    done
    die "$name does not listen on $addr after 30 s"
}

# stop_server NAME: SIGTERM, waits for it (10 s, then SIGKILL) and forgets it.
stop_server() {
    local pid=${PID[$1]} i p keep=()
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
    say "$1: stopped"
}

start_nginx() {
    local nginx=${NGINX:-} i
    [ -n "$nginx" ] || nginx=$(command -v nginx || echo /usr/sbin/nginx)
    [ -x "$nginx" ] || die "nginx is not installed (apt-get install -y nginx libnginx-mod-stream)"
    [ -e "$STREAM_MODULE" ] || die "nginx's stream module is missing ($STREAM_MODULE)"
    port_open "$LB" && die "$LB is taken (set BENCH_PORT)"
    mkdir -p "$RUN/nginx"
    "$ROOT/scripts/render-nginx-conf.sh" "$LB" "$NODE1" "$NODE2" >"$RUN/nginx/nginx.conf"
    "$nginx" -p "$RUN/nginx/" -c "$RUN/nginx/nginx.conf" </dev/null >>"$RUN/nginx/error.log" 2>&1 &
    NGINX_PID=$!
    for ((i = 0; i < 100; i++)); do
        port_open "$LB" && { say "nginx: pid $NGINX_PID on $LB"; return; }
        kill -0 "$NGINX_PID" 2>/dev/null || { tail "$RUN/nginx/error.log" >&2; die "nginx did not start"; }
        sleep 0.1
    done
    die "nginx does not listen on $LB"
}

# utime+stime of a process in clock ticks (0 if gone).
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# ext_pids: nginx's worker and the shared MariaDB and Redis servers. Their CPU is only read
# (from /proc) around each run, so that the cluster's cost outside the chat servers shows.
ext_pids() {
    local w=
    if [ -n "$NGINX_PID" ]; then w=$(pgrep -P "$NGINX_PID" | head -n 1 || true); fi
    printf '%s %s %s\n' "${w:-0}" "$(pgrep -xo mariadbd || pgrep -xo mysqld || echo 0)" \
        "$(pgrep -xo redis-server || echo 0)"
}
# busy_ticks: CPU ticks the whole machine spent busy (all but idle and iowait), all cores.
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
ext_ticks() {
    local p
    for p in "$@"; do
        if [ "$p" != 0 ]; then printf '%s ' "$(cpu_ticks "$p")"; else printf '0 '; fi
    done
}

# bench NAME SCENARIO ARGS...: one chatbench run into $OUT/NAME.json (+ .txt, .cmd). A failed
# run is recorded and the script goes on. The CPU that nginx's worker, MariaDB and Redis used
# during the run goes to NAME.ext as "nginx_us mariadb_us redis_us", and the whole machine's
# busy cores over the run (everything: bench, servers, setup, and whatever else runs) to
# NAME.busy: a figure near the core count with bench + server well below it means something
# else was competing.
bench() {
    local name=$1 pids t0 t1 b0 b1 w0 w1 rc=0
    shift
    read -r -a pids <<<"$(ext_pids)"
    read -r -a t0 <<<"$(ext_ticks "${pids[@]}")"
    b0=$(busy_ticks)
    w0=$(date +%s%N)
    say "$name: chatbench $*"
    printf '%s\n' "chatbench $*" >"$OUT/$name.cmd"
    timeout -k 10 "$KILL_AFTER" "$BIN/chatbench" "$@" --timeout "$BENCH_TIMEOUT" \
        --json "$OUT/$name.json" >"$OUT/$name.txt" 2>&1 || rc=$?
    read -r -a t1 <<<"$(ext_ticks "${pids[@]}")"
    b1=$(busy_ticks)
    w1=$(date +%s%N)
    awk -v t="$((b1 - b0))" -v hz="$(getconf CLK_TCK)" -v ns="$((w1 - w0))" \
        'BEGIN { printf "%.2f\n", t / hz / (ns / 1e9) }' >"$OUT/$name.busy"
    awk -v hz="$(getconf CLK_TCK)" -v a="${t0[*]}" -v b="${t1[*]}" 'BEGIN {
        n = split(a, x, " "); split(b, y, " ")
        for (i = 1; i <= n; i++) printf "%d%s", (y[i] - x[i]) * 1000000 / hz, (i < n ? " " : "\n")
    }' >"$OUT/$name.ext"
    if [ "$rc" != 0 ] || [ ! -s "$OUT/$name.json" ]; then
        say "$name FAILED (exit $rc): $(tail -n 3 "$OUT/$name.txt" | tr '\n' ' ')"
        FAILED+=("$name")
        rm -f "$OUT/$name.json"
    fi
}

# ---------------------------------------------------------------------------------------------
# Build, start, run every scenario

run_all() {
    # -----------------------------------------------------------------------------------------
    # Build and start

    if [ -z "${BENCH_NO_BUILD:-}" ]; then
        say "building (cargo build --release)"
        cargo build --release >&2
    fi
    # Copies: the binaries stay the same even if target/ is rebuilt during the run.
    mkdir -p "$OUT/bin"
    cp "$ROOT/target/release/chatserver" "$ROOT/target/release/chatbench" "$OUT/bin/"
    BIN=$OUT/bin

    ulimit -n "$(ulimit -Hn)" # the servers and the bench need a descriptor per connection

    {
        echo "date: $(date -Is)"
        echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(
        [ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no -- . ':!benches' 2>/dev/null)" ] ||
            echo ' (with uncommitted changes)')"
        echo "nproc: $(nproc)"
        echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
        echo "kernel: $(uname -r)"
    echo "settings: $DUR s per run, $ROUNDS rounds"
        echo "open files (ulimit -n / -Hn): $(ulimit -n) / $(ulimit -Hn)"
        free -g
    } >"$OUT/machine.txt"
    say "results in $OUT"

    mysql_host >/dev/null
    sql 'SELECT 1' >/dev/null || die "MySQL at $MYSQL_URL does not answer"
    redis-cli -u "$REDIS_URL" ping >/dev/null || die "Redis at $REDIS_URL does not answer"
    sql "CREATE DATABASE \`$DBNAME\` DEFAULT CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci"
    DB_CREATED=1
    CLUSTER_DB="$MYSQL_URL/$DBNAME?prefer_socket=false"
    LOW=(--argon2-m-kib 64)

    start_server single "$SINGLE" "sqlite:/tmp/ccbench-$$-single.db" "${LOW[@]}"
    start_server node1 "$NODE1" "$CLUSTER_DB" --redis "$REDIS_URL" --channel-prefix "$PREFIX" \
        --node-id bench1 "${LOW[@]}"
    start_server node2 "$NODE2" "$CLUSTER_DB" --redis "$REDIS_URL" --channel-prefix "$PREFIX" \
        --node-id bench2 "${LOW[@]}"
    start_nginx
    S=(--server-pid "${PID[single]}")
    C=(--server-pid "${PID[node1]}" --server-pid "${PID[node2]}")
    D=(--duration "$DUR")

    # -----------------------------------------------------------------------------------------
    # Scenarios

    # Pairs: single server vs the two-node cluster addressed directly (every pair split across the
    # servers), alternating single, cluster, single, cluster… so drift hits both alike.
    for ((r = 1; r <= ROUNDS; r++)); do
        for cfg in "100 1" "100 16" "1000 1"; do
            read -r users window <<<"$cfg"
            bench "pairs-u$users-w$window-single-r$r" pairs --target "$SINGLE" --users "$users" \
                --window "$window" "${D[@]}" "${S[@]}"
            bench "pairs-u$users-w$window-cluster-r$r" pairs --targets "$NODE1,$NODE2" \
                --users "$users" --window "$window" "${D[@]}" "${C[@]}"
        done
    done

    # Single server (A) vs the cluster behind nginx (B), with chatbench's own A/B alternation.
    for cfg in "100 1" "100 16" "1000 1"; do
        read -r users window <<<"$cfg"
        bench "pairs-u$users-w$window-nginx" pairs --target "$SINGLE" --compare "$LB" \
            --rounds "$ROUNDS" --users "$users" --window "$window" "${D[@]}" "${S[@]}" \
            --compare-pid "${PID[node1]}" --compare-pid "${PID[node2]}"
    done

    # Group: 1,000 members all online, one sender, window 1: single (A) vs cluster via nginx (B).
    bench group-u1000-nginx group --target "$SINGLE" --compare "$LB" --rounds "$ROUNDS" \
        --users 1000 --senders 1 --window 1 "${D[@]}" "${S[@]}" \
        --compare-pid "${PID[node1]}" --compare-pid "${PID[node2]}"

    # Idle: a fresh server, as many logged-in connections as the open-file limit allows.
    # A fresh server (and database) per round: RSS before logins is that of a new process.
    for ((r = 1; r <= ROUNDS; r++)); do
        rm -f "/tmp/ccbench-$$-idle.db"*
        start_server idle "$IDLE" "sqlite:/tmp/ccbench-$$-idle.db" "${LOW[@]}"
        bench "idle-single-r$r" idle --target "$IDLE" --users "$IDLE_USERS" --concurrency 8 \
            "${D[@]}" --server-pid "${PID[idle]}"
        stop_server idle
    done

    # Logins with the default argon2 parameters on a fresh server. Sequential (concurrency 1)
    # gives the time of one login, i.e. one hash plus the rest; the same on the m=64 server gives
    # the rest alone; concurrency 8 gives the throughput to compare with cores / hash time.
    start_server logins "$LOGINS" "sqlite:/tmp/ccbench-$$-logins.db"
    bench logins-c1-m64 logins --target "$SINGLE" --concurrency 1 "${D[@]}" "${S[@]}"
    bench logins-c1 logins --target "$LOGINS" --concurrency 1 "${D[@]}" --server-pid "${PID[logins]}"
    for ((r = 1; r <= ROUNDS; r++)); do
        bench "logins-c8-r$r" logins --target "$LOGINS" --concurrency 8 "${D[@]}" \
            --server-pid "${PID[logins]}"
    done
}

# ---------------------------------------------------------------------------------------------
# Summary

# vals FILTER FILE...: the value of the jq FILTER in each file, one per line.
vals() {
    local f=$1
    shift
    [ $# -gt 0 ] || return 0
    for x in "$@"; do
        if [ -s "$x" ]; then jq -r "$f // empty" "$x"; fi
    done
    return 0
}
# spread: "mean (min..max)" of the numbers on stdin.
spread() {
    awk -v fmt="${1:-%.0f}" '
        { v[NR] = $1; s += $1; if (NR == 1 || $1 < lo) lo = $1; if (NR == 1 || $1 > hi) hi = $1 }
        END {
            if (NR == 0) { print "-"; exit }
            m = s / NR
            if (NR == 1) printf fmt "\n", m
            else printf fmt " (" fmt ".." fmt ")\n", m, lo, hi
        }'
}
mean() { awk '{ s += $1 } END { if (NR) printf "%.6g\n", s / NR; else print "" }'; }
# ratio A B FILTER: mean(B)/mean(A) over the rounds $OUT/A-r*.json and $OUT/B-r*.json, and the
# per-round min..max (rounds paired in order).
ratio() {
    local a b
    a=$(vals "$3" "$OUT/$1"-r*.json | mean)
    b=$(vals "$3" "$OUT/$2"-r*.json | mean)
    paste <(vals "$3" "$OUT/$1"-r*.json) <(vals "$3" "$OUT/$2"-r*.json) | awk -v a="$a" -v b="$b" '
        $1 > 0 { r = $2 / $1; if (!n++ || r < lo) lo = r; if (n == 1 || r > hi) hi = r }
        END { if (a > 0) printf "%.2f (per round %.2f..%.2f)\n", b / a, lo, hi; else print "-" }'
}
# check NAME VALUE OP LIMIT: "met" or "MISSED".
check() {
    local v=$2
    [ -n "$v" ] || { printf '  %-58s %s\n' "$1" "no figure"; return; }
    if awk -v v="$v" -v l="$4" -v op="$3" 'BEGIN { exit !((op == ">=") ? v >= l : v <= l) }'; then
        printf '  %-58s %-12s %s %s: met\n' "$1" "$v" "$3" "$4"
    else
        printf '  %-58s %-12s %s %s: MISSED\n' "$1" "$v" "$3" "$4"
    fi
}

# row LABEL SEL EXT_FILES -- JSON_FILES: one line of the table from the reports SEL selects in
# the files ("" for a plain report, ".a[]" / ".b[]" for the sides of a --compare). The last
# column is the CPU of nginx's worker, MariaDB and Redis (from the .ext files) per delivered
# message; for a --compare the whole invocation's is divided by side B's deliveries (side A is
# the single server, which uses none of them, and shows none).
row() {
    local label=$1 sel=$2 ext=() del
    shift 2
    while [ "$1" != -- ]; do ext+=("$1"); shift; done
    shift
    del=$(vals "[$sel.delivered] | add" "$@" | awk '{ s += $1 } END { print s + 0 }')
    printf '%-24s %-22s %-8s %-18s %-18s %-16s %-6s %-16s %-16s %s\n' "$label" \
        "$(vals "$sel.msgs_per_sec" "$@" | spread)" \
        "$(vals "$sel.latency_us.p50" "$@" | spread)" \
        "$(vals "$sel.latency_us.p99" "$@" | spread)" \
        "$(vals "$sel.latency_us.max" "$@" | spread)" \
        "$(vals "$sel.server_cpu_us_per_msg" "$@" | spread %.2f)" \
        "$(vals "$sel.lost" "$@" | awk '{ s += $1 } END { print s + 0 }')" \
        "$(vals "$sel.bench_cores" "$@" | spread %.2f)" \
        "$([ "$sel" != '.a[]' ] && cat "${ext[@]}" 2>/dev/null | awk -v n="$del" '
            { g += $1; m += $2; r += $3 }
            END { if (n > 0) printf "%.1f/%.1f/%.1f", g / n, m / n, r / n; else print "-" }')" \
        "$(for e in "${ext[@]}"; do cat "${e%.ext}.busy" 2>/dev/null; done | spread %.2f)"
}

summary() {
    local cfg users window name f
    echo "clusterchat benchmarks: $(sed -n 's/^commit: //p' "$OUT/machine.txt"), $(nproc) cores,"
    echo "$(free -g | awk '/^Mem/ { print $2 }') GiB, kernel $(uname -r); $(sed -n 's/^settings: //p' "$OUT/machine.txt")"
    echo "figures: mean (min..max over rounds); latency in µs; cpu/msg: server µs per delivered"
    echo "message (both nodes for a cluster); lost: sum over rounds; ext: µs of nginx/MariaDB/Redis"
    echo "per message; busy: cores the whole machine used during the run (of $(nproc))"
    echo
    printf '%-24s %-22s %-8s %-18s %-18s %-16s %-6s %-16s %-16s %s\n' run msgs/s p50 p99 max \
        cpu/msg lost bench_cores ext busy
    for cfg in "100 1" "100 16" "1000 1"; do
        read -r users window <<<"$cfg"
        for mode in single cluster; do
            name=pairs-u$users-w$window-$mode
            row "$name" "" "$OUT/$name"-r*.ext -- "$OUT/$name"-r*.json
        done
        name=pairs-u$users-w$window-nginx
        row "$name" '.b[]' "$OUT/$name.ext" -- "$OUT/$name.json"
    done
    row group-u1000-single '.a[]' "$OUT/group-u1000-nginx.ext" -- "$OUT/group-u1000-nginx.json"
    row group-u1000-nginx '.b[]' "$OUT/group-u1000-nginx.ext" -- "$OUT/group-u1000-nginx.json"
    echo "  (group: msgs/s are deliveries/s; latency is to the last of the 999 receivers)"
    echo
    for f in "$OUT"/idle-single*.json; do
        jq -r '"idle: \(.connections_held) of \(.users) connections held (open-file limit \(.nofile_limit)), " +
            "\(.logins_per_sec | floor) logins/s (argon2 m=64 KiB), server RSS \(.server_rss_before_logins_bytes / 1048576 | floor) MiB before logins -> " +
            "\(.server_rss_bytes / 1048576 | floor) MiB with them: \(.server_rss_per_conn_bytes | floor) bytes per connection, " +
            "\(.server_threads) threads, bench_cores \(.bench_cores * 100 | floor / 100)"' "$f"
    done
    local over hash c1 c8 ideal
    over=$(vals .latency_us.p50 "$OUT/logins-c1-m64.json")
    c1=$(vals .latency_us.p50 "$OUT/logins-c1.json")
    echo "logins (argon2 m=19456 KiB t=2 p=1):"
    echo "  sequential (concurrency 1): $(vals .logins_per_sec "$OUT/logins-c1.json" | spread %.1f) logins/s," \
        "p50 $c1 µs; the same on an m=64 server: p50 $over µs"
    echo "  registrations/s concurrency 8: $(vals .registrations_per_sec "$OUT"/logins-c8-r*.json | spread %.1f)"
    echo "  logins/s concurrency 8: $(vals .logins_per_sec "$OUT"/logins-c8-r*.json | spread %.1f)," \
        "bench_cores $(vals .bench_cores "$OUT"/logins-c8-r*.json | spread %.2f)"
    c8=$(vals .logins_per_sec "$OUT"/logins-c8-r*.json | mean)
    if [ -n "$over" ] && [ -n "$c1" ] && [ -n "$c8" ]; then
        hash=$((c1 - over))
        ideal=$(awk -v h="$hash" -v n="$(nproc)" 'BEGIN { printf "%.1f", n * 1e6 / h }')
        echo "  hash alone ~ $hash µs (p50 difference) -> $(nproc) cores could do $ideal/s;" \
            "achieved $(awk -v a="$c8" -v i="$ideal" 'BEGIN { printf "%.0f%%", 100 * a / i }')"
    fi
    echo
    echo "ratios (mean B / mean A, per-round spread):"
    for cfg in "100 1" "100 16" "1000 1"; do
        read -r users window <<<"$cfg"
        echo "  pairs $users users w$window cluster(direct)/single msgs/s: $(ratio \
            "pairs-u$users-w$window-single" "pairs-u$users-w$window-cluster" .msgs_per_sec)"
        f=$OUT/pairs-u$users-w$window-nginx.json
        [ -s "$f" ] && echo "  pairs $users users w$window cluster(nginx)/single msgs/s: $(jq -r \
            '.ratios.msgs_per_sec | "\(.ratio * 100 | round / 100) (per round \(.min * 100 | round / 100)..\(.max * 100 | round / 100))"' "$f")"
    done
    for mode in single cluster; do
        echo "  pairs 100 users $mode window16/window1 msgs/s: $(ratio \
            "pairs-u100-w1-$mode" "pairs-u100-w16-$mode" .msgs_per_sec)"
    done
    echo "  pairs 100 users w1 single / C++ reference (111,000/s): $(vals .msgs_per_sec \
        "$OUT"/pairs-u100-w1-single-r*.json | mean | awk '{ printf "%.2f", $1 / 111000 }')"
    echo
    echo "targets (means over rounds):"
    check "pairs 100 w1 single msgs/s" "$(vals .msgs_per_sec "$OUT"/pairs-u100-w1-single-r*.json | mean)" '>=' 128000
    check "pairs 100 w1 single server µs CPU/msg" "$(vals .server_cpu_us_per_msg "$OUT"/pairs-u100-w1-single-r*.json | mean)" '<=' 7.5
    check "pairs 1000 w1 single p99 µs" "$(vals .latency_us.p99 "$OUT"/pairs-u1000-w1-single-r*.json | mean)" '<=' 10000
    check "pairs 100 w16 single msgs/s" "$(vals .msgs_per_sec "$OUT"/pairs-u100-w16-single-r*.json | mean)" '>=' 500000
    check "pairs 100 w16 single server µs CPU/msg" "$(vals .server_cpu_us_per_msg "$OUT"/pairs-u100-w16-single-r*.json | mean)" '<=' 2
    check "pairs 100 w16 single lost (sum)" "$(vals .lost "$OUT"/pairs-u100-w16-single-r*.json | awk '{ s += $1 } END { print s + 0 }')" '<=' 0
    check "idle RSS bytes per connection" "$(vals .server_rss_per_conn_bytes "$OUT"/idle-single*.json | mean)" '<=' 1024
    check "idle connections held (min over rounds)" "$(vals .connections_held "$OUT"/idle-single*.json | sort -n | head -n 1)" '>=' "$(vals .users "$OUT"/idle-single*.json | sort -n | tail -n 1)"
    check "group 1000 single p99 to last receiver µs" "$(vals '.a[].latency_us.p99' "$OUT/group-u1000-nginx.json" | mean)" '<=' 20000
    check "group 1000 cluster(nginx) p99 to last receiver µs" "$(vals '.b[].latency_us.p99' "$OUT/group-u1000-nginx.json" | mean)" '<=' 20000
    for w in 1 16; do
        local s c
        s=$(vals .msgs_per_sec "$OUT"/pairs-u100-w$w-single-r*.json | mean)
        c=$(vals .msgs_per_sec "$OUT"/pairs-u100-w$w-cluster-r*.json | mean)
        [ -n "$s" ] && [ -n "$c" ] &&
            check "pairs 100 w$w cluster(direct)/single" "$(awk -v s="$s" -v c="$c" 'BEGIN { printf "%.2f", c / s }')" '>=' 0.5
    done
    if [ -n "${hash:-}" ] && [ -n "${c8:-}" ]; then
        check "logins/s c8 vs cores/hash time" "$(awk -v a="$c8" -v i="$ideal" 'BEGIN { printf "%.2f", a / i }')" '>=' 0.9
    fi
    if [ ${#FAILED[@]} -gt 0 ]; then
        echo
        echo "FAILED runs: ${FAILED[*]}"
    fi
}

if [ -n "$SUMMARY_ONLY" ]; then
    summary
    exit
fi
run_all
summary | tee "$OUT/summary.txt"
say "results in $OUT (summary.txt, one .json/.txt/.cmd per run, run/ holds the server logs)"
[ ${#FAILED[@]} -eq 0 ]
