#!/usr/bin/env bash
# Side-by-side loopback benchmark of HTTP reverse proxies / API gateways.
#
# Starts a fast nginx origin, then each proxy under test in front of it
# (nginx proxy_pass, nginx + Lua gateway work, haproxy, and an optional
# gateway given by GATEWAY_CMD), drives each with wrk under fixed CPU pinning,
# and prints a markdown table of medians.  Every server it starts lives in a
# temporary directory, listens on 127.0.0.1 only, and is stopped by its own
# process-group id on exit.  See bench/README.md for what the columns mean.
#
# Knobs (environment):
#   DURATION=8s          wrk -d per measured run
#   WARMUP=1s            unmeasured wrk run per (scenario, target) first
#   REPS=3               measured runs per cell; targets alternate round-robin
#   THREADS=1            wrk -t
#   SCENARIOS="hello:50 hello:200 4k:50"   path:connections pairs
#   TARGETS="direct direct-own-cpu nginx-proxy nginx-lua haproxy gateway"
#                        (also nginx-fwd: nginx-proxy sending the request
#                        headers the gateway's contract adds, not in the default)
#   BASE_PORT=18080      origin port; the others are BASE_PORT+1..+5
#   PROXY_CPU=0          CPU for the proxy under test (and direct-own-cpu origin)
#   LOAD_CPU=1           CPU shared by wrk and the origin
#   GATEWAY_CMD=...      shell command starting the gateway under test (the
#                        "gateway" target is skipped when unset); it gets
#                        BENCH_GATEWAY_PORT, BENCH_UPSTREAM, BENCH_API_KEY and
#                        BENCH_TMPDIR in its environment
#   GATEWAY_NAME=gateway label for that row
#   GATEWAY_PORT         default BASE_PORT+4
#   GATEWAY_START_TIMEOUT=20   seconds to wait for it to answer
#   RESULTS_MD=path      also write the report there
#   KEEP_TMP=1           keep the temp dir (configs, logs, raw wrk output)
set -euo pipefail
set +m # background servers must not lead their own group before setsid runs

DURATION=${DURATION:-8s}
WARMUP=${WARMUP:-1s}
REPS=${REPS:-3}
THREADS=${THREADS:-1}
SCENARIOS=${SCENARIOS:-"hello:50 hello:200 4k:50"}
TARGETS=${TARGETS:-"direct direct-own-cpu nginx-proxy nginx-lua haproxy gateway"}
BASE_PORT=${BASE_PORT:-18080}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
GATEWAY_CMD=${GATEWAY_CMD:-}
GATEWAY_NAME=${GATEWAY_NAME:-gateway}
GATEWAY_PORT=${GATEWAY_PORT:-$((BASE_PORT + 4))}
GATEWAY_START_TIMEOUT=${GATEWAY_START_TIMEOUT:-20}
RESULTS_MD=${RESULTS_MD:-}
KEEP_TMP=${KEEP_TMP:-0}
API_KEY=key-1
WRK_TIMEOUT=5s

ORIGIN_PORT=$BASE_PORT
declare -A PORT=(
    [direct]=$BASE_PORT
    [nginx-proxy]=$((BASE_PORT + 1))
    [nginx-lua]=$((BASE_PORT + 2))
    [haproxy]=$((BASE_PORT + 3))
    [gateway]=$GATEWAY_PORT
    [direct-own-cpu]=$((BASE_PORT + 5))
    [nginx-fwd]=$((BASE_PORT + 6))
)

die() { echo "run.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
. "$(dirname "$0")/lib.sh"

# ---------------------------------------------------------------- checks

need_tools nginx haproxy wrk curl taskset setsid ss awk
NGX_MODULES=/usr/lib/nginx/modules
[ -f "$NGX_MODULES/ngx_http_lua_module.so" ] ||
    die "nginx Lua module not found in $NGX_MODULES (apt-get install nginx-extras)"
ncpu=$(nproc --all)
[ "$PROXY_CPU" -lt "$ncpu" ] && [ "$LOAD_CPU" -lt "$ncpu" ] ||
    die "PROXY_CPU=$PROXY_CPU / LOAD_CPU=$LOAD_CPU need at least 2 CPUs (have $ncpu)"
[ "$PROXY_CPU" != "$LOAD_CPU" ] || log "warning: PROXY_CPU == LOAD_CPU, everything shares one core"

# Keep only the targets that can run; "gateway" needs GATEWAY_CMD.
active=()
for t in $TARGETS; do
    case $t in
    direct | direct-own-cpu | nginx-proxy | nginx-fwd | nginx-lua | haproxy) active+=("$t") ;;
    gateway)
        if [ -n "$GATEWAY_CMD" ]; then active+=("$t"); else log "GATEWAY_CMD unset: skipping the gateway row"; fi ;;
    *) die "unknown target: $t" ;;
    esac
