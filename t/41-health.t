# Upstream health checks: active probes take a dead node out and bring it
# back, a probe that times out is a failure, no healthy node is a 503;
# passive ejection after N failures inside the window, re-admission after
# the window, failures spread wider than the window eject nothing; `-t`
# accepts health settings without a warning.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

# --- helpers ----------------------------------------------------------------

# An echo upstream that answers every request with $status
# (echo-upstream.pl --fail-status); the harness's start_upstream takes no
# extra options, so this one is started and stopped here, by PID.
my @failing;

sub start_failing {
    my ($name, $status) = @_;
    my $port = free_port();
    my $log  = tmpdir() . "/failing-$name.log";
    open my $fh, '>', $log or die "$log: $!";
    close $fh;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN,  '<', '/dev/null';
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        exec($^X, "$FindBin::Bin/lib/echo-upstream.pl", '--port', $port,
            '--name', $name, '--log', $log, '--fail-status', $status)
          or POSIX::_exit(127);
    }
    my $up = { name => $name, port => $port, pid => $pid, log => $log };
    push @failing, $up;
    wait_for(sub {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $port, Proto => 'tcp', Timeout => 1);
        close $s if $s;
        $s;
    }, 10) or die "failing upstream $name did not start on $port";
    return $up;
}

sub stop_failing {
    for my $up (@failing) {
        next if $up->{stopped}++;
        kill 'TERM', $up->{pid};
        waitpid($up->{pid}, 0);
    }
}

END { stop_failing() }

