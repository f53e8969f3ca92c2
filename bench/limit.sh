#!/usr/bin/env bash
# The Redis limiter against nginx with Lua doing the same work: key auth
# against 100 consumers, then one EVALSHA of go-zero's period script per
# request in a Redis started for the run, keyed by consumer, with a quota no
# run reaches. Rows, each filling bench/run.sh's gateway slot in turn:
#   nginx-lua-redis  nginx + Lua (bench/nginx-limit.conf.in, nginx-limit.lua.in)
#   gateway-limit    key-auth + limit-period (policy redis) + /metrics
#                    (bench/gateway-limit.yaml.in)
#   gateway-auth     the same gateway config without limit-period: the
#                    limiter's cost is the difference
# One round runs run.sh once per row (REPS=1 each), rows in that order;
# REPS rounds, so that each row's runs are paired with the others' of the
# same round. Markdown on stdout, run.sh's progress on stderr. See
# bench/README.md.
#
# Environment (besides what run.sh reads: DURATION, WARMUP, BASE_PORT, ...):
#   SCENARIOS="hello:50 hello:200"   scenarios
#   REPS=3                           rounds
#   LIMIT_PARTS="compare cost"       compare: nginx-lua-redis and gateway-limit;
#                                    cost: gateway-auth and gateway-limit
#   LIMIT_QUOTA=100000000            limit-period quota (nothing is refused)
#   LIMIT_PERIOD=1                   limit-period period, seconds
#   LIMIT_BASE_PORT                  Redis; the gateway's status port is the
#                                    next one (default: the first of 18300,
#                                    18310, ... with both free)
#   GATEWAY_BIN=build/gateway        the binary under test
#
# `bench/limit.sh config limit|auth|nginx|nginx-lua` prints one config,
# filled in from the slot's BENCH_GATEWAY_PORT, BENCH_UPSTREAM and
# BENCH_TMPDIR and from LIMIT_REDIS_PORT, LIMIT_STATUS_PORT, LIMIT_QUOTA and
# LIMIT_PERIOD: the slot commands use it.
set -euo pipefail
set +m # redis-server must not lead its own group before setsid runs

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

die() { echo "limit.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] limit.sh: $*" >&2; }
. bench/lib.sh # ports_free, stop_group

NGX_MODULES=/usr/lib/nginx/modules

# consumers : the 100 consumers of the gateway configs, as YAML list items.
consumers() {
    awk 'BEGIN { for (i = 1; i <= 100; i++) printf "  - {name: consumer-%d, key-auth: {key: key-%d}}\n", i, i }'
}

# config KIND : one config on stdout.
#   limit      bench/gateway-limit.yaml.in and 100 consumers
#   auth       the same without its limit-period line
#   nginx      bench/nginx-limit.conf.in
#   nginx-lua  bench/nginx-limit.lua.in (nginx loads it as bench_limit.lua)
config() {
    local fill=(-e "s|@BENCH_GATEWAY_PORT@|$BENCH_GATEWAY_PORT|g" -e "s|@BENCH_UPSTREAM@|$BENCH_UPSTREAM|g"
        -e "s|@BENCH_TMPDIR@|$BENCH_TMPDIR|g" -e "s|@REDIS_ADDR@|127.0.0.1:$LIMIT_REDIS_PORT|g"
        -e "s|@REDIS_HOST@|127.0.0.1|g" -e "s|@REDIS_PORT@|$LIMIT_REDIS_PORT|g"
        -e "s|@STATUS_PORT@|$LIMIT_STATUS_PORT|g" -e "s|@QUOTA@|$LIMIT_QUOTA|g"
        -e "s|@PERIOD@|$LIMIT_PERIOD|g" -e "s|@NGX_MODULES@|$NGX_MODULES|g")
    case $1 in
    limit) sed "${fill[@]}" bench/gateway-limit.yaml.in && consumers ;;
    auth) sed "${fill[@]}" bench/gateway-limit.yaml.in | grep -v '^ *limit-period:' && consumers ;;
    nginx) sed "${fill[@]}" bench/nginx-limit.conf.in ;;
    nginx-lua) sed "${fill[@]}" bench/nginx-limit.lua.in ;;
    *) die "unknown config: $1" ;;
    esac
}

