#!/usr/bin/env bash
# Makes sure MariaDB, Redis, nginx (with the stream module), tmux and openssl are installed and that MariaDB
# and Redis are running. Starts only what is not running; never stops or reconfigures anything.
set -euo pipefail

need_apt=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need_apt+=(libnginx-mod-stream)
command -v mysql >/dev/null 2>&1 || command -v mariadb >/dev/null 2>&1 || need_apt+=(mariadb-client)
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)  # the chatclient terminal test
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)  # run_cluster.sh --tls makes its certificate
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "services: installing ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "services: starting Redis on 127.0.0.1:6379"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi

mysql_up() { mysql -h127.0.0.1 -P3306 -uroot -e 'SELECT 1' >/dev/null 2>&1; }
if ! mysql_up; then
    echo "services: starting MariaDB on 127.0.0.1:3306"
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    if [ ! -d /var/lib/mysql/mysql ]; then
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    fi
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    for _ in $(seq 1 60); do mysql_up && break; sleep 1; done
    if ! mysql_up; then
        # A fresh install lets root in only through the socket: open TCP login for the tests.
        mysql -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD(''); FLUSH PRIVILEGES;" || true
    fi
    mysql_up || { echo "services: MariaDB did not come up" >&2; exit 1; }
fi
echo "services: MariaDB, Redis and nginx are ready"
