#!/usr/bin/env bash
# Soak: the gateway at a steady load for SOAK_MINUTES on loopback, with
# keep-alive traffic (wrk), connection churn (a client that opens a new
# connection per request) and a reload every SOAK_RELOAD_S seconds that
# changes the route's plugins. Every SOAK_SAMPLE_S seconds it samples the
# RSS and open descriptors of the master and the workers (and the Lua
# memory the workers report), prints them as a table, then a verdict:
# memory and descriptors are flat when the mean of the last third of the
# samples after the warm-up is within SOAK_RSS_PCT % (+1 MiB) and
# SOAK_FD_SLACK descriptors of the mean of the first third; and no request
# failed. Exit 0 when flat and clean, 1 otherwise.
#
# Environment:
#   SOAK_MINUTES=30        duration (SOAK_SECONDS overrides, for a smoke run)
#   SOAK_WARMUP_S          not judged (default: a fifth of the run, at most 300)
#   SOAK_SAMPLE_S=10       sampling period
#   SOAK_RELOAD_S=60       reload period (0: none)
#   SOAK_CONNS=8           wrk's keep-alive connections
#   SOAK_DELAY_MS=2        each wrk connection waits this long between requests
#   SOAK_CHURN_MS=20       the churn client's pause between connections
#   SOAK_WORKERS=2         gateway workers
#   SOAK_RSS_PCT=10 SOAK_FD_SLACK=4
#   GATEWAY_BIN=build/gateway   KEEP_TMP=1 keeps the temp directory
# Needs wrk (make bench-deps), perl, curl; nginx as the origin when present,
# else t/lib/echo-upstream.pl. Listens on 127.0.0.1 only.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

MINUTES=${SOAK_MINUTES:-30}
DUR=${SOAK_SECONDS:-$((MINUTES * 60))}
WARMUP=${SOAK_WARMUP_S:-$((DUR / 5 > 300 ? 300 : DUR / 5))}
SAMPLE=${SOAK_SAMPLE_S:-10}
RELOAD=${SOAK_RELOAD_S:-60}
CONNS=${SOAK_CONNS:-8}
DELAY_MS=${SOAK_DELAY_MS:-2}
CHURN_MS=${SOAK_CHURN_MS:-20}
WORKERS=${SOAK_WORKERS:-2}
RSS_PCT=${SOAK_RSS_PCT:-10}
FD_SLACK=${SOAK_FD_SLACK:-4}
GATEWAY_BIN=${GATEWAY_BIN:-build/gateway}
KEEP_TMP=${KEEP_TMP:-0}

die() { echo "soak.sh: $*" >&2; exit 2; }
log() { echo "[$(date -u +%H:%M:%S)] soak: $*" >&2; }
. bench/lib.sh

for tool in wrk perl curl awk; do
    command -v "$tool" >/dev/null || die "$tool not found (make bench-deps)"
done
[ -x "$GATEWAY_BIN" ] || die "$GATEWAY_BIN not built"
[ "$DUR" -gt "$WARMUP" ] || die "SOAK_MINUTES too short for a warm-up of ${WARMUP}s"

TMP=$(mktemp -d /tmp/soak-XXXXXX)
# every background job goes into pids; cleanup, free_port, wait_port: bench/lib.sh
trap cleanup EXIT

# --- the origin -----------------------------------------------------------------
UP=$(free_port)
if command -v nginx >/dev/null; then
    mkdir -p "$TMP/nginx"
    cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx;
    proxy_temp_path $TMP/nginx;
    fastcgi_temp_path $TMP/nginx;
    uwsgi_temp_path $TMP/nginx;
    scgi_temp_path $TMP/nginx;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$UP;
        location / { return 200 "soak\n"; }
    }
}
EOF
    nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx/out" 2>&1 &
    pids+=($!)
    ORIGIN=nginx
else
    perl t/lib/echo-upstream.pl --port "$UP" --name origin --log /dev/null >"$TMP/up.log" 2>&1 &
    pids+=($!)
    ORIGIN=echo-upstream.pl
fi
wait_port "$UP"

