#!/usr/bin/env bash
# Memory per idle keep-alive client connection: the gateway's memory (summed
# over its process group) before and after IDLE_CONNS clients have each made
# one request and then stayed connected and silent. Prints a markdown section
# on stdout; progress goes to stderr. See bench/README.md.
#
# Environment:
#   GATEWAY_BIN=build/gateway
#   IDLE_CONNS=10000         idle client connections
#   IDLE_BASE_PORT           origin; the gateway on the next port (default:
#                            the first of 18200, 18210, ... with both free)
#   PROXY_CPU=0 LOAD_CPU=1   gateway / client and origin
#   KEEP_TMP=1               keep the temp directory
set -euo pipefail
set +m # background servers must not lead their own group before setsid runs

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

GATEWAY_BIN=${GATEWAY_BIN:-build/gateway}
CONNS=${IDLE_CONNS:-10000}
BASE_PORT=${IDLE_BASE_PORT:-}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
KEEP_TMP=${KEEP_TMP:-0}

die() { echo "idle-conns.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] idle-conns: $*" >&2; }
. "$(dirname "$0")/lib.sh"

need_tools nginx cc curl taskset setsid ss awk
[ -x "$GATEWAY_BIN" ] || die "$GATEWAY_BIN not found; run make first"
if [ -z "$BASE_PORT" ]; then
    for b in $(seq 18200 10 18690); do
        if ports_free "$b" 2; then BASE_PORT=$b; break; fi
    done
    [ -n "$BASE_PORT" ] || die "no 2 free ports between 18200 and 18699; set IDLE_BASE_PORT"
fi
ports_free "$BASE_PORT" 2 || die "port $BASE_PORT or $((BASE_PORT + 1)) is in use; set IDLE_BASE_PORT"
ORIGIN_PORT=$BASE_PORT
GW_PORT=$((BASE_PORT + 1))

# Both the client and the gateway (which inherits this limit) hold one
# descriptor per connection.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((CONNS + 100)) ] ||
    die "open-file limit $(ulimit -n) is too low for $CONNS connections"

TMP=$(mktemp -d /tmp/gw-bench-idle.XXXXXX)
mkdir -p "$TMP/logs"
chmod 755 "$TMP" # nginx workers drop to an unprivileged user under root

# start, wait_url, stop_one, stop_all, cleanup: bench/lib.sh
trap cleanup EXIT
trap 'exit 130' INT TERM

# group_mem PGID : "pss_kib rss_kib nprocs" summed over the group. Pss
# (smaps_rollup) shares pages between master and worker fairly; VmRSS counts
# shared pages once per process.
group_mem() {
    local pg=$1 f pid pss=0 rss=0 n=0 p r
    for f in /proc/[0-9]*/stat; do
        pid=${f#/proc/}
        pid=${pid%/stat}
        [ "$(awk '{ sub(/^.*\) /, ""); print $3 }' "$f" 2>/dev/null)" = "$pg" ] || continue
        p=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || true)
        r=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        pss=$((pss + ${p:-0}))
        rss=$((rss + ${r:-0}))
        n=$((n + 1))
    done
    echo "$pss $rss $n"
}

established() { # PORT : established TCP connections with that local port
    ss -Htn state established "sport = :$1" | wc -l
}

cat >"$TMP/origin.conf" <<NGINX
worker_processes 1;
daemon off;
pid $TMP/origin.pid;
events { worker_connections 1024; }
http {
    access_log off;
    server_tokens off;
    client_body_temp_path $TMP/body;
    proxy_temp_path $TMP/proxy;
    fastcgi_temp_path $TMP/fastcgi;
    uwsgi_temp_path $TMP/uwsgi;
    scgi_temp_path $TMP/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    default_type text/plain;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        location / { return 200 "hello"; }
    }
}
NGINX

cat >"$TMP/gateway.yaml" <<YAML
gateway:
  listen: ["127.0.0.1:$GW_PORT"]
  workers: 1
  timeouts: {client_header: 60s, client_body: 60s, keepalive: 600s, drain: 5s}
  limits: {max_connections: $((CONNS + 1000))}
  access_log: "off"
  error_log: {path: "$TMP/gw.err", level: warn}
  pid_file: "$TMP/gateway.pid"
upstreams:
  - name: origin
    nodes: ["127.0.0.1:$ORIGIN_PORT"]
    keepalive: {size: 512, idle_timeout: 600s}
routes:
  - name: all
    match: {path: "/*"}
    upstream: origin
YAML
"$GATEWAY_BIN" -t -c "$TMP/gateway.yaml" >"$TMP/logs/check.out" 2>&1 ||
    { head -n 20 "$TMP/logs/check.out" >&2; die "the gateway rejects its config"; }

# The client: connect, send one GET, read the whole response, keep the
# connection open and silent; when all are done, write "ready" to the file
# given and sleep until killed. Blocking and sequential: on loopback that
# takes about a second for 10,000 connections and cannot overrun the
# gateway's accept queue.
cat >"$TMP/idle_client.c" <<'C'
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int
one_request(int fd, const char *req, size_t reqlen)
{
    char buf[8192];
    size_t have = 0, sent = 0;
    while (sent < reqlen) {
        ssize_t w = write(fd, req + sent, reqlen - sent);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        sent += (size_t)w;
    }
    for (;;) {
        if (have == sizeof(buf) - 1)
            return -1;
        ssize_t r = read(fd, buf + have, sizeof(buf) - 1 - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        have += (size_t)r;
        buf[have] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end == NULL)
            continue;
        if (strncmp(buf, "HTTP/1.1 200", 12) != 0)
            return -1;
        size_t head = (size_t)(end + 4 - buf);
        long clen = -1;
        for (char *l = buf; l < end; l = strstr(l, "\r\n") + 2)
            if (strncasecmp(l, "content-length:", 15) == 0)
                clen = strtol(l + 15, NULL, 10);
        if (clen < 0) /* chunked: the last chunk ends the body */
            if (strstr(end + 4, "0\r\n\r\n") != NULL)
                return 0;
        if (clen >= 0 && have - head >= (size_t)clen)
            return 0;
    }
}

