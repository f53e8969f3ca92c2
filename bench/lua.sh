#!/usr/bin/env bash
# Lua plugins in the gateway against nginx with Lua (bench/run.sh's nginx-lua
# row), doing the same work: key auth against 100 consumers and a
# per-consumer request counter. Then the cost of one empty Lua plugin: the
# plain gateway against the same config with a do-nothing access phase.
# Markdown on stdout, run.sh's progress on stderr. See bench/README.md.
#
# Environment (besides what run.sh reads: REPS, DURATION, WARMUP, BASE_PORT, ...):
#   SCENARIOS="hello:50 hello:200"   scenarios of the key-auth comparison
#   NOOP_SCENARIOS=hello:50          scenarios of the empty-plugin comparison
#   LUA_PARTS="auth noop"            which of the two comparisons to run
#   GATEWAY_BIN=build/gateway        the binary under test
#
# `bench/lua.sh config lua|noop|plain` prints one of the three gateway
# configs, filled in from BENCH_GATEWAY_PORT, BENCH_UPSTREAM and BENCH_TMPDIR:
# the gateway slot's command uses it.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

die() { echo "lua.sh: $*" >&2; exit 1; }

# config KIND : a gateway config on stdout.
#   lua   bench/gateway-lua.yaml.in and 100 consumers
#   plain bench/gateway.yaml.in as it is
#   noop  bench/gateway.yaml.in with bench/plugins searched and the noop
#         plugin on its route (the route is the template's last entry)
config() {
    local fill=(-e "s|@BENCH_GATEWAY_PORT@|$BENCH_GATEWAY_PORT|g" -e "s|@BENCH_UPSTREAM@|$BENCH_UPSTREAM|g"
        -e "s|@BENCH_TMPDIR@|$BENCH_TMPDIR|g" -e "s|@BENCH_PLUGINS@|$ROOT/bench/plugins|g")
    case $1 in
    lua)
        sed "${fill[@]}" bench/gateway-lua.yaml.in
        awk 'BEGIN { for (i = 1; i <= 100; i++) printf "  - {name: consumer-%d, key-auth: {key: key-%d}}\n", i, i }' ;;
    plain)
        sed "${fill[@]}" bench/gateway.yaml.in ;;
    noop)
        sed "${fill[@]}" bench/gateway.yaml.in |
            awk -v dir="$ROOT/bench/plugins" '
                { print }
                /^gateway:/ { printf "  plugin_paths: [\"%s\"]\n", dir }
                END { print "    plugins: {noop: {}}" }' ;;
    *) die "unknown config: $1" ;;
    esac
}