# --- the gateway: two configs the reloads alternate between -----------------
GW=$(free_port)
ST=$(free_port)
CONF="$TMP/gateway.yaml"
write_conf() { # GENERATION
    local extra=""
    # odd generations add a plugin and change the timeout: a real reload
    [ $(($1 % 2)) = 1 ] && extra="
      request-id: {}"
    cat >"$CONF.new" <<EOF
gateway:
  listen: ["127.0.0.1:$GW"]
  workers: $WORKERS
  status_listen: 127.0.0.1:$ST
  pid_file: $TMP/gateway.pid
  error_log: {path: $TMP/error.log, level: info}
  access_log: "off"
  timeouts: {drain: 10s}
upstreams:
  - name: origin
    nodes: ["127.0.0.1:$UP"]
    keepalive: {size: 64, idle_timeout: 60s}
routes:
  - name: soak
    match: {path: /*}
    upstream: origin
    timeout: $((10 + $1 % 2))s
    plugins:
      key-auth: {}$extra
consumers:
  - {name: soak, key-auth: {key: soak-key-0123456789}}
EOF
    mv "$CONF.new" "$CONF"
}
write_conf 0
"$GATEWAY_BIN" -t -c "$CONF" >/dev/null || die "config refused: $("$GATEWAY_BIN" -t -c "$CONF" 2>&1)"
"$GATEWAY_BIN" -c "$CONF" >"$TMP/gw.out" 2>&1 &
GWPID=$!
pids+=($GWPID)
wait_port "$GW"
log "origin $ORIGIN on $UP, gateway on $GW (status $ST), $WORKERS workers, ${DUR} s, warm-up ${WARMUP}s"

URL="http://127.0.0.1:$GW/soak"
KEY="X-API-Key: soak-key-0123456789"

# --- load: wrk with keep-alive, paced per connection ----------------------------
cat >"$TMP/pace.lua" <<EOF
function delay() return $DELAY_MS end
EOF
wrk -t1 -c"$CONNS" -d"${DUR}s" --timeout 5s -H "$KEY" -s "$TMP/pace.lua" "$URL" \
    >"$TMP/wrk.out" 2>&1 &
WRKPID=$!
pids+=($WRKPID)

# --- churn: a new connection per request -------------------------------------
cat >"$TMP/churn.pl" <<'EOF'
use strict;
use warnings;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
my ($port, $secs, $pause_ms, $out) = @ARGV;
my $end = time + $secs;
my %n = (ok => 0, bad_status => 0, connect => 0, io => 0);
while (time < $end) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5);
    if (!$s) { $n{connect}++; sleep($pause_ms / 1000); next }
    $s->print("GET /churn HTTP/1.1\r\nHost: soak\r\nX-API-Key: soak-key-0123456789\r\nConnection: close\r\n\r\n");
    my $resp = '';
    eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm 5;
        while (defined(my $l = $s->getline)) { $resp .= $l }
        alarm 0;
    };
    if ($@ || $resp eq '') { $n{io}++ }
    elsif ($resp =~ m{^HTTP/1\.1 200 }) { $n{ok}++ }
    else { $n{bad_status}++ }
    close $s;
    sleep($pause_ms / 1000);
}
open my $fh, '>', $out or die $!;
print $fh join(' ', map { "$_=$n{$_}" } sort keys %n), "\n";
EOF
perl "$TMP/churn.pl" "$GW" "$DUR" "$CHURN_MS" "$TMP/churn.out" &
CHURNPID=$!
pids+=($CHURNPID)

# --- sampling and reloads -------------------------------------------------------
kb_rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
nfds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
sample() { # T
    local master workers wrss=0 wfds=0 n=0 lua
    master=$(cat "$TMP/gateway.pid" 2>/dev/null || echo "$GWPID")
    workers=$(ps -o pid= --ppid "$master" 2>/dev/null || true)
    for w in $workers; do
        wrss=$((wrss + $(kb_rss "$w")))
        wfds=$((wfds + $(nfds "$w")))
        n=$((n + 1))
    done
    lua=$(curl -s "http://127.0.0.1:$ST/metrics" |
        awk '/^gateway_lua_memory_bytes/ { s += $2 } END { printf "%d", s / 1024 }')
    printf '%6d %10d %8d %8d %11d %10d %8d\n' "$1" "$(kb_rss "$master")" "$(nfds "$master")" \
        "$n" "$wrss" "$wfds" "${lua:-0}" >>"$TMP/samples"
}

: >"$TMP/samples"
reloads=0
start=$(date +%s)
next_sample=0
next_reload=$RELOAD
while :; do
    now=$(($(date +%s) - start))
    [ "$now" -ge "$DUR" ] && break
    kill -0 "$GWPID" 2>/dev/null || die "the gateway died: $(tail -5 "$TMP/error.log")"
    if [ "$now" -ge "$next_sample" ]; then
        sample "$now"
        next_sample=$((next_sample + SAMPLE))
    fi
    if [ "$RELOAD" -gt 0 ] && [ "$now" -ge "$next_reload" ]; then
        reloads=$((reloads + 1))
        write_conf "$reloads"
        "$GATEWAY_BIN" -s reload -c "$CONF" >>"$TMP/reload.out" 2>&1 ||
            log "reload $reloads: -s reload failed: $(tail -1 "$TMP/reload.out")"
        next_reload=$((next_reload + RELOAD))
    fi
    sleep 1
done
wait "$WRKPID" || true
wait "$CHURNPID" || true
sample "$DUR"

# --- report ---------------------------------------------------------------------
echo "## Soak: ${DUR} s, $WORKERS workers, reload every ${RELOAD}s ($reloads reloads), origin $ORIGIN"
echo
echo '```'
printf '%6s %10s %8s %8s %11s %10s %8s\n' t_s master_kb m_fds workers workers_kb w_fds lua_kb
cat "$TMP/samples"
echo '```'
echo
req_line=$(grep -E 'requests in' "$TMP/wrk.out" || true)
sock=$(grep -E 'Socket errors' "$TMP/wrk.out" || echo "Socket errors: none")
non2xx=$(awk '/Non-2xx/ { print $NF }' "$TMP/wrk.out")
rps=$(awk '/Requests\/sec/ { print $2 }' "$TMP/wrk.out")
churn=$(cat "$TMP/churn.out" 2>/dev/null || echo "no result")
refused=$(grep -c 'reload refused\|reload failed' "$TMP/error.log" || true)
echo "- wrk (keep-alive, $CONNS connections): ${req_line# } ($rps req/s); $sock; non-2xx: ${non2xx:-0}"
echo "- churn (a connection per request): $churn"
echo "- reloads: $reloads sent, $refused refused or failed (error log)"

# flat: means over the first and last third of the samples after the warm-up
verdict=$(awk -v warm="$WARMUP" -v pct="$RSS_PCT" -v slack="$FD_SLACK" '
    BEGIN { n = 0 }
    $1 >= warm { t[n] = $1; mr[n] = $2; mf[n] = $3; wr[n] = $5; wf[n] = $6; n++ }
    function mean(a, from, to,   s, i) { s = 0; for (i = from; i < to; i++) s += a[i]; return s / (to - from) }
    END {
        if (n < 3) { print "UNDECIDED too few samples after the warm-up"; exit }
        k = int(n / 3)
        bad = ""
        m1 = mean(mr, 0, k); m3 = mean(mr, n - k, n)
        w1 = mean(wr, 0, k); w3 = mean(wr, n - k, n)
        f1 = mean(mf, 0, k); f3 = mean(mf, n - k, n)
        g1 = mean(wf, 0, k); g3 = mean(wf, n - k, n)
        if (m3 > m1 * (1 + pct / 100) + 1024) bad = bad " master RSS"
        if (w3 > w1 * (1 + pct / 100) + 1024) bad = bad " workers RSS"
        if (f3 > f1 + slack) bad = bad " master fds"
        if (g3 > g1 + slack) bad = bad " workers fds"
        printf "%s first/last third after %ds: master %.0f/%.0f kB, %.1f/%.1f fds; workers %.0f/%.0f kB, %.1f/%.1f fds\n",
            bad == "" ? "FLAT" : "GROWING:" bad, warm, m1, m3, f1, f3, w1, w3, g1, g3
    }' "$TMP/samples")
echo "- memory and descriptors: $verdict"

errors=0
case $sock in *"none"*) ;; *) errors=1 ;; esac
[ "${non2xx:-0}" = 0 ] || errors=1
case $churn in *"bad_status=0 connect=0 io=0"*) ;; *) errors=1 ;; esac
if [ "$errors" = 0 ] && [[ $verdict == FLAT* ]]; then
    echo "- verdict: PASS (flat after the warm-up, no failed request)"
    exit 0
fi
echo "- verdict: FAIL"
grep -E '\[(error|warn)\]' "$TMP/error.log" | sort | uniq -c | sort -rn | head -5 | sed 's/^/    /'
exit 1
