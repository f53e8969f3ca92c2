#!/usr/bin/env bash
# HTTPS termination beside nginx: the gateway and nginx, each one worker with
# TLS 1.3 only, the same certificate and key, in front of the same plain
# nginx origin. For an ECDSA P-256 and an RSA 2048 certificate:
#   keepalive  wrk over kept-alive HTTPS connections: req/s, p99, proxy CPU us/req
#   handshake  wrk with "Connection: close": every request a new TCP + TLS
#              connection: handshakes/s, CPU us/handshake. wrk resumes sessions
#              when it can, so both proxies run with tickets and the session
#              cache off: every handshake is a full one (the gateway's
#              gateway_tls_handshakes_total shows it)
# The proxy under test is pinned to PROXY_CPU, wrk and the origin to LOAD_CPU
# (as bench/run.sh does). Markdown on stdout, and in RESULTS_MD when set.
#
# Knobs: DURATION=10s CONNS=50 PROXY_CPU=0 LOAD_CPU=1 BASE_PORT=18380
#        GATEWAY_BIN=build/gateway CERTS="ecdsa rsa" TARGETS="nginx gateway"
#        MODES="keepalive handshake" RESULTS_MD=path KEEP_TMP=1
set -euo pipefail
set +m

DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BASE_PORT=${BASE_PORT:-18380}
GATEWAY_BIN=${GATEWAY_BIN:-build/gateway}
CERTS=${CERTS:-"ecdsa rsa"}
TARGETS=${TARGETS:-"nginx gateway"}
MODES=${MODES:-"keepalive handshake"}
RESULTS_MD=${RESULTS_MD:-}
KEEP_TMP=${KEEP_TMP:-0}

ORIGIN_PORT=$BASE_PORT
declare -A PORT=([nginx]=$((BASE_PORT + 1)) [gateway]=$((BASE_PORT + 2)))
STATUS_PORT=$((BASE_PORT + 3))