if [ "${1:-}" = config ]; then
    [ $# = 2 ] || die "usage: lua.sh config lua|noop|plain"
    : "${BENCH_GATEWAY_PORT:?}" "${BENCH_UPSTREAM:?}" "${BENCH_TMPDIR:?}"
    config "$2"
    exit 0
fi
[ $# = 0 ] || die "usage: lua.sh (no arguments; see the header for its environment)"

GATEWAY_BIN=${GATEWAY_BIN:-build/gateway}
SCENARIOS=${SCENARIOS:-"hello:50 hello:200"}
NOOP_SCENARIOS=${NOOP_SCENARIOS:-hello:50}
LUA_PARTS=${LUA_PARTS:-"auth noop"}
LOAD_CPU=${LOAD_CPU:-1}
USER_KEEP_TMP=${KEEP_TMP:-0}
export GATEWAY_PORT=${GATEWAY_PORT:-$((${BASE_PORT:-18080} + 4))}

[ -x "$GATEWAY_BIN" ] || die "$GATEWAY_BIN not found; run make first"

WORK=$(mktemp -d /tmp/gw-bench-lua.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# Every config must pass `gateway -t` before anything starts: run.sh would
# only see a gateway that never answers.
for kind in lua plain noop; do
    BENCH_GATEWAY_PORT=$GATEWAY_PORT BENCH_UPSTREAM=127.0.0.1:18080 BENCH_TMPDIR=$WORK \
        config "$kind" >"$WORK/$kind.yaml"
    if ! "$GATEWAY_BIN" -t -c "$WORK/$kind.yaml" >"$WORK/$kind.check" 2>&1; then
        cat "$WORK/$kind.check" >&2
        die "$GATEWAY_BIN -t rejects the $kind config"
    fi
done

# slot_cmd KIND : run.sh's GATEWAY_CMD for that config; the shell is replaced
# by the gateway, which stays in the foreground and in run.sh's group.
slot_cmd() {
    echo "\"$ROOT/bench/lua.sh\" config $1 >\"\$BENCH_TMPDIR/gateway.yaml\" && exec $GATEWAY_BIN -c \"\$BENCH_TMPDIR/gateway.yaml\""
}

# consumer_count : the consumer-counter's count for key-1's consumer, from
# the config's report route (not counted itself), or empty.
consumer_count() {
    taskset -c "$LOAD_CPU" curl -s --max-time 2 -H 'X-API-Key: key-1' \
        "http://127.0.0.1:$GATEWAY_PORT/__bench/consumer-count" 2>/dev/null |
        sed -n 's/.*"count": *\([0-9][0-9]*\).*/\1/p' || true
}

# watch_counter COUNT : copies run.sh's log (stdin) to stderr and notes
# run.sh's temp dir; with COUNT=1 it also reads the gateway's counter once before the first measured run and after each of the
# gateway's runs (run.sh then sleeps 0.5 s before the next run, so the
# request does not overlap a measurement; the last reading is the final
# count). Writes "first last tmpdir" to $WORK/counter.
watch_counter() {
    local count=$1 line first="" last="" tmp="" c
    while IFS= read -r line; do
        printf '%s\n' "$line" >&2
        case $line in *"] temp dir: "*) tmp=${line##*temp dir: } ;; esac
        [ "$count" = 1 ] || continue
        case $line in
        *"] measuring: "*) first=$(consumer_count) ;;
        *"] "*" gateway "*" run "[0-9]*": "*)
            c=$(consumer_count)
            [ -n "$c" ] && last=$c ;;
        esac
    done
    echo "${first:--} ${last:--} ${tmp:--}" >"$WORK/counter"
}

# run_slot NAME KIND SCENARIOS TARGETS OUT : one run.sh invocation; its report
# goes to OUT, its temp dir is kept until the caller has read it. The counter
# is read only from the lua config, the one with the report route.
run_slot() {
    local name=$1 kind=$2 scen=$3 targets=$4 out=$5 rc
    set +e
    GATEWAY_NAME=$name GATEWAY_CMD=$(slot_cmd "$kind") TARGETS=$targets SCENARIOS=$scen \
        KEEP_TMP=1 RESULTS_MD='' bench/run.sh 2>&1 >"$out" | watch_counter "$([ "$kind" = lua ] && echo 1 || echo 0)"
    rc=${PIPESTATUS[0]}
    set -e
    return "$rc"
}

# rows REPORT : "scenario target req/s p99 vs-nginx-lua us/req errors" per
# row of run.sh's medians table (the first table of its report).
rows() {
    awk -F' *\\| *' '
        /^\| scenario \| target \| req\/s \|/ { intable = 1; next }
        intable && /^\|---/ { next }
        intable && /^\|/ { e = $14; gsub(/ /, "_", e); print $2, $3, $4, $7, $10, $11, e; next }
        intable { exit }' "$1"
}

drop_tmp() { # TMPDIR : remove a run.sh temp dir unless KEEP_TMP=1 was asked for
    [ "$USER_KEEP_TMP" = 1 ] || [ "$1" = - ] || rm -rf "$1"
}

status=0
echo "## Lua plugins: key-auth and a per-consumer counter, $(date '+%Y-%m-%d %H:%M %Z')"
echo

if [[ " $LUA_PARTS " == *" auth "* ]]; then
    if ! run_slot gateway-lua lua "$SCENARIOS" "nginx-lua gateway" "$WORK/auth.md"; then
        status=1
        echo "**bench/run.sh failed for gateway-lua; see its output.**"
    fi
    read -r first last tmp <"$WORK/counter"
    wrk_total=$(cat "$tmp"/wrk/*-gateway-*.txt 2>/dev/null |
        awk '/^BENCHRESULT/ { split($2, a, "="); n += a[2] } END { print n + 0 }')
    if [ "$first" = - ] || [ "$last" = - ]; then
        check="**FAILED**: the counter could not be read from /__bench/consumer-count (before: $first, after: $last)"
        status=1
    else
        grew=$((last - first))
        if [ "$grew" -ge "$wrk_total" ]; then verdict=ok; else verdict="**FAILED**"; status=1; fi
        check="$verdict: the gateway-lua per-consumer counter grew by $grew ($first to $last) while wrk completed $wrk_total requests to gateway-lua (warm-ups included; requests still in flight when wrk stops are counted by the gateway only)"
    fi
    drop_tmp "$tmp"

    echo "Targets: gateway-lua's proxy CPU us/req at most 1/1.3 (0.77) of nginx-lua's, req/s not below (vs nginx-lua >= 1.00 within noise), p99 not above."
    echo
    echo "| scenario | nginx-lua req/s | gateway-lua req/s | vs nginx-lua | nginx-lua p99 ms | gateway-lua p99 ms | nginx-lua us/req | gateway-lua us/req | us/req ratio (target <= 0.77) | errors (nginx-lua / gateway-lua) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    rows "$WORK/auth.md" | awk '
        { k = $1 SUBSEP $2; rps[k] = $3; p99[k] = $4; vs[k] = $5; us[k] = $6; err[k] = $7; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
        END {
            for (i = 1; i <= n; i++) {
                s = order[i]; a = s SUBSEP "nginx-lua"; b = s SUBSEP "gateway-lua"
                r = (us[a] + 0 > 0 && us[b] != "-") ? sprintf("%.2f", us[b] / us[a]) : "-"
                printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s |\n", s, rps[a], rps[b], vs[b], p99[a], p99[b], us[a], us[b], r, err[a], err[b]
            }
        }'
    echo
    echo "- counter check: $check."
    echo
    sed '1s/^## /### /' "$WORK/auth.md"
    echo
fi

if [[ " $LUA_PARTS " == *" noop "* ]]; then
    for kind in plain noop; do
        name=gateway
        [ "$kind" = noop ] && name=gateway-noop
        if ! run_slot "$name" "$kind" "$NOOP_SCENARIOS" gateway "$WORK/$kind.md"; then
            status=1
            echo "**bench/run.sh failed for $name; see its output.**"
        fi
        read -r _ _ tmp <"$WORK/counter"
        drop_tmp "$tmp"
    done
    echo "### The cost of one empty Lua plugin"
    echo
    echo "The plain gateway (bench/gateway.yaml.in) and the same config with the \`noop\` plugin (an empty access phase) on its route, one run.sh invocation each, one after the other (not paired by round):"
    echo
    echo "| scenario | gateway req/s | gateway-noop req/s | gateway p99 ms | gateway-noop p99 ms | gateway us/req | gateway-noop us/req | difference us/req | errors (gateway / gateway-noop) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    { rows "$WORK/plain.md"; rows "$WORK/noop.md"; } | awk '
        { k = $1 SUBSEP $2; rps[k] = $3; p99[k] = $4; us[k] = $6; err[k] = $7; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
        END {
            for (i = 1; i <= n; i++) {
                s = order[i]; a = s SUBSEP "gateway"; b = s SUBSEP "gateway-noop"
                d = (us[a] != "-" && us[b] != "-" && us[a] != "" && us[b] != "") ? sprintf("%+.1f", us[b] - us[a]) : "-"
                printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s |\n", s, rps[a], rps[b], p99[a], p99[b], us[a], us[b], d, err[a], err[b]
            }
        }'
    echo
    sed '1s/^## /#### /' "$WORK/plain.md"
    echo
    sed '1s/^## /#### /' "$WORK/noop.md"
fi
exit "$status"