int
main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT COUNT READYFILE\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]), count = atoi(argv[2]);
    static const char req[] = "GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              "X-API-Key: key-1\r\n\r\n";
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    struct timeval tv = {.tv_sec = 10};
    for (int i = 0; i < count; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) {
            fprintf(stderr, "connection %d: socket: %s\n", i, strerror(errno));
            return 1;
        }
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            fprintf(stderr, "connection %d: connect: %s\n", i, strerror(errno));
            return 1;
        }
        if (one_request(fd, req, sizeof(req) - 1) < 0) {
            fprintf(stderr, "connection %d: request failed\n", i);
            return 1;
        }
    }
    FILE *f = fopen(argv[3], "w");
    if (f == NULL || fprintf(f, "ready %d\n", count) < 0 || fclose(f) != 0)
        return 1;
    for (;;)
        pause();
}
C
cc -O2 -Wall -Wextra -Werror -o "$TMP/idle_client" "$TMP/idle_client.c" || die "cannot build the client"

log "temp dir: $TMP"
start origin "$LOAD_CPU" nginx -p "$TMP" -c "$TMP/origin.conf" -e "$TMP/logs/origin.error.log"
wait_url origin "http://127.0.0.1:$ORIGIN_PORT/hello"
start gateway "$PROXY_CPU" "$GATEWAY_BIN" -c "$TMP/gateway.yaml"
wait_url gateway "http://127.0.0.1:$GW_PORT/hello"

# A few requests first, so that lazily created state (upstream pool, date
# cache, buffers) exists before the baseline.
for i in 1 2 3 4 5; do curl -s -o /dev/null "http://127.0.0.1:$GW_PORT/hello"; done
sleep 1
read -r pss0 rss0 nproc0 <<<"$(group_mem "${PGID[gateway]}")"
pids_start=$(group_pids "${PGID[gateway]}")
log "before: Pss $pss0 KiB, VmRSS $rss0 KiB over $nproc0 processes"

t0=${EPOCHREALTIME/./}
start client "$LOAD_CPU" "$TMP/idle_client" "$GW_PORT" "$CONNS" "$TMP/client.ready"
for i in $(seq 1200); do
    [ -f "$TMP/client.ready" ] && break
    kill -0 -- "-${PGID[client]}" 2>/dev/null || { cat "$TMP/logs/client.out" >&2; die "the client failed"; }
    sleep 0.1
done
[ -f "$TMP/client.ready" ] || die "the client did not finish in 120 s"
open_ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
sleep 2 # let the gateway settle (timers, deferred frees)
est=$(established "$GW_PORT")
read -r pss1 rss1 nproc1 <<<"$(group_mem "${PGID[gateway]}")"
log "with $CONNS idle connections ($est established at the gateway): Pss $pss1 KiB, VmRSS $rss1 KiB over $nproc1 processes"

stop_one client
sleep 2
read -r pss2 rss2 nproc2 <<<"$(group_mem "${PGID[gateway]}")"
log "after the clients closed: Pss $pss2 KiB, VmRSS $rss2 KiB"
pids_end=$(group_pids "${PGID[gateway]}")
if [ "$pids_end" = "$pids_start" ]; then
    alive="yes, same processes"
else
    alive="**no: its PIDs went from $pids_start to ${pids_end:-none}**"
fi
issues=$(head -n 5 "$TMP/gw.err" 2>/dev/null || true)
stop_all

per() { awk -v a="$1" -v b="$2" -v n="$CONNS" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }'; }

echo "## Memory per idle keep-alive connection, $(date '+%Y-%m-%d %H:%M %Z')"
echo
echo "- gateway: \`$GATEWAY_BIN\`, 1 worker on CPU $PROXY_CPU, \`max_connections: $((CONNS + 1000))\`, \`keepalive: 600s\`, access log off; origin nginx on CPU $LOAD_CPU."
echo "- client (C, built by bench/idle-conns.sh, on CPU $LOAD_CPU): $CONNS connections opened one after another, each sends one \`GET /hello\`, reads the whole 200 response and then stays open and silent; all $CONNS were open after $open_ms ms; \`ss\` counted $est established connections on the gateway's port during the measurement."
echo "- memory: summed over the gateway's process group ($nproc0 processes), Pss from \`/proc/PID/smaps_rollup\` and VmRSS from \`/proc/PID/status\`, measured after 5 warm-up requests, again 2 s after the last client connected, and 2 s after the clients closed. Kernel socket buffers are not in these figures."
echo "- gateway still running at the end: $alive."
if [ -n "$issues" ]; then
    echo "- gateway error log, first lines:"
    echo "$issues" | sed "s#$TMP#\$TMP#g; s/^/    - /"
else
    echo "- gateway error log: empty."
fi
echo
echo "| measure | before, KiB | with $CONNS idle, KiB | after close, KiB | per idle connection, bytes |"
echo "|---|---:|---:|---:|---:|"
echo "| Pss | $pss0 | $pss1 | $pss2 | $(per "$pss0" "$pss1") |"
echo "| VmRSS | $rss0 | $rss1 | $rss2 | $(per "$rss0" "$rss1") |"
echo
echo "Target (DESIGN.md section 7, issue 3): under 4096 bytes per idle keep-alive connection."