die() { echo "tls.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
. "$(dirname "$0")/lib.sh"

need_tools nginx wrk curl openssl taskset setsid awk
[ -x "$GATEWAY_BIN" ] || die "$GATEWAY_BIN not built (make)"
GATEWAY_BIN=$(cd "$(dirname "$GATEWAY_BIN")" && pwd)/$(basename "$GATEWAY_BIN")

TMP=$(mktemp -d /tmp/gw-tls-bench.XXXXXX)
mkdir -p "$TMP/logs"
# start, stop_one, group_ticks, cleanup: bench/lib.sh
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_https() { # NAME PORT
    local i
    for i in $(seq 100); do
        curl -sk -o /dev/null --max-time 1 "https://127.0.0.1:$2/hello" && return 0
        sleep 0.1
    done
    tail -n 20 "$TMP/logs/$1.out" >&2 || true
    die "$1 did not answer on $2"
}

# ---------------------------------------------------------------- certificates

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$TMP/ca.key" \
    -out "$TMP/ca.pem" -days 30 -subj /CN=bench-ca 2>/dev/null
for c in ecdsa rsa; do
    if [ "$c" = rsa ]; then alg=(-newkey rsa:2048); else alg=(-newkey ec -pkeyopt ec_paramgen_curve:P-256); fi
    openssl req "${alg[@]}" -nodes -keyout "$TMP/$c.key" -out "$TMP/$c.csr" -subj /CN=bench.test 2>/dev/null
    printf 'subjectAltName=DNS:bench.test\n' >"$TMP/san.ext"
    openssl x509 -req -in "$TMP/$c.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" -CAcreateserial \
        -out "$TMP/$c.pem" -days 30 -extfile "$TMP/san.ext" 2>/dev/null
done

# ---------------------------------------------------------------- configs

ngx_head() { # NAME
    cat <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $TMP/$1.pid;
error_log $TMP/logs/$1.error.log warn;
events { worker_connections 8192; }
EOF
}

cat >"$TMP/origin.conf" <<EOF
$(ngx_head origin)
http {
$(ngx_http_common origin)
    server {
        listen 127.0.0.1:$ORIGIN_PORT backlog=4096;
        location = /hello { return 200 "hello"; }
    }
}
EOF

nginx_conf() { # CERT
    cat <<EOF
$(ngx_head nginx)
http {
$(ngx_http_common nginx)
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 512;
    }
    server {
        listen 127.0.0.1:${PORT[nginx]} ssl backlog=4096;
        ssl_certificate $TMP/$1.pem;
        ssl_certificate_key $TMP/$1.key;
        ssl_protocols TLSv1.3;
        ssl_session_cache off;
        ssl_session_tickets off;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}

gateway_conf() { # CERT
    cat <<EOF
gateway:
  listen: [{addr: "127.0.0.1:${PORT[gateway]}", tls: true}]
  workers: 1
  status_listen: 127.0.0.1:$STATUS_PORT
  timeouts: {client_header: 10s, client_body: 30s, keepalive: 75s, drain: 5s}
  limits: {max_header_size: 16k, max_body_size: 8m, max_connections: 10000}
  access_log: "off"
  error_log: {path: "$TMP/logs/gateway.error.log", level: warn}
  pid_file: "$TMP/gateway.pid"
  tls:
    certificates: [{cert: "$TMP/$1.pem", key: "$TMP/$1.key"}]
    min_protocol: TLSv1.3
    session_tickets: false
    session_cache_size: 0
upstreams:
  - name: origin
    nodes: ["127.0.0.1:$ORIGIN_PORT"]
    keepalive: {size: 512, idle_timeout: 75s}
routes:
  - name: all
    match: {path: "/*"}
    upstream: origin
EOF
}

cat >"$TMP/report.lua" <<'EOF'
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("BENCHRESULT requests=%d duration_us=%d p99_us=%d errors=%d\n",
        summary.requests, summary.duration, latency:percentile(99),
        e.connect + e.read + e.write + e.status + e.timeout))
end
EOF
cat >"$TMP/close.lua" <<'EOF'
wrk.headers["Connection"] = "close"
EOF
cat "$TMP/report.lua" >>"$TMP/close.lua"

# ---------------------------------------------------------------- runs

start origin "$LOAD_CPU" nginx -p "$TMP" -c "$TMP/origin.conf"
sleep 0.5
rows=()
tps=$(getconf CLK_TCK)
for cert in $CERTS; do
    for t in $TARGETS; do
        if [ "$t" = nginx ]; then
            nginx_conf "$cert" >"$TMP/nginx.conf"
            start nginx "$PROXY_CPU" nginx -p "$TMP" -c "$TMP/nginx.conf"
        else
            gateway_conf "$cert" >"$TMP/gateway.yaml"
            "$GATEWAY_BIN" -t -c "$TMP/gateway.yaml" >/dev/null
            start gateway "$PROXY_CPU" "$GATEWAY_BIN" -c "$TMP/gateway.yaml"
        fi
        wait_https "$t" "${PORT[$t]}"
        for mode in $MODES; do
            script=$TMP/report.lua
            [ "$mode" = handshake ] && script=$TMP/close.lua
            log "$cert $t $mode: $DURATION, $CONNS connections"
            t0=$(group_ticks "${PGID[$t]}")
            out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" --timeout 5s -s "$script" \
                "https://127.0.0.1:${PORT[$t]}/hello" 2>&1) || true
            t1=$(group_ticks "${PGID[$t]}")
            line=$(grep BENCHRESULT <<<"$out" || echo "BENCHRESULT requests=0 duration_us=1 p99_us=0 errors=0")
            rows+=("$(awk -v cert="$cert" -v t="$t" -v mode="$mode" -v ticks=$((t1 - t0)) -v tps="$tps" '
                { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
                END {
                    rps = v["requests"] / (v["duration_us"] / 1e6)
                    us = v["requests"] ? ticks / tps * 1e6 / v["requests"] : 0
                    printf "| %s | %s | %s | %.0f | %.1f | %.2f | %d |", cert, mode, t, rps, us, v["p99_us"] / 1000, v["errors"]
                }' <<<"$line")")
        done
        if [ "$t" = gateway ]; then
            hs=$(curl -s "http://127.0.0.1:$STATUS_PORT/metrics" | grep '^gateway_tls_handshakes_total' | awk '{ printf "%s ", $0 }')
            log "gateway: $hs"
            echo "$cert: $hs" >>"$TMP/handshakes.txt"
        fi
        stop_one "$t"
    done
done

report() {
    echo "## HTTPS termination: gateway vs nginx"
    echo
    echo "- $(date -u +%Y-%m-%d), host: $(nproc --all) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), Linux $(uname -r), $(openssl version)"
    echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- each proxy: 1 worker on CPU $PROXY_CPU, TLS 1.3 only, same certificate and key; origin nginx and wrk (-t1 -c$CONNS, $DURATION) on CPU $LOAD_CPU; body /hello = 5 bytes"
    echo "- keepalive: requests over kept-alive HTTPS connections; handshake: \`Connection: close\`, each request a new TCP connection and a full handshake (rate = handshakes/s; resumption is off on both proxies, since wrk resumes when it can)"
    echo "- CPU us/req: user+system time of the proxy's processes during the run / requests"
    echo
    echo "| cert | mode | proxy | req/s | CPU us/req | p99 ms | errors |"
    echo "|---|---|---|---:|---:|---:|---:|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "Gateway handshake counters after each certificate's runs:"
    echo
    sed 's/^/    /' "$TMP/handshakes.txt" 2>/dev/null || true
}
report | tee ${RESULTS_MD:+"$RESULTS_MD"}