if [ "${1:-}" = config ]; then
    [ $# = 2 ] || die "usage: limit.sh config limit|auth|nginx|nginx-lua"
    : "${BENCH_GATEWAY_PORT:?}" "${BENCH_UPSTREAM:?}" "${BENCH_TMPDIR:?}"
    : "${LIMIT_REDIS_PORT:?}" "${LIMIT_STATUS_PORT:?}" "${LIMIT_QUOTA:?}" "${LIMIT_PERIOD:?}"
    config "$2"
    exit 0
fi
[ $# = 0 ] || die "usage: limit.sh (no arguments; see the header for its environment)"

GATEWAY_BIN=${GATEWAY_BIN:-build/gateway}
SCENARIOS=${SCENARIOS:-"hello:50 hello:200"}
REPS=${REPS:-3}
LIMIT_PARTS=${LIMIT_PARTS:-"compare cost"}
export LIMIT_QUOTA=${LIMIT_QUOTA:-100000000} LIMIT_PERIOD=${LIMIT_PERIOD:-1}
LOAD_CPU=${LOAD_CPU:-1}
USER_KEEP_TMP=${KEEP_TMP:-0}
export GATEWAY_PORT=${GATEWAY_PORT:-$((${BASE_PORT:-18080} + 4))}

for tool in redis-server redis-cli nginx curl taskset setsid ss sha1sum; do
    command -v "$tool" >/dev/null || die "missing tool: $tool (apt-get install redis-server nginx-extras curl)"
done
[ -x "$GATEWAY_BIN" ] || die "$GATEWAY_BIN not found; run make first"
case $GATEWAY_BIN in /*) ;; *) GATEWAY_BIN=$ROOT/$GATEWAY_BIN ;; esac
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "REPS must be a positive integer"

rows=()
[[ " $LIMIT_PARTS " == *" compare "* ]] && rows+=(nginx-lua-redis)
[[ " $LIMIT_PARTS " == *" compare "* || " $LIMIT_PARTS " == *" cost "* ]] && rows+=(gateway-limit)
[[ " $LIMIT_PARTS " == *" cost "* ]] && rows+=(gateway-auth)
[ ${#rows[@]} -gt 1 ] || die "LIMIT_PARTS must name compare, cost or both"

if [ -z "${LIMIT_BASE_PORT:-}" ]; then
    for b in $(seq 18300 10 18790); do
        if ports_free "$b" 2; then LIMIT_BASE_PORT=$b; break; fi
    done
    [ -n "${LIMIT_BASE_PORT:-}" ] || die "no 2 free ports between 18300 and 18799; set LIMIT_BASE_PORT"
fi
ports_free "$LIMIT_BASE_PORT" 2 || die "port $LIMIT_BASE_PORT or $((LIMIT_BASE_PORT + 1)) is in use; set LIMIT_BASE_PORT"
export LIMIT_REDIS_PORT=$LIMIT_BASE_PORT LIMIT_STATUS_PORT=$((LIMIT_BASE_PORT + 1))

WORK=$(mktemp -d /tmp/gw-bench-limit.XXXXXX)
chmod 755 "$WORK" # nginx workers drop to an unprivileged user when started as root
REDIS_PG=""

stop_redis() {
    [ -n "$REDIS_PG" ] || return 0
    stop_group "$REDIS_PG"
    REDIS_PG=""
}
cleanup() {
    stop_redis
    if [ "$USER_KEEP_TMP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every config must pass its server's check before anything starts: run.sh
# would only see a slot that never answers.
export BENCH_GATEWAY_PORT=$GATEWAY_PORT BENCH_UPSTREAM=127.0.0.1:18080 BENCH_TMPDIR=$WORK
for kind in limit auth; do
    config "$kind" >"$WORK/$kind.yaml"
    if ! "$GATEWAY_BIN" -t -c "$WORK/$kind.yaml" >"$WORK/$kind.check" 2>&1; then
        cat "$WORK/$kind.check" >&2
        die "$GATEWAY_BIN -t rejects the $kind config"
    fi
done
config nginx-lua >"$WORK/bench_limit.lua"
config nginx >"$WORK/nginx-limit.conf"
if ! nginx -t -q -p "$WORK" -c "$WORK/nginx-limit.conf" -e "$WORK/nginx-limit.err" >"$WORK/nginx.check" 2>&1; then
    cat "$WORK/nginx.check" >&2
    die "nginx -t rejects the nginx-lua-redis config"
fi
unset BENCH_GATEWAY_PORT BENCH_UPSTREAM BENCH_TMPDIR

# The period script's text as nginx-limit.lua.in has it, and its SHA1: after
# each limiter run, Redis must hold a script with that SHA1, loaded during
# the run (the script cache is flushed before it), so both sides ran the
# same text.
SCRIPT_SHA=$(awk '
        /^local SCRIPT = "/ { on = 1 }
        on && !/^local SCRIPT = "/ && !/^ *\.\. "/ { exit }
        on { line = $0; sub(/^[^"]*"/, "", line); sub(/"[^"]*$/, "", line); printf "%s", line }' bench/nginx-limit.lua.in |
    { IFS= read -r -d '' s || true; printf '%b' "$s"; } | sha1sum | cut -d' ' -f1)

# ---------------------------------------------------------------- Redis

setsid taskset -c "$LOAD_CPU" redis-server --bind 127.0.0.1 --port "$LIMIT_REDIS_PORT" \
    --save '' --appendonly no --dir "$WORK" --logfile "$WORK/redis.log" --daemonize no \
    --protected-mode yes </dev/null >/dev/null 2>&1 &
REDIS_PG=$!
rcli() { redis-cli -h 127.0.0.1 -p "$LIMIT_REDIS_PORT" "$@"; }
for _ in $(seq 50); do
    [ "$(rcli PING 2>/dev/null)" = PONG ] && break
    kill -0 "$REDIS_PG" 2>/dev/null || { cat "$WORK/redis.log" >&2; die "redis-server exited"; }
    sleep 0.1
done
[ "$(rcli PING 2>/dev/null)" = PONG ] || die "redis-server did not answer on port $LIMIT_REDIS_PORT"
REDIS_VERSION=$(rcli INFO server | tr -d '\r' | sed -n 's/^redis_version://p')
log "redis-server $REDIS_VERSION on 127.0.0.1:$LIMIT_REDIS_PORT (CPU $LOAD_CPU), status port $LIMIT_STATUS_PORT"

# ---------------------------------------------------------------- rounds

# slot_cmd ROW : run.sh's GATEWAY_CMD for that row; the shell is replaced by
# the server, which stays in the foreground and in run.sh's group.
slot_cmd() {
    local env="LIMIT_REDIS_PORT=$LIMIT_REDIS_PORT LIMIT_STATUS_PORT=$LIMIT_STATUS_PORT LIMIT_QUOTA=$LIMIT_QUOTA LIMIT_PERIOD=$LIMIT_PERIOD"
    local cfg="$env \"$ROOT/bench/limit.sh\" config"
    case $1 in
    nginx-lua-redis)
        echo "$cfg nginx-lua >\"\$BENCH_TMPDIR/bench_limit.lua\" && $cfg nginx >\"\$BENCH_TMPDIR/nginx-limit.conf\" && exec nginx -p \"\$BENCH_TMPDIR\" -c \"\$BENCH_TMPDIR/nginx-limit.conf\" -e \"\$BENCH_TMPDIR/nginx-limit.err\"" ;;
    gateway-limit) echo "$cfg limit >\"\$BENCH_TMPDIR/gateway.yaml\" && exec $GATEWAY_BIN -c \"\$BENCH_TMPDIR/gateway.yaml\"" ;;
    gateway-auth) echo "$cfg auth >\"\$BENCH_TMPDIR/gateway.yaml\" && exec $GATEWAY_BIN -c \"\$BENCH_TMPDIR/gateway.yaml\"" ;;
    esac
}

# metrics : the gateway's limiter and Redis counters as "rejections fallbacks
# redis_up redis_downs", or empty when /metrics does not answer.
metrics() {
    taskset -c "$LOAD_CPU" curl -s --max-time 2 "http://127.0.0.1:$LIMIT_STATUS_PORT/metrics" 2>/dev/null |
        awk '/^gateway_limiter_rejections_total/ { r += $NF } /^gateway_limiter_fallbacks_total/ { f += $NF }
             /^gateway_redis_up / { u = $NF; seen = 1 } /^gateway_redis_state_changes_total.*"down"/ { d = $NF }
             END { if (seen) print r + 0, f + 0, u, d + 0 }' || true
}

# watch_log ROW : copies run.sh's log (stdin) to stderr, notes its temp dir and,
# for the gateway rows, reads /metrics after each measured run (run.sh then
# sleeps before the next run, so the request overlaps no measurement; the
# last reading is the final one). Writes "tmpdir rejections fallbacks
# redis_up redis_downs" to $WORK/watch.
watch_log() {
    local row=$1 line tmp=- m="" r
    while IFS= read -r line; do
        printf '%s\n' "$line" >&2
        case $line in *"] temp dir: "*) tmp=${line##*temp dir: } ;; esac
        case $row in gateway-*) ;; *) continue ;; esac
        case $line in
        *"] "*" gateway "*" run "[0-9]*": "*)
            r=$(metrics)
            [ -n "$r" ] && m=$r ;;
        esac
    done
    echo "$tmp ${m:-- - - -}" >"$WORK/watch"
}

# evalsha_calls : EVALSHA calls Redis counted since the last CONFIG RESETSTAT.
evalsha_calls() {
    rcli INFO commandstats | tr -d '\r' | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\).*/\1/p' | awk '{ n += $1 } END { print n + 0 }'
}

RUNS=$WORK/runs.tsv   # round row scenario rps p50_us p99_us errors us cpu0 cpu1
: >"$RUNS"
CHECKS=$WORK/checks.md
: >"$CHECKS"
NOTES=$WORK/notes.md
: >"$NOTES"
status=0

for round in $(seq "$REPS"); do
    for row in "${rows[@]}"; do
        log "round $round/$REPS: $row"
        rcli CONFIG RESETSTAT >/dev/null
        rcli SCRIPT FLUSH >/dev/null
        out=$WORK/report-$round-$row.md
        set +e
        GATEWAY_NAME=$row GATEWAY_CMD=$(slot_cmd "$row") TARGETS=gateway SCENARIOS=$SCENARIOS REPS=1 \
            KEEP_TMP=1 RESULTS_MD='' bench/run.sh 2>&1 >"$out" | watch_log "$row"
        rc=${PIPESTATUS[0]}
        set -e
        read -r tmp rej fb up downs <"$WORK/watch"
        if [ "$rc" != 0 ]; then
            status=1
            echo "- **FAILED**: bench/run.sh exited with $rc for $row in round $round; see its output." >>"$CHECKS"
        fi
        if [ "$tmp" = - ] || [ ! -f "$tmp/raw.tsv" ]; then
            status=1
            echo "- **FAILED**: no results from $row in round $round." >>"$CHECKS"
            continue
        fi
        awk -F'\t' -v round="$round" -v row="$row" 'NR > 1 { print round "\t" row "\t" $1 "\t" $4 "\t" $5 "\t" $6 "\t" $7 "\t" $8 "\t" $9 "\t" $10 }' \
            "$tmp/raw.tsv" >>"$RUNS"
        # requests wrk completed (warm-ups included) and, as slack for the
        # requests still in flight when each wrk run stopped, its connections
        read -r wrk_total inflight < <(for f in "$tmp"/wrk/*-gateway-*.txt; do
            c=${f##*/}; c=${c%%-gateway-*}; c=${c##*-c}
            awk -v c="$c" '/^BENCHRESULT/ { split($2, a, "="); print a[2], c }' "$f"
        done | awk '{ n += $1; s += $2 } END { print n + 0, s + 0 }')
        calls=$(evalsha_calls)
        conns=$(rcli INFO stats | tr -d '\r' | sed -n 's/^total_connections_received://p')
        sha=$(rcli SCRIPT EXISTS "$SCRIPT_SHA" | tr -d '\r')
        errs=$(awk -F'\t' -v round="$round" -v row="$row" '$1 == round && $2 == row { e += $7 } END { print e + 0 }' "$RUNS")
        verdict=ok
        if [ "$row" = gateway-auth ]; then
            [ "$calls" = 0 ] && [ "$errs" = 0 ] || verdict="**FAILED**"
            what="$calls EVALSHA calls (none expected), wrk errors $errs"
        else
            # the probes run.sh sends before measuring are counted by Redis only
            [ "$calls" -ge "$wrk_total" ] && [ "$calls" -le $((wrk_total + inflight + 20)) ] &&
                [ "$sha" = 1 ] && [ "$errs" = 0 ] || verdict="**FAILED**"
            what="$calls EVALSHA calls for $wrk_total requests wrk completed (up to $inflight more were in flight at the ends of runs), period script $([ "$sha" = 1 ] && echo loaded || echo "NOT loaded") with SHA1 $SCRIPT_SHA, wrk errors $errs, $conns connections to Redis (two of them this script's)"
            if [ "$row" = nginx-lua-redis ]; then
                # a Redis error or timeout lets the request through uncounted
                lerr=$(grep -c 'limiter: ' "$tmp/nginx-limit.err" 2>/dev/null || true)
                lerr=${lerr:-"no log"}
                [ "$lerr" = 0 ] || verdict="**FAILED**"
                what="$what; Redis errors or timeouts in nginx's log $lerr"
            fi
            if [ "$row" = gateway-limit ]; then
                [ "$rej" = 0 ] && [ "$fb" = 0 ] && [ "$up" = 1 ] && [ "$downs" = 0 ] || verdict="**FAILED**"
                what="$what; /metrics: limiter rejections $rej, fallbacks to local $fb, gateway_redis_up $up, Redis down events $downs"
            fi
        fi
        [ "$verdict" = ok ] || status=1
        echo "- $verdict: round $round, $row: $what." >>"$CHECKS"
        {
            grep -E '^- (host speed probe|server logs|processes:)' "$out" | sed "s/^- /- round $round, $row: /" || true
            grep -E '^    - ' "$out" | sed 's/^/  /' || true
        } >>"$NOTES"
        [ "$round" = 1 ] && [ "$row" = "${rows[0]}" ] && { grep -E '^- (host|software|pinning):' "$out" >"$WORK/header.md" || true; }
        [ "$USER_KEEP_TMP" = 1 ] || rm -rf "$tmp"
    done
done
stop_redis

# ---------------------------------------------------------------- report

# pair A B : per scenario, "scenario rpsA rpsB vs p99A p99B usA usB ratio dus errA errB":
# medians over the rounds; vs is the median of B/A req/s of the same round,
# dus the median of B-A us/req of the same round, ratio the us/req medians'.
pair() {
    awk -F'\t' -v A="$1" -v B="$2" -v scens="$SCENARIOS" '
        function med(arr, n,   i, j, x) {
            for (i = 2; i <= n; i++) { x = arr[i]; for (j = i - 1; j >= 1 && arr[j] + 0 > x + 0; j--) arr[j + 1] = arr[j]; arr[j + 1] = x }
            return n ? arr[int((n + 1) / 2)] : ""
        }
        function col(row, s, c,   r, n, v) {
            n = 0
            for (r = 1; r <= maxr; r++) if ((r, row, s) in has && val[r, row, s, c] != "-") v[++n] = val[r, row, s, c]
            return med(v, n)
        }
        function paired(s, c, op,   r, n, v, a, b) {
            n = 0
            for (r = 1; r <= maxr; r++) {
                if (!((r, A, s) in has) || !((r, B, s) in has)) continue
                a = val[r, A, s, c]; b = val[r, B, s, c]
                if (a == "-" || b == "-" || a + 0 <= 0) continue
                v[++n] = (op == "ratio") ? b / a : b - a
            }
            return med(v, n)
        }
        function f(x, fmt) { return x == "" ? "-" : sprintf(fmt, x) }
        {
            has[$1, $2, $3] = 1
            for (c = 4; c <= 10; c++) val[$1, $2, $3, c] = $c
            err[$2, $3] += ($7 < 0 ? 0 : $7)
            if ($1 > maxr) maxr = $1
        }
        END {
            ns = split(scens, sc, " ")
            for (i = 1; i <= ns; i++) {
                split(sc[i], pc, ":"); s = pc[1] "-c" pc[2]
                ua = col(A, s, 8); ub = col(B, s, 8); pa = col(A, s, 6); pb = col(B, s, 6)
                printf "%s %s %s %s %s %s %s %s %s %s %d %d\n", s, f(col(A, s, 4), "%.0f"), f(col(B, s, 4), "%.0f"),
                    f(paired(s, 4, "ratio"), "%.2f"), f(pa == "" ? "" : pa / 1000, "%.3f"), f(pb == "" ? "" : pb / 1000, "%.3f"),
                    f(ua, "%.1f"), f(ub, "%.1f"), (ua + 0 > 0 && ub != "") ? sprintf("%.2f", ub / ua) : "-",
                    f(paired(s, 8, "diff"), "%+.1f"), err[A, s], err[B, s]
            }
        }' "$RUNS"
}

echo "## Redis limiter: key-auth + limit-period against nginx-lua with the same script, $(date '+%Y-%m-%d %H:%M %Z')"
echo
[ -f "$WORK/header.md" ] && cat "$WORK/header.md"
echo "- Redis: redis-server $REDIS_VERSION on 127.0.0.1:$LIMIT_REDIS_PORT, pinned with wrk and the origin to CPU $LOAD_CPU, no persistence (\`--save '' --appendonly no\`)."
echo "- limiter: go-zero's period script by EVALSHA, key \`limit:period:all:<consumer>\`, quota $LIMIT_QUOTA per $LIMIT_PERIOD s (never reached), Redis timeout 50 ms; every request is from consumer-1 (\`X-API-Key: key-1\`)."
echo "- rows: $(printf '`%s` ' "${rows[@]}")(see bench/README.md); rounds: $REPS, each one bench/run.sh invocation per row in that order (\`REPS=1\`, its warm-up included), ${DURATION:-8s} per measured run. Medians over the rounds; \`vs\` and \`difference\` columns are medians of per-round quotients and differences."
echo

if [[ " ${rows[*]} " == *" nginx-lua-redis "* ]]; then
    echo "Targets: gateway-limit's proxy CPU us/req at most 1/1.3 (0.77) of nginx-lua-redis's, req/s not below (vs nginx-lua >= 1.00 within noise), p99 not above."
    echo
    echo "| scenario | nginx-lua-redis req/s | gateway-limit req/s | vs nginx-lua | nginx-lua-redis p99 ms | gateway-limit p99 ms | nginx-lua-redis us/req | gateway-limit us/req | us/req ratio (target <= 0.77) | errors (nginx-lua-redis / gateway-limit) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    pair nginx-lua-redis gateway-limit | while read -r s ra rb vs pa pb ua ub q _ ea eb; do
        echo "| $s | $ra | $rb | $vs | $pa | $pb | $ua | $ub | $q | $ea / $eb |"
    done
    echo
fi
if [[ " ${rows[*]} " == *" gateway-auth "* ]]; then
    echo "### The limiter's cost"
    echo
    echo "gateway-auth is gateway-limit's config without the limit-period line (key-auth and /metrics only):"
    echo
    echo "| scenario | gateway-auth req/s | gateway-limit req/s | vs gateway-auth | gateway-auth p99 ms | gateway-limit p99 ms | gateway-auth us/req | gateway-limit us/req | difference us/req | errors (gateway-auth / gateway-limit) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    pair gateway-auth gateway-limit | while read -r s ra rb vs pa pb ua ub _ d ea eb; do
        echo "| $s | $ra | $rb | $vs | $pa | $pb | $ua | $ub | $d | $ea / $eb |"
    done
    echo
fi
echo "### Checks"
echo
cat "$CHECKS"
echo
echo "### Every run"
echo
echo "| round | row | scenario | req/s | p50 ms | p99 ms | proxy CPU us/req | CPU0 busy | CPU1 busy | errors |"
echo "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"
awk -F'\t' '{ printf "| %s | %s | %s | %s | %.3f | %.3f | %s | %s%% | %s%% | %s |\n", $1, $2, $3, $4, $5 / 1000, $6 / 1000, $8, $9, $10, ($7 < 0 ? "NO RESULT" : $7) }' "$RUNS"
echo
echo "Host speed probes and server logs, per bench/run.sh invocation:"
echo
cat "$NOTES"
exit "$status"
