package GwTest;

# Integration-test harness: starts build/gateway and echo upstreams on free
# loopback ports, talks HTTP/1.1 to them at the byte level, and stops every
# process it started, by PID, at the end. Perl core modules only.
#
# See t/README.md for a walk-through.

use strict;
use warnings;

use Exporter 'import';
use Test::More ();
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use File::Temp ();
use File::Spec;
use File::Basename qw(dirname);
use Cwd qw(abs_path);
use Time::HiRes qw(time sleep);
use JSON::PP;

our @EXPORT = qw(
  free_port tmpdir mult gw_bin slurp_file spew_file plugin_dir plugin_file
  start_upstream stop_upstream upstream_requests clear_upstream_log
  start_gateway stop_gateway stop_all check_config gateway_log
  http_request gw_connect raw_exchange trickle
  parse_responses build_request json_body
  wait_for gw_error_ok rejects_ok yaml_dump
  start_redis stop_redis redis_cmd have_redis
  start_scripted_origin
  error_envelope_is
);

$SIG{PIPE} = 'IGNORE';

my $LIBDIR = dirname(abs_path(__FILE__));
my $JSON   = JSON::PP->new->ascii->canonical;

my (@gateways, @upstreams, @redises, @origins, $tmpdir_obj, $told_dir);

# --- basics ----------------------------------------------------------------

sub mult {
    my $m = $ENV{GW_TEST_TIMEOUT_MULT};
    return (defined $m && $m =~ /^\d+(\.\d+)?$/ && $m > 0) ? $m : 1;
}

sub gw_bin {
    return $ENV{GATEWAY_BIN} // 'build/gateway';
}

# A port that was free a moment ago (bind 127.0.0.1:0, read, close), and
# never one handed out before in this test run: the kernel may give the
# same ephemeral port to two binds in a row once the first is closed, and
# two servers of one test would then clash.
my %ports_given;

sub free_port {
    for (1 .. 100) {
        my $s = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1',
            LocalPort => 0,
            Proto     => 'tcp',
            Listen    => 1,
            ReuseAddr => 1,
        ) or die "free_port: $!";
        my $p = $s->sockport;
        close $s;
        next if $ports_given{$p}++;
        return $p;
    }
    die "free_port: no port not handed out before in 100 tries";
}

# A whole file, raw bytes; '' when it does not exist (yet).
sub slurp_file {
    my ($f) = @_;
    open my $fh, '<:raw', $f or return '';
    local $/;
    return scalar(<$fh>) // '';
}

# Writes a whole file, raw bytes, beside then renamed: a gateway that
# reads it (reload, plugin load) never sees half of it.
sub spew_file {
    my ($f, $text) = @_;
    open my $fh, '>:raw', "$f.new" or die "$f.new: $!";
    print $fh $text;
    close $fh or die "$f.new: $!";
    rename "$f.new", $f or die "rename $f: $!";
}

# One temporary directory per test file, removed at exit unless
# GW_TEST_KEEP is set.
sub tmpdir {
    $tmpdir_obj //= File::Temp->newdir('gwtest-XXXXXX', TMPDIR => 1,
        CLEANUP => !$ENV{GW_TEST_KEEP});
    if ($ENV{GW_TEST_KEEP} && !$told_dir++) {
        Test::More::diag("test files kept in " . $tmpdir_obj->dirname);
    }
    return $tmpdir_obj->dirname;
}

my $dir_seq = 0;
sub subdir {
    my ($prefix) = @_;
    my $d = File::Spec->catdir(tmpdir(), $prefix . ++$dir_seq);
    mkdir $d or die "mkdir $d: $!";
    return $d;
}

# Polls $cond every 20 ms until it is true or $timeout seconds (times the
# multiplier) pass. Returns the last value of $cond.
sub wait_for {
    my ($cond, $timeout) = @_;
    my $deadline = time + ($timeout // 5) * mult();
    while (1) {
        my $v = $cond->();
        return $v if $v || time > $deadline;
        sleep 0.02;
    }
}

sub port_open {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
        Proto => 'tcp', Timeout => 1);
    return 0 unless $s;
    close $s;
    return 1;
}

# fork + exec with stdin from /dev/null and stdout/stderr to files.
sub spawn {
    my ($argv, $stdout, $stderr) = @_;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $stdout or POSIX::_exit(126);
        open STDERR, '>>', $stderr or POSIX::_exit(126);
        $SIG{PIPE} = 'DEFAULT';
        exec @$argv or POSIX::_exit(127);
    }
    return $pid;
}

