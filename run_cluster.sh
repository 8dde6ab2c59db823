#!/usr/bin/env bash
# Runs a whole clusterchat cluster on this machine: N chat servers sharing MySQL (MariaDB) and
# Redis, with nginx in front as the single address clients connect to.
#
#   ./run_cluster.sh [start] [N] [--tls]
#                                  build, start N servers (default 2) and nginx, stay in the
#                                  foreground; Ctrl+C stops everything this script started
#                                  and exits 0 (130 if it came before the cluster was up).
#                                  --tls: every server speaks TLS, with a self-signed
#                                  certificate for localhost and 127.0.0.1 made by openssl in
#                                  run/tls/ (cert.pem, key.pem; kept while valid, reused by
#                                  later starts). nginx still passes TCP through (stream):
#                                  TLS runs end to end, from the client to a server, and
#                                  clients trust run/tls/cert.pem (chatclient --tls --ca).
#   ./run_cluster.sh stop          stop a running cluster (from another terminal)
#   ./run_cluster.sh status        show what runs
#
# Environment:
#   CHAT_LB_PORT    nginx's port for the chat protocol over TCP (default 8000)
#   CHAT_BASE_PORT  first server's port; the others follow (default 6000)
#   CHAT_HTTP_LB_PORT  nginx's HTTP port: the web client and its WebSocket (default 8080)
#   CHAT_HTTP_BASE_PORT  first server's --http port; the others follow (default 6080)
#   CHAT_DB         database URL (default mysql://root@127.0.0.1:3306/chat?prefer_socket=false)
#   CHAT_REDIS      Redis URL (default redis://127.0.0.1:6379); with a password:
#                   redis://:PASSWORD@host:port, or redis://USER:PASSWORD@host:port/DB for an
#                   ACL user and a database. The servers get it in their environment, not on
#                   their command line (so it does not show in ps); a Redis this script starts
#                   itself is given that password.
#   NGINX           the nginx binary (default: nginx on the PATH or /usr/sbin/nginx)
#   CHAT_RUN_DIR    where pids and logs go (default ./run)
#   CHAT_SERVER_BIN a chatserver binary to run instead of building one (tests use it)
#
# Pids and logs go to ./run/ (its tls/ with --tls): nodeI.pid/.log per server, nginx/ (its prefix: generated
# nginx.conf, pid, error.log, access.log, http_access.log), started-services (what this script started and so
# may stop). MariaDB and Redis are started only if installed and not running, and stopped only
# if this script started them: a service that was running before is never touched.
set -euo pipefail
shopt -s nullglob

