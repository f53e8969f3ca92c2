# /metrics after traffic of every kind (200, 404, 401, 413, 431, 429 from
# a limiter on Redis, 502, 504, 503 from the breaker), checked by
# `promtool check metrics`; label values never come from the request (a
# random path adds no series); histogram buckets are cumulative and their
# _count is the number of requests; Redis and Lua-memory series move;
# every metric the Grafana dashboard queries exists and every metric
# exported is in docs/metrics.md.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;
use GwMetrics;
use JSON::PP;
use Cwd ();
use IO::Select;
use IO::Socket::UNIX;
use Socket qw(SOCK_DGRAM);

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();
plan skip_all => 'redis-server not installed (make deps)' unless have_redis();

my $root = "$FindBin::Bin/..";
my $rd = start_redis();
my $up = start_upstream(name => 'a');
my $bad = start_upstream(name => 'bad', fail_status => 500);
my $dead = free_port();

sub route {
    my ($name, $ups, %o) = @_;
    return { name => $name, match => { path => "/$name/*" }, upstream => $ups,
             strip_prefix => "/$name", %o };
}

my $gw = start_gateway(config => {
    gateway   => { workers => 2, limits => { max_body_size => '1k', max_header_size => '4k' } },
    redis     => { addr => "127.0.0.1:$rd->{port}", timeout => '500ms' },
    upstreams => [
        { name => 'api', nodes => ["127.0.0.1:$up->{port}"] },
        { name => 'gone', nodes => ["127.0.0.1:$dead"], retries => 0, breaker => 'off' },
        { name => 'bad', nodes => ["127.0.0.1:$bad->{port}"], retries => 0 },
    ],
    consumers => [{ name => 'alice', 'key-auth' => { key => 'alice-key' } }],
    routes => [
        route('users', 'api'),
        route('slow', 'api', timeout => '100ms'),
        route('down', 'gone'),
        route('failing', 'bad'),
        route('auth', 'api', plugins => { 'key-auth' => {} }),
        route('limited', 'api',
              plugins => { 'limit-period' => { period => 60, quota => 2, key => 'route' } }),
    ],
});
my $port = $gw->{port};
ok(wait_for(sub { gateway_log($gw) =~ /redis 127\.0\.0\.1:$rd->{port}: connected/ }, 5),
   'the workers connected to redis');

# Requests the test sent, by route label; compared with the histograms.
my %sent;
sub req {
    my ($route, $method, $path, %o) = @_;
    my $r = http_request($port, $method, $path, %o);
    $sent{$route}++;
    return $r;
}

# --- traffic of each kind -----------------------------------------------------
is(req('users', 'GET', "/users/$_")->{status}, 200, "200 ($_)") for 1 .. 5;
is(req('_unmatched', 'GET', '/nowhere')->{status}, 404, '404: no route');
is(req('auth', 'GET', '/auth/x')->{status}, 401, '401: key-auth without a key');
is(req('auth', 'GET', '/auth/x', headers => ['X-API-Key' => 'alice-key'])->{status}, 200,
   '200: key-auth with a key');
is(req('_unmatched', 'POST', '/users/big', body => 'x' x 4096)->{status}, 413,
   '413: body too large (by Content-Length, before routing)');
my $r431 = req('_unmatched', 'GET', '/users/h', headers => ['X-Big' => 'y' x 8192]);
is($r431->{status}, 431, '431: header too large');
my @lim = map { req('limited', 'GET', '/limited/x')->{status} } 1 .. 4;
is_deeply(\@lim, [200, 200, 429, 429], 'limit-period on Redis: 2 then 429');
is(req('down', 'GET', '/down/x')->{status}, 502, '502: connection refused');
is(req('slow', 'GET', '/slow/sleep/1000')->{status}, 504, '504: route timeout');
my %fail;
$fail{ req('failing', 'GET', '/failing/x')->{status} }++ for 1 .. 30;
ok($fail{500} && $fail{503}, "upstream 500s open the breaker: 503s ("
   . join(', ', map { "$_: $fail{$_}" } sort keys %fail) . ')');