# gateway_upstream_nodes for $up as /metrics renders it: (healthy, unhealthy).
sub nodes_gauge {
    my ($gw, $up) = @_;
    my $r = http_request($gw->{status_port}, 'GET', '/metrics');
    my ($h) = $r->{body} =~ /^gateway_upstream_nodes\{upstream="\Q$up\E",state="healthy"\} (\d+)$/m;
    my ($u) = $r->{body} =~ /^gateway_upstream_nodes\{upstream="\Q$up\E",state="unhealthy"\} (\d+)$/m;
    return ($h // -1, $u // -1);
}

sub wait_gauge {
    my ($gw, $up, $healthy, $unhealthy, $timeout) = @_;
    return wait_for(sub {
        my ($h, $u) = nodes_gauge($gw, $up);
        $h == $healthy && $u == $unhealthy;
    }, $timeout // 5);
}

# Names of the nodes that answered $n requests to $path.
sub answered_by {
    my ($gw, $path, $n) = @_;
    my %seen;
    for (1 .. $n) {
        my $r = http_request($gw->{port}, 'GET', $path);
        $seen{ ($r->{headers}{'x-upstream'} // 'none') . ":$r->{status}" }++;
    }
    return \%seen;
}

sub log_like {
    my ($gw, $re, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    ok(wait_for(sub { gateway_log($gw) =~ $re }, 3), $name)
      or diag(gateway_log($gw));
}

# --- active: a node dies and comes back ----------------------------------------

{
    my $a = start_upstream(name => 'a');
    my $b = start_upstream(name => 'b');
    my $bport = $b->{port};
    my $gw = start_gateway(config => {
        upstreams => [{
            name => 'u', retries => 0,
            nodes => ["127.0.0.1:$a->{port}", "127.0.0.1:$bport"],
            health => { active => { path => '/healthz', interval => '150ms',
                timeout => '500ms', healthy => 2, unhealthy => 2 } },
        }],
        routes => [{ name => 'all', match => { path => '/*' }, upstream => 'u' }],
    });

    ok(wait_gauge($gw, 'u', 2, 0), 'active: both nodes healthy at start');
    ok(wait_for(sub { grep { $_->{uri} eq '/healthz' } upstream_requests($a) }, 3),
        'active: node a is probed');
    my ($probe) = grep { $_->{uri} eq '/healthz' } upstream_requests($a);
    my %h = map { (lc $_->[0] => $_->[1]) } @{ $probe->{headers} // [] };
    is($probe->{method}, 'GET', 'probe: GET');
    is($h{host}, "127.0.0.1:$a->{port}", 'probe: Host is the node address');
    is($h{'user-agent'}, 'gateway-health', 'probe: User-Agent');
    like($h{connection} // '', qr/close/i, 'probe: Connection: close');

    stop_upstream($b);
    ok(wait_gauge($gw, 'u', 1, 1), 'active: killed node b counted unhealthy in /metrics');
    log_like($gw, qr/\[warn\].*upstream "u": node 127\.0\.0\.1:$bport ejected: 2 failed probes: .*refused/i,
        'active: one warn line naming upstream, node and cause');
    my $seen = answered_by($gw, '/x', 6);
    is_deeply($seen, { 'a:200' => 6 }, 'active: every request goes to the healthy node')
      or diag(explain($seen));

    $b = start_upstream(name => 'b', port => $bport);
    ok(wait_gauge($gw, 'u', 2, 0), 'active: restarted node b healthy again');
    log_like($gw, qr/\[info\].*upstream "u": node 127\.0\.0\.1:$bport is healthy again: 2 successful probes/,
        'active: one info line for the re-admission');
    $seen = answered_by($gw, '/x', 6);
    ok($seen->{'a:200'} && $seen->{'b:200'}, 'active: both nodes serve again')
      or diag(explain($seen));
    my @ej = gateway_log($gw) =~ /(ejected)/g;
    is(scalar @ej, 1, 'active: one log line per state change');

    is(stop_gateway($gw), 0, 'active: SIGTERM with probes running: exit 0');
    stop_upstream($a);
    stop_upstream($b);
}

# --- active: a probe that times out; every node down --------------------------

{
    my $a = start_upstream(name => 'a');
    my $b = start_upstream(name => 'b');
    my @ab = ("127.0.0.1:$a->{port}", "127.0.0.1:$b->{port}");
    my $gw = start_gateway(config => {
        upstreams => [
            { name => 'slow', nodes => [$ab[0]],
              health => { active => { path => '/sleep/3000', interval => '100ms',
                  timeout => '200ms', unhealthy => 1 } } },
            { name => 'down', nodes => \@ab,
              health => { active => { path => '/status/503', interval => '100ms',
                  timeout => '500ms', unhealthy => 1 } } },
        ],
        routes => [
            { name => 'slow', match => { path => '/slow/*' }, upstream => 'slow' },
            { name => 'down', match => { path => '/down/*' }, upstream => 'down' },
        ],
    });

    ok(wait_gauge($gw, 'slow', 0, 1), 'timeout: a probe that times out ejects the node');
    log_like($gw, qr/upstream "slow": node \Q$ab[0]\E ejected: 1 failed probe: timeout/,
        'timeout: logged as a timeout');
    ok(wait_gauge($gw, 'down', 0, 2), 'status: nodes answering 503 to the probe are ejected');
    log_like($gw, qr/upstream "down": node .* ejected: 1 failed probe: status 503/,
        'status: logged with the status');

    clear_upstream_log($_) for $a, $b;
    my $r = http_request($gw->{port}, 'GET', '/down/x');
    gw_error_ok($r, 503, 'no healthy node');
    like($r->{body}, qr/no healthy node/, 'no healthy node: message');
    $r = http_request($gw->{port}, 'GET', '/slow/x');
    gw_error_ok($r, 503, 'only node timed out');
    my @proxied = grep { $_->{uri} =~ m{^/(down|slow)/} } map { upstream_requests($_) } $a, $b;
    is(scalar @proxied, 0, 'no healthy node: nothing proxied');

    # the slow probes are still in flight here: the drain must not wait for them
    is(stop_gateway($gw, timeout => 5), 0, 'SIGTERM with a probe in flight: exit 0');
    stop_upstream($a);
    stop_upstream($b);
}

# --- passive ------------------------------------------------------------------

{
    my $g  = start_upstream(name => 'good');
    my $f  = start_failing('bad', 503);
    my $f2 = start_failing('bad2', 503);
    my $gw = start_gateway(config => {
        upstreams => [
            { name => 'p', retries => 0, nodes => ["127.0.0.1:$g->{port}", "127.0.0.1:$f->{port}"],
              health => { passive => { unhealthy => 3, window => '2s' } } },
            { name => 'q', retries => 0, nodes => ["127.0.0.1:$g->{port}", "127.0.0.1:$f2->{port}"],
              health => { passive => { unhealthy => 3, window => '1s' } } },
        ],
        routes => [
            { name => 'p', match => { path => '/p/*' }, upstream => 'p' },
            { name => 'q', match => { path => '/q/*' }, upstream => 'q' },
        ],
    });

    # round robin: every second request reaches the failing node
    my $seen = answered_by($gw, '/p/x', 6);
    is($seen->{'bad:503'}, 3, 'passive: the failing node answered 3 times')
      or diag(explain($seen));
    ok(wait_gauge($gw, 'p', 1, 1, 2), 'passive: ejected after 3 failures, in /metrics');
    log_like($gw, qr/\[warn\].*upstream "p": node 127\.0\.0\.1:$f->{port} ejected: 3 failures in 2s/,
        'passive: warn line with the count and window');
    $seen = answered_by($gw, '/p/x', 6);
    is_deeply($seen, { 'good:200' => 6 }, 'passive: ejected node gets nothing')
      or diag(explain($seen));

    # failures wider apart than the window: never 3 inside 1s
    for (1 .. 4) {
        $seen = answered_by($gw, '/q/x', 2);
        is($seen->{'bad2:503'}, 1, "spread: failure $_ reached the node");
        sleep 0.6 if $_ < 4;
    }
    my ($h, $u) = nodes_gauge($gw, 'q');
    is("$h/$u", '2/0', 'spread: nothing ejected');
    unlike(gateway_log($gw), qr/upstream "q".*ejected/, 'spread: no ejection logged');

    ok(wait_gauge($gw, 'p', 2, 0, 5), 'passive: back after the window');
    log_like($gw, qr/\[info\].*upstream "p": node 127\.0\.0\.1:$f->{port} is healthy again: on probation after 2s/,
        'passive: info line for the re-admission');
    $seen = answered_by($gw, '/p/x', 2);
    is($seen->{'bad:503'}, 1, 'passive: re-admitted node gets requests again')
      or diag(explain($seen));

    is(stop_gateway($gw), 0, 'passive: SIGTERM: exit 0');
    stop_upstream($g);
    stop_failing();
}

# --- config check ---------------------------------------------------------------

{
    my ($code, $out) = check_config(config => {
        upstreams => [{ name => 'u', nodes => ['127.0.0.1:1'],
            health => { active => { path => '/health', interval => '5s', timeout => '1s',
                                    healthy => 2, unhealthy => 3 },
                        passive => { unhealthy => 5, window => '10s' } } }],
        routes => [{ name => 'all', match => { path => '/*' }, upstream => 'u' }],
    });
    is($code, 0, 'config -t: health accepted');
    like($out, qr/configuration OK/, 'config -t: OK');
    unlike($out, qr/warning/i, 'config -t: no warning');
}

stop_all();
done_testing();