done
[ ${#active[@]} -gt 0 ] || die "no targets"

for t in "${active[@]}"; do
    p=${PORT[$t]}
    [ "$t" = direct ] && continue
    if [ -n "$(ss -Hltn "sport = :$p")" ]; then die "port $p (for $t) is already in use; set BASE_PORT"; fi
done
[ -z "$(ss -Hltn "sport = :$ORIGIN_PORT")" ] || die "port $ORIGIN_PORT is already in use; set BASE_PORT"

TMP=$(mktemp -d /tmp/gw-bench.XXXXXX)
mkdir -p "$TMP/www" "$TMP/lua" "$TMP/wrk" "$TMP/logs"
# nginx workers drop to an unprivileged user when started as root.
chmod 755 "$TMP" "$TMP/www" "$TMP/lua"

# ---------------------------------------------------------------- processes

# start NAME CPU CMD... (bench/lib.sh) runs CMD pinned to CPU in a new
# session, so that the whole process tree (master and workers) shares one
# process-group id; stop_all and cleanup (the EXIT trap) stop those groups.
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_ready NAME PORT TIMEOUT : until GET /hello answers on PORT.
wait_ready() {
    local name=$1 port=$2 timeout=$3
    wait_while_up "$name" "$timeout" \
        curl -s -o /dev/null --max-time 1 -H "X-API-Key: $API_KEY" "http://127.0.0.1:$port/hello" && return 0
    echo "---- $name output:" >&2
    tail -n 30 "$TMP/logs/$name.out" >&2 || true
    die "$name did not start on port $port"
}

# group_ticks PGID (bench/lib.sh) counts the children the group's processes
# reaped (cutime, cstime): a worker that dies mid-run and is replaced by its
# master keeps its CPU time in the sum. group_pids PGID is compared before
# and after the measurements: a process that died or was re-spawned (a
# crashed worker replaced by its master) shows up as a changed list.

# cpu_snapshot : "busy total" jiffies for PROXY_CPU then LOAD_CPU.
cpu_snapshot() {
    awk -v a="cpu$PROXY_CPU" -v b="cpu$LOAD_CPU" '
        $1 == a || $1 == b {
            t = 0; for (i = 2; i <= 9; i++) t += $i
            v[$1] = (t - $5 - $6) " " t
        }
        END { print v[a], v[b] }' /proc/stat
}

# speed_probe SECONDS : a busy loop on both CPUs at once, counted per 0.25 s
# slice; prints "cpuN: median slice, slowest slice as % of it" per CPU. The
# host can take time from a vCPU without the guest seeing steal; this shows it.
speed_probe() {
    local secs=$1 cpu
    for cpu in "$PROXY_CPU" "$LOAD_CPU"; do
        taskset -c "$cpu" bash -c '
            end=$(( ${EPOCHREALTIME/./} + $1 * 1000000 ))
            while :; do
                n=0; t0=${EPOCHREALTIME/./}
                while (( ${EPOCHREALTIME/./} - t0 < 250000 )); do n=$((n + 1)); done
                echo "$n"
                (( ${EPOCHREALTIME/./} >= end )) && break
            done' _ "$secs" >"$TMP/probe-$cpu.txt" &
    done
    wait
    for cpu in "$PROXY_CPU" "$LOAD_CPU"; do
        sort -n "$TMP/probe-$cpu.txt" | awk -v cpu="$cpu" '
            { v[NR] = $1 }
            END { m = v[int((NR + 1) / 2)]; printf "cpu%s %.0f%%\n", cpu, (m > 0 ? 100 * v[1] / m : 0) }'
    done | paste -sd, - | sed 's/,/, /g'
}

# ---------------------------------------------------------------- configs

head -c 4096 /dev/zero | tr '\0' 'x' >"$TMP/www/4k"

origin_conf origin "$ORIGIN_PORT" >"$TMP/origin.conf"
origin_conf origin-own-cpu "${PORT[direct-own-cpu]}" >"$TMP/origin-own-cpu.conf"

cat >"$TMP/nginx-proxy.conf" <<EOF
$(ngx_common nginx-proxy)
http {
$(ngx_http_common nginx-proxy)
$(ngx_upstream)
    server {
        listen 127.0.0.1:${PORT[nginx-proxy]} backlog=4096;
        location / {
$(ngx_proxy_directives)
        }
    }
}
EOF

# nginx-proxy plus the request headers the gateway adds to every proxied
# request (DESIGN section 4: X-Forwarded-For/-Proto/-Host, X-Request-Id,
# a traceparent started when absent): the same bytes reach the origin, so
# the origin's share of the load side is the same as behind the gateway.
cat >"$TMP/nginx-fwd.conf" <<EOF
$(ngx_common nginx-fwd)
http {
$(ngx_http_common nginx-fwd)
$(ngx_upstream)
    server {
        listen 127.0.0.1:${PORT[nginx-fwd]} backlog=4096;
        location / {
$(ngx_proxy_directives)
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$http_host;
            proxy_set_header X-Request-Id \$request_id;
            proxy_set_header traceparent 00-\$request_id-00f067aa0ba902b7-01;
        }
    }
}
EOF

# The Lua work done per request: read X-API-Key, look it up in a table of
# 100 consumers, reject (401 JSON) when missing or unknown, and count the
# request per consumer in a shared dict.
cat >"$TMP/lua/bench_gw.lua" <<'EOF'
local ngx = ngx
local var = ngx.var
local counters = ngx.shared.bench_counters

local _M = {}

local consumers = {}
for i = 1, 100 do
    local name = "consumer-" .. i
    consumers["key-" .. i] = { name = name, counter = "requests:" .. name }
end

local function reject(message)
    ngx.status = ngx.HTTP_UNAUTHORIZED
    ngx.header["Content-Type"] = "application/json"
    ngx.print('{"message":"', message, '"}')
    return ngx.exit(ngx.HTTP_OK)
end

function _M.access()
    local key = var.http_x_api_key
    if not key then
        return reject("missing API key")
    end
    local consumer = consumers[key]
    if not consumer then
        return reject("invalid API key")
    end
    local _, err = counters:incr(consumer.counter, 1, 0)
    if err then
        ngx.log(ngx.ERR, "request counter: ", err)
    end
end

function _M.total()
    local sum = 0
    for _, c in pairs(consumers) do
        sum = sum + (counters:get(c.counter) or 0)
    end
    return sum
end

return _M
EOF

cat >"$TMP/nginx-lua.conf" <<EOF
load_module $NGX_MODULES/ndk_http_module.so;
load_module $NGX_MODULES/ngx_http_lua_module.so;
$(ngx_common nginx-lua)
http {
$(ngx_http_common nginx-lua)
    lua_package_path "$TMP/lua/?.lua;;";
    lua_shared_dict bench_counters 1m;
    init_by_lua_block { require("bench_gw") }
$(ngx_upstream)
    server {
        listen 127.0.0.1:${PORT[nginx-lua]} backlog=4096;
        location / {
            access_by_lua_block { require("bench_gw").access() }
$(ngx_proxy_directives)
        }
        location = /__bench/requests {
            content_by_lua_block { ngx.say(require("bench_gw").total()) }
        }
    }
}
EOF

cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 75s
    timeout server 75s
    timeout http-keep-alive 75s
    http-reuse always
frontend fe
    bind 127.0.0.1:${PORT[haproxy]}
    default_backend origin
backend origin
    server o1 127.0.0.1:$ORIGIN_PORT
EOF

# wrk reports through done(): one machine-readable line per run.
cat >"$TMP/report.lua" <<EOF
wrk.headers["X-API-Key"] = "$API_KEY"
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "BENCHRESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
        "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
EOF

# ---------------------------------------------------------------- start

log "temp dir: $TMP"
start origin "$LOAD_CPU" nginx -p "$TMP" -c "$TMP/origin.conf" -e "$TMP/logs/origin.error.log"
wait_ready origin "$ORIGIN_PORT" 10

for t in "${active[@]}"; do
    case $t in
    direct) ;;
    direct-own-cpu)
        start direct-own-cpu "$PROXY_CPU" nginx -p "$TMP" -c "$TMP/origin-own-cpu.conf" -e "$TMP/logs/origin-own-cpu.error.log" ;;
    nginx-proxy | nginx-fwd | nginx-lua)
        start "$t" "$PROXY_CPU" nginx -p "$TMP" -c "$TMP/$t.conf" -e "$TMP/logs/$t.error.log" ;;
    haproxy)
        start haproxy "$PROXY_CPU" haproxy -db -f "$TMP/haproxy.cfg" ;;
    gateway)
        export BENCH_GATEWAY_PORT=$GATEWAY_PORT BENCH_UPSTREAM="127.0.0.1:$ORIGIN_PORT"
        export BENCH_API_KEY=$API_KEY BENCH_TMPDIR=$TMP
        start gateway "$PROXY_CPU" sh -c "$GATEWAY_CMD" ;;
    esac
