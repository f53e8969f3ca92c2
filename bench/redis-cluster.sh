#!/usr/bin/env bash
# The Redis limiter against one Redis and against a Redis Cluster of three
# masters (no replicas), at the same load: one gateway worker, limit-period
# (policy redis, a quota no run reaches) keyed by an X-User header that wrk
# spreads over 1,000 users, an nginx origin answering "hello". Rows:
#   node      redis: {addr: one redis-server}
#   cluster   redis: {type: cluster, addrs: [three masters]}
# Columns: req/s and p99 from wrk, and Redis calls per request (the
# EVALSHA/EVAL calls in INFO commandstats over every server, divided by the
# requests wrk made; below 1 when some answers came from the local fallback,
# counted apart from gateway_limiter_fallbacks_total, warm-up included).
# Markdown on stdout, progress on stderr.
#
# Environment:
#   DURATION=10      seconds per case (after a 2 s warm-up)
#   CONNS=50         wrk connections (one thread)
#   BASE_PORT=18500  origin, gateway, status, redis, cluster nodes: BASE_PORT .. +8
#   GATEWAY_BIN=build/gateway
set -euo pipefail
set +m

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

DURATION=${DURATION:-10}
CONNS=${CONNS:-50}
BASE_PORT=${BASE_PORT:-18500}
GATEWAY_BIN=${GATEWAY_BIN:-build/gateway}
ORIGIN_PORT=$BASE_PORT
GW_PORT=$((BASE_PORT + 1))
STATUS_PORT=$((BASE_PORT + 2))
REDIS_PORT=$((BASE_PORT + 3))
CLUSTER_PORTS="$((BASE_PORT + 4)) $((BASE_PORT + 5)) $((BASE_PORT + 6))"

log() { echo "[$(date +%H:%M:%S)] redis-cluster.sh: $*" >&2; }
die() { echo "redis-cluster.sh: $*" >&2; exit 1; }
. bench/lib.sh

for b in wrk nginx redis-server redis-cli curl "$GATEWAY_BIN"; do
    command -v "$b" > /dev/null || [ -x "$b" ] || die "$b not found"
done

TMP=$(mktemp -d /tmp/bench-rcluster.XXXXXX)
trap cleanup EXIT # bench/lib.sh: kills every pid in pids

start_bg() { # start_bg NAME CMD... : in the background, its pid kept for cleanup
    local name=$1
    shift
    "$@" > "$TMP/$name.out" 2>&1 &
    pids+=($!)
}

# ---- origin, one Redis, a three-master cluster -------------------------------

mkdir -p "$TMP/nginx/logs"
cat > "$TMP/nginx/nginx.conf" << EOF
daemon off;
worker_processes 1;
error_log $TMP/nginx/logs/error.log warn;
pid $TMP/nginx/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        keepalive_requests 100000;
        location / { return 200 "hello"; }
    }
}
EOF
start_bg nginx nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf"

redis_args=(--bind 127.0.0.1 --save '' --appendonly no --protected-mode no --loglevel warning)
mkdir -p "$TMP/r-$REDIS_PORT"
start_bg "redis-$REDIS_PORT" redis-server --port "$REDIS_PORT" --dir "$TMP/r-$REDIS_PORT" "${redis_args[@]}"
seeds=()
for p in $CLUSTER_PORTS; do
    mkdir -p "$TMP/r-$p"
    start_bg "redis-$p" redis-server --port "$p" --dir "$TMP/r-$p" "${redis_args[@]}" \
        --cluster-enabled yes --cluster-config-file "$TMP/r-$p/nodes.conf"
    seeds+=("127.0.0.1:$p")
done
for p in "$ORIGIN_PORT" "$REDIS_PORT" $CLUSTER_PORTS; do wait_port "$p" 100 0.05; done
redis-cli --cluster create "${seeds[@]}" --cluster-replicas 0 --cluster-yes > "$TMP/create.out" 2>&1 ||
    die "redis-cli --cluster create: $(cat "$TMP/create.out")"
