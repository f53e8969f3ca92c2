#!/usr/bin/env bash
# Route-table scaling: the same gateway, once with 10 routes and once with
# 5,000, proxying GET /svc-2500/hello (a prefix route in the middle of the
# table, strip_prefix to the origin's /hello). Prints a markdown section on
# stdout; progress goes to stderr. See bench/README.md.
#
# Environment:
#   GATEWAY_BIN=build/gateway
#   ROUTES_SIZES="10 5000"   table sizes (each must divide 5000); the first
#                            one is the reference of the ratios
#   ROUTES_DURATION=5s       wrk -d per measured run
#   ROUTES_REPS=3            measured runs per size, sizes alternate
#   ROUTES_CONNS=50          wrk -c
#   ROUTES_BASE_PORT         origin; the gateways on the next ports (default:
#                            the first of 18090, 18100, ... with all of them free)
#   PROXY_CPU=0 LOAD_CPU=1   gateway / wrk and origin
#   KEEP_TMP=1               keep the temp directory
set -euo pipefail
set +m # background servers must not lead their own group before setsid runs

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

GATEWAY_BIN=${GATEWAY_BIN:-build/gateway}
SIZES=${ROUTES_SIZES:-"10 5000"}
DURATION=${ROUTES_DURATION:-5s}
REPS=${ROUTES_REPS:-3}
CONNS=${ROUTES_CONNS:-50}
BASE_PORT=${ROUTES_BASE_PORT:-}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
KEEP_TMP=${KEEP_TMP:-0}
WARMUP=1s
MEASURED_ID=2500 # /svc-2500/*: index N/2 of every table (see gen_routes)
MEASURED_PATH=/svc-$MEASURED_ID/hello

die() { echo "routes.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] routes: $*" >&2; }
. "$(dirname "$0")/lib.sh"

need_tools nginx wrk curl taskset setsid ss awk
[ -x "$GATEWAY_BIN" ] || die "$GATEWAY_BIN not found; run make first"
for n in $SIZES; do
    [ "$n" -ge 2 ] && [ $((5000 % n)) = 0 ] || die "table size $n must divide 5000"
done

nports=$((1 + $(echo $SIZES | wc -w)))
if [ -z "$BASE_PORT" ]; then
    for b in $(seq 18090 10 18590); do
        if ports_free "$b" "$nports"; then BASE_PORT=$b; break; fi
    done
    [ -n "$BASE_PORT" ] || die "no $nports free ports between 18090 and 18599; set ROUTES_BASE_PORT"
fi
ports_free "$BASE_PORT" "$nports" || die "a port in $BASE_PORT..$((BASE_PORT + nports - 1)) is in use; set ROUTES_BASE_PORT"
ORIGIN_PORT=$BASE_PORT
declare -A PORT=()
i=1
for n in $SIZES; do PORT[$n]=$((BASE_PORT + i)); i=$((i + 1)); done

TMP=$(mktemp -d /tmp/gw-bench-routes.XXXXXX)
mkdir -p "$TMP/logs" "$TMP/wrk"
chmod 755 "$TMP" # nginx workers drop to an unprivileged user under root

# start NAME CPU CMD... (bench/lib.sh): CMD pinned to CPU, in its own
# session and group, so that master and workers share one process-group id.
trap cleanup EXIT
trap 'exit 130' INT TERM

# The origin answers /hello only, so a request that reaches it unstripped
# gets a 404 and is counted as an error by wrk.
cat >"$TMP/origin.conf" <<NGINX
worker_processes 1;
daemon off;
pid $TMP/origin.pid;
events { worker_connections 8192; }
http {
    access_log off;
    server_tokens off;
    client_body_temp_path $TMP/body;
    proxy_temp_path $TMP/proxy;
    fastcgi_temp_path $TMP/fastcgi;
    uwsgi_temp_path $TMP/uwsgi;
    scgi_temp_path $TMP/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    default_type text/plain;
    server {
        listen 127.0.0.1:$ORIGIN_PORT backlog=4096;
        location = /hello { return 200 "hello"; }
        location / { return 404; }
    }
}
NGINX