# Every request has been counted once each worker finished it.
my $total = 0;
$total += $_ for values %sent;
my $m;
ok(wait_for(sub {
    $m = scrape($gw);
    my $n = 0;
    $n += $_ for values %{ sum_by(parse_metrics($m), 'gateway_request_duration_seconds_count', 'route') };
    return $n == $total;
}, 5), "gateway_request_duration_seconds_count adds up to the $total requests sent");

# --- promtool -----------------------------------------------------------------
SKIP: {
    skip 'promtool not installed (Debian package prometheus; make deps)', 1
      unless -x '/usr/bin/promtool';
    my ($rc, $out) = promtool_check($m);
    is($rc, 0, 'promtool check metrics: no problem') or diag $out;
}

my $p = parse_metrics($m);

# --- bounded labels -------------------------------------------------------------
{
    my %routes_before = %{ label_values($p, 'route') };
    my $rand = sprintf 'r%08x', int(rand(0xffffffff));
    for my $path ("/$rand", "/users$rand", "/$rand/users/x", "/%22$rand%5C") {
        http_request($port, 'GET', $path);
    }
    http_request($port, 'GET', "/x/$rand", headers => ['Host' => "$rand.example"]);
    my $m2;
    wait_for(sub { $m2 = scrape($gw); $m2 =~ /route="_unmatched",status="404"\} (\d+)/ && $1 >= 6 }, 5);
    unlike($m2, qr/$rand/, 'no label value holds a random path or host');
    my %routes_after = %{ label_values(parse_metrics($m2), 'route') };
    is_deeply([sort keys %routes_after], [sort keys %routes_before],
              'random paths add no route label value');
    is_deeply([sort keys %routes_after],
              [sort qw(_unmatched auth down failing limited slow users)],
              'route labels: the configured routes and _unmatched');
}

