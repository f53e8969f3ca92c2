# A busy worker (32 requests or more alive, and the last loop pass read
# something) naps `gateway.loop_nap` between passes and polls without
# blocking, instead of blocking in epoll_wait (docs/performance.md,
# "Waking the worker"). This file keeps a worker in that mode and checks
# that nothing waits on it: every request of the bursts is answered with
# its own echo, an upstream read timeout fires on time among them, a lone
# request afterwards (back to blocking) is answered, a stop during a burst
# drains; gateway_loop_naps_total shows the naps. With `loop_nap: off`, or
# with fewer requests alive than the threshold, the worker never naps.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX qw(:sys_wait_h);
use GwTest;
use GwMetrics;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my $M  = mult();
my $up = start_upstream(name => 'a');

sub gateway_with {
    my (%gw) = @_;
    return start_gateway(config => {
        gateway   => { workers => 1, timeouts => { drain => '5s' }, %gw },
        upstreams => [{ name => 'a', nodes => ["127.0.0.1:$up->{port}"], retries => 0,
                        keepalive => { size => 64, idle_timeout => '30s' },
                        timeouts => { connect => '2s', send => '5s', read => '1s' } }],
        routes    => [{ name => 'all', match => { path => '/*' }, upstream => 'a' }],
    });
}

# One round: a request on every connection at once, then every answer.
sub round {
    my ($conns, $tag) = @_;
    my $good = 0;
    $conns->[$_]->write(build_request('GET', "/dense/$tag/$_")) for 0 .. $#$conns;
    for my $i (0 .. $#$conns) {
        my $r = $conns->[$i]->read_response;
        my $echo = $r && $r->{status} == 200 ? json_body($r) : undef;
        $good++ if $echo && ($echo->{uri} // '') eq "/dense/$tag/$i";
    }
    return $good;
}

# Rounds for SECS seconds; returns (rounds, answered right).
sub burst {
    my ($conns, $secs, $tag) = @_;
    my ($rounds, $good, $t0) = (0, 0, time);
    while (time - $t0 < $secs) { $good += round($conns, "$tag-$rounds"); $rounds++ }
    return ($rounds, $good);
}

# Naps as the status listener shows them, after the once-a-second publish.
sub naps {
    my ($gw) = @_;
    sleep 1.2;
    my $p = parse_metrics(scrape($gw));
    return $p->{'gateway_loop_naps_total{worker="0"}'};
}

my $gw = gateway_with();
my $port = $gw->{port};
my @conns = map { gw_connect($port, timeout => 10) } 1 .. 48;
is(round(\@conns, 'warm'), 48, '48 connections answered');

# --- a read timeout among dense traffic ------------------------------------------
{
    my $slow = gw_connect($port, timeout => 10);
    $slow->write(build_request('GET', '/sleep/4000'));
    my $t0 = time;
    my ($rounds, $good, $r, $dt) = (0, 0);
    while (time - $t0 < 3 * $M) {
        $good += round(\@conns, $rounds++);
        $slow->poll(0);
        if (!$r && ($r = GwTest::parse_one(\$slow->{buf}, $slow->{eof}))) {
            $dt = time - $t0;
        }
        last if $r && time - $t0 > 1.5;
    }
    $r //= $slow->read_response(timeout => 5);
    $dt //= time - $t0;
    cmp_ok($rounds, '>=', 5, "dense traffic: $rounds rounds of 48 requests");
    is($good, 48 * $rounds, 'dense traffic: every request answered with its own echo');
    gw_error_ok($r, 504, 'upstream read timeout among dense traffic');
    cmp_ok($dt, '>=', 0.9, 'the timeout did not fire early');
    cmp_ok($dt, '<', 1 + 1.5 * $M, 'the timeout fired near its 1 s, not later')
      or diag("504 after $dt s");
    $slow->close;
}
my $naps = naps($gw);
ok(defined $naps && $naps > 0, 'gateway_loop_naps_total counts naps: ' . ($naps // 'none'));

# --- a lone request after the bursts ------------------------------------------------
{
    my $before = naps($gw);
    my $c = gw_connect($port);
    my $r = $c->request('GET', '/lone');
    is($r && $r->{status}, 200, 'a lone request after the burst: 200');
    $c->close;
    is(naps($gw), $before, 'an idle worker does not nap (48 connections open, none busy)');
}

# --- a stop during a burst drains -------------------------------------------------
{
    my ($rounds, $good) = burst(\@conns, 0.5, 'pre-stop');
    is($good, 48 * $rounds, 'burst before the stop: every request answered');
    kill 'TERM', $gw->{pid};
    my $exited = wait_for(sub { waitpid($gw->{pid}, WNOHANG) == $gw->{pid} }, 8 * $M);
    ok($exited, 'SIGTERM during the burst: the gateway exits within its drain');
    $gw->{stopped} = 1 if $exited;
}
$_->close for @conns;

# --- below the threshold, and switched off: no naps --------------------------------
{
    my $g = gateway_with();
    my @few = map { gw_connect($g->{port}, timeout => 10) } 1 .. 8;
    my ($rounds, $good) = burst(\@few, 1, 'few');
    is($good, 8 * $rounds, "8 connections: $rounds rounds answered");
    is(naps($g), 0, '8 requests at a time: no naps');
    $_->close for @few;
    stop_gateway($g);

    $g = gateway_with(loop_nap => 'off');
    my @many = map { gw_connect($g->{port}, timeout => 10) } 1 .. 48;
    ($rounds, $good) = burst(\@many, 1, 'off');
    is($good, 48 * $rounds, "loop_nap: off: $rounds rounds of 48 answered");
    is(naps($g), 0, 'loop_nap: off: no naps');
    $_->close for @many;
    stop_gateway($g);
}

# --- -t ------------------------------------------------------------------------------
for my $good ('off', '0', '1us', '50us', '1000us') {
    my ($code, $out) = check_config(config => { gateway => { loop_nap => $good } });
    is($code, 0, "-t: loop_nap: $good is accepted") or diag($out);
}
for my $bad ('5ms', '0us', '1001us', '20', 'us', '-5us', '20 us', 'fast', [20]) {
    my ($code, $out) = check_config(config => { gateway => { loop_nap => $bad } });
    my $name = ref $bad ? 'a list' : $bad;
    isnt($code, 0, "-t: loop_nap: $name is refused");
    like($out, qr/gateway\.loop_nap: must be a duration in microseconds from 1us to 1000us/,
        "-t: loop_nap: $name: the reason") or diag($out);
}

stop_all();
done_testing();
