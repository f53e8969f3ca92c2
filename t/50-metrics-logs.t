# Observability: the status listener (/health, /ready, /metrics and its
# errors), the Prometheus series after known traffic (also summed over two
# workers), the JSON access log and the error log.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;
use JSON::PP;
use Time::HiRes qw(sleep);

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my $up = start_upstream(name => 'a');
my $node = "127.0.0.1:$up->{port}";
my $dead = free_port();
my $dead_node = "127.0.0.1:$dead";

my $config = {
    upstreams => [
        { name => 'api', nodes => [$node] },
        { name => 'gone', nodes => [$dead_node], retries => 0 },
    ],
    routes => [
        { name => 'users', match => { path => '/users/*' }, upstream => 'api', strip_prefix => '/users' },
        { name => 'down',  match => { path => '/down/*' },  upstream => 'gone' },
    ],
};
my $gw = start_gateway(config => $config);
my $port = $gw->{port};

sub scrape {
    my ($g) = @_;
    my $r = http_request(($g // $gw)->{status_port}, 'GET', '/metrics');
    return $r;
}

# metric("name{labels}") -> value from the text, or undef
sub metric {
    my ($text, $series) = @_;
    for my $l (split /\n/, $text) {
        next if $l =~ /^#/;
        my ($s, $v) = $l =~ /^(\S+(?:\{.*\})?) (\S+)$/ or next;
        return $v if $s eq $series;
    }
    return undef;
}

sub access_lines {
    my $text = do { local $/; open my $fh, '<', "$gw->{dir}/access.log" or return (); <$fh> } // '';
    return map { my $l = $_; eval { decode_json($l) } // { bad_line => $l } } grep { length } split /\n/, $text;
}

# --- status endpoints ----------------------------------------------------------
{
    my $r = http_request($gw->{status_port}, 'GET', '/health');
    is($r->{status}, 200, '/health: 200');
    is((json_body($r) // {})->{status}, 'ok', '/health: {"status":"ok"}');
    $r = http_request($gw->{status_port}, 'GET', '/ready');
    is($r->{status}, 200, '/ready: 200');
    is((json_body($r) // {})->{status}, 'ready', '/ready: {"status":"ready"}');
    $r = http_request($gw->{status_port}, 'GET', '/nope');
    is($r->{status}, 404, 'status listener: unknown path -> 404');
    is((json_body($r) // {})->{code}, 404, 'status listener: 404 JSON body');
    $r = http_request($gw->{status_port}, 'POST', '/metrics', body => 'x');
    is($r->{status}, 405, 'status listener: POST -> 405');
    like($r->{headers}{allow} // '', qr/GET.*HEAD/, 'status listener: 405 has Allow: GET, HEAD');
    $r = http_request($gw->{status_port}, 'GET', '/metrics?x=1');
    is($r->{status}, 200, '/metrics?x=1: query ignored');
}

# --- traffic ----------------------------------------------------------------------
my (@rids, %sent);
for my $i (1 .. 5) {
    my $r = http_request($port, 'GET', "/users/$i?q=$i", headers => ['User-Agent' => 'gwtest/1']);
    is($r->{status}, 200, "request $i: 200");
    push @rids, $r->{headers}{'x-request-id'};
}
my $r404 = http_request($port, 'GET', '/nowhere');
is($r404->{status}, 404, 'unrouted request: 404');
my $r502 = http_request($port, 'GET', '/down/x');
is($r502->{status}, 502, 'dead upstream: 502');
my $rslow = http_request($port, 'GET', '/users/sleep/60');
is($rslow->{status}, 200, 'a 60 ms request: 200');

# --- metrics -------------------------------------------------------------------------
{
    my $m = scrape();
    is($m->{status}, 200, '/metrics: 200');
    like($m->{headers}{'content-type'} // '', qr{^text/plain; version=0\.0\.4}, '/metrics: Prometheus content type');
    my $t = $m->{body};
    is(metric($t, 'gateway_requests_total{route="users",status="200"}'), 6, 'requests_total users/200 = 6');
    is(metric($t, 'gateway_requests_total{route="_unmatched",status="404"}'), 1, 'requests_total _unmatched/404 = 1');
    is(metric($t, 'gateway_requests_total{route="down",status="502"}'), 1, 'requests_total down/502 = 1');
    like($t, qr/^# TYPE gateway_requests_total counter$/m, 'requests_total TYPE counter');
    like($t, qr/^# TYPE gateway_request_duration_seconds histogram$/m, 'duration TYPE histogram');

    # the histogram of route "users": 12 buckets + +Inf, cumulative
    my @le = qw(0.001 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 +Inf);
    my @v = map { metric($t, qq{gateway_request_duration_seconds_bucket{route="users",le="$_"}}) } @le;
    is(scalar(grep { defined } @v), 13, 'duration histogram: every bucket line present')
      or diag(join "\n", grep { /duration/ } split /\n/, $t);
    my $mono = 1;
    for my $i (1 .. $#v) { $mono = 0 if ($v[$i] // -1) < ($v[$i - 1] // 0) }
    ok($mono, 'duration histogram: cumulative');
    is($v[-1], 6, 'duration histogram: +Inf bucket = 6');
    is(metric($t, 'gateway_request_duration_seconds_count{route="users"}'), 6, 'duration histogram: _count = 6');
    my $sum = metric($t, 'gateway_request_duration_seconds_sum{route="users"}') // 0;
    ok($sum >= 0.05, "duration histogram: _sum includes the 60 ms request ($sum)");
    ok(($v[4] // 99) <= 5, 'duration histogram: the 60 ms request is above the 0.05 bucket');

    is(metric($t, qq{gateway_upstream_requests_total{upstream="api",node="$node",status="200"}}), 6,
        'upstream_requests_total api/node/200 = 6');
    is(metric($t, qq{gateway_upstream_requests_total{upstream="gone",node="$dead_node",status="error"}}), 1,
        'upstream_requests_total gone/node/error = 1');
    is(metric($t, 'gateway_upstream_latency_seconds_count{upstream="api"}'), 6, 'upstream latency _count = 6');
    ok(defined metric($t, 'gateway_upstream_latency_seconds_bucket{upstream="api",le="+Inf"}'),
        'upstream latency histogram present');
    is(metric($t, 'gateway_workers'), 1, 'gateway_workers 1');
    for my $st (qw(active reading writing idle)) {
        ok(defined metric($t, qq{gateway_connections{state="$st"}}), "gateway_connections{state=\"$st\"} present");
    }
    is(metric($t, 'gateway_upstream_nodes{upstream="api",state="healthy"}'), 1, 'upstream_nodes api healthy = 1');
    ok(defined metric($t, 'gateway_breaker_drops_total{upstream="api"}'), 'breaker_drops_total present');

    # an open idle keep-alive connection shows in the gauge
    my $c = gw_connect($port);
    my $r = $c->request('GET', '/users/ka');
    is($r && $r->{status}, 200, 'keep-alive request: 200');
    my $t2 = scrape()->{body};
    ok((metric($t2, 'gateway_connections{state="active"}') // 0) >= 1, 'connections: active >= 1 while a client is connected');
    ok((metric($t2, 'gateway_connections{state="idle"}') // 0) >= 1, 'connections: idle >= 1 for a keep-alive client')
      or diag(join "\n", grep { /^gateway_connections/ } split /\n/, $t2);
    my $sum_states = 0;
    $sum_states += metric($t2, qq{gateway_connections{state="$_"}}) // 0 for qw(reading writing idle);
    is($sum_states, metric($t2, 'gateway_connections{state="active"}'), 'connections: reading + writing + idle = active');
    $c->close;
    ok(wait_for(sub { (metric(scrape()->{body}, 'gateway_connections{state="active"}') // -1) == 0 }, 3),
        'connections: back to 0 after the client left');
}

# --- access log -----------------------------------------------------------------------
{
    my @l;
    wait_for(sub { @l = access_lines(); @l >= 9 }, 3); # flushed once a second
    is(scalar @l, 9, 'access log: one line per request (9)');
    ok(!(grep { $_->{bad_line} } @l), 'access log: every line is JSON');
    my @keys = qw(time request_id remote_addr method uri host status bytes_sent duration_ms route
                  upstream node upstream_status upstream_latency_ms user_agent);
    my @missing = grep { my $x = $_; grep { !exists $x->{$_} } @keys } @l;
    is(scalar @missing, 0, 'access log: every key on every line');

    my @users = grep { ($_->{uri} // '') =~ m{^/users/\d\?q=} } @l;
    is(scalar @users, 5, 'access log: the five /users requests');
    is_deeply([map { $_->{request_id} } @users], \@rids, 'access log: request_id = X-Request-Id sent to the client');
    is_deeply([map { $_->{uri} } @users], [map { "/users/$_?q=$_" } 1 .. 5], 'access log: uri with query, as received');
    ok(!(grep { $_->{status} != 200 || $_->{route} ne 'users' || $_->{upstream} ne 'api'
                || $_->{node} ne $node || $_->{upstream_status} != 200 || $_->{method} ne 'GET'
                || $_->{user_agent} ne 'gwtest/1' || $_->{remote_addr} ne '127.0.0.1' } @users),
        'access log: status, route, upstream, node, upstream_status, method, user_agent, remote_addr')
      or diag(explain($users[0]));
    like($users[0]{time} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'access log: time format');

    my ($nf) = grep { ($_->{uri} // '') eq '/nowhere' } @l;
    ok($nf && $nf->{status} == 404 && $nf->{route} eq '' && $nf->{upstream} eq '' && $nf->{node} eq ''
       && $nf->{upstream_status} == 0, 'access log: 404 line has empty route/upstream/node')
      or diag(explain($nf));
    is($nf && $nf->{request_id}, $r404->{headers}{'x-request-id'}, 'access log: 404 request_id');
    my ($dn) = grep { ($_->{uri} // '') eq '/down/x' } @l;
    ok($dn && $dn->{status} == 502 && $dn->{route} eq 'down' && $dn->{upstream} eq 'gone'
       && $dn->{node} eq $dead_node && $dn->{upstream_status} == 0,
        'access log: 502 line names route, upstream, node; upstream_status 0') or diag(explain($dn));
    my ($sl) = grep { ($_->{uri} // '') eq '/users/sleep/60' } @l;
    ok($sl && $sl->{duration_ms} >= 50, 'access log: duration_ms covers the 60 ms upstream wait')
      or diag(explain($sl));
    ok($sl && $sl->{upstream_latency_ms} >= 50 && $sl->{upstream_latency_ms} <= $sl->{duration_ms},
        'access log: upstream_latency_ms covers the 60 ms upstream wait, within duration_ms')
      or diag(explain($sl));
    ok($sl && $sl->{bytes_sent} > length($rslow->{body}), 'access log: bytes_sent counts head and body');
}

# --- error log -------------------------------------------------------------------------
{
    my $el = do { local $/; open my $fh, '<', $gw->{error_log} or die; <$fh> };
    like($el, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[warn\] worker \d+: .*\Q$dead_node\E.*$/m,
        'error log: a warn line naming the node whose connect failed');
    like($el, qr/^\S+ \[info\] master: /m, 'error log: master info lines');
}

is(stop_gateway($gw), 0, 'gateway 1 stopped');

# --- two workers: totals are summed --------------------------------------------------------
{
    my $g2 = start_gateway(config => { %$config, gateway => { workers => 2 } });
    my $ok = 0;
    for (1 .. 20) {
        my $c = gw_connect($g2->{port});
        my $r = $c->request('GET', '/users/w2');
        $c->close;
        $ok++ if $r && $r->{status} == 200;
    }
    is($ok, 20, 'workers 2: 20 requests on new connections');
    my $t = scrape($g2)->{body};
    is(metric($t, 'gateway_workers'), 2, 'workers 2: gateway_workers 2');
    is(metric($t, 'gateway_requests_total{route="users",status="200"}'), 20,
        'workers 2: requests_total summed over the workers');
    is(metric($t, qq{gateway_upstream_requests_total{upstream="api",node="$node",status="200"}}), 20,
        'workers 2: upstream_requests_total summed');
    is(metric($t, 'gateway_request_duration_seconds_count{route="users"}'), 20,
        'workers 2: histogram count summed');
    is(stop_gateway($g2), 0, 'gateway 2 stopped');
}

stop_all();
done_testing();
