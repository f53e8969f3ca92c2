#!/usr/bin/env bash
# Discovery at scale: 1,000 go-zero instances of 100 services registered in
# etcd, then replaced at 100 changes per second for a minute while the
# gateway serves traffic spread over all 100 services. Measures the time
# from each new node's etcd write to the first request the gateway routes
# to it, and req/s before, during and after the churn. Prints a markdown
# section on stdout; progress goes to stderr. See bench/README.md.
#
# Environment:
#   GATEWAY_BIN=build/gateway
#   CHURN_SERVICES=100 CHURN_PER=10   services, nodes per service
#   CHURN_RATE=100                    changes per second (one change: a new
#                                     node registered, then one node of the
#                                     same service revoked)
#   CHURN_DURATION=60                 seconds of churn
#   CHURN_BEFORE=20 CHURN_AFTER=20    seconds of load without churn around it
#   CHURN_CONNS=50                    wrk -c (wrk -t1)
#   CHURN_WORKERS=1                   gateway workers
#   CHURN_PRINTER=1                   0: no `gateway -d` beside the gateway
#                                     (no split of the delay)
#   CHURN_BASE_PORT                   4 free ports from here (default: the
#                                     first of 18400, 18410, ... all free)
#   PROXY_CPU=0 LOAD_CPU=1            the gateway / everything else
#   KEEP_TMP=1                        keep the temp directory
set -euo pipefail
set +m # background servers must not lead their own group before setsid runs

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

GATEWAY_BIN=${GATEWAY_BIN:-build/gateway}
SERVICES=${CHURN_SERVICES:-100}
PER=${CHURN_PER:-10}
RATE=${CHURN_RATE:-100}
DURATION=${CHURN_DURATION:-60}
BEFORE=${CHURN_BEFORE:-20}
AFTER=${CHURN_AFTER:-20}
CONNS=${CHURN_CONNS:-50}
WORKERS=${CHURN_WORKERS:-1}
PRINTER=${CHURN_PRINTER:-1}
BASE_PORT=${CHURN_BASE_PORT:-}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
KEEP_TMP=${KEEP_TMP:-0}
CHURN_BIN=build/churn
HZ=$(getconf CLK_TCK)

die() { echo "discovery-churn.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] churn: $*" >&2; }
. "$(dirname "$0")/lib.sh"

need_tools etcd wrk curl taskset setsid ss awk go
[ -x "$GATEWAY_BIN" ] || die "$GATEWAY_BIN not found; run make first"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs"

# build/churn from bench/churn/main.go against Debian's etcd client sources
# (golang-etcd-server-dev), offline, as t/reg is built.
if [ ! -x "$CHURN_BIN" ] || [ bench/churn/main.go -nt "$CHURN_BIN" ]; then
    [ -d /usr/share/gocode/src/go.etcd.io/etcd/clientv3 ] ||
        die "etcd client sources missing (golang-etcd-server-dev)"
    gopath=$(mktemp -d /tmp/gw-bench-gopath.XXXXXX)
    GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOCACHE="$ROOT/build/go-cache" \
        go build -o "$CHURN_BIN" ./bench/churn || { rm -rf "$gopath"; die "go build failed"; }
    rm -rf "$gopath"
fi

if [ -z "$BASE_PORT" ]; then
    for b in $(seq 18400 10 18900); do
        if ports_free "$b" 4; then BASE_PORT=$b; break; fi
    done
    [ -n "$BASE_PORT" ] || die "no 4 free ports between 18400 and 18903; set CHURN_BASE_PORT"
fi
ports_free "$BASE_PORT" 4 || die "a port in $BASE_PORT..$((BASE_PORT + 3)) is in use"
ETCD_PORT=$BASE_PORT
PEER_PORT=$((BASE_PORT + 1))
GW_PORT=$((BASE_PORT + 2))
STATUS_PORT=$((BASE_PORT + 3))

TMP=$(mktemp -d /tmp/gw-bench-churn.XXXXXX)
mkdir -p "$TMP/logs" "$TMP/wrk"

