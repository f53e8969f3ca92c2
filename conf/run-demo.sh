#!/bin/sh
# `make run`: two demo upstreams (v1 on 127.0.0.1:9001, v2 on 127.0.0.1:9002)
# and the gateway on conf/gateway.yaml, in the foreground. Ctrl-C stops all.
set -u
cd "$(dirname "$0")/.."
mkdir -p logs
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
}
trap cleanup EXIT INT TERM
perl t/lib/echo-upstream.pl --port 9001 --name v1 & pids="$pids $!"
perl t/lib/echo-upstream.pl --port 9002 --name v2 & pids="$pids $!"
cat <<'TXT'
gateway on http://127.0.0.1:8080 (status on http://127.0.0.1:9100), demo upstreams v1 and v2.
Try, in another terminal:
  curl -s localhost:8080/api/hello                         # route "api" -> v1, path /hello
  curl -s -H 'X-Canary: true' localhost:8080/api/hello     # canary by header -> v2
  for u in 1 2 3 4 5 6 7 8 9 10 11 12; do                   # canary by user hash (10 %)
    curl -s -H "X-User-Id: user-$u" localhost:8080/api/x | grep -o '"name":"v[12]"'; done
  curl -s localhost:8080/anything                          # route "default": v1 and v2 in turn
  curl -s localhost:8080/nope -X PATCH                     # no route: a JSON 404
  curl -s localhost:8080/secure/x                          # Lua key-auth: 401 without a key
  curl -s -H 'X-API-Key: demo-key' localhost:8080/secure/x # ... and through with one
  curl -s localhost:9100/metrics | grep gateway_requests_total
Ctrl-C stops everything.
TXT
build/gateway -c conf/gateway.yaml & gw=$!
pids="$pids $gw"
wait "$gw"