RUN=${CHAT_RUN_DIR:-}
if [ -n "$RUN" ] && [[ $RUN != /* ]]; then RUN=$PWD/$RUN; fi
cd "$(dirname "$0")"
ROOT=$PWD
RUN=${RUN:-$ROOT/run}
R=${RUN#"$ROOT"/} # as shown in messages
LB_PORT=${CHAT_LB_PORT:-8000}
BASE_PORT=${CHAT_BASE_PORT:-6000}
HTTP_LB_PORT=${CHAT_HTTP_LB_PORT:-8080}
HTTP_BASE_PORT=${CHAT_HTTP_BASE_PORT:-6080}
DB_URL=${CHAT_DB:-mysql://root@127.0.0.1:3306/chat?prefer_socket=false}
REDIS_URL=${CHAT_REDIS:-redis://127.0.0.1:6379}
STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
INSTALL_HINT="apt-get install -y mariadb-server redis-server nginx libnginx-mod-stream"
TLS=

say() { printf 'run_cluster: %s\n' "$*"; }
die() { printf 'run_cluster: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$ROOT/$(basename "$0")"
}

# ---------------------------------------------------------------------------------------------
# Small helpers

# port_open HOST PORT: true when something accepts TCP connections there.
port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# alive PIDFILE NAME: true when the pid in PIDFILE runs and its command is NAME (so a pid
# reused by another program after a crash is never signalled).
alive() {
    local pid
    [ -s "$1" ] || return 1
    pid=$(cat "$1")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

# started PIDFILE: true while the process this script just started runs (not a zombie),
# whatever its name: right after `setsid BIN &` it may not have exec'd chatserver yet.
started() {
    local pid state
    pid=$(cat "$1" 2>/dev/null) || return 1
    state=$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# script_alive: true when the foreground `./run_cluster.sh start` of run/cluster.pid runs.
script_alive() {
    local pid
    [ -s "$RUN/cluster.pid" ] || return 1
    pid=$(cat "$RUN/cluster.pid")
    [[ $pid =~ ^[0-9]+$ ]] && [ "$pid" != $$ ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'run_cluster\.sh'
}

# wait_gone PIDFILE NAME SECONDS: waits for the process to exit; false if it is still there.
wait_gone() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        alive "$1" "$2" || return 0
        sleep 0.1
    done
    return 1
}

# URL pieces: scheme://[user[:password]@]host[:port][/path][?query]
url_authority() { local u=${1#*://}; u=${u%%/*}; printf '%s' "${u%%\?*}"; }
url_hostport() { local a; a=$(url_authority "$1"); printf '%s' "${a##*@}"; }
url_host() { local h; h=$(url_hostport "$1"); printf '%s' "${h%:*}"; }
url_port() { local h; h=$(url_hostport "$1"); [[ $h == *:* ]] && printf '%s' "${h##*:}" || printf '%s' "$2"; }
url_userinfo() { local a; a=$(url_authority "$1"); [[ $a == *@* ]] && printf '%s' "${a%@*}"; true; }
url_dbname() { local u=${1#*://}; u=${u#*/}; [[ $1 == *://*/* ]] && printf '%s' "${u%%\?*}"; true; }
is_local() { [[ $1 == 127.0.0.1 || $1 == localhost || $1 == ::1 ]]; }

# parse_urls: DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASS, REDIS_HOST, REDIS_PORT, REDIS_USER,
# REDIS_PASS.
parse_urls() {
    local userinfo
    DB_HOST=$(url_host "$DB_URL")
    DB_PORT=$(url_port "$DB_URL" 3306)
    DB_NAME=$(url_dbname "$DB_URL")
    userinfo=$(url_userinfo "$DB_URL")
    DB_USER=${userinfo%%:*}
    DB_PASS=
    if [[ $userinfo == *:* ]]; then DB_PASS=${userinfo#*:}; fi
    REDIS_HOST=$(url_host "$REDIS_URL")
    REDIS_PORT=$(url_port "$REDIS_URL" 6379)
    userinfo=$(url_userinfo "$REDIS_URL")
    REDIS_USER=${userinfo%%:*}
    REDIS_PASS=
    if [[ $userinfo == *:* ]]; then REDIS_PASS=${userinfo#*:}; fi
}
parse_urls

# load_env: `status` and `stop` describe the cluster that runs, whatever this shell's CHAT_*.
load_env() {
    if [ -f "$RUN/cluster.env" ]; then
        # shellcheck source=/dev/null
        . "$RUN/cluster.env"
        parse_urls
    fi
}

mysql_client() { command -v mariadb || command -v mysql || true; }

# sql STATEMENT: runs it on the server of CHAT_DB (no database selected).
sql() {
    MYSQL_PWD=$DB_PASS "$(mysql_client)" --protocol=TCP -h "$DB_HOST" -P "$DB_PORT" \
        -u "${DB_USER:-root}" -N -B -e "$1"
}
mysql_up() { sql 'SELECT 1' >/dev/null 2>&1; }
redis_up() { port_open "$REDIS_HOST" "$REDIS_PORT"; }

find_nginx() {
    if [ -n "${NGINX:-}" ]; then printf '%s' "$NGINX"; return; fi
    command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && printf '%s' /usr/sbin/nginx; } || true
}

# remember SERVICE: notes that this script started SERVICE (so only it is stopped later).
remember() { echo "$1" >>"$RUN/started-services"; }
started_by_us() { [ -f "$RUN/started-services" ] && grep -qx "$1" "$RUN/started-services"; }
who_started() {
    if started_by_us "$1"; then echo "started by run_cluster.sh"; else echo "not ours: never stopped"; fi
}

# ---------------------------------------------------------------------------------------------
# Services: MariaDB and Redis

ensure_mariadb() {
    if mysql_up; then return; fi
    is_local "$DB_HOST" || die "MySQL at $DB_HOST:$DB_PORT does not answer (CHAT_DB=$DB_URL)"
    [ -x /usr/sbin/mariadbd ] || die "MariaDB is not installed and not running. Install: $INSTALL_HINT"
    if pgrep -x mariadbd >/dev/null || pgrep -x mysqld >/dev/null; then
        say "MariaDB runs but does not answer yet; waiting (not started by this script)"
    else
        [ "$(id -u)" = 0 ] || die "MariaDB is stopped; start it (sudo service mariadb start) or run this as root"
        say "starting MariaDB (it was stopped)"
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
        rm -f "$RUN/mariadb.pid"
        start-stop-daemon --start --oknodo --background --make-pidfile --pidfile "$RUN/mariadb.pid" \
            --exec /usr/sbin/mariadbd -- --user=mysql
        # --make-pidfile writes the file only when it really started one.
        if [ -s "$RUN/mariadb.pid" ]; then remember mariadb; fi
    fi
    for _ in $(seq 1 60); do mysql_up && return; sleep 1; done
    die "MariaDB did not answer on $DB_HOST:$DB_PORT within 60 s"
}

ensure_redis() {
    if redis_up; then return; fi
    is_local "$REDIS_HOST" || die "Redis at $REDIS_HOST:$REDIS_PORT does not answer (CHAT_REDIS=$REDIS_URL)"
    command -v redis-server >/dev/null || die "Redis is not installed and not running. Install: $INSTALL_HINT"
    if pgrep -x redis-server >/dev/null && ! started_by_us redis; then
        say "note: a redis-server runs, but not on port $REDIS_PORT; starting one there"
    fi
    # The URL's password: the default user's (redis://:PW@...) or an ACL user's (redis://U:PW@...).
    local auth=()
    if [ -n "$REDIS_PASS" ] && [ -n "$REDIS_USER" ] && [ "$REDIS_USER" != default ]; then
        auth=(--user "$REDIS_USER" on ">$REDIS_PASS" '~*' '&*' '+@all')
    elif [ -n "$REDIS_PASS" ]; then
        auth=(--requirepass "$REDIS_PASS")
    fi
    say "starting Redis on 127.0.0.1:$REDIS_PORT (it was stopped)${REDIS_PASS:+, with the password of CHAT_REDIS}"
    rm -f "$RUN/redis.pid"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
        --dir "$RUN" --pidfile "$RUN/redis.pid" --logfile "$RUN/redis.log" "${auth[@]}"
    for _ in $(seq 1 50); do
        if redis_up; then
            remember redis
            return
        fi
        sleep 0.1
    done
    die "Redis did not start; see $RUN/redis.log"
}

stop_services() {
    if started_by_us redis && alive "$RUN/redis.pid" redis-server; then
        say "stopping Redis (started by this script)"
        kill -TERM "$(cat "$RUN/redis.pid")" || true
        wait_gone "$RUN/redis.pid" redis-server 20 || say "Redis is still stopping"
    fi
    if started_by_us mariadb && alive "$RUN/mariadb.pid" mariadbd; then
        say "stopping MariaDB (started by this script)"
        start-stop-daemon --stop --oknodo --pidfile "$RUN/mariadb.pid" --exec /usr/sbin/mariadbd \
            --retry TERM/60 >/dev/null || say "MariaDB did not stop in 60 s"
    fi
    rm -f "$RUN/started-services" "$RUN/redis.pid" "$RUN/mariadb.pid"
}

# ---------------------------------------------------------------------------------------------
# The cluster: servers and nginx

# Generates run/nginx/nginx.conf from the committed nginx.conf (scripts/render-nginx-conf.sh):
# one `server` line per chat server, listening on 127.0.0.1:$LB_PORT, and one per HTTP front,
# listening on 127.0.0.1:$HTTP_LB_PORT.
write_nginx_conf() {
    local n=$1 i servers=() http=()
    for ((i = 0; i < n; i++)); do
        servers+=("127.0.0.1:$((BASE_PORT + i))")
        http+=("127.0.0.1:$((HTTP_BASE_PORT + i))")
    done
    # --tls: the servers' HTTP ports speak HTTPS, so nginx's HTTP port does too (same
    # certificate) and talks HTTPS to them; the TCP stream is passed through untouched.
    local tls_env=()
    if [ -n "$TLS" ]; then
        tls_env=(NGINX_TLS_CERT="$RUN/tls/cert.pem" NGINX_TLS_KEY="$RUN/tls/key.pem")
    fi
    env "${tls_env[@]}" "$ROOT/scripts/render-nginx-conf.sh" "127.0.0.1:$LB_PORT" "${servers[@]}" \
        -- "127.0.0.1:$HTTP_LB_PORT" "${http[@]}" >"$RUN/nginx/nginx.conf"
}

# make_cert: run/tls/cert.pem and key.pem, self-signed for localhost and 127.0.0.1, unless a
# pair there is still valid for a day (clients that trust it keep working across restarts).
make_cert() {
    local dir=$RUN/tls
    command -v openssl >/dev/null || die "--tls needs openssl to make a certificate. Install: apt-get install -y openssl"
    mkdir -p "$dir"
    if [ -s "$dir/cert.pem" ] && [ -s "$dir/key.pem" ] &&
        openssl x509 -in "$dir/cert.pem" -noout -checkend 86400 >/dev/null 2>&1; then
        say "TLS: reusing $R/tls/cert.pem"
        return
    fi
    (
        umask 077
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
            -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
            -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" \
            -keyout "$dir/key.pem" -out "$dir/cert.pem" >"$dir/openssl.log" 2>&1
    ) || die "openssl could not make a certificate (see $R/tls/openssl.log)"
    say "TLS: made a self-signed certificate for localhost and 127.0.0.1: $R/tls/cert.pem"
}

start_servers() {
    local n=$1 bin=$2 i port http pidfile log tls_args=()
    if [ -n "$TLS" ]; then tls_args=(--tls-cert "$RUN/tls/cert.pem" --tls-key "$RUN/tls/key.pem"); fi
    for ((i = 1; i <= n; i++)); do
        port=$((BASE_PORT + i - 1))
        http=$((HTTP_BASE_PORT + i - 1))
        pidfile=$RUN/node$i.pid
        log=$RUN/node$i.log
        port_open 127.0.0.1 "$port" && die "port $port is taken (set CHAT_BASE_PORT)"
        port_open 127.0.0.1 "$http" && die "port $http is taken (set CHAT_HTTP_BASE_PORT)"
        # setsid: Ctrl+C reaches this script only, which then stops the servers in order.
        # CHAT_REDIS in the environment: a password in it stays out of ps.
        CHAT_REDIS=$REDIS_URL setsid "$bin" --listen "127.0.0.1:$port" --db "$DB_URL" \
            --http "127.0.0.1:$http" --node-id "node$i" "${tls_args[@]}" >"$log" 2>&1 </dev/null &
        echo $! >"$pidfile"
        say "node$i: starting on 127.0.0.1:$port, HTTP 127.0.0.1:$http (pid $!, log $R/node$i.log)"
    done
    for ((i = 1; i <= n; i++)); do
        port=$((BASE_PORT + i - 1))
        until grep -q 'listening on' "$RUN/node$i.log" && port_open 127.0.0.1 "$port"; do
            if ! started "$RUN/node$i.pid"; then
                tail -n 20 "$RUN/node$i.log" >&2
                die "node$i did not start ($R/node$i.log above)"
            fi
            sleep 0.1
        done
    done
}

start_nginx() {
    local n=$1 nginx
    nginx=$(find_nginx)
    [ -n "$nginx" ] || die "nginx is not installed. Install: $INSTALL_HINT"
    [ -e "$STREAM_MODULE" ] || die "nginx's stream module is missing ($STREAM_MODULE). Install: $INSTALL_HINT"
    port_open 127.0.0.1 "$LB_PORT" && die "port $LB_PORT is taken (set CHAT_LB_PORT)"
    port_open 127.0.0.1 "$HTTP_LB_PORT" && die "port $HTTP_LB_PORT is taken (set CHAT_HTTP_LB_PORT)"
    mkdir -p "$RUN/nginx"
    write_nginx_conf "$n"
    rm -f "$RUN/nginx/nginx.pid"
    # The generated config says `daemon off`: nginx stays this script's child.
    setsid "$nginx" -p "$RUN/nginx/" -c "$RUN/nginx/nginx.conf" </dev/null >>"$RUN/nginx/error.log" 2>&1 &
    echo "$nginx" >"$RUN/nginx/binary"
    until port_open 127.0.0.1 "$LB_PORT" && port_open 127.0.0.1 "$HTTP_LB_PORT" &&
        [ -s "$RUN/nginx/nginx.pid" ]; do
        if ! kill -0 $! 2>/dev/null; then
            tail -n 20 "$RUN/nginx/error.log" >&2
            die "nginx did not start ($R/nginx/error.log above)"
        fi
        sleep 0.1
    done
    say "nginx: listening on 127.0.0.1:$LB_PORT and http${TLS:+s}://127.0.0.1:$HTTP_LB_PORT (pid $(cat "$RUN/nginx/nginx.pid"), config $R/nginx/nginx.conf)"
}

# Stops what runs, in this order: nginx stops accepting (graceful quit: its open sessions
# stay), the servers get SIGTERM and set their users offline, which closes those sessions,
# so nginx exits; then the services this script started.
stop_cluster() {
    local f nginx_running=
    if alive "$RUN/nginx/nginx.pid" nginx; then
        nginx_running=1
        say "nginx: quitting"
        "$(cat "$RUN/nginx/binary" 2>/dev/null || find_nginx)" -p "$RUN/nginx/" \
            -c "$RUN/nginx/nginx.conf" -s quit 2>/dev/null ||
            kill -QUIT "$(cat "$RUN/nginx/nginx.pid")" || true
    fi
    for f in "$RUN"/node*.pid; do
        if alive "$f" chatserver; then
            say "$(basename "$f" .pid): stopping (SIGTERM: its users go offline)"
            kill -TERM "$(cat "$f")" || true
        fi
    done
    for f in "$RUN"/node*.pid; do
        if ! wait_gone "$f" chatserver 20; then
            say "$(basename "$f" .pid) did not stop in 20 s; killing it"
            kill -KILL "$(cat "$f")" || true
        fi
        rm -f "$f"
    done
    # With proxy_half_close, nginx keeps a session open until the client closes its side too;
    # the servers are gone, so don't wait long for clients that don't notice.
    if [ -n "$nginx_running" ] && ! wait_gone "$RUN/nginx/nginx.pid" nginx 3; then
        say "nginx: some clients keep their closed connections open; terminating nginx"
        kill -TERM "$(cat "$RUN/nginx/nginx.pid")" || true
        wait_gone "$RUN/nginx/nginx.pid" nginx 10 || true
    fi
    rm -f "$RUN/nginx/nginx.pid"
    stop_services
}

cluster_running() {
    local f
    alive "$RUN/nginx/nginx.pid" nginx && return 0
    for f in "$RUN"/node*.pid; do alive "$f" chatserver && return 0; done
    return 1
}

# ---------------------------------------------------------------------------------------------
# Commands

# on_signal STATUS: the INT/TERM trap of `start` (the EXIT trap then stops the cluster).
on_signal() {
    echo
    say "stopping"
    if [ -n "$READY" ]; then exit 0; fi
    exit "$1"
}

cmd_start() {
    local n=$1 bin i f
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number, not '$n'"
    mkdir -p "$RUN"
    if script_alive || cluster_running; then
        die "a cluster is already running (./run_cluster.sh status | stop)"
    fi
    # Pid files of a run that was killed: nothing of them runs any more. (run/started-services
    # stays: services a killed run started are still ours to stop.)
    rm -f "$RUN"/node*.pid
    echo $$ >"$RUN/cluster.pid"

    local mysql_bin
    mysql_bin=$(mysql_client)
    [ -n "$mysql_bin" ] || die "the mysql client is missing. Install: $INSTALL_HINT"
    [ -n "$DB_NAME" ] || die "CHAT_DB names no database: $DB_URL"
    [[ $DB_NAME =~ ^[A-Za-z0-9_]+$ ]] || die "database name '$DB_NAME': letters, digits and _ only"

    # Whatever ends this script (Ctrl+C, `./run_cluster.sh stop`, an error) stops what it started.
    # Ctrl+C (SIGINT) or `stop` (SIGTERM) once the cluster runs is the normal way to end it:
    # exit 0. During start-up they interrupt it: 130 / 143, as a shell reports a signal.
    READY=
    trap 'on_signal 130' INT
    trap 'on_signal 143' TERM
    trap 'stop_cluster; rm -f "$RUN/cluster.pid" "$RUN/cluster.env"; say "stopped"' EXIT

    if [ -n "${CHAT_SERVER_BIN:-}" ]; then
        bin=$CHAT_SERVER_BIN
    else
        say "building (cargo build --release)"
        cargo build --release
        bin=${CARGO_TARGET_DIR:-$ROOT/target}/release/chatserver
    fi
    [ -x "$bin" ] || die "no chatserver binary at $bin"

    ensure_mariadb
    ensure_redis
    sql "CREATE DATABASE IF NOT EXISTS \`$DB_NAME\` DEFAULT CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci"
    say "MySQL $DB_HOST:$DB_PORT database $DB_NAME, Redis $REDIS_HOST:$REDIS_PORT: ready"

    local client_args="" over="" WEB_SCHEME=http
    if [ -n "$TLS" ]; then
        WEB_SCHEME=https
        make_cert
        client_args="-- --tls --ca $R/tls/cert.pem "
        over=" (TLS end to end; nginx passes TCP through)"
    fi
    start_servers "$n" "$bin"
    start_nginx "$n"
    printf 'LB_PORT=%q\nBASE_PORT=%q\nHTTP_LB_PORT=%q\nHTTP_BASE_PORT=%q\nDB_URL=%q\nREDIS_URL=%q\nTLS=%q\n' \
        "$LB_PORT" "$BASE_PORT" "$HTTP_LB_PORT" "$HTTP_BASE_PORT" "$DB_URL" "$REDIS_URL" "$TLS" \
        >"$RUN/cluster.env"

    cat <<EOF

clusterchat: $n servers (127.0.0.1:$BASE_PORT..$((BASE_PORT + n - 1))) behind nginx on 127.0.0.1:$LB_PORT$over.
Connect with:

    cargo run --release --bin chatclient ${client_args}127.0.0.1 $LB_PORT

or in a browser: open ${WEB_SCHEME}://127.0.0.1:$HTTP_LB_PORT

Logs: $R/node1..$n.log, $R/nginx/access.log (TCP), $R/nginx/http_access.log. Ctrl+C (or ./run_cluster.sh stop) stops it.
EOF
    # Stay in the foreground; report a server that exits on its own.
    READY=1
    declare -A reported=()
    while true; do
        sleep 2 &
        wait $! || true
        for ((i = 1; i <= n; i++)); do
            f=$RUN/node$i.pid
            if [ -z "${reported[$i]:-}" ] && ! alive "$f" chatserver; then
                say "node$i exited; nginx sends its clients to the others (see $R/node$i.log)"
                reported[$i]=1
            fi
        done
        if ! alive "$RUN/nginx/nginx.pid" nginx; then
            say "nginx exited (see $R/nginx/error.log); stopping"
            exit 1
        fi
    done
}

cmd_stop() {
    local pid
    if script_alive; then
        pid=$(cat "$RUN/cluster.pid")
        say "asking the running ./run_cluster.sh (pid $pid) to stop"
        kill -TERM "$pid"
        # script_alive, not kill -0: a zombie (exited, not yet reaped) counts as gone.
        for _ in $(seq 1 600); do script_alive || break; sleep 0.1; done
    fi
    # Anything left (the foreground script was killed, say), from the pid files.
    if cluster_running || [ -f "$RUN/started-services" ]; then
        stop_cluster
    fi
    rm -f "$RUN/cluster.pid" "$RUN/cluster.env"
    say "stopped"
}

cmd_status() {
    local f name n=0 any=
    load_env
    if script_alive; then
        echo "run_cluster.sh   pid $(cat "$RUN/cluster.pid") (in the foreground elsewhere)"
    fi
    if alive "$RUN/nginx/nginx.pid" nginx; then
        echo "nginx            pid $(cat "$RUN/nginx/nginx.pid")  127.0.0.1:$LB_PORT  http${TLS:+s}://127.0.0.1:$HTTP_LB_PORT  running"
        any=1
    else
        echo "nginx            not running"
    fi
    for f in "$RUN"/node*.pid; do
        n=$((n + 1))
        name=$(basename "$f" .pid)
        local p=$((BASE_PORT + ${name#node} - 1)) h=$((HTTP_BASE_PORT + ${name#node} - 1))
        if alive "$f" chatserver; then
            echo "$name            pid $(cat "$f")  127.0.0.1:$p  http 127.0.0.1:$h  running"
            any=1
        else
            echo "$name            not running (see $R/$name.log)"
        fi
    done
    [ "$n" -gt 0 ] || echo "servers          none"
    if [ -n "$any" ] && [ -n "${TLS:-}" ]; then
        echo "TLS              servers speak TLS with $R/tls/cert.pem (trust it: chatclient --tls --ca)"
    fi
    if [ -n "$(mysql_client)" ] && mysql_up; then
        echo "MySQL            $DB_HOST:$DB_PORT  up ($(who_started mariadb))"
        if [ -n "$any" ] && [ -n "$DB_NAME" ]; then
            sql "SELECT SUBSTRING_INDEX(session, '/', 1) AS node, COUNT(*) FROM \`$DB_NAME\`.user
                 WHERE session IS NOT NULL GROUP BY node ORDER BY node" 2>/dev/null |
                while read -r node users; do echo "  $node: $users online"; done || true
        fi
    else
        echo "MySQL            $DB_HOST:$DB_PORT  down"
    fi
    if redis_up; then
        echo "Redis            $REDIS_HOST:$REDIS_PORT  up ($(who_started redis))"
    else
        echo "Redis            $REDIS_HOST:$REDIS_PORT  down"
    fi
    [ -n "$any" ]
}

# --tls may come anywhere among the arguments.
args=()
for a in "$@"; do
    case $a in
    --tls) TLS=1 ;;
    *) args+=("$a") ;;
    esac
done
set -- "${args[@]+"${args[@]}"}"

case "${1:-start}" in
start) cmd_start "${2:-2}" ;;
stop) cmd_stop ;;
status) cmd_status ;;
-h | --help | help) usage ;;
[0-9]*) cmd_start "$1" ;;
*) usage >&2; exit 2 ;;
esac