done
for t in "${active[@]}"; do
    case $t in
    direct) ;;
    gateway) wait_ready gateway "$GATEWAY_PORT" "$GATEWAY_START_TIMEOUT" ;;
    *) wait_ready "$t" "${PORT[$t]}" 10 ;;
    esac
done
# The PIDs of each group, checked around every run: a process that died or
# was re-spawned (a crashed worker replaced by its master) gets a line in the
# report naming the run.
declare -A LAST_PIDS=()
for t in "${started[@]}"; do LAST_PIDS[$t]=$(group_pids "${PGID[$t]}"); done
LAST_RUN="the start"
proc_notes=()
check_pids() { # NAME WHEN
    local now
    now=$(group_pids "${PGID[$1]}")
    if [ "$now" != "${LAST_PIDS[$1]}" ]; then
        proc_notes+=("$1: processes changed $2 (PIDs ${LAST_PIDS[$1]:-none} -> ${now:-none})")
        log "$1: processes changed $2 (PIDs ${LAST_PIDS[$1]:-none} -> ${now:-none})"
        LAST_PIDS[$1]=$now
    fi
}

# Every target must return the origin's bytes before it is measured.
check_body() { # NAME PORT PATH EXPECTED_BYTES
    local got
    got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' -H "X-API-Key: $API_KEY" "http://127.0.0.1:$2$3")
    [ "$got" = "200 $4" ] || die "$1: GET $3 gave '$got', want '200 $4'"
}
for t in "${active[@]}"; do
    check_body "$t" "${PORT[$t]}" /hello 5
    check_body "$t" "${PORT[$t]}" /4k 4096
