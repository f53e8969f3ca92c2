# Shell functions the benchmark scripts share; sourced (". bench/lib.sh"
# after the script's own die and log), never run. Each script keeps its own
# knobs, messages and report; this file holds only the plumbing.
#
# Tools and ports
#   need_tools TOOL...        die "missing tool: TOOL" for the first one absent
#   ports_free BASE COUNT     whether BASE .. BASE+COUNT-1 all have no listener (ss)
#   free_port                 a free loopback port picked by the kernel (perl)
#   wait_port PORT [TRIES [PAUSE]]
#                             until something accepts on 127.0.0.1:PORT
#                             (default 100 tries 0.1 s apart), else die
# Process groups (servers started pinned, each in a session of its own)
#   start NAME CPU CMD...     setsid taskset -c CPU CMD, stdout and stderr in
#                             $TMP/logs/NAME.out (stderr in NAME.err when
#                             START_STDERR_APART=1); its group id in
#                             PGID[NAME], the command in CMDLINE[NAME], NAME
#                             appended to started; returns once the process
#                             leads its own group
#   wait_while_up NAME SECONDS CMD...
#                             until CMD succeeds (tried every 0.1 s), while
#                             NAME's group lives; 1 when it never did
#   wait_url NAME URL         wait_while_up NAME 20 (curl URL gets an answer),
#                             else NAME's output and die
#   stop_group PGID           SIGTERM to the group, up to 5 s, then SIGKILL
#   stop_one NAME             stop_group of NAME's group, once
#   stop_all                  stop_one of every started NAME, the last started
#                             first (a gateway before its origin or registry)
# Plain background jobs (scripts that do not pin): append $! to pids
#   cleanup                   stop_all, kill every pid in pids and reap them,
#                             then remove $TMP unless KEEP_TMP=1 (the EXIT trap)
# CPU accounting (/proc; ticks of getconf CLK_TCK)
#   group_ticks PGID          user+system ticks of every process of the group,
#                             with the children they reaped (a re-spawned
#                             worker's predecessor)
#   group_pids PGID           the group's PIDs, sorted, on one line; a change
#                             means a process died or was re-spawned
# nginx config pieces
#   ngx_http_common NAME      the http{} lines every nginx of a run shares:
#                             no access log, temp paths under $TMP/NAME-*,
#                             long keep-alive
#   ngx_common NAME           top of an nginx config: 1 worker, foreground, pid in $TMP
#   ngx_upstream              upstream "origin" -> 127.0.0.1:$ORIGIN_PORT, keep-alive 512
#   ngx_proxy_directives      proxy_pass to it over HTTP/1.1 keep-alive
#   origin_conf NAME PORT     the static origin: /hello (5 bytes) and /4k from $TMP/www
#
# The caller sets TMP (after sourcing; cleanup reads it when it runs) and
# defines die and log. Job control must be off (set +m) for start: setsid
# then makes the child a group leader without forking.

declare -A PGID=() CMDLINE=()
started=()
pids=()

need_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "missing tool: $tool"
    done
}

ports_free() {
    local p
    for p in $(seq "$1" $(($1 + $2 - 1))); do
        [ -z "$(ss -Hltn "sport = :$p")" ] || return 1
    done
}

free_port() { perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(LocalAddr=>"127.0.0.1",LocalPort=>0,Listen=>1)->sockport'; }

wait_port() {
    local tries=${2:-100} pause=${3:-0.1}
    for _ in $(seq "$tries"); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep "$pause"
    done
    die "nothing listens on $1"
}

start() {
    local name=$1 cpu=$2 pid pg i
    shift 2
    if [ "${START_STDERR_APART:-0}" = 1 ]; then
        setsid taskset -c "$cpu" "$@" >"$TMP/logs/$name.out" 2>"$TMP/logs/$name.err" </dev/null &
    else
        setsid taskset -c "$cpu" "$@" >"$TMP/logs/$name.out" 2>&1 </dev/null &
    fi
    pid=$!
    PGID[$name]=$pid
    started+=("$name")
    CMDLINE[$name]="taskset -c $cpu $*"
    for i in $(seq 20); do
        pg=$(awk '{ sub(/^.*\) /, ""); print $3 }' "/proc/$pid/stat" 2>/dev/null || true)
        [ "$pg" = "$pid" ] && return 0
        sleep 0.05
    done
    die "$name: did not become its own process group"
}

wait_while_up() {
    local name=$1 secs=$2 i
    shift 2
    for i in $(seq $((secs * 10))); do
        "$@" && return 0
        kill -0 -- "-${PGID[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    return 1
}

wait_url() {
    wait_while_up "$1" 20 curl -s -o /dev/null --max-time 1 "$2" && return 0
    tail -n 30 "$TMP/logs/$1.out" >&2 || true
    die "$1 did not answer at $2"
}

stop_group() {
    local pg=$1 i
    kill -TERM -- "-$pg" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 -- "-$pg" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL -- "-$pg" 2>/dev/null || true
}

# A stopped name's PGID is cleared, so that a later stop_all does not signal
# a group id the kernel may have given to someone else since.
stop_one() {
    [ -n "${PGID[$1]:-}" ] || return 0
    stop_group "${PGID[$1]}"
    PGID[$1]=""
}

stop_all() {
    local i
    for ((i = ${#started[@]} - 1; i >= 0; i--)); do stop_one "${started[$i]}"; done
}

cleanup() {
    local p
    stop_all
    if [ ${#pids[@]} -gt 0 ]; then
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
        wait 2>/dev/null || true
    fi
    if [ -z "${TMP:-}" ]; then :
    elif [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"
    else rm -rf "$TMP"; fi
}

group_ticks() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
        awk -v pg="$1" '{ sub(/^.*\) /, ""); if ($3 == pg) s += $12 + $13 + $14 + $15 } END { print s + 0 }'
}

group_pids() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
        awk -v pg="$1" '{ pid = $1; sub(/^.*\) /, ""); if ($3 == pg) print pid }' | sort -n | paste -sd' ' -
}

ngx_http_common() {
    cat <<EOF
    access_log off;
    server_tokens off;
    client_body_temp_path $TMP/$1-body;
    proxy_temp_path $TMP/$1-proxy;
    fastcgi_temp_path $TMP/$1-fastcgi;
    uwsgi_temp_path $TMP/$1-uwsgi;
    scgi_temp_path $TMP/$1-scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
EOF
}

ngx_common() { # NAME
    cat <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $TMP/$1.pid;
events { worker_connections 8192; }
EOF
}
ngx_upstream() {
    cat <<EOF
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 512;
        keepalive_requests 1000000;
        keepalive_timeout 75s;
    }
EOF
}
ngx_proxy_directives() {
    cat <<EOF
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
EOF
}

origin_conf() { # NAME PORT
    cat <<EOF
$(ngx_common "$1")
http {
$(ngx_http_common "$1")
    default_type text/plain;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=16 inactive=600s;
    open_file_cache_valid 600s;
    server {
        listen 127.0.0.1:$2 backlog=4096;
        root $TMP/www;
        location = /hello { return 200 "hello"; }
        location = /4k { }
    }
}
EOF
}
