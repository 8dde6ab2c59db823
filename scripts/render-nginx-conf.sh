#!/usr/bin/env bash
# render-nginx-conf.sh LISTEN SERVER... [-- HTTP_LISTEN HTTP_SERVER...]: prints the repository's
# nginx.conf for this run.
#
# The `server` lines between "# BEGIN servers" and "# END servers" become one line per SERVER
# (with the parameters of the first one), and the stream `listen` address becomes LISTEN.
# With `-- HTTP_LISTEN HTTP_SERVER...`, the same for the lines between "# BEGIN http-servers"
# and "# END http-servers" and the `listen` line of the "# BEGIN http" .. "# END http" block;
# without it that block is left out (no HTTP balancer). With NGINX_TLS_CERT and NGINX_TLS_KEY
# (PEM paths) in the environment, the HTTP balancer listens with TLS and talks HTTPS to the
# servers (run_cluster.sh --tls, whose servers serve HTTPS). Used by run_cluster.sh, benches/run.sh
# and tests/util/nginx.rs, so the committed nginx.conf is the one template.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 LISTEN SERVER... [-- HTTP_LISTEN HTTP_SERVER...]" >&2; exit 2; }
listen=$1
shift
servers=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do servers+=("$1"); shift; done
http_listen=
http_servers=()
if [ $# -gt 0 ]; then
    shift
    [ $# -ge 2 ] || { echo "usage: $0 LISTEN SERVER... -- HTTP_LISTEN HTTP_SERVER..." >&2; exit 2; }
    http_listen=$1
    shift
    http_servers=("$@")
fi
awk -v servers="${servers[*]}" -v lb="$listen" -v hservers="${http_servers[*]:-}" -v hlb="$http_listen" \
    -v tcert="${NGINX_TLS_CERT:-}" -v tkey="${NGINX_TLS_KEY:-}" '
    # servers(list): the server lines of a block, from the template line in $0.
    function expand(list,   indent, rest, n, i, items) {
        match($0, /^[ \t]*/); indent = substr($0, 1, RLENGTH)
        rest = $0; sub(/^[ \t]*server[ \t]+[^ \t;]+/, "", rest)
        n = split(list, items, " ")
        for (i = 1; i <= n; i++) printf "%sserver %s%s\n", indent, items[i], rest
    }
    /^[ \t]*# BEGIN http-servers/ { if (hlb != "") print; hinside = 1; next }
    /^[ \t]*# END http-servers/   { hinside = 0; if (hlb != "") print; next }
    /^# BEGIN http$/ { inhttp = 1; if (hlb != "") print; next }
    /^# END http$/   { inhttp = 0; if (hlb != "") print; next }
    inhttp && hlb == "" { next }
    hinside && /^[ \t]*server[ \t]/ { if (!hdone) { expand(hservers); hdone = 1 } next }
    inhttp && /^[ \t]*listen[ \t]/ {
        sub(/listen[ \t]+[^ \t;]+/, "listen " hlb)
        if (tcert != "") sub(/;/, " ssl; ssl_certificate " tcert "; ssl_certificate_key " tkey ";")
        hlistens++; print; next
    }
    inhttp && tcert != "" && /proxy_pass http:\/\// { sub(/proxy_pass http:/, "proxy_pass https:") }
    /^[ \t]*# BEGIN servers/ { print; inside = 1; next }
    /^[ \t]*# END servers/   { inside = 0; print; next }
    inside && /^[ \t]*server[ \t]/ { if (!done) { expand(servers); done = 1 } next }
    /^[ \t]*listen[ \t]/ { sub(/listen[ \t]+[^ \t;]+/, "listen " lb); listens++ }
    { print }
    END {
        if (!done || !listens) { print "nginx.conf: markers or listen line missing" > "/dev/stderr"; exit 1 }
        if (hlb != "" && (!hdone || !hlistens)) { print "nginx.conf: http markers or listen line missing" > "/dev/stderr"; exit 1 }
    }
' "$(dirname "$0")/../nginx.conf"