done
if [[ " ${active[*]} " == *" nginx-lua "* ]]; then
    lp=${PORT[nginx-lua]}
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$lp/hello")" = 401 ] ||
        die "nginx-lua: a request without X-API-Key was not rejected"
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: nope' "http://127.0.0.1:$lp/hello")" = 401 ] ||
        die "nginx-lua: a request with an unknown key was not rejected"
    lua_before=$(curl -s "http://127.0.0.1:$lp/__bench/requests")
fi

# ---------------------------------------------------------------- measure

RAW=$TMP/raw.tsv
printf 'scenario\ttarget\trep\trps\tp50_us\tp99_us\terrors\tproxy_us_per_req\tcpu_proxy_pct\tcpu_load_pct\n' >"$RAW"

# measure SCENARIO TARGET REP PATH CONNS DURATION : one wrk run; REP=0 is a warm-up.
measure() {
    local scen=$1 t=$2 rep=$3 path=$4 conns=$5 dur=$6
    local url="http://127.0.0.1:${PORT[$t]}$path"
    local out="$TMP/wrk/$scen-$t-$rep.txt"
    local pg="" t0=0 t1=0 c0 c1
    [ "$t" != direct ] && pg=${PGID[$t]}
    local name
    for name in "${started[@]}"; do check_pids "$name" "between runs, after $LAST_RUN"; done
    LAST_RUN="$scen $t $([ "$rep" = 0 ] && echo warm-up || echo "run $rep")"
    [ -n "$pg" ] && t0=$(group_ticks "$pg")
    c0=$(cpu_snapshot)
    taskset -c "$LOAD_CPU" wrk -t"$THREADS" -c"$conns" -d"$dur" --timeout "$WRK_TIMEOUT" \
        -s "$TMP/report.lua" "$url" >"$out" 2>&1 || true
    c1=$(cpu_snapshot)
    [ -n "$pg" ] && t1=$(group_ticks "$pg")
    [ "$t" = direct ] || check_pids "$t" "during $LAST_RUN"
    [ "$rep" = 0 ] && return 0
    local line
    line=$(grep '^BENCHRESULT' "$out" || true)
    if [ -z "$line" ]; then
        log "wrk gave no result for $scen/$t (see $out)"
        printf '%s\t%s\t%s\t0\t0\t0\t-1\t-\t0\t0\n' "$scen" "$t" "$rep" >>"$RAW"
        return 0
    fi
    awk -v scen="$scen" -v t="$t" -v rep="$rep" -v line="$line" -v c0="$c0" -v c1="$c1" \
        -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v hasproxy="${pg:+1}" '
        BEGIN {
            n = split(line, kv, /[ =]/)
            for (i = 2; i < n; i += 2) r[kv[i]] = kv[i + 1]
            rps = r["requests"] / (r["duration_us"] / 1e6)
            errs = r["err_connect"] + r["err_read"] + r["err_write"] + r["err_status"] + r["err_timeout"]
            split(c0, a); split(c1, b)
            pp = (b[2] - a[2]) > 0 ? 100 * (b[1] - a[1]) / (b[2] - a[2]) : 0
            lp = (b[4] - a[4]) > 0 ? 100 * (b[3] - a[3]) / (b[4] - a[4]) : 0
            us = (hasproxy && r["requests"] > 0) ? sprintf("%.2f", ticks * 1e6 / hz / r["requests"]) : "-"
            printf "%s\t%s\t%s\t%.0f\t%d\t%d\t%d\t%s\t%.0f\t%.0f\n", scen, t, rep, rps, r["p50_us"], r["p99_us"], errs, us, pp, lp
        }' >>"$RAW"
    local last
    last=$(tail -n 1 "$RAW")
    log "$(echo "$last" | awk -F'\t' '{ printf "%-10s %-14s run %s: %8d req/s  p50 %6d us  p99 %6d us  errors %s", $1, $2, $3, $4, $5, $6, $7 }')"
}