# Child PIDs of $pid, from /proc (so that workers of a master we had to
# SIGKILL do not outlive the test).
sub children_of {
    my ($pid) = @_;
    my @kids;
    opendir my $d, '/proc' or return ();
    for my $p (grep { /^\d+$/ } readdir $d) {
        my $st = slurp_file("/proc/$p/stat");
        push @kids, $p if $st =~ /^\d+ \(.*\) \S (\d+)/s && $1 == $pid;
    }
    return @kids;
}

# Waits for $pid with a deadline; SIGKILL (it and its children) after.
# Returns the exit code, or 128 + signal number when killed by a signal.
sub reap {
    my ($pid, $timeout) = @_;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        my $r = waitpid($pid, WNOHANG);
        return decode_status($?) if $r == $pid;
        return -1 if $r < 0;
        sleep 0.02;
    }
    my @kids = children_of($pid);
    kill 'KILL', $pid, @kids;
    waitpid($pid, 0);
    my $st = decode_status($?);
    Test::More::diag("pid $pid did not exit in ${timeout}s; killed");
    return $st;
}

sub decode_status {
    my ($st) = @_;
    return $st & 127 ? 128 + ($st & 127) : $st >> 8;
}

# --- YAML ------------------------------------------------------------------

# A small block-style emitter for the config hashes tests build. Numbers
# are plain, other scalars double-quoted (JSON escapes are valid YAML),
# JSON::PP booleans become true/false.
sub yaml_dump {
    my ($v) = @_;
    return emit($v, 0) . "\n";
}

sub yaml_scalar {
    my ($v) = @_;
    return 'null' unless defined $v;
    if (JSON::PP::is_bool($v)) { return $v ? 'true' : 'false' }
    return $v if !ref $v && $v =~ /^-?(0|[1-9]\d*)$/;
    return $JSON->encode([$v]) =~ s/^\[(.*)\]$/$1/sr;
}

sub emit {
    my ($v, $ind) = @_;
    my $pad = '  ' x $ind;
    if (ref $v eq 'HASH') {
        return '{}' unless %$v;
        my @k = sort { ($a ne 'name') <=> ($b ne 'name') || $a cmp $b } keys %$v;
        return join "\n", map {
            my $x = $v->{$_};
            my $key = $_ =~ /^[A-Za-z_][A-Za-z0-9_-]*$/ ? $_ : yaml_scalar($_);
            (ref $x eq 'HASH' && %$x) || (ref $x eq 'ARRAY' && @$x)
              ? "$pad$key:\n" . emit($x, $ind + 1)
              : "$pad$key: " . emit($x, 0)
        } @k;
    }
    if (ref $v eq 'ARRAY') {
        return '[]' unless @$v;
        return join "\n", map {
            my $x = $_;
            if ((ref $x eq 'HASH' && %$x) || (ref $x eq 'ARRAY' && @$x)) {
                my $s = emit($x, $ind + 1);
                # the first line of the nested block goes after the dash
                $s =~ s/^\s+//;
                "$pad- $s";
            }
            else {
                "$pad- " . emit($x, 0);
            }
        } @$v;
    }
    return yaml_scalar($v);
}

sub merge {
    my ($base, $over) = @_;
    my %r = %$base;
    for my $k (keys %$over) {
        if (ref $r{$k} eq 'HASH' && ref $over->{$k} eq 'HASH') {
            $r{$k} = merge($r{$k}, $over->{$k});
        }
        else {
            $r{$k} = $over->{$k};
        }
    }
    return \%r;
}