# start NAME CPU CMD... (bench/lib.sh): CMD pinned to CPU, in its own
# session and group, stderr apart (wait_for shows it); stop_all stops the
# groups in the reverse of the start order: the gateway before etcd.
START_STDERR_APART=1
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for NAME SECONDS CMD... : until CMD succeeds, while NAME lives.
wait_for() {
    wait_while_up "$@" && return 0
    tail -n 20 "$TMP/logs/$1.err" >&2 || true
    die "$1: not ready after ${2}s"
}

# pid_ticks PID : user+system ticks of one process.
pid_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# cpu_busy : "busy total" jiffies of PROXY_CPU then LOAD_CPU.
cpu_busy() {
    awk -v a="cpu$PROXY_CPU" -v b="cpu$LOAD_CPU" '
        $1 == a || $1 == b { t = 0; for (i = 2; i <= NF; i++) t += $i; r[$1] = (t - $5 - $6) " " t }
        END { print r[a], r[b] }' /proc/stat
}

# ---------------------------------------------------------------- configs

gen_config() {
    cat <<YAML
gateway:
  listen: ["127.0.0.1:$GW_PORT"]
  workers: $WORKERS
  access_log: "off"
  error_log: {path: "$TMP/gw.err", level: info}
  pid_file: "$TMP/gw.pid"
  status_listen: 127.0.0.1:$STATUS_PORT
registries:
  etcd1: {type: etcd, endpoints: ["http://127.0.0.1:$ETCD_PORT"]}
upstreams:
YAML
    for i in $(seq 0 $((SERVICES - 1))); do
        echo "  - name: u$i"
        echo "    discovery: {registry: etcd1, format: go-zero, key: svc$i.rpc}"
    done
    echo "routes:"
    for i in $(seq 0 $((SERVICES - 1))); do
        echo "  - name: r$i"
        echo "    match: {path: \"/s$i/*\"}"
        echo "    upstream: u$i"
    done
}
gen_config >"$TMP/gateway.yaml"
"$GATEWAY_BIN" -t -c "$TMP/gateway.yaml" >"$TMP/logs/check.out" 2>&1 ||
    { head -n 20 "$TMP/logs/check.out" >&2; die "the gateway config was rejected"; }

# wrk: successive requests rotate over the services (the thread starts at
# a random one), so every service gets the same
# share of the load.
cat >"$TMP/spread.lua" <<LUA
local reqs, n = {}, 0
function init(args)
    for i = 0, $SERVICES - 1 do reqs[#reqs + 1] = wrk.format("GET", "/s" .. i .. "/x") end
    n = math.random(#reqs)
end
function request()
    n = n % #reqs + 1
    return reqs[n]
end
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "BENCHRESULT requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d status=%d\n",
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        e.connect + e.read + e.write + e.status + e.timeout, e.status))
end
LUA

# ---------------------------------------------------------------- start

log "temp dir: $TMP"
start etcd "$LOAD_CPU" etcd --name bench --data-dir "$TMP/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
    --initial-cluster "bench=http://127.0.0.1:$PEER_PORT" --logger zap --log-level warn
etcd_ok() { curl -s --max-time 1 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
wait_for etcd 20 etcd_ok

log "registering $((SERVICES * PER)) nodes"
t0=${EPOCHREALTIME/./}
start churn "$LOAD_CPU" "$CHURN_BIN" run -endpoints "http://127.0.0.1:$ETCD_PORT" \
    -services "$SERVICES" -per "$PER" -rate "$RATE" -duration "${DURATION}s" -out "$TMP/nodes.tsv"
churn_said() { grep -q "^$1" "$TMP/logs/churn.out"; }
wait_for churn 120 churn_said ready
REGISTER_MS=$(((${EPOCHREALTIME/./} - t0) / 1000))
CHURN_PID=${PGID[churn]}

if [ "$PRINTER" = 1 ]; then
    start printer "$LOAD_CPU" sh -c "exec $GATEWAY_BIN -d -c '$TMP/gateway.yaml' 2>'$TMP/logs/printer.d.err' | exec $CHURN_BIN stamp -o '$TMP/printer.log'"
fi
start gateway "$PROXY_CPU" "$GATEWAY_BIN" -c "$TMP/gateway.yaml"
all_routed() {
    local i
    for i in $(seq 0 $((SERVICES - 1))); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$GW_PORT/s$i/x")" = 200 ] || return 1
    done
}
wait_for gateway 30 all_routed