# gen_routes N : the routes: section of an N-route table. Route i serves
# id = i * 5000 / N, so that index N/2 is always /svc-2500/*. Most routes are
# prefixes with strip_prefix; i % 10 == 3 an exact path, i % 100 == 7 a
# :param path, i % 10 == 9 a prefix limited to GET and POST.
gen_routes() {
    awk -v n="$1" 'BEGIN {
        print "routes:"
        step = 5000 / n
        for (i = 0; i < n; i++) {
            id = i * step
            printf "  - name: r%d\n", i
            if (i != n / 2 && i % 10 == 3) {
                printf "    match: {path: \"/exact-%d/status\"}\n", id
            } else if (i != n / 2 && i % 100 == 7) {
                printf "    match: {path: \"/users-%d/:uid/orders\"}\n", id
            } else {
                if (i != n / 2 && i % 10 == 9)
                    printf "    match: {path: \"/svc-%d/*\", methods: [GET, POST]}\n", id
                else
                    printf "    match: {path: \"/svc-%d/*\"}\n", id
                printf "    strip_prefix: \"/svc-%d\"\n", id
            }
            printf "    upstream: origin\n"
        }
    }'
}

gen_config() { # N PORT
    cat <<YAML
gateway:
  listen: ["127.0.0.1:$2"]
  workers: 1
  access_log: "off"
  error_log: {path: "$TMP/gw-$1.err", level: warn}
  pid_file: "$TMP/gw-$1.pid"
upstreams:
  - name: origin
    nodes: ["127.0.0.1:$ORIGIN_PORT"]
    keepalive: {size: 512, idle_timeout: 75s}
YAML
    gen_routes "$1"
}

declare -A CHECK_MS=()
for n in $SIZES; do
    gen_config "$n" "${PORT[$n]}" >"$TMP/gw-$n.yaml"
    t0=${EPOCHREALTIME/./}
    "$GATEWAY_BIN" -t -c "$TMP/gw-$n.yaml" >"$TMP/logs/check-$n.out" 2>&1 ||
        { head -n 20 "$TMP/logs/check-$n.out" >&2; die "the $n-route config was rejected"; }
    CHECK_MS[$n]=$(((${EPOCHREALTIME/./} - t0) / 1000))
done

cat >"$TMP/report.lua" <<'LUA'
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "BENCHRESULT requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d\n",
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        e.connect + e.read + e.write + e.status + e.timeout))
end
LUA

log "temp dir: $TMP"
start origin "$LOAD_CPU" nginx -p "$TMP" -c "$TMP/origin.conf" -e "$TMP/logs/origin.error.log"
wait_url origin "http://127.0.0.1:$ORIGIN_PORT/hello"
for n in $SIZES; do
    start "gw-$n" "$PROXY_CPU" "$GATEWAY_BIN" -c "$TMP/gw-$n.yaml"
done
for n in $SIZES; do
    url="http://127.0.0.1:${PORT[$n]}"
    wait_url "gw-$n" "$url$MEASURED_PATH"
    got=$(curl -s -w ' %{http_code}' "$url$MEASURED_PATH")
    [ "$got" = "hello 200" ] || die "gw-$n: GET $MEASURED_PATH gave '$got', want 'hello 200'"
    got=$(curl -s -o /dev/null -w '%{http_code}' "$url/no-such-route/hello")
    [ "$got" = 404 ] || die "gw-$n: GET /no-such-route/hello gave $got, want 404 (a catch-all route?)"
done

declare -A PIDS0=()
for n in $SIZES; do PIDS0[$n]=$(group_pids "${PGID[gw-$n]}"); done

RAW=$TMP/raw.tsv
: >"$RAW"
measure() { # N REP DURATION ; REP 0 is a warm-up
    local n=$1 rep=$2 out="$TMP/wrk/$1-$2.txt" t0 t1 line
    t0=$(group_ticks "${PGID[gw-$n]}")
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$3" --timeout 5s -s "$TMP/report.lua" \
        "http://127.0.0.1:${PORT[$n]}$MEASURED_PATH" >"$out" 2>&1 || true
    t1=$(group_ticks "${PGID[gw-$n]}")
    [ "$rep" = 0 ] && return 0
    line=$(grep '^BENCHRESULT' "$out" || true)
    if [ -z "$line" ]; then
        log "wrk gave no result for $n routes (see $out)"
        printf '%s\t%s\t0\t0\t0\t-1\t-\n' "$n" "$rep" >>"$RAW"
        return 0
    fi
    awk -v n="$n" -v rep="$rep" -v line="$line" -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {
        k = split(line, kv, /[ =]/)
        for (i = 2; i < k; i += 2) r[kv[i]] = kv[i + 1]
        us = r["requests"] > 0 ? sprintf("%.2f", ticks * 1e6 / hz / r["requests"]) : "-"
        printf "%s\t%s\t%.0f\t%d\t%d\t%d\t%s\n", n, rep, r["requests"] / (r["duration_us"] / 1e6),
            r["p50_us"], r["p99_us"], r["errors"], us
    }' >>"$RAW"
    log "$(tail -n 1 "$RAW" | awk -F'\t' '{ printf "%5s routes run %s: %8d req/s  p99 %6d us  %s us/req  errors %s", $1, $2, $3, $5, $7, $6 }')"
}

