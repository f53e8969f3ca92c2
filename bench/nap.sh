#!/usr/bin/env bash
# gateway.loop_nap settings side by side with nginx proxy_pass, in short
# interleaved rounds: every round runs wrk once against nginx and once
# against a gateway per setting, back to back, so a host whose speed drifts
# (a shared VM) moves all of them together; the report gives, per setting,
# the median of each round's req/s ratio to nginx, the proxy's CPU per
# request, the load CPU's context switches per request (perf stat -C), and
# the p50 latency. Same pinning as run.sh: the proxies on PROXY_CPU, wrk
# and a static nginx origin on LOAD_CPU.
#
# Knobs (environment):
#   NAPS="off 10us"        settings compared (gateway.loop_nap values)
#   SCENARIOS="4k:50 hello:50 hello:16"   path:connections pairs
#   ROUNDS=6  DURATION=2   rounds per scenario, seconds per wrk run
#   PROXY_CPU=0 LOAD_CPU=1
#   GATEWAY_BIN=build/gateway
#   KEEP_TMP=1             keep the temp dir
set -euo pipefail
set +m

NAPS=${NAPS:-"off 10us"}
SCENARIOS=${SCENARIOS:-"4k:50 hello:50 hello:16"}
ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-2}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
GATEWAY_BIN=${GATEWAY_BIN:-build/gateway}
KEEP_TMP=${KEEP_TMP:-0}

