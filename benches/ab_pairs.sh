#!/usr/bin/env bash
# A/B of two chatserver builds on `chatbench pairs`, alternating rounds in one invocation so
# that the ratio is what counts on a shared machine.
#
#   benches/ab_pairs.sh A_BIN B_BIN WINDOW [more chatbench flags]
#
# Each server runs alone on a fresh SQLite file. AFLAGS / BFLAGS add server flags per build
# (an older build may not know --http or the rate limits: give them only where they exist).
# ROUNDS (default 3) and DUR (seconds per round, default 5) size the run. Prints chatbench's
# comparison table (the ratio column is B/A).
set -u
A=$1 B=$2 W=$3
shift 3
here=$(cd "$(dirname "$0")/.." && pwd)
bench=${CHATBENCH:-$here/target/release/chatbench}
d=$(mktemp -d)
trap 'kill $PA $PB 2>/dev/null; wait 2>/dev/null; rm -rf "$d"' EXIT
pa=$((20000 + RANDOM % 10000))
pb=$((pa + 1))
# shellcheck disable=SC2086
"$A" --listen 127.0.0.1:$pa --db "sqlite:$d/a.db" ${AFLAGS-} --log-level warn >"$d/a.log" 2>&1 &
PA=$!
# shellcheck disable=SC2086
"$B" --listen 127.0.0.1:$pb --db "sqlite:$d/b.db" ${BFLAGS-} --log-level warn >"$d/b.log" 2>&1 &
PB=$!
sleep 1
"$bench" pairs --target 127.0.0.1:$pa --server-pid $PA --compare 127.0.0.1:$pb \
    --compare-pid $PB --rounds "${ROUNDS:-3}" --users 100 --window "$W" \
    --duration "${DUR:-5}" "$@"