# Builds the config text for $gw (a hash with port, status_port, dir) from
# either yaml => TEXT (placeholders %PORT% %STATUS_PORT% %DIR%) or
# config => HASH (merged over the defaults below).
sub config_text {
    my ($gw, %o) = @_;
    if (defined $o{yaml}) {
        my $t = $o{yaml};
        $t =~ s/%PORT%/$gw->{port}/g;
        $t =~ s/%STATUS_PORT%/$gw->{status_port}/g;
        $t =~ s/%DIR%/$gw->{dir}/g;
        return $t;
    }
    my $defaults = {
        gateway => {
            listen        => ["127.0.0.1:$gw->{port}"],
            workers       => 1,
            status_listen => "127.0.0.1:$gw->{status_port}",
            pid_file      => "$gw->{dir}/gateway.pid",
            error_log     => { path => "$gw->{dir}/error.log", level => 'info' },
            access_log    => "$gw->{dir}/access.log",
        },
    };
    return yaml_dump(merge($defaults, $o{config} // {}));
}

# --- upstreams -------------------------------------------------------------

# start_upstream(name => 'a', [port => P], [fail_status => N])
#   -> {name, port, pid, log}; fail_status answers every request with N
sub start_upstream {
    my (%o) = @_;
    my $name = $o{name} // 'echo';
    my $dir  = subdir("up-$name-");
    my $port = $o{port} // free_port();
    my $up = {
        name => $name,
        port => $port,
        dir  => $dir,
        log  => "$dir/requests.log",
    };
    spew_file($up->{log}, '');
    my @extra = defined $o{fail_status} ? ('--fail-status', $o{fail_status}) : ();
    $up->{pid} = spawn([$^X, "$LIBDIR/echo-upstream.pl", '--port', $port,
        '--name', $name, '--log', $up->{log}, @extra], "$dir/stdout", "$dir/stderr");
    push @upstreams, $up;
    my $ok = wait_for(sub {
        return -1 if waitpid($up->{pid}, WNOHANG) == $up->{pid};
        port_open($port);
    }, 10);
    if (!$ok || $ok < 0) {
        die "echo upstream '$name' did not start on $port: "
          . slurp_file("$dir/stderr");
    }
    return $up;
}

sub stop_upstream {
    my ($up) = @_;
    return if $up->{stopped}++;
    kill 'TERM', $up->{pid};
    return reap($up->{pid}, 5 * mult());
}

# The requests the upstream received so far: decoded log lines, in order.
sub upstream_requests {
    my ($up) = @_;
    my $s = slurp_file($up->{log});
    my @r;
    while ($s =~ /([^\n]*)\n/g) {
        my $l = $1;
        next unless length $l;
        push @r, eval { $JSON->decode($l) } // { bad_log_line => $l };
    }
    return @r;
}

sub clear_upstream_log {
    my ($up) = @_;
    truncate $up->{log}, 0;
}

# --- test plugins ------------------------------------------------------------

# The directory a test's own plugins go in (created on first use); give it
# to the gateway as gateway.plugin_paths.
my $plugin_dir;

sub plugin_dir {
    $plugin_dir //= do {
        my $d = tmpdir() . '/plugins';
        mkdir $d or die "mkdir $d: $!";
        $d;
    };
    return $plugin_dir;
}

# plugin_file(NAME, LUA): writes NAME.lua into plugin_dir().
sub plugin_file {
    my ($name, $text) = @_;
    spew_file(plugin_dir() . "/$name.lua", $text);
}

# --- scripted origins -------------------------------------------------------

# start_scripted_origin(answer => sub { my ($head) = @_; ... return (\@parts, $close) },
#                       [pause => s], [conn_log => FILE]) -> {port, pid}
# An origin that answers each request head (body ignored) with the byte
# strings ANSWER returns, written with PAUSE (default 0.03 s) between them,
# then closes the connection when CLOSE is true. Each connection is served
# by a child of its own; CONN_LOG gets a line "conn" per accepted one.
sub start_scripted_origin {
    my (%o) = @_;
    my $pause = $o{pause} // 0.03;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
        Listen => 64, ReuseAddr => 1) or die "listen: $!";
    my $origin = { port => $l->sockport };
    my $parent = $$;
    $origin->{pid} = fork // die "fork: $!";
    if ($origin->{pid} == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        $SIG{TERM} = sub { POSIX::_exit(0) };
        $SIG{CHLD} = 'IGNORE';
        while (1) {
            POSIX::_exit(0) if getppid() != $parent;
            my $c = $l->accept or next;
            if (defined $o{conn_log} && open my $lf, '>>', $o{conn_log}) {
                syswrite($lf, "conn\n");
                close $lf;
            }
            my $kid = fork;
            next if !defined $kid || $kid;
            my $buf = '';
            while (1) {
                my $i;
                while (($i = index($buf, "\r\n\r\n")) < 0) {
                    my $n = sysread($c, $buf, 65536, length $buf);
                    POSIX::_exit(0) unless $n;
                }
                my ($parts, $close) = $o{answer}->(substr($buf, 0, $i + 4, ''));
                for my $k (0 .. $#$parts) {
                    syswrite($c, $parts->[$k]);
                    sleep $pause if $k < $#$parts;
                }
                POSIX::_exit(0) if $close;
            }
        }
    }
    close $l;
    push @origins, $origin;
    return $origin;
}

# --- redis -----------------------------------------------------------------

sub have_redis {
    return -x '/usr/bin/redis-server' ? '/usr/bin/redis-server' : undef;
}