for n in $SIZES; do measure "$n" 0 "$WARMUP"; done
for rep in $(seq "$REPS"); do
    for n in $SIZES; do
        measure "$n" "$rep" "$DURATION"
        sleep 0.5
    done
done

issues=$(cat "$TMP"/gw-*.err 2>/dev/null | head -n 5 || true)
sleep 1
crashed=""
for n in $SIZES; do
    now=$(group_pids "${PGID[gw-$n]}")
    [ "$now" = "${PIDS0[$n]}" ] || crashed="$crashed $n routes (PIDs ${PIDS0[$n]} -> ${now:-none});"
done
stop_all

# ---------------------------------------------------------------- report

ref=${SIZES%% *}
echo "## Route-table scaling, $(date '+%Y-%m-%d %H:%M %Z')"
echo
echo "- gateway: \`$GATEWAY_BIN\`, 1 worker on CPU $PROXY_CPU; origin nginx (1 worker, \`/hello\` only, 404 otherwise) and wrk on CPU $LOAD_CPU."
echo "- load: \`wrk -t1 -c$CONNS -d$DURATION --timeout 5s http://127.0.0.1:PORT$MEASURED_PATH\`, $WARMUP warm-up per table, $REPS runs per table, tables alternating."
echo "- tables (generated by bench/routes.sh): N routes, route i for id = i*5000/N; \`/svc-ID/*\` prefixes with \`strip_prefix: /svc-ID\`; every 10th an exact \`/exact-ID/status\`, every 100th a param route \`/users-ID/:uid/orders\`, every 10th prefix limited to GET and POST. The measured path hits route N/2 (\`/svc-$MEASURED_ID/*\`) and reaches the origin as \`/hello\`; a path outside the table gives 404 (no catch-all)."
echo "- \`gateway -t\` time (whole process):$(for n in $SIZES; do printf ' %s routes %s ms;' "$n" "${CHECK_MS[$n]}"; done | sed 's/;$//')."
if [ -n "$issues" ]; then
    echo "- gateway error log, first lines:"
    echo "$issues" | sed "s#$TMP#\$TMP#g; s/^/    - /"
else
    echo "- gateway error log: empty."
fi
[ -z "$crashed" ] || echo "- **gateway processes died or were re-spawned during the runs:**${crashed%;}"
echo
echo "| routes | req/s | req/s per run | p50 ms | p99 ms | gateway CPU us/req | us/req per run | req/s vs $ref | us/req vs $ref | errors |"
echo "|---:|---:|---|---:|---:|---:|---|---:|---:|---:|"
awk -F'\t' -v sizes="$SIZES" -v ref="$ref" '
    function med(v, n,   i, j, x) {
        for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] + 0 > x + 0; j--) v[j + 1] = v[j]; v[j + 1] = x }
        return v[int((n + 1) / 2)]
    }
    function colmed(s, c,   i, v) { for (i = 1; i <= cnt[s]; i++) v[i] = val[s, i, c]; return med(v, cnt[s]) }
    function runs(s, c,   i, t) { t = val[s, 1, c]; for (i = 2; i <= cnt[s]; i++) t = t ", " val[s, i, c]; return t }
    # paired ratio: each run over the reference run of the same round
    function pr(s, c,   i, m, v) {
        m = 0
        for (i = 1; i <= cnt[s] && i <= cnt[ref]; i++)
            if (val[s, i, c] + 0 > 0 && val[ref, i, c] + 0 > 0) v[++m] = val[s, i, c] / val[ref, i, c]
        return m ? sprintf("%.3f", med(v, m)) : "-"
    }
    {
        k = ++cnt[$1]
        for (c = 3; c <= 7; c++) val[$1, k, c] = $c
        if ($6 < 0) bad[$1] = 1; else errs[$1] += $6
    }
    END {
        ns = split(sizes, sz, " ")
        for (i = 1; i <= ns; i++) {
            s = sz[i]
            if (!(s in cnt)) continue
            printf "| %s | %d | %s | %.3f | %.3f | %s | %s | %s | %s | %s |\n", s, colmed(s, 3), runs(s, 3),
                colmed(s, 4) / 1000, colmed(s, 5) / 1000, colmed(s, 7), runs(s, 7),
                pr(s, 3), pr(s, 7), (s in bad) ? "NO RESULT" : errs[s] + 0
        }
    }' "$RAW"
echo
echo "The \`vs\` columns are medians of per-round ratios (each run divided by the $ref-route run of the same round). Target (issue 3): the 5,000-route table within 10% of the 10-route one: req/s ratio at least 0.90 and us/req ratio at most 1.10."
