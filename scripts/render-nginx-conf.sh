#!/usr/bin/env bash
# render-nginx-conf.sh LISTEN SERVER...: prints the repository's nginx.conf for this run.
#
# The `server` lines between "# BEGIN servers" and "# END servers" become one line per SERVER
# (with the parameters of the first one), and the `listen` address becomes LISTEN. Used by
# run_cluster.sh, benches/run.sh and tests/util/nginx.rs, so the committed nginx.conf is the
# one template.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 LISTEN SERVER..." >&2; exit 2; }
listen=$1
shift
awk -v servers="$*" -v lb="$listen" '
    /^[ \t]*# BEGIN servers/ { print; inside = 1; next }
    /^[ \t]*# END servers/   { inside = 0; print; next }
    inside && /^[ \t]*server[ \t]/ {
        if (!done) {
            match($0, /^[ \t]*/); indent = substr($0, 1, RLENGTH)
            rest = $0; sub(/^[ \t]*server[ \t]+[^ \t;]+/, "", rest)
            n = split(servers, list, " ")
            for (i = 1; i <= n; i++) printf "%sserver %s%s\n", indent, list[i], rest
            done = 1
        }
        next
    }
    /^[ \t]*listen[ \t]/ { sub(/listen[ \t]+[^ \t;]+/, "listen " lb); listens++ }
    { print }
    END { if (!done || !listens) { print "nginx.conf: markers or listen line missing" > "/dev/stderr"; exit 1 } }
' "$(dirname "$0")/../nginx.conf"