# start_redis([port => P], [password => S]) -> {port, pid, dir, password}
# A throwaway redis-server on 127.0.0.1, no persistence.
sub start_redis {
    my (%o) = @_;
    my $bin = have_redis() or die "redis-server not installed (make deps)\n";
    my $rd = { port => $o{port} // free_port(), dir => $o{dir} // subdir('redis-'),
               password => $o{password} };
    my @args = ($bin, '--port', $rd->{port}, '--bind', '127.0.0.1', '--save', '',
        '--appendonly', 'no', '--dir', $rd->{dir}, '--daemonize', 'no',
        '--protected-mode', 'no', '--loglevel', 'warning');
    push @args, '--requirepass', $o{password} if defined $o{password};
    $rd->{pid} = spawn(\@args, "$rd->{dir}/stdout", "$rd->{dir}/stderr");
    push @redises, $rd;
    my $ok = wait_for(sub {
        return -1 if waitpid($rd->{pid}, WNOHANG) == $rd->{pid};
        my $r = eval { redis_cmd($rd, 'PING') };
        return defined $r && ($r eq 'PONG' || $r =~ /NOAUTH/);
    }, 10);
    die "redis-server did not start on $rd->{port}: " . slurp_file("$rd->{dir}/stdout")
      unless $ok && $ok > 0;
    return $rd;
}

sub stop_redis {
    my ($rd, %o) = @_;
    return if $rd->{stopped}++;
    kill($o{signal} // 'TERM', $rd->{pid});
    kill 'CONT', $rd->{pid};
    return reap($rd->{pid}, 5 * mult());
}

sub _resp_read {
    my ($s) = @_;
    my $line = <$s>;
    die "redis: connection closed\n" unless defined $line;
    $line =~ s/\r\n\z//;
    my ($t, $rest) = (substr($line, 0, 1), substr($line, 1));
    return $rest if $t eq '+';
    return "ERR:$rest" if $t eq '-';
    return $rest + 0 if $t eq ':';
    if ($t eq '$') {
        return undef if $rest < 0;
        my $buf = '';
        while (length $buf < $rest + 2) {
            my $n = read($s, $buf, $rest + 2 - length $buf, length $buf);
            die "redis: short read\n" unless $n;
        }
        return substr($buf, 0, $rest);
    }
    if ($t eq '*') {
        return undef if $rest < 0;
        return [map { _resp_read($s) } 1 .. $rest];
    }
    die "redis: bad reply '$line'\n";
}

# redis_cmd($rd, 'SET', 'k', 'v') -> the reply: a string, a number, an
# array ref, undef (nil), or "ERR:<message>" for an error reply. One
# connection per call (AUTH first when the server has a password).
sub redis_cmd {
    my ($rd, @cmd) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $rd->{port},
        Proto => 'tcp', Timeout => 2 * mult()) or die "redis connect: $!\n";
    $s->timeout(2 * mult());
    my $enc = sub { my @a = @_; join '', "*" . @a . "\r\n", map { '$' . length($_) . "\r\n$_\r\n" } @a };
    if (defined $rd->{password} && !$rd->{no_auth}) {
        print $s $enc->('AUTH', $rd->{password});
        _resp_read($s);
    }
    print $s $enc->(@cmd);
    local $SIG{ALRM} = sub { die "redis: timeout\n" };
    alarm(5 * mult());
    my $r = _resp_read($s);
    alarm(0);
    close $s;
    return $r;
}

# --- gateway ---------------------------------------------------------------

# start_gateway(config => HASH | yaml => TEXT, [wait => 0])
#   -> {port, status_port, pid, dir, conf, error_log, stderr}
# Dies with the logs when the gateway exits or does not accept within 10 s.
sub start_gateway {
    my (%o) = @_;
    my $gw = {
        port        => $o{port} // free_port(),
        status_port => $o{status_port} // free_port(),
        dir         => subdir('gw-'),
    };
    $gw->{conf}      = "$gw->{dir}/gateway.yaml";
    $gw->{error_log} = "$gw->{dir}/error.log";
    $gw->{stderr}    = "$gw->{dir}/stderr";
    spew_file($gw->{conf}, config_text($gw, %o));
    my $bin = gw_bin();
    die "gateway binary $bin not found or not executable\n" unless -x $bin;
    $gw->{pid} = spawn([$bin, '-c', $gw->{conf}], "$gw->{dir}/stdout",
        $gw->{stderr});
    push @gateways, $gw;
    return $gw if defined $o{wait} && !$o{wait};

    my $ok = wait_for(sub {
        if (waitpid($gw->{pid}, WNOHANG) == $gw->{pid}) {
            $gw->{exit} = decode_status($?);
            $gw->{stopped} = 1;
            return -1;
        }
        port_open($gw->{port});
    }, 10);
    if (!$ok || $ok < 0) {
        my $why = defined $gw->{exit} ? "exited with $gw->{exit}"
                                      : "did not accept on $gw->{port}";
        die "gateway $why\n--- config\n" . slurp_file($gw->{conf})
          . "--- log\n" . gateway_log($gw);
    }
    return $gw;
}