die() { echo "nap.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
. "$(dirname "$0")/lib.sh"

need_tools nginx wrk perf taskset setsid ss awk curl
[ -x "$GATEWAY_BIN" ] || die "$GATEWAY_BIN not built (make)"
perf stat -e context-switches -C "$LOAD_CPU" -- true >/dev/null 2>&1 ||
    die "perf stat -C $LOAD_CPU is not allowed here (root, or kernel.perf_event_paranoid <= 0)"

TMP=$(mktemp -d /tmp/gw-nap.XXXXXX)
mkdir -p "$TMP/www" "$TMP/logs"
chmod 755 "$TMP" "$TMP/www"
declare -A PGID CMDLINE
started=()
pids=()
trap cleanup EXIT
head -c 4096 /dev/zero | tr '\0' 'x' >"$TMP/www/4k"

ORIGIN_PORT=$(free_port)
ngx=$(free_port)
origin_conf origin "$ORIGIN_PORT" >"$TMP/origin.conf"
# the same nginx-proxy as run.sh's
cat >"$TMP/nginx.conf" <<EOF
$(ngx_common nginx)
http {
$(ngx_http_common nginx)
$(ngx_upstream)
    server {
        listen 127.0.0.1:$ngx backlog=4096;
        location / {
$(ngx_proxy_directives)
        }
    }
}
EOF
start origin "$LOAD_CPU" nginx -p "$TMP" -c "$TMP/origin.conf" -e "$TMP/logs/origin.err"
start nginx "$PROXY_CPU" nginx -p "$TMP" -c "$TMP/nginx.conf" -e "$TMP/logs/nginx.err"
wait_port "$ORIGIN_PORT"
wait_port "$ngx"

declare -A PORT=([nginx]=$ngx)
targets=(nginx)
i=0
for nap in $NAPS; do
    name="gw-$nap"
    p=$(free_port)
    cat >"$TMP/$name.yaml" <<EOF
gateway:
  listen: ["127.0.0.1:$p"]
  workers: 1
  loop_nap: $nap
  access_log: "off"
  error_log: {path: "$TMP/logs/$name.err", level: warn}
  pid_file: "$TMP/$name.pid"
upstreams:
  - {name: origin, nodes: ["127.0.0.1:$ORIGIN_PORT"], keepalive: {size: 512}}
routes:
  - {name: all, match: {path: "/*"}, upstream: origin}
EOF
    "$GATEWAY_BIN" -t -c "$TMP/$name.yaml" >/dev/null || die "$name: config refused"
    start "$name" "$PROXY_CPU" "$GATEWAY_BIN" -c "$TMP/$name.yaml"
    wait_port "$p"
    PORT[$name]=$p
    targets+=("$name")
    i=$((i + 1))
done
for t in "${targets[@]}"; do
    [ "$(curl -s -o /dev/null -w '%{size_download}' "http://127.0.0.1:${PORT[$t]}/4k")" = 4096 ] ||
        die "$t: /4k did not return the origin's 4096 bytes"
done

RAW=$TMP/raw.txt
: >"$RAW"
for sc in $SCENARIOS; do
    path=/${sc%%:*}
    conns=${sc##*:}
    log "$sc: $ROUNDS rounds of ${#targets[@]} targets x ${DURATION}s"
    for r in $(seq "$ROUNDS"); do
        for t in "${targets[@]}"; do
            t0=$(group_ticks "${PGID[$t]}")
            perf stat -x, -e context-switches -C "$LOAD_CPU" -o "$TMP/perf.txt" -- \
                taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${DURATION}s" --latency \
                "http://127.0.0.1:${PORT[$t]}$path" >"$TMP/wrk.txt" 2>&1
            t1=$(group_ticks "${PGID[$t]}")
            awk -v sc="$sc" -v t="$t" -v r="$r" -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" \
                -v d="$DURATION" -v cs="$(awk -F, '/context-switches/ {print $1}' "$TMP/perf.txt")" '
                function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; return v * 1e6 }
                /Requests\/sec/ { rps = $2 }
                / 50%/ { p50 = us($2) }
                END { n = rps * d; printf "%s %s %d %.0f %.2f %.3f %.0f\n", sc, t, r, rps,
                      ticks / hz * 1e6 / n, cs / n, p50 }' "$TMP/wrk.txt" >>"$RAW"
        done
    done
done

echo "| scenario | target | req/s (median) | vs nginx (median of rounds, min-max) | proxy CPU us/req | vs nginx | load CPU context switches/req | p50 us |"
echo "|---|---|---|---|---|---|---|---|"
awk '{ k = $1 SUBSEP $3; rps[$1, $2, $3] = $4; cpu[$1, $2, $3] = $5; cs[$1, $2, $3] = $6; p50[$1, $2, $3] = $7
       if (!($1 in seen)) { seen[$1] = 1; scen[++ns] = $1 }
       if (!(($1, $2) in tseen)) { tseen[$1, $2] = 1; tg[$1, ++nt[$1]] = $2 }
       if ($3 > nr) nr = $3 }
     function med(a, n,   i, j, x) { for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x } return a[int((n + 1) / 2)] }
     END { for (s = 1; s <= ns; s++) for (i = 1; i <= nt[scen[s]]; i++) {
             sc = scen[s]; t = tg[sc, i]; split("", a); split("", b); split("", c); split("", d); split("", e); split("", f)
             for (r = 1; r <= nr; r++) { a[r] = rps[sc, t, r]; b[r] = rps[sc, t, r] / rps[sc, "nginx", r]; c[r] = cpu[sc, t, r]
                                         d[r] = cpu[sc, t, r] / cpu[sc, "nginx", r]; e[r] = cs[sc, t, r]; f[r] = p50[sc, t, r] }
             mr = med(a, nr); mb = med(b, nr); lo = b[1]; hi = b[nr]; mc = med(c, nr); md = med(d, nr); me = med(e, nr); mf = med(f, nr)
             printf "| %s | %s | %.0f | %.2f (%.2f-%.2f) | %.2f | %.2f | %.3f | %.0f |\n", sc, t, mr, mb, lo, hi, mc, md, me, mf } }' "$RAW"
echo
echo "$ROUNDS rounds of ${DURATION}s per scenario, targets in turn within each round; proxies on CPU $PROXY_CPU, wrk -t1 and the origin (nginx, 1 worker) on CPU $LOAD_CPU."