for _ in $(seq 100); do
    ok=1
    for p in $CLUSTER_PORTS; do
        redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' || ok=0
    done
    [ $ok = 1 ] && break
    sleep 0.1
done
[ $ok = 1 ] || die "the cluster did not become ok"
log "cluster of three masters formed"

cat > "$TMP/users.lua" << 'EOF'
-- one of 1,000 users per request, so that keys spread over every slot
math.randomseed(os.time())
request = function()
    return wrk.format("GET", "/hello", { ["X-User"] = "u" .. math.random(1, 1000) })
end
EOF

# calls PORTS... : EVALSHA + EVAL calls so far, summed over PORTS
calls() {
    local n=0 p c
    for p in "$@"; do
        c=$(redis-cli -p "$p" info commandstats | tr -d '\r' |
            awk -F'[:=,]' '/^cmdstat_(evalsha|eval):/ { s += $3 } END { print s + 0 }')
        n=$((n + c))
    done
    echo "$n"
}

# run NAME REDIS_YAML PORTS... : one case, one markdown row
run() {
    local name=$1 redis=$2
    shift 2
    cat > "$TMP/gw-$name.yaml" << EOF
gateway:
  listen: ["127.0.0.1:$GW_PORT"]
  workers: 1
  status_listen: "127.0.0.1:$STATUS_PORT"
  access_log: "off"
  error_log: {path: "$TMP/gw-$name.err", level: warn}
  pid_file: "$TMP/gw-$name.pid"
redis: $redis
upstreams:
  - {name: origin, nodes: ["127.0.0.1:$ORIGIN_PORT"], keepalive: {size: 512, idle_timeout: 75s}}
routes:
  - name: all
    match: {path: "/*"}
    upstream: origin
    plugins:
      limit-period: {period: 60, quota: 100000000, key: "header:X-User", policy: redis}
EOF
    "$GATEWAY_BIN" -c "$TMP/gw-$name.yaml" > "$TMP/gw-$name.out" 2>&1 &
    local gpid=$!
    wait_port "$GW_PORT" 100 0.05
    sleep 0.5
    wrk -t1 -c"$CONNS" -d2s -s "$TMP/users.lua" "http://127.0.0.1:$GW_PORT/" > /dev/null
    local before
    before=$(calls "$@")
    log "$name: ${DURATION}s at $CONNS connections"
    wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$TMP/users.lua" "http://127.0.0.1:$GW_PORT/" \
        > "$TMP/wrk-$name.out"
    local after fb
    after=$(calls "$@")
    fb=$(curl -s "http://127.0.0.1:$STATUS_PORT/metrics" |
        awk '/^gateway_limiter_fallbacks_total\{/ { s += $2 } END { print s + 0 }')
    kill "$gpid"
    wait "$gpid" 2> /dev/null || true
    local rps p99 total non2xx
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$TMP/wrk-$name.out")
    p99=$(awk '$1 == "99%" { print $2 }' "$TMP/wrk-$name.out")
    total=$(awk '/requests in/ { print $1 }' "$TMP/wrk-$name.out")
    non2xx=$(awk '/Non-2xx/ { print $NF }' "$TMP/wrk-$name.out")
    awk -v n="$name" -v r="$rps" -v p="$p99" -v c=$((after - before)) -v t="$total" -v e="${non2xx:-0}" \
        -v f="$fb" 'BEGIN { printf "| %s | %.0f | %s | %.3f | %d | %s |\n", n, r, p, (t > 0 ? c / t : 0), f, e }'
}

echo "| redis | req/s | p99 | Redis calls / request | answered locally | non-2xx |"
echo "|---|---:|---:|---:|---:|---:|"
run node "{addr: \"127.0.0.1:$REDIS_PORT\", timeout: 50ms}" "$REDIS_PORT"
addrs=$(printf '"%s", ' "${seeds[@]}")
run cluster "{type: cluster, addrs: [${addrs%, }], timeout: 50ms}" $CLUSTER_PORTS
echo
echo "One gateway worker, wrk -t1 -c$CONNS, ${DURATION}s per case after a 2 s warm-up, $(nproc) CPUs."