sub gateway_log {
    my ($gw) = @_;
    return slurp_file($gw->{error_log}) . slurp_file($gw->{stderr})
      . slurp_file("$gw->{dir}/stdout");
}

# stop_gateway($gw, signal => 'TERM', timeout => s) -> exit code
# (128 + signal when killed by one). Also fails a test when a sanitizer
# wrote a report.
sub stop_gateway {
    my ($gw, %o) = @_;
    return $gw->{exit} if $gw->{stopped}++;
    kill($o{signal} // 'TERM', $gw->{pid});
    $gw->{exit} = reap($gw->{pid}, ($o{timeout} // 15) * mult());
    sanitizer_check($gw) unless $o{no_check};
    return $gw->{exit};
}

sub sanitizer_check {
    my ($gw) = @_;
    my $err = slurp_file($gw->{stderr}) . slurp_file($gw->{error_log});
    my @rep = $err =~ /^(.*(?:ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:).*)$/mg;
    Test::More::ok(!@rep, "gateway $gw->{port}: no sanitizer report")
      or Test::More::diag($err);
}

# Stops every gateway and upstream started so far; call before
# done_testing so sanitizer findings count as failures.
sub stop_all {
    stop_gateway($_) for @gateways;
    stop_upstream($_) for @upstreams;
    stop_redis($_) for @redises;
}

END {
    my $st = $?;
    my $failing = eval { !Test::More->builder->is_passing };
    for my $gw (@gateways) {
        next if $gw->{stopped};
        if ($failing) {
            my $l = gateway_log($gw);
            $l = substr($l, -4000) if length $l > 4000;
            Test::More::diag("gateway $gw->{port} log tail:\n$l") if length $l;
        }
        $gw->{stopped} = 1;
        kill 'TERM', $gw->{pid};
        reap($gw->{pid}, 10 * mult());
    }
    for my $up (@upstreams) {
        next if $up->{stopped}++;
        kill 'TERM', $up->{pid};
        reap($up->{pid}, 5 * mult());
    }
    for my $o (@origins) {
        next if $o->{stopped}++;
        kill 'TERM', $o->{pid};
        reap($o->{pid}, 5 * mult());
    }
    for my $rd (@redises) {
        next if $rd->{stopped}++;
        kill 'TERM', $rd->{pid};
        kill 'CONT', $rd->{pid};
        reap($rd->{pid}, 5 * mult());
    }
    $? = $st;
}

# check_config(yaml => TEXT | config => HASH | file => PATH)
#   -> (exit code, output of stdout and stderr)
sub check_config {
    my (%o) = @_;
    my $dir = subdir('check-');
    my $file = $o{file};
    unless (defined $file) {
        my $gw = { port => free_port(), status_port => free_port(),
                   dir => $dir };
        $file = "$dir/gateway.yaml";
        spew_file($file, config_text($gw, %o));
    }
    my $out = "$dir/output";
    my $pid = spawn([gw_bin(), '-t', '-c', $file], $out, $out);
    my $code = reap($pid, 10 * mult());
    return ($code, slurp_file($out));
}

# --- client side -----------------------------------------------------------

sub build_request {
    my ($method, $path, %o) = @_;
    my $version = $o{version} // '1.1';
    my $r = "$method $path HTTP/$version\r\n";
    my @h = @{ $o{headers} // [] };
    my %have;
    for (my $i = 0; $i < @h; $i += 2) { $have{ lc $h[$i] } = 1 }
    $r .= "Host: " . ($o{host} // 'localhost') . "\r\n"
      unless $have{host} || (exists $o{host} && !defined $o{host});
    for (my $i = 0; $i < @h; $i += 2) { $r .= "$h[$i]: $h[$i + 1]\r\n" }
    if (defined $o{body} && !$have{'content-length'}
        && !$have{'transfer-encoding'}) {
        $r .= "Content-Length: " . length($o{body}) . "\r\n";
    }
    $r .= "\r\n";
    $r .= $o{body} if defined $o{body};
    return $r;
}

# Parses one response at the start of $$buf. Returns undef when more bytes
# are needed (or, with $eof, a partial response with complete => 0), else
# the response, removing it from $$buf.
#   {status, reason, version, headers => {lc name => value (repeats joined
#    with ", ")}, header_list => [[name, value], ...], body, chunked,
#    trailers, raw_head, complete}
sub parse_one {
    my ($buf, $eof, $head_only) = @_;
    my $end = index($$buf, "\r\n\r\n");
    if ($end < 0) {
        return undef unless $eof && length $$buf;
        my $r = { complete => 0, raw => $$buf, status => 0, headers => {},
                  header_list => [], body => '' };
        $$buf = '';
        return $r;
    }
    my $raw_head = substr($$buf, 0, $end + 4);
    my @lines = split /\r\n/, substr($raw_head, 0, $end);
    my $sl = shift @lines;
    my %r = (raw_head => $raw_head, headers => {}, header_list => [],
             body => '', chunked => 0, trailers => [], complete => 1);
    if ($sl =~ m{^(HTTP/\d\.\d) (\d{3})(?: (.*))?$}) {
        @r{qw(version status reason)} = ($1, $2, $3 // '');
    }
    else {
        @r{qw(version status reason)} = ('', 0, $sl);
    }
    for (@lines) {
        my ($n, $v) = /^([^:]+):[ \t]*(.*?)[ \t]*$/ or next;
        push @{ $r{header_list} }, [$n, $v];
        my $k = lc $n;
        $r{headers}{$k} = exists $r{headers}{$k} ? "$r{headers}{$k}, $v" : $v;
    }
    my $pos = $end + 4;
    my $h = $r{headers};
    my $st = $r{status};
    if ($head_only || ($st >= 100 && $st < 200) || $st == 204 || $st == 304) {
        # no body
    }
    elsif (($h->{'transfer-encoding'} // '') =~ /chunked/i) {
        $r{chunked} = 1;
        my $body = '';
        while (1) {
            my $e = index($$buf, "\r\n", $pos);
            if ($e < 0) { return partial(\%r, $buf, $eof, $body) }
            my ($size) = substr($$buf, $pos, $e - $pos) =~ /^([0-9a-fA-F]+)/;
            return partial(\%r, $buf, 1, $body) unless defined $size;
            $size = hex $size;
            $pos = $e + 2;
            if ($size == 0) {
                while (1) {
                    my $t = index($$buf, "\r\n", $pos);
                    if ($t < 0) { return partial(\%r, $buf, $eof, $body) }
                    my $line = substr($$buf, $pos, $t - $pos);
                    $pos = $t + 2;
                    last if $line eq '';
                    push @{ $r{trailers} }, [$1, $2]
                      if $line =~ /^([^:]+):[ \t]*(.*?)[ \t]*$/;
                }
                last;
            }
            if (length($$buf) < $pos + $size + 2) {
                return partial(\%r, $buf, $eof, $body);
            }
            $body .= substr($$buf, $pos, $size);
            $pos += $size + 2;
        }
        $r{body} = $body;
    }
    elsif (defined $h->{'content-length'}) {
        my ($len) = $h->{'content-length'} =~ /^(\d+)/;
        $len //= 0;
        if (length($$buf) < $pos + $len) {
            return partial(\%r, $buf, $eof, substr($$buf, $pos));
        }
        $r{body} = substr($$buf, $pos, $len);
        $pos += $len;
    }
    else {
        # delimited by close
        return undef unless $eof;
        $r{body} = substr($$buf, $pos);
        $pos = length $$buf;
    }
    substr($$buf, 0, $pos, '');
    return \%r;
}

sub partial {
    my ($r, $buf, $eof, $body) = @_;
    return undef unless $eof;
    $r->{complete} = 0;
    $r->{body} = $body;
    $$buf = '';
    return $r;
}

# parse_responses($raw, head => [indexes of HEAD requests]) -> responses
sub parse_responses {
    my ($raw, %o) = @_;
    my %head = map { $_ => 1 } @{ $o{head} // [] };
    my @r;
    my $i = 0;
    while (length $raw) {
        my $r = parse_one(\$raw, 1, $head{$i}) or last;
        push @r, $r;
        $i++ if $r->{status} >= 200 || !$r->{status};
    }
    return @r;
}

sub json_body {
    my ($r) = @_;
    return eval { $JSON->decode($r->{body}) };
}

sub gw_connect {
    my ($port, %o) = @_;
    return GwTest::Conn->new($port, %o);
}

# http_request($port, $method, $path, headers => [n => v, ...], body => B,
#   host => H, version => '1.1', timeout => s, close_wait => s)
#   -> response (see parse_one) plus closed => whether the server closed
#   the connection after it.
sub http_request {
    my ($port, $method, $path, %o) = @_;
    my $c = gw_connect($port, timeout => $o{timeout});
    $c->write(build_request($method, $path, %o));
    my $r = $c->read_response(head => $method eq 'HEAD') // {
        status => 0, headers => {}, header_list => [], body => '',
        complete => 0 };
    # A response that announces the close waits for it; otherwise only a
    # close that has already happened counts (close_wait => s waits longer).
    my $wants_close = ($r->{headers}{connection} // '') =~ /close/i
      || ($r->{version} // '') eq 'HTTP/1.0';
    $r->{closed} = $c->wait_closed($o{close_wait} // ($wants_close ? 2 : 0));
    $c->close;
    return $r;
}

# raw_exchange($port, $bytes, timeout => s) -> raw bytes read until the
# server closes or the timeout; in list context (raw, closed).
sub raw_exchange {
    my ($port, $bytes, %o) = @_;
    my $c = gw_connect($port);
    $c->write($bytes);
    my $closed = $c->wait_closed($o{timeout} // 2);
    my $raw = $c->{buf};
    $c->close;
    return wantarray ? ($raw, $closed) : $raw;
}

# trickle($port, $bytes, delay => s, step => n, timeout => s)
# Sends $bytes $step at a time with $delay between, stopping when the server
# closes. -> {closed, elapsed (seconds from connect to the close seen),
#             sent (bytes), raw (bytes received)}
sub trickle {
    my ($port, $bytes, %o) = @_;
    my $delay = $o{delay} // 0.3;
    my $step  = $o{step} // 1;
    my $c = gw_connect($port);
    my $t0 = time;
    my $sent = 0;
    while ($sent < length $bytes) {
        $c->poll(0);
        last if $c->{eof};
        my $ok = $c->write(substr($bytes, $sent, $step));
        last unless $ok;
        $sent += $step;
        my $until = time + $delay;
        while (time < $until) {
            $c->poll($until - time);
            last if $c->{eof};
        }
        last if $c->{eof};
    }
    my $closed = $c->{eof} || $c->wait_closed($o{timeout} // 5);
    my $res = { closed => $closed ? 1 : 0, elapsed => time - $t0,
                sent => $sent > length $bytes ? length $bytes : $sent,
                raw => $c->{buf} };
    $res->{elapsed} = $c->{eof_at} - $t0 if $c->{eof_at};
    $c->close;
    return $res;
}

# --- assertions --------------------------------------------------------------

# gw_error_ok($r, $status, $name): checks a gateway-made error: status
# (a number or a list of acceptable ones), JSON envelope, X-Request-Id, Date.
sub gw_error_ok {
    my ($r, $status, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    $r = {} unless ref $r eq 'HASH';
    $r = { status => 0, headers => {}, body => '', %$r };
    # $status may be a list of acceptable statuses: [400, 505]
    my @want = ref $status ? @$status : ($status);
    my $ok;
    if (@want == 1) {
        $ok = Test::More::is($r->{status}, $want[0], "$name: status $want[0]");
    }
    else {
        $ok = Test::More::ok((grep { $_ == $r->{status} } @want),
            "$name: status one of @want")
          or Test::More::diag("got status $r->{status}");
    }
    $status = $r->{status};
    $ok &= Test::More::like($r->{headers}{'content-type'} // '',
        qr{^application/json}, "$name: JSON content type");
    my $j = json_body($r);
    Test::More::ok(ref $j eq 'HASH', "$name: JSON body")
      or do { $ok = 0; Test::More::diag("body: " . ($r->{body} // '')) };
    $j = {} unless ref $j eq 'HASH';
    $ok &= Test::More::is($j->{code}, $status, "$name: body code");
    $ok &= Test::More::ok(defined $j->{message} && length $j->{message},
        "$name: body message");
    $ok &= Test::More::ok(defined $j->{request_id} && length $j->{request_id}
        && $j->{request_id} eq ($r->{headers}{'x-request-id'} // ''),
        "$name: request_id matches X-Request-Id");
    $ok &= Test::More::ok(defined $r->{headers}{date}, "$name: Date header");
    return $ok;
}

# error_envelope_is($r, $status, $message, $name): $r is exactly the error
# envelope: that status, Content-Type application/json and the body
# {"code": $status, "message": $message, "request_id": <its X-Request-Id>}
# and nothing else.
sub error_envelope_is {
    my ($r, $status, $message, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    $r = { status => 0, headers => {}, body => '', %{ $r // {} } };
    my $rid = $r->{headers}{'x-request-id'} // '';
    my $ok = Test::More::is($r->{status}, $status, "$name: status $status");
    $ok &= Test::More::like($r->{headers}{'content-type'} // '', qr{^application/json\b},
        "$name: Content-Type application/json");
    $ok &= Test::More::ok(length $rid, "$name: X-Request-Id set");
    $ok &= Test::More::is_deeply(json_body($r),
        { code => $status, message => $message, request_id => $rid },
        "$name: body is the envelope") or Test::More::diag("body: $r->{body}");
    return $ok;
}

# rejects_ok($port, $raw, $status, $name, upstreams => [...])
# Sends $raw on a fresh connection and checks: the first answer is a gateway
# error with $status, says Connection: close, the socket is closed, and no
# upstream logged anything.
sub rejects_ok {
    my ($port, $raw, $status, $name, %o) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my @ups = @{ $o{upstreams} // [] };
    my @before = map { scalar upstream_requests($_) } @ups;
    my ($resp, $closed) = raw_exchange($port, $raw, timeout => $o{timeout} // 3);
    my ($r) = parse_responses($resp);
    $r //= { status => 0, headers => {}, header_list => [], body => '' };
    my $ok = gw_error_ok($r, $status, $name);
    if ($o{close} // 1) {
        $ok &= Test::More::like($r->{headers}{connection} // '', qr/close/i,
            "$name: Connection: close");
        $ok &= Test::More::ok($closed, "$name: connection closed");
    }
    sleep 0.1;
    for my $i (0 .. $#ups) {
        my @now = upstream_requests($ups[$i]);
        my @new = @now[$before[$i] .. $#now];
        # Stated apart so that a failure shows whether a whole request got
        # through or only a head the gateway then abandoned.
        $ok &= Test::More::is(scalar(grep { $_->{complete} } @new), 0,
            "$name: no complete request reached upstream $ups[$i]{name}");
        $ok &= Test::More::is(scalar(@new), 0,
            "$name: nothing reached upstream $ups[$i]{name}");
    }
    Test::More::diag("sent: " . JSON::PP->new->ascii->allow_nonref->encode($raw)
        . "\nreceived: " . JSON::PP->new->ascii->allow_nonref->encode($resp))
      unless $ok;
    return $ok;
}

# --- a client connection ---------------------------------------------------

package GwTest::Conn;

use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Errno qw(EINTR EAGAIN);
use Time::HiRes qw(time);

sub new {
    my ($class, $port, %o) = @_;
    my $sock = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1',
        PeerPort => $port,
        Proto    => 'tcp',
        Timeout  => 5 * GwTest::mult(),
    ) or die "connect 127.0.0.1:$port: $!\n";
    binmode $sock;
    $sock->autoflush(1);
    return bless {
        sock    => $sock,
        sel     => IO::Select->new($sock),
        buf     => '',
        eof     => 0,
        timeout => ($o{timeout} // 5) * GwTest::mult(),
    }, $class;
}

# Writes all of $bytes; false when the peer has gone.
sub write {
    my ($self, $bytes) = @_;
    while (length $bytes) {
        my $n = syswrite($self->{sock}, $bytes);
        if (!defined $n) {
            next if $! == EINTR;
            return 0;
        }
        substr($bytes, 0, $n, '');
    }
    return 1;
}

# Reads what is available within $timeout seconds into the buffer.
# Returns the number of bytes read (0 on EOF or timeout).
sub poll {
    my ($self, $timeout) = @_;
    return 0 if $self->{eof};
    return 0 unless $self->{sel}->can_read($timeout);
    my $n = sysread($self->{sock}, $self->{buf}, 65536, length $self->{buf});
    if (!$n) {
        return 0 if !defined $n && ($! == EINTR || $! == EAGAIN);
        $self->{eof} = 1; # EOF or reset
        $self->{eof_at} = time;
        return 0;
    }
    return $n;
}

# Reads the next response (an interim 1xx is returned on its own).
# Options: head => 1 for the answer to a HEAD, timeout => s.
# Returns undef on timeout or when the server closed before any byte.
sub read_response {
    my ($self, %o) = @_;
    my $deadline = time + ($o{timeout} ? $o{timeout} * GwTest::mult()
                                       : $self->{timeout});
    while (1) {
        my $r = GwTest::parse_one(\$self->{buf}, $self->{eof}, $o{head});
        return $r if $r;
        return undef if $self->{eof};
        my $left = $deadline - time;
        return undef if $left <= 0;
        $self->poll($left);
    }
}

sub request {
    my ($self, $method, $path, %o) = @_;
    $self->write(GwTest::build_request($method, $path, %o)) or return undef;
    return $self->read_response(head => $method eq 'HEAD');
}

# True when the server closes the connection within $timeout seconds
# (times the multiplier); bytes that arrive meanwhile stay in the buffer.
sub wait_closed {
    my ($self, $timeout) = @_;
    my $deadline = time + $timeout * GwTest::mult();
    while (!$self->{eof}) {
        my $left = $deadline - time;
        $self->poll($left > 0 ? $left : 0);
        last if time >= $deadline;
    }
    return $self->{eof} ? 1 : 0;
}

sub close {
    my ($self) = @_;
    close $self->{sock} if $self->{sock};
    $self->{sock} = undef;
}

1;
