# The adaptive breaker on the request path: an upstream that fails makes
# the breaker drop requests (503 "circuit breaker open", JSON envelope,
# counted in gateway_breaker_drops_total) without reaching it; degradation
# can answer instead; `breaker: off`; scopes route, upstream and node; a
# half-failing upstream is throttled and the breaker recovers once it heals;
# bad breaker settings are config errors.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;
use Time::HiRes qw(time sleep);

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my $bad  = start_upstream(name => 'bad', fail_status => 500);
my $good = start_upstream(name => 'good');
my $bad2 = start_upstream(name => 'bad2', fail_status => 503);

sub route {
    my ($name, $upstream, %o) = @_;
    return { name => $name, match => { path => "/$name/*" }, upstream => $upstream,
             strip_prefix => "/$name", %o };
}

my $gw = start_gateway(config => {
    upstreams => [
        { name => 'bad', nodes => ["127.0.0.1:$bad->{port}"], retries => 0 },
        { name => 'bad-off', nodes => ["127.0.0.1:$bad->{port}"], breaker => 'off' },
        { name => 'shared', nodes => ["127.0.0.1:$bad2->{port}"],
          breaker => { scope => 'upstream' } },
        { name => 'mixed', nodes => ["127.0.0.1:$bad->{port}", "127.0.0.1:$good->{port}"],
          retries => 0, breaker => { scope => 'node' } },
        { name => 'half', nodes => ["127.0.0.1:$good->{port}"],
          breaker => { window => '2s', buckets => 20 } },
        { name => 'only500', nodes => ["127.0.0.1:$bad2->{port}"],
          breaker => { failure_statuses => [500] } },
        { name => 'nostatus', nodes => ["127.0.0.1:$bad->{port}"],
          breaker => { failure_statuses => [] } },
    ],
    routes => [
        route('b', 'bad'),
        route('b2', 'bad'),
        route('off', 'bad-off'),
        route('deg', 'bad', plugins => { degradation => { on => ['breaker_open'], status => 200,
                                                           json => { status => 'DEGRADED' } } }),
        route('s1', 'shared'),
        route('s2', 'shared'),
        route('mixed', 'mixed'),
        route('half', 'half'),
        route('only500', 'only500'),
        route('nostatus', 'nostatus'),
    ],
});

sub hammer {
    my ($path, $n) = @_;
    my %st;
    my @seq;
    for (1 .. $n) {
        my $r = http_request($gw->{port}, 'GET', $path);
        $st{$r->{status}}++;
        push @seq, $r;
    }
    return (\%st, \@seq);
}

sub metric {
    my ($re) = @_;
    my $m = http_request($gw->{status_port}, 'GET', '/metrics')->{body};
    return $m =~ $re ? $1 : undef;
}