# --- histograms -----------------------------------------------------------------
{
    my @bad = histogram_problems($p);
    is_deeply(\@bad, [], 'every histogram: buckets cumulative, +Inf == _count, le ascending');
    for my $route (sort keys %sent) {
        is($p->{"gateway_request_duration_seconds_count{route=\"$route\"}"}, $sent{$route},
           "route $route: _count = $sent{$route} requests");
        my $byst = 0;
        for my $k (keys %$p) {
            $byst += $p->{$k} if $k =~ /^gateway_requests_total\{route="\Q$route\E",/;
        }
        is($byst, $sent{$route}, "route $route: requests_total over status = _count");
    }
    my $ucount = $p->{'gateway_upstream_latency_seconds_count{upstream="api"}'} // 0;
    my $uattempts = sum_by($p, 'gateway_upstream_requests_total', 'upstream')->{api} // 0;
    is($ucount, $uattempts, "upstream api: latency _count = attempts ($uattempts)");
}

# --- each kind shows ----------------------------------------------------------
is($p->{'gateway_requests_total{route="auth",status="401"}'}, 1, '401 counted on its route');
is($p->{'gateway_requests_total{route="_unmatched",status="413"}'}, 1,
   '413 (refused on the head, before routing) counted under _unmatched');
is($p->{'gateway_requests_total{route="_unmatched",status="431"}'}, 1,
   '431 (before routing) counted under _unmatched');
is($p->{'gateway_limiter_rejections_total{route="limited",plugin="limit-period"}'}, 2,
   'limiter rejections: 2');
is($p->{'gateway_upstream_requests_total{upstream="gone",node="127.0.0.1:' . $dead . '",status="error"}'},
   1, 'upstream error counted');
is($p->{'gateway_breaker_drops_total{upstream="bad"}'}, $fail{503}, 'breaker drops = the 503s');
is($p->{'gateway_redis_up'}, 2, 'gateway_redis_up: both workers');
ok(($p->{'gateway_redis_commands_total'} // 0) >= 4, 'Redis commands counted ('
   . ($p->{'gateway_redis_commands_total'} // 0) . ')');
is($p->{'gateway_redis_latency_seconds_count'}, $p->{'gateway_redis_commands_total'},
   'Redis latency _count = commands');
is($p->{'gateway_redis_errors_total{kind="timeout"}'}, 0, 'no Redis timeout');
for my $w (0, 1) {
    ok(($p->{"gateway_lua_memory_bytes{worker=\"$w\"}"} // 0) > 100_000,
       "Lua memory of worker $w: " . ($p->{"gateway_lua_memory_bytes{worker=\"$w\"}"} // 'none'));
}
ok(($p->{'gateway_lua_memory_limit_bytes'} // 0) > 0, 'Lua memory limit exported');
ok(exists $p->{'gateway_tls_handshakes_total{result="ok"}'}, 'TLS handshake counters exported');

# --- a Redis that stops answering shows as errors and redis_up 0 -------------
{
    stop_redis($rd);
    my $st = http_request($port, 'GET', '/limited/x')->{status};
    ok(wait_for(sub { my $q = parse_metrics(scrape($gw)); ($q->{gateway_redis_up} // 1) == 0 }, 5),
       "Redis stopped: gateway_redis_up 0 (a request got $st)");
}

# --- the dashboard and the reference ------------------------------------------
{
    my %families = map { $_ => 1 } metric_families($m);
    my $ref = slurp_file("$root/docs/metrics.md");
    my %documented = map { $_ => 1 } $ref =~ /^\| `(gateway_[a-z_]+)`/mg;
    my @undoc = grep { !$documented{$_} } sort keys %families;
    is_deeply(\@undoc, [], 'every exported metric is in docs/metrics.md');

    my $dash = decode_json(slurp_file("$root/docs/grafana-dashboard.json"));
    my @names = dashboard_metrics($dash);
    ok(@names >= 8, 'the dashboard queries ' . scalar(@names) . ' metrics');
    my @unknown = grep { !$families{$_} && !$documented{$_} } @names;
    is_deeply(\@unknown, [], 'every metric the dashboard queries is exported or documented');
}

# --- the operator's files: the systemd unit and the config it expects -------
{
    my ($rc, $out) = check_config(file => "$root/conf/gateway-service.yaml");
    is($rc, 0, 'conf/gateway-service.yaml passes -t') or diag $out;
  SKIP: {
        my $sa = -x '/usr/bin/systemd-analyze' ? '/usr/bin/systemd-analyze' : undef;
        skip 'systemd-analyze not installed', 2 unless $sa;
        # verify wants the binaries the unit names to exist: point it at ours
        my $bin = Cwd::abs_path(gw_bin());
        my $unit = slurp_file("$root/conf/gateway.service");
        $unit =~ s{/usr/local/bin/gateway}{$bin}g;
        my $dir = tmpdir();
        spew_file("$dir/gateway.service", $unit);
        my $vout = `'$sa' verify '$dir/gateway.service' 2>&1`;
        is($? >> 8, 0, 'systemd-analyze verify conf/gateway.service: exit 0');
        is($vout, '', 'systemd-analyze verify: no warning') or diag $vout;
    }
}

# --- Type=notify: READY=1 once started, STOPPING=1 on SIGTERM -----------------
{
    my $path = tmpdir() . '/notify';
    my $sock = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => $path)
      or die "notify socket: $!";
    my $sel = IO::Select->new($sock);
    my $recv = sub {
        my $msg = '';
        $sock->recv($msg, 4096) if $sel->can_read(10 * mult());
        return $msg;
    };
    my $g;
    {
        local $ENV{NOTIFY_SOCKET} = $path;
        $g = start_gateway(config => {
            upstreams => [{ name => 'api', nodes => ["127.0.0.1:$up->{port}"] }],
            routes => [route('users', 'api')],
        });
    }
    is($recv->(), 'READY=1', 'sd_notify: READY=1 after start');
    is(http_request($g->{port}, 'GET', '/users/1')->{status}, 200, 'and it serves');
    kill 'TERM', $g->{pid};
    is($recv->(), 'STOPPING=1', 'sd_notify: STOPPING=1 on SIGTERM');
    is(stop_gateway($g), 0, 'notify gateway: exit 0');
}

is(stop_gateway($gw), 0, 'SIGTERM: exit 0');
stop_all();
done_testing();