# The gateway's processes: the worker(s) and the discovery process, by
# their command lines (the master is the group leader).
sleep 0.5
GW_PIDS=$(group_pids "${PGID[gateway]}")
# The discovery process is the one connected to etcd.
DISC_PIDS=" $(ss -Htnp "dport = :$ETCD_PORT" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u | paste -sd' ' -) "
declare -A ROLE=()
for p in $GW_PIDS; do
    if [ "$p" = "${PGID[gateway]}" ]; then ROLE[$p]=master
    elif [[ "$DISC_PIDS" == *" $p "* ]]; then ROLE[$p]=discovery
    else ROLE[$p]=worker; fi
done
log "gateway processes: $(for p in $GW_PIDS; do printf '%s=%s ' "$p" "${ROLE[$p]}"; done)"

# ---------------------------------------------------------------- phases

RAW=$TMP/raw.tsv
: >"$RAW"
# all_ticks : user+nice+system jiffies of every CPU (interrupts left out).
all_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 }' /proc/stat; }
# child_ticks_to VAR : CPU time of this shell's reaped children (wrk), in
# ticks, into VAR (`times` in a subshell would see the subshell's).
child_ticks_to() {
    times >"$TMP/times.txt"
    printf -v "$1" '%s' "$(tail -n 1 "$TMP/times.txt" | awk -v hz="$HZ" '{
        s = 0
        for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] }
        printf "%d\n", s * hz + 0.5 }')"
}
# run PHASE SECONDS : one wrk run, with the CPU used by each part; one line
# of RAW.
run() {
    local name=$1 secs=$2 out line p g k
    out="$TMP/wrk/$1.txt"
    local -A t0=() t1=()
    for p in $GW_PIDS; do t0[$p]=$(pid_ticks "$p"); done
    for g in etcd churn printer; do t0[$g]=0; [ -n "${PGID[$g]:-}" ] && t0[$g]=$(group_ticks "${PGID[$g]}"); done
    local c0 c1 a0 a1 w0 w1
    c0=$(cpu_busy); a0=$(all_ticks); child_ticks_to w0
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s -s "$TMP/spread.lua" \
        "http://127.0.0.1:$GW_PORT/" >"$out" 2>&1 || true
    c1=$(cpu_busy); a1=$(all_ticks); child_ticks_to w1
    for p in $GW_PIDS; do t1[$p]=$(pid_ticks "$p"); done
    for g in etcd churn printer; do t1[$g]=0; [ -n "${PGID[$g]:-}" ] && t1[$g]=$(group_ticks "${PGID[$g]}"); done
    line=$(grep '^BENCHRESULT' "$out" || echo "BENCHRESULT requests=0 duration_us=1 p50_us=0 p99_us=0 errors=-1 status=-1")
    local work=0 disc=0 master=0 rss=0 mine
    for p in $GW_PIDS; do
        k=$((t1[$p] - t0[$p]))
        case ${ROLE[$p]} in
        worker)
            work=$((work + k))
            rss=$((rss + $(awk '/^VmRSS/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)))
            ;;
        discovery) disc=$((disc + k)) ;;
        *) master=$((master + k)) ;;
        esac
    done
    local etcd=$((t1[etcd] - t0[etcd])) churn=$((t1[churn] - t0[churn])) printer=$((t1[printer] - t0[printer])) wrk=$((w1 - w0))
    mine=$((work + disc + master + etcd + churn + printer + wrk))
    # columns: phase result worker disc master etcd churn printer wrk other
    #          cpu0/1 before, cpu0/1 after, seconds, worker RSS (KiB)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$line" "$work" "$disc" "$master" \
        "$etcd" "$churn" "$printer" "$wrk" "$((a1 - a0 - mine))" "$c0" "$c1" "$secs" "$rss" >>"$RAW"
    log "$name: $(sed -n 's/^Requests\/sec: *//p' "$out") req/s; worker $work ticks, discovery $disc, other processes $((a1 - a0 - mine))"
}
log "warm-up 3 s"
taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d3s --timeout 5s -s "$TMP/spread.lua" \
    "http://127.0.0.1:$GW_PORT/" >"$TMP/wrk/warmup.txt" 2>&1 || true