probe_before=$(speed_probe 2)
log "speed probe before: $probe_before (slowest 0.25 s slice as % of the median; below ~85% means the host is taking CPU away)"

total=0
for s in $SCENARIOS; do total=$((total + ${#active[@]} * REPS)); done
log "measuring: ${#active[@]} targets x $(echo $SCENARIOS | wc -w) scenarios x $REPS runs of $DURATION ($total runs)"

for s in $SCENARIOS; do
    path=/${s%%:*}
    conns=${s##*:}
    scen="${s%%:*}-c$conns"
    for t in "${active[@]}"; do measure "$scen" "$t" 0 "$path" "$conns" "$WARMUP"; done
    for rep in $(seq "$REPS"); do
        for t in "${active[@]}"; do
            measure "$scen" "$t" "$rep" "$path" "$conns" "$DURATION"
            sleep 0.5
        done
    done
done

probe_after=$(speed_probe 2)
log "speed probe after: $probe_after"

lua_note=""
if [[ " ${active[*]} " == *" nginx-lua "* ]]; then
    lua_after=$(curl -s "http://127.0.0.1:${PORT[nginx-lua]}/__bench/requests")
    lua_wrk=$(cat "$TMP"/wrk/*-nginx-lua-*.txt | awk '/^BENCHRESULT/ { split($2, a, "="); n += a[2] } END { print n + 0 }')
    lua_note="the nginx-lua per-consumer counter grew by $((lua_after - lua_before)) while wrk completed $lua_wrk requests to nginx-lua (warm-ups included; requests still in flight when wrk stops are counted by nginx only)"
fi

# ---------------------------------------------------------------- report

versions() {
    local v
    v="nginx $(nginx -v 2>&1 | sed 's/.*nginx\///')"
    if command -v dpkg-query >/dev/null; then
        v="$v (lua-nginx-module $(dpkg-query -W -f='${Version}' libnginx-mod-http-lua 2>/dev/null | sed 's/^1://; s/-.*//'),"
        v="$v LuaJIT $(dpkg-query -W -f='${Version}' libluajit2-5.1-2 2>/dev/null | sed 's/-[0-9]*$//'))"
    fi
    v="$v, haproxy $( (haproxy -v || true) | awk 'NR == 1 { print $3 }')"
    v="$v, wrk $( (wrk -v 2>&1 || true) | awk 'NR == 1 { print $2 }' | sed 's/^debian\///')"
    echo "$v"
}

# summarize table|runs : the medians table, or the per-run req/s table, from $RAW.
# Ratios are paired: each run is divided by the reference target's run of the
# same round (they ran seconds apart), and the median of those quotients is
# shown, so that slow phases of the host cancel out instead of skewing one side.
summarize() {
    awk -F'\t' -v mode="$1" -v order="${active[*]}" -v scens="$SCENARIOS" -v gwname="$GATEWAY_NAME" '
        function sorted_mid(v, n,   i, j, x) {
            for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] + 0 > x + 0; j--) v[j + 1] = v[j]; v[j + 1] = x }
            return v[int((n + 1) / 2)]
        }
        function median(key, col,   n, i, v) {
            n = cnt[key]
            for (i = 1; i <= n; i++) v[i] = val[key, i, col]
            return sorted_mid(v, n)
        }
        function lo(key,   i, m) { m = val[key, 1, 4]; for (i = 2; i <= cnt[key]; i++) if (val[key, i, 4] + 0 < m + 0) m = val[key, i, 4]; return m }
        function hi(key,   i, m) { m = val[key, 1, 4]; for (i = 2; i <= cnt[key]; i++) if (val[key, i, 4] + 0 > m + 0) m = val[key, i, 4]; return m }
        function pratio(scen, t, ref,   kt, kr, n, i, m, a, b, v) {
            kt = scen SUBSEP t; kr = scen SUBSEP ref
            if (!(kt in cnt) || !(kr in cnt)) return "-"
            n = cnt[kt] < cnt[kr] ? cnt[kt] : cnt[kr]
            m = 0
            for (i = 1; i <= n; i++) { a = val[kt, i, 4]; b = val[kr, i, 4]; if (a > 0 && b > 0) v[++m] = a / b }
            return m ? sprintf("%.2f", sorted_mid(v, m)) : "-"
        }
        NR > 1 {
            key = $1 SUBSEP $2
            n = ++cnt[key]
            for (c = 4; c <= 10; c++) val[key, n, c] = $c
            if ($7 < 0) bad[key] = 1; else errs[key] += $7
        }
        END {
            nt = split(order, tg, " ")
            ns = split(scens, sc, " ")
            for (s = 1; s <= ns; s++) {
                split(sc[s], pc, ":"); scen = pc[1] "-c" pc[2]
                for (i = 1; i <= nt; i++) {
                    key = scen SUBSEP tg[i]
                    if (!(key in cnt)) continue
                    name = (tg[i] == "gateway") ? gwname : tg[i]
                    if (mode == "runs") {
                        line = "| " scen " | " name " |"
                        for (r = 1; r <= cnt[key]; r++) line = line " " val[key, r, 4] " |"
                        noisy = (lo(key) > 0 && hi(key) / lo(key) > 1.15) ? "noisy" : ""
                        print line " " noisy " |"
                        continue
                    }
                    us = median(key, 8)
                    printf "| %s | %s | %d | %s-%s | %.3f | %.3f | %s | %s | %s | %s | %d%% | %d%% | %s |\n", scen, name,
                        median(key, 4), lo(key), hi(key), median(key, 5) / 1000, median(key, 6) / 1000,
                        pratio(scen, tg[i], "direct"), pratio(scen, tg[i], "nginx-proxy"), pratio(scen, tg[i], "nginx-lua"),
                        (us == "-" ? "-" : sprintf("%.1f", us)), median(key, 9), median(key, 10), (key in bad) ? "NO RESULT" : errs[key] + 0
                }
            }
        }' "$RAW"
}

report() {
    local cpu
    cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    echo "## Loopback proxy benchmark, $(date '+%Y-%m-%d %H:%M %Z')"
    echo
    echo "- host: $ncpu CPUs ($cpu), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)$( [ -r /etc/debian_version ] && echo ", Debian $(cat /etc/debian_version)")"
    echo "- software: $(versions)"
    echo "- pinning: proxy under test on CPU $PROXY_CPU (\`taskset -c $PROXY_CPU\`, 1 worker / 1 thread);" \
        "origin nginx (1 worker) and wrk (-t$THREADS) share CPU $LOAD_CPU (\`taskset -c $LOAD_CPU\`)." \
        "direct = wrk -> origin, both on CPU $LOAD_CPU; direct-own-cpu = wrk (CPU $LOAD_CPU) -> a second origin alone on CPU $PROXY_CPU."
    echo "- load: \`wrk -t$THREADS -c<conns> -d$DURATION --timeout $WRK_TIMEOUT -s report.lua URL\` (report.lua sends \`X-API-Key: $API_KEY\` to every target)," \
        "$WARMUP warm-up per cell, $REPS runs per cell alternating round-robin over targets." \
        "req/s, latency and CPU columns are medians over the runs (each column its own median);" \
        "the \`vs\` columns are medians of per-round ratios (each run divided by the reference run of the same round)."
    echo "- upstream keep-alive: nginx \`keepalive 512\` + HTTP/1.1, haproxy \`http-reuse always\`; origin bodies: /hello = 5 bytes, /4k = 4096 bytes."
    echo "- host speed probe (busy loop on each CPU for 2 s; slowest 0.25 s slice as % of the median slice, below ~85% means the host took CPU away):" \
        "before: $probe_before; after: $probe_after"
    [ -n "$GATEWAY_CMD" ] && echo "- $GATEWAY_NAME: \`$GATEWAY_CMD\` (port $GATEWAY_PORT)"
    [ -n "$lua_note" ] && echo "- check: $lua_note."
    local issues
    # nginx and haproxy tag their levels; the gateway slot's own error log
    # ($BENCH_TMPDIR/*.err, written at level warn) counts line by line, and its
    # console output when it mentions an error or a sanitizer.
    issues=$({
        grep -h -E '\[(emerg|alert|crit|error)\]|\[(ALERT|WARNING)\]' "$TMP"/logs/* 2>/dev/null || true
        grep -h -i -E 'error|warn|crit|alert|fatal|abort|sanitizer|segmentation' "$TMP"/logs/gateway.out 2>/dev/null || true
        cat "$TMP"/*.err 2>/dev/null || true
    } | sed "s#$TMP#\$TMP#g" | head -n 5 || true)
    if [ -z "$issues" ]; then
        echo "- server logs: no errors or warnings."
    else
        echo "- server logs, first error/warning lines:"
        echo "$issues" | sed 's/^/    - /'
    fi
    local note
    for note in "${proc_notes[@]}"; do echo "- processes: $note."; done
    echo
    echo "| scenario | target | req/s | req/s min-max | p50 ms | p99 ms | vs direct | vs nginx-proxy | vs nginx-lua | proxy CPU us/req | CPU$PROXY_CPU busy | CPU$LOAD_CPU busy | errors |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    summarize table
    echo
    echo "Per-run req/s, in the order they ran (a cell whose runs differ by more than 15% is marked \`noisy\`):"
    echo
    echo "| scenario | target | $(seq -s ' | ' -f 'run %g' "$REPS") | |"
    echo "|---|---|$(printf -- '---:|%.0s' $(seq "$REPS"))---|"
    summarize runs
    echo
    echo "Processes (each started with \`setsid\`; configs are written by bench/run.sh into a temp dir):"
    echo
    echo '```'
    local n
    for n in "${started[@]}"; do echo "$n: ${CMDLINE[$n]}" | sed "s#$TMP#\$TMP#g"; done
    echo '```'
}

# Processes that died or changed after the last run, before stopping them.
for t in "${started[@]}"; do check_pids "$t" "after $LAST_RUN"; done

stop_all
report | tee "$TMP/report.md"
[ -n "$RESULTS_MD" ] && cp "$TMP/report.md" "$RESULTS_MD"
if [ "$KEEP_TMP" = 1 ]; then cp "$RAW" "$TMP/raw-final.tsv"; fi
exit 0
