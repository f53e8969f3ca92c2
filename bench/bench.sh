#!/usr/bin/env bash
# `make bench`: the side-by-side proxy benchmark (bench/run.sh) with the
# gateway in its slot, then the route-table scaling (bench/routes.sh) and the
# memory per idle connection (bench/idle-conns.sh) measurements, all in one
# markdown report, bench/results-<date>.md. See bench/README.md.
#
# Environment (besides what run.sh, routes.sh and idle-conns.sh read):
#   TARGETS, SCENARIOS, REPS, DURATION, ...   passed through to run.sh
#   GATEWAY_BIN=build/gateway                 the binary under test
#   RESULTS_MD=bench/results-<date>.md        where the report goes
#   EXTRAS=1                                  0 skips routes.sh and idle-conns.sh
#   LUA=0                                     1 adds bench/lua.sh (Lua plugins vs nginx-lua)
#   LIMIT=0                                   1 adds bench/limit.sh (key-auth + Redis limiter vs nginx-lua)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

GATEWAY_BIN=${GATEWAY_BIN:-build/gateway}
EXTRAS=${EXTRAS:-1}
LUA=${LUA:-0}
LIMIT=${LIMIT:-0}
export TARGETS=${TARGETS:-"direct direct-own-cpu nginx-proxy nginx-lua haproxy gateway"}
export SCENARIOS=${SCENARIOS:-"hello:50 hello:200 4k:50"}
RESULTS_MD=${RESULTS_MD:-bench/results-$(date +%F).md}

die() { echo "bench.sh: $*" >&2; exit 1; }

[ -x "$GATEWAY_BIN" ] || die "$GATEWAY_BIN not found; run make first"

# gen_config TEMPLATE PORT UPSTREAM TMPDIR : the template with its @...@
# fields filled in, on stdout.
gen_config() {
    sed -e "s|@BENCH_GATEWAY_PORT@|$2|g" -e "s|@BENCH_UPSTREAM@|$3|g" \
        -e "s|@BENCH_TMPDIR@|$4|g" "$1"
}

# Reject a config the gateway does not accept before starting anything: run.sh
# would only see a gateway that never answers.
check_dir=$(mktemp -d /tmp/gw-bench-check.XXXXXX)
trap 'rm -rf "$check_dir"' EXIT
gen_config bench/gateway.yaml.in 18084 127.0.0.1:18080 "$check_dir" >"$check_dir/gateway.yaml"
if ! "$GATEWAY_BIN" -t -c "$check_dir/gateway.yaml" >"$check_dir/check.out" 2>&1; then
    cat "$check_dir/check.out" >&2
    die "$GATEWAY_BIN -t rejects bench/gateway.yaml.in"
fi

# The slot's command: write the config into the slot's scratch directory and
# replace the shell with the gateway, so that it stays in the foreground and
# in run.sh's process group.
GATEWAY_CMD="sed -e \"s|@BENCH_GATEWAY_PORT@|\$BENCH_GATEWAY_PORT|g\" -e \"s|@BENCH_UPSTREAM@|\$BENCH_UPSTREAM|g\""
GATEWAY_CMD="$GATEWAY_CMD -e \"s|@BENCH_TMPDIR@|\$BENCH_TMPDIR|g\" bench/gateway.yaml.in >\"\$BENCH_TMPDIR/gateway.yaml\""
GATEWAY_CMD="$GATEWAY_CMD && exec $GATEWAY_BIN -c \"\$BENCH_TMPDIR/gateway.yaml\""
export GATEWAY_CMD GATEWAY_BIN

# Scratch files end in .tmp (ignored by git) until the report is complete.
partial="$RESULTS_MD.tmp"
: >"$partial"
status=0

if ! RESULTS_MD="$RESULTS_MD.run.tmp" bench/run.sh; then
    status=1
    echo "bench.sh: bench/run.sh failed" >&2
    echo "**bench/run.sh failed; see its output.**" >>"$partial"
fi
[ -f "$RESULTS_MD.run.tmp" ] && cat "$RESULTS_MD.run.tmp" >>"$partial" && rm -f "$RESULTS_MD.run.tmp"

if [ "$EXTRAS" = 1 ]; then
    for extra in routes idle-conns; do
        echo >>"$partial"
        if ! bench/$extra.sh >"$RESULTS_MD.$extra.tmp"; then
            status=1
            echo "bench.sh: bench/$extra.sh failed" >&2
            echo "**bench/$extra.sh failed; see its output.**" >>"$partial"
        fi
        cat "$RESULTS_MD.$extra.tmp" >>"$partial"
        rm -f "$RESULTS_MD.$extra.tmp"
    done
fi

# The opt-in comparisons: LUA=1 bench/lua.sh, LIMIT=1 bench/limit.sh.
for opt in lua:$LUA limit:$LIMIT; do
    [ "${opt#*:}" = 1 ] || continue
    name=${opt%%:*}
    echo >>"$partial"
    if ! "bench/$name.sh" >"$RESULTS_MD.$name.tmp"; then
        status=1
        echo "bench.sh: bench/$name.sh failed" >&2
        echo "**bench/$name.sh failed; see its output.**" >>"$partial"
    fi
    cat "$RESULTS_MD.$name.tmp" >>"$partial"
    rm -f "$RESULTS_MD.$name.tmp"
done

mv "$partial" "$RESULTS_MD"
echo "bench.sh: report written to $RESULTS_MD" >&2
exit "$status"