# --- a failing upstream opens the breaker -------------------------------------
clear_upstream_log($bad);
my ($st, $seq) = hammer('/b/x', 60);
my $reached = () = upstream_requests($bad);
ok(($st->{503} // 0) > 20, "most of 60 requests to a failing upstream are dropped (503: "
   . ($st->{503} // 0) . ", 500: " . ($st->{500} // 0) . ")");
cmp_ok($st->{500}, '>=', 6, 'the first requests (protection 5) reach the upstream');
is($reached, $st->{500}, 'dropped requests never reach the upstream');
my ($drop) = grep { $_->{status} == 503 } @$seq;
error_envelope_is($drop, 503, 'circuit breaker open', 'a drop is the JSON error envelope');
my $drops = metric(qr/^gateway_breaker_drops_total\{upstream="bad"\} (\d+)$/m);
is($drops, $st->{503}, 'gateway_breaker_drops_total{upstream="bad"} counts every drop');

# route scope (the default): another route to the same upstream has its own
($st) = hammer('/b2/x', 5);
is($st->{500}, 5, 'scope route: another route to the same upstream is not affected');

# --- degradation answers for breaker_open --------------------------------------
($st, $seq) = hammer('/deg/x', 40);
ok(($st->{200} // 0) > 10, "degradation answers for breaker_open (200: " . ($st->{200} // 0) . ")");
my ($dg) = grep { $_->{status} == 200 } @$seq;
like($dg->{body}, qr/DEGRADED/, 'with its configured body');
ok(!$st->{503}, 'no 503 reaches the client on that route');

# --- breaker: off ------------------------------------------------------------
($st) = hammer('/off/x', 30);
is($st->{500}, 30, 'breaker: off: every request reaches the failing upstream');

# --- scope upstream: routes share one breaker ----------------------------------
hammer('/s1/x', 40);
($st) = hammer('/s2/x', 10);
ok(($st->{503} // 0) >= 5, "scope upstream: failures on one route open it for another ("
   . ($st->{503} // 0) . " of 10 dropped)");
ok(defined metric(qr/^gateway_breaker_drops_total\{upstream="shared"\} ([1-9]\d*)$/m),
   'drops counted for the shared upstream');

# --- scope node: the failing node's breaker sends requests to the other -------
# The bad node still gets through with the SRE formula's probability, about
# 1 - (requests - 5) / (requests + 1): by its 50th request that is ~12%.
($st, $seq) = hammer('/mixed/x', 120);
my $late_ok = grep { $_->{status} == 200 } @{$seq}[100 .. 119];
cmp_ok($late_ok, '>=', 16, "scope node: once the bad node's breaker is open most requests "
       . "go to the good node ($late_ok of the last 20 are 200)");
ok(!grep({ $_->{status} == 503 } @$seq), 'no request is refused while a node is left');

# --- failure_statuses: a 503 that is not listed is a success ----------------
($st) = hammer('/only500/x', 30);
is($st->{503}, 30, 'failure_statuses [500]: 503 answers do not open the breaker');
ok(!defined metric(qr/^gateway_breaker_drops_total\{upstream="only500"\} ([1-9]\d*)$/m),
   'and nothing is dropped');

($st) = hammer('/nostatus/x', 30);
is($st->{500}, 30, 'failure_statuses []: no status counts, 500s do not open the breaker');

# --- half the requests fail: throttled at about the SRE ratio, then recovers --
my ($req, $acc, $dropped, $fail) = (0, 0, 0, 0);
my $t0 = time;
while (time - $t0 < 2.5 * mult()) {
    my $path = $req % 2 ? '/half/status/500' : '/half/ok';
    my $r = http_request($gw->{port}, 'GET', $path);
    $req++;
    if ($r->{status} == 503 && $r->{body} =~ /circuit breaker/) { $dropped++ }
    elsif ($r->{status} == 200) { $acc++ }
    else { $fail++ }
}
my $sre = ($req - 5 - 1.5 * $acc) / ($req + 1);
$sre = 0 if $sre < 0;
my $frac = $dropped / $req;
ok($dropped > 0, "a half-failing upstream is throttled ($dropped of $req dropped)");
# go-zero's breaker counts drops in the total, so the ratio climbs with
# time; over one window it stays near the SRE figure of the same counts
cmp_ok(abs($frac - $sre), '<', 0.2,
       sprintf('drop fraction %.2f is near the SRE ratio %.2f of the same counts', $frac, $sre));
# heal: only good requests; within a window (2 s) the drops stop
my @tail;
$t0 = time;
while (time - $t0 < 3 * mult()) {
    my $r = http_request($gw->{port}, 'GET', '/half/ok');
    push @tail, $r->{status};
    sleep 0.01;
}
my @last = @tail[-20 .. -1];
is(scalar(grep { $_ != 200 } @last), 0, 'once it heals the breaker closes: the last 20 requests pass');

# --- config errors ---------------------------------------------------------------
for my $case (
    [{ k => 1.0 }, qr/upstreams\[0\]\.breaker\.k: must be between 1\.1 and 10/],
    [{ buckets => 0 }, qr/upstreams\[0\]\.breaker\.buckets/],
    [{ scope => 'cluster' }, qr/upstreams\[0\]\.breaker\.scope/],
    [{ failure_statuses => [700] }, qr/upstreams\[0\]\.breaker\.failure_statuses/],
    [{ window => '10ms', buckets => 40 }, qr/upstreams\[0\]\.breaker\.buckets/],
    [{ protection => -1 }, qr/upstreams\[0\]\.breaker\.protection/],
) {
    my ($code, $out) = check_config(config => {
        upstreams => [{ name => 'u', nodes => ['127.0.0.1:1'], breaker => $case->[0] }],
        routes => [{ name => 'r', match => { path => '/*' }, upstream => 'u' }],
    });
    is($code, 1, 'bad breaker setting -> exit 1');
    like($out, $case->[1], "error names the path: $out");
}

stop_all();
done_testing();