EV0=$(curl -s --max-time 2 "http://127.0.0.1:$STATUS_PORT/metrics" | awk '/^gateway_registry_events_total/ { s += $NF } END { print s + 0 }')

run before "$BEFORE"
# The churn starts half a second into the wrk run and ends (DURATION s
# later, plus the changes still in flight) before it, so every new node is
# registered while requests flow.
( sleep 0.5; kill -USR1 "$CHURN_PID" ) &
run churn $((DURATION + 2))
wait_for churn 30 churn_said "churn done"
run after "$AFTER"

EV1=$(curl -s --max-time 2 "http://127.0.0.1:$STATUS_PORT/metrics" | awk '/^gateway_registry_events_total/ { s += $NF } END { print s + 0 }')
curl -s --max-time 2 "http://127.0.0.1:$STATUS_PORT/metrics" >"$TMP/metrics.txt" || true
kill -USR2 "$CHURN_PID"
wait_for churn 30 churn_said dumped

crashed=""
now_pids=$(group_pids "${PGID[gateway]}")
[ "$now_pids" = "$GW_PIDS" ] || crashed="PIDs $GW_PIDS -> ${now_pids:-none}"
stop_all

# ---------------------------------------------------------------- report

echo "## Discovery churn, $(date '+%Y-%m-%d %H:%M %Z')"
echo
echo "- command: \`CHURN_SERVICES=$SERVICES CHURN_PER=$PER CHURN_RATE=$RATE CHURN_DURATION=$DURATION CHURN_BEFORE=$BEFORE CHURN_AFTER=$AFTER CHURN_CONNS=$CONNS CHURN_WORKERS=$WORKERS CHURN_PRINTER=$PRINTER bench/discovery-churn.sh\`"
echo "- host: $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1), kernel $(uname -r); $(etcd --version | head -n 1); gateway $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "- gateway: \`$GATEWAY_BIN\`, $WORKERS worker(s), master, worker(s) and discovery process on CPU $PROXY_CPU; $SERVICES upstreams \`discovery: {registry: etcd1, format: go-zero, key: svc<i>.rpc}\` (round robin), route \`/s<i>/*\` each"
echo "- CPU $LOAD_CPU: etcd (one member, data in a temp directory, fsync on), \`build/churn\` (etcd's Go client registering the nodes, and the backends: one 127.0.0.1 listener per node answering 200), wrk (\`-t1 -c$CONNS\`, requests rotating over the $SERVICES services)$([ "$PRINTER" = 1 ] && echo ', and `gateway -d` on the same config with its lines timestamped as they are read')"
echo "- $((SERVICES * PER)) nodes registered (lease TTL 10 s each, kept alive) in $REGISTER_MS ms; then $RATE changes per second for $DURATION s: a new node registered on a port not used before in the run, then one node of the same service revoked (two watch events per change)"
echo "- gateway_registry_events_total during the three phases: $((EV1 - EV0))"
errs=$(grep -v -E 'registry etcd1: connected|starting|started|listening|worker|discovery process' "$TMP/gw.err" 2>/dev/null | head -n 5 || true)
if [ -n "$errs" ]; then
    echo "- gateway error log (info and up), lines other than start-up:"
    echo "$errs" | sed "s#$TMP#\$TMP#g; s/^/    - /"
else
    echo "- gateway error log: start-up lines only."
fi
[ -z "$crashed" ] || echo "- **gateway processes died or were re-spawned during the run: $crashed**"
echo
echo "### Throughput"
echo
echo 'One wrk run per phase; the churn phase'"'"'s run starts 0.5 s before the first change and ends about 1.5 s after the last. CPU in % of one CPU over the phase; `other processes`: CPU time on the host not used by the processes of this run (another user'"'"'s load).'
echo
echo "| phase | s | req/s | p50 ms | p99 ms | errors (non-2xx) | worker us/req | discovery process % | master % | etcd % | churn + backends % | gateway -d % | wrk % | other processes % | CPU$PROXY_CPU busy | CPU$LOAD_CPU busy | worker RSS MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
awk -F'\t' -v hz="$HZ" '
    {
        ph = $1
        if (!(ph in n)) order[++np] = ph
        n[ph]++
        k = split($2, kv, /[ =]/); delete r
        for (i = 2; i < k; i += 2) r[kv[i]] = kv[i + 1]
        req[ph] += r["requests"]; dur[ph] += r["duration_us"] / 1e6
        if (r["p50_us"] > p50[ph]) p50[ph] = r["p50_us"]
        if (r["p99_us"] > p99[ph]) p99[ph] = r["p99_us"]
        if (r["errors"] < 0) bad[ph] = 1
        err[ph] += r["errors"]; st[ph] += r["status"]
        for (c = 3; c <= 10; c++) t[ph, c] += $c
        split($11, c0, " "); split($12, c1, " ")
        b0[ph] += c1[1] - c0[1]; n0[ph] += c1[2] - c0[2]
        b1[ph] += c1[3] - c0[3]; n1[ph] += c1[4] - c0[4]
        secs[ph] += $13; rss[ph] = $14
    }
    END {
        for (i = 1; i <= np; i++) {
            ph = order[i]; d = secs[ph]
            rate[ph] = dur[ph] ? req[ph] / dur[ph] : 0
            printf "| %s | %d | %.0f | %.3f | %.3f | %s (%d) | %.2f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.0f%% | %.0f%% | %.1f |\n",
                ph, d, rate[ph], p50[ph] / 1000, p99[ph] / 1000, (ph in bad) ? "NO RESULT" : err[ph], st[ph],
                req[ph] ? t[ph, 3] * 1e6 / hz / req[ph] : 0,
                100 * t[ph, 4] / hz / d, 100 * t[ph, 5] / hz / d, 100 * t[ph, 6] / hz / d, 100 * t[ph, 7] / hz / d,
                100 * t[ph, 8] / hz / d, 100 * t[ph, 9] / hz / d, 100 * t[ph, 10] / hz / d,
                n0[ph] ? 100 * b0[ph] / n0[ph] : 0, n1[ph] ? 100 * b1[ph] / n1[ph] : 0, rss[ph] / 1024
        }
        if (rate["before"] > 0 && rate["churn"] > 0) {
            ref = rate["before"]
            if (rate["after"] > 0) ref = (rate["before"] + rate["after"]) / 2
            printf "\nreq/s during the churn against the mean of before and after: %.0f / %.0f = %+.1f %% (against before alone: %+.1f %%)\n",
                rate["churn"], ref, 100 * (rate["churn"] / ref - 1), 100 * (rate["churn"] / rate["before"] - 1)
            wb = t["before", 3] / req["before"]; wc = t["churn", 3] / req["churn"]
            printf "\nWorker CPU per request during the churn against before: %+.1f %%; the discovery process used %.1f %% of a CPU during the churn.\n",
                100 * (wc / wb - 1), 100 * t["churn", 4] / hz / secs["churn"]
        }
    }' "$RAW"
echo
echo "### Delay from the etcd write to the first request routed to the new node"
echo
"$CHURN_BIN" report -nodes "$TMP/nodes.tsv" -gwlog "$TMP/gw.err" $([ "$PRINTER" = 1 ] && echo "-printer $TMP/printer.log")
echo
awk -F'\t' -v n="$((SERVICES * PER))" -v s="$SERVICES" '$1 == "churn" {
    k = split($2, kv, /[ =]/)
    for (i = 2; i < k; i += 2) r[kv[i]] = kv[i + 1]
    req += r["requests"]; dur += r["duration_us"] / 1e6
}
END {
    if (req == 0) exit
    rps = req / dur
    printf "Request sampling: during the churn each service got %.0f req/s, so each of its %d nodes one request every %.0f ms on average (round robin: a node that joins a service is picked within the next %d requests to it, %.0f ms).\n", rps / s, n / s, 1000 * n / rps, n / s, 1000 * n / rps
}' "$RAW"
