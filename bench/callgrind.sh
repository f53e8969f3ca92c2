#!/usr/bin/env bash
# Instructions per request of the gateway's worker, counted by callgrind:
# a fixed number of sequential keep-alive requests (curl) after a warm-up,
# so the figure is exact and does not depend on a quiet machine.
#
#   bench/callgrind.sh [lua|noop|plain]     (default lua: key-auth and a
#                                            counter, bench/lua.sh's config)
# Environment: GATEWAY_BIN (build/gateway), N (2000 measured requests),
# WARM (1000 warm-up requests), GW_LUA_DIR (passed to the gateway).
# Prints "KIND: <instructions per request>". Needs valgrind, curl, perl.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
die() { echo "callgrind.sh: $*" >&2; exit 1; }
log() { echo "callgrind.sh: $*" >&2; }
. bench/lib.sh
KIND=${1:-lua}
GATEWAY_BIN=${GATEWAY_BIN:-build/gateway}
N=${N:-2000}
WARM=${WARM:-1000}
TMP=$(mktemp -d)
# every background job goes into pids; cleanup, free_port, wait_port: bench/lib.sh
trap cleanup EXIT

UP=$(free_port)
perl t/lib/echo-upstream.pl --port "$UP" --name origin --log /dev/null >"$TMP/up.log" 2>&1 &
pids+=($!)
wait_port "$UP"

export BENCH_GATEWAY_PORT BENCH_UPSTREAM="127.0.0.1:$UP" BENCH_TMPDIR="$TMP"
BENCH_GATEWAY_PORT=$(free_port)
bench/lua.sh config "$KIND" >"$TMP/gateway.yaml"
valgrind --tool=callgrind --trace-children=yes --smc-check=all \
    --callgrind-out-file="$TMP/cg.%p" "$GATEWAY_BIN" -c "$TMP/gateway.yaml" \
    >"$TMP/gw.out" 2>&1 &
pids+=($!)
wait_port "$BENCH_GATEWAY_PORT" 200

url="http://127.0.0.1:$BENCH_GATEWAY_PORT/hello"
send() { # COUNT: sequential requests on one keep-alive connection
    curl -s -o /dev/null -H 'X-API-Key: key-1' "$url?[1-$1]"
}
send "$WARM"
# the worker: the child of the master that answers requests
worker=$(pgrep -P "$(cat "$TMP/gateway.pid")" | head -1)
callgrind_control -z "$worker" >/dev/null 2>&1
send "$N"
callgrind_control -d "$worker" >/dev/null 2>&1
sleep 1
ir=$(ls -t "$TMP"/cg."$worker"* | head -1 | xargs grep -h '^summary:' | awk '{print $2}')
echo "$KIND: $((ir / N)) instructions per request"
