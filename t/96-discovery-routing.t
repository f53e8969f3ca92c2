# Routing through pools fed by registries: requests reach exactly the
# instances registered, within a second of a change, with no reload; a
# canary by version follows the registry; an empty list is a 503 no_node;
# a registry that goes away leaves the last list in use (log, metrics); a
# reload and a killed discovery process keep routing; one watcher per
# instance whatever `workers` is. Consul through the stand-in
# (t/lib/consul-mock.pl), etcd with a real etcd and etcd's Go client.
# Also: every conf/examples file passes -t, and -t errors for discovery.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use GwTest;
use GwConsul;
use GwEtcd;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

# ---- -t: the examples, and discovery errors --------------------------------

for my $f (sort glob("$FindBin::Bin/../conf/examples/*.yaml")) {
    next if $f =~ m{/tls\.yaml$}; # needs certificates: t/34 makes them and checks it
    my ($code, $out) = check_config(file => $f);
    is($code, 0, "-t accepts conf/examples/" . ($f =~ s{.*/}{}r)) or diag $out;
}

my @bad = (
    [{ c1 => { type => 'consul', addr => 'http://127.0.0.1:8500', tls => { sni => 'c.example' } } },
     { registry => 'c1', service => 'x' },
     qr/registries\.c1\.tls: TLS settings for a server spoken to in plain HTTP/],
    [{ d => { type => 'dns' } }, { registry => 'd', host => 'a.example' },
     qr/upstreams\[0\]\.discovery: missing key "port"/],
    [{ d => { type => 'dns' } }, { registry => 'd', host => 'a.example', srv => '_x._tcp.a' },
     qr/give either host .* or srv/],
    [{ d => { type => 'dns', nameservers => ['not-an-ip'] } }, { registry => 'd', srv => '_x._tcp.a' },
     qr/registries\.d\.nameservers\[0\]: expected an IP address/],
    [{ d => { type => 'dns', min_ttl => '10s', max_ttl => '1s' } }, { registry => 'd', srv => '_x._tcp.a' },
     qr/registries\.d: min_ttl is more than max_ttl/],
    [{ e => { type => 'etcd', endpoints => ['http://127.0.0.1:2379'], username => 'u' } },
     { registry => 'e', format => 'go-zero', key => 'k' },
     qr/registries\.e: give both username and password/],
    [{ e => { type => 'etcd', endpoints => ['http://127.0.0.1:2379'] } },
     { registry => 'e', format => 'go-micro', service => 'a/b' },
     qr/upstreams\[0\]\.discovery\.service: must be a service name without/],
    [{ c1 => { type => 'consul', addr => 'http://127.0.0.1:8500' } },
     { registry => 'c1', service => 'x', port => 80 },
     qr/upstreams\[0\]\.discovery\.port: not used with consul registries/],
);
for my $b (@bad) {
    my ($code, $out) = check_config(config => {
        registries => $b->[0],
        upstreams  => [{ name => 'u', discovery => $b->[1] }],
        routes     => [{ match => { path => '/*' }, upstream => 'u' }],
    });
    isnt($code, 0, "-t refuses: $b->[2]");
    like($out, $b->[2], '... with the message');
}

# ---- Consul: routing follows the registry ----------------------------------

my %up = map { $_ => start_upstream(name => $_) } qw(a b c);
sub reg_web {
    my ($c, $name, $version) = @_;
    consul_ctl($c, '/mock/register', { ID => "web-$name", Service => 'web',
        Address => '127.0.0.1', Port => $up{$name}{port}, Meta => { version => $version } });
}
sub dereg_web { consul_ctl($_[0], '/mock/deregister', { ID => "web-$_[1]" }) }

# who answers N requests (names, sorted, unique), or the statuses when not 200
sub who {
    my ($gw, $path, $n, %h) = @_;
    my %seen;
    for (1 .. $n) {
        my $r = http_request($gw->{port}, 'GET', $path, headers => [%h]);
        $seen{ $r->{status} == 200 ? json_body($r)->{name} : "status:$r->{status}" }++;
    }
    return join ',', sort keys %seen;
}
sub wait_who {
    my ($gw, $path, $want, %h) = @_;
    my $t0 = time;
    my $ok = wait_for(sub { who($gw, $path, 6, %h) eq $want }, 5);
    my $dt = time - $t0;
    sleep 0.15; # every worker looks every 50 ms: let the others catch up
    return $ok ? $dt : undef;
}

my $c = start_consul();
reg_web($c, 'a', 'v1');
my $gw = start_gateway(config => {
    gateway    => { workers => 2 },
    registries => { c1 => { type => 'consul', addr => "http://127.0.0.1:$c->{port}", wait => '2s',
                            timeout => '1s' } },
    upstreams  => [{ name => 'web', discovery => { registry => 'c1', service => 'web' },
                     health => { passive => { unhealthy => 3, window => '10s' } } }],
    routes     => [
        { name => 'v1only', match => { path => '/v1/*' }, upstream => 'web',
          subset => { version => 'v1' } },
        { name => 'all', match => { path => '/*' }, upstream => 'web', subset => { version => 'v1' },
          split => [{ when => { header => { name => 'X-Canary', value => 'yes' } },
                      upstream => 'web', subset => { version => 'v2' } }] },
        { name => 'any', match => { path => '/any/*' }, upstream => 'web', priority => 10 },
    ],
});

ok(defined wait_who($gw, '/any/x', 'a'), 'the registered instance gets the traffic');
reg_web($c, 'b', 'v2');
my $dt = wait_who($gw, '/any/x', 'a,b');
ok(defined $dt, 'an instance added to the registry gets traffic without a reload')
  and cmp_ok($dt, '<', 1.5, sprintf('... within a second or so (%.2f s)', $dt));
is(who($gw, '/x', 8), 'a', 'default traffic stays on the v1 subset');
ok(defined wait_who($gw, '/x', 'b', 'X-Canary' => 'yes'), 'the canary rule reaches the v2 subset');

# a v2 instance more and the v1 one moved to v2: both subsets follow
reg_web($c, 'c', 'v2');
ok(defined wait_who($gw, '/x', 'b,c', 'X-Canary' => 'yes'), 'the v2 subset grows with the registry');
reg_web($c, 'a', 'v2');
ok(defined wait_who($gw, '/v1/x', 'status:503'), 'no v1 instance left: the v1 subset answers 503');
my $r = http_request($gw->{port}, 'GET', '/v1/x');
like(json_body($r)->{message} // '', qr/no node in the registry matches the subset/,
    '... saying that no node matches the subset');

# metrics: one view of the registry and the upstream's nodes
my $m = http_request($gw->{status_port}, 'GET', '/metrics')->{body};
like($m, qr/^gateway_registry_up\{registry="c1"\} 1$/m, 'gateway_registry_up 1');
like($m, qr/^gateway_upstream_nodes\{upstream="web",state="healthy"\} 3$/m,
    'gateway_upstream_nodes counts the registered nodes');
like($m, qr/^gateway_registry_events_total\{registry="c1"\} [1-9]/m, 'events are counted');

# in-flight requests finish when their node is removed
my $slow = gw_connect($gw->{port});
$slow->write(build_request('GET', '/any/sleep/800'));
sleep 0.2;
dereg_web($c, 'a'); dereg_web($c, 'b');
ok(defined wait_who($gw, '/any/x', 'c'), 'removed instances stop getting traffic');
my $sr = $slow->read_response;
is($sr && $sr->{status}, 200, 'a request in flight on a removed node still completes');
$slow->close;

# everything gone: 503 no_node
dereg_web($c, 'c');
ok(defined wait_who($gw, '/any/x', 'status:503'), 'an empty list: 503');
$r = http_request($gw->{port}, 'GET', '/any/x');
is(json_body($r)->{code}, 503, '... in the error envelope');
like(json_body($r)->{message}, qr/no node: the registry lists none/, '... saying the registry lists none');

# the registry goes away: the last list stays in use
reg_web($c, 'a', 'v1');
ok(defined wait_who($gw, '/any/x', 'a'), 'back to one instance');
stop_consul($c);
ok(wait_for(sub { gateway_log($gw) =~ /registry c1: unreachable/ }, 10), 'a registry that goes away is logged');
is(who($gw, '/any/x', 8), 'a', 'the last list stays in use while it is away');
ok(wait_for(sub { http_request($gw->{status_port}, 'GET', '/metrics')->{body}
    =~ /^gateway_registry_up\{registry="c1"\} 0$/m }, 3), 'gateway_registry_up 0');
my $c2 = start_consul(port => $c->{port});
reg_web($c2, 'b', 'v1');
ok(defined wait_who($gw, '/any/x', 'b'), 'the registry back: its list is used');
ok(wait_for(sub { gateway_log($gw) =~ /registry c1: answering again/ }, 5), '... and it is logged');

# one watcher per instance: two workers, one blocking query at a time
my @q = grep { $_->{path} eq '/v1/health/service/web' } consul_requests($c2);
cmp_ok(scalar(@q), '<', 40, 'the registry sees one watcher, not one per worker (' . scalar(@q) . ' queries)');

# a reload keeps routing: no 503 while the new discovery process starts
kill 'HUP', $gw->{pid};
my $fails = 0;
my $t_end = time + 1.5;
while (time < $t_end) {
    my $rr = http_request($gw->{port}, 'GET', '/any/x');
    $fails++ unless $rr->{status} == 200;
}
is($fails, 0, 'a reload does not empty the pool (the lists carry over)');
ok(wait_for(sub { gateway_log($gw) =~ /discovery: reloaded; 1 of 1 registry kept watching/ }, 5),
    'a reload keeps the watcher of an unchanged registry');

# a reload that changes the registry: its watcher is replaced, still no 503
my $text = slurp_file($gw->{conf});
$text =~ s/wait: "?2s"?/wait: 3s/ or die "no wait in the config";
spew_file($gw->{conf}, $text);
kill 'HUP', $gw->{pid};
$fails = 0;
$t_end = time + 1.5;
while (time < $t_end) {
    my $rr = http_request($gw->{port}, 'GET', '/any/x');
    $fails++ unless $rr->{status} == 200;
}
is($fails, 0, 'a reload that changes the registry does not empty the pool either');
ok(wait_for(sub { gateway_log($gw) =~ /discovery: reloaded; 0 of 1 registry kept watching/ }, 5),
    '... and replaces its watcher');

# the discovery process dies: re-spawned, routing goes on
ok(wait_for(sub { gateway_log($gw) =~ /discovery: registry c1: connected/ }, 5),
    'the discovery process logs with its tag');
sub is_worker {
    my ($g, $pid) = @_;
    return gateway_log($g) =~ /worker \d+: started \(pid $pid\)/;
}
my ($dp) = grep { !is_worker($gw, $_) } GwTest::children_of($gw->{pid});
SKIP: {
    skip 'discovery process not found', 3 unless $dp;
    kill 'KILL', $dp;
    ok(wait_for(sub { gateway_log($gw) =~ /discovery process \(pid $dp\) killed by signal 9; restarting/ }, 5),
        'a killed discovery process is re-spawned');
    is(who($gw, '/any/x', 6), 'b', 'routing goes on meanwhile');
    reg_web($c2, 'c', 'v1');
    ok(defined wait_who($gw, '/any/x', 'b,c'), 'the new discovery process follows the registry');
}
# host names in the registry are resolved by the discovery process
dereg_web($c2, 'b'); dereg_web($c2, 'c');
consul_ctl($c2, '/mock/register', { ID => 'web-h', Service => 'web', Address => 'localhost',
    Port => $up{a}{port} });
consul_ctl($c2, '/mock/register', { ID => 'web-x', Service => 'web',
    Address => 'no-such-host.invalid', Port => $up{b}{port} });
ok(defined wait_who($gw, '/any/x', 'a'), 'an instance registered by host name is routed to');
ok(wait_for(sub { gateway_log($gw) =~ /host "no-such-host\.invalid" does not resolve/ }, 5),
    'a name that does not resolve is skipped, with a log line');
is(stop_gateway($gw), 0, 'the gateway stops cleanly');
stop_consul($c2);

# ---- etcd, go-zero, through the gateway -------------------------------------

SKIP: {
    my ($bin, $why) = have_etcd() ? reg_bin() : (undef, 'etcd not installed');
    skip "etcd routing: $why", 6 unless $bin;
    my $e = start_etcd();
    my $ra = start_reg($e, mode => 'go-zero', key => 'user.rpc', addr => "127.0.0.1:$up{a}{port}", ttl => 3);
    my $g = start_gateway(config => {
        gateway    => { workers => 2 },
        registries => { e1 => { type => 'etcd', endpoints => [$e->{url}] } },
        upstreams  => [{ name => 'user', discovery => { registry => 'e1', format => 'go-zero',
                                                        key => 'user.rpc' } }],
        routes     => [{ match => { path => '/*' }, upstream => 'user' }],
    });
    ok(defined wait_who($g, '/x', 'a'), 'go-zero: the registered instance gets the traffic');
    my $rb = start_reg($e, mode => 'go-zero', key => 'user.rpc', addr => "127.0.0.1:$up{b}{port}", ttl => 3);
    my $t = wait_who($g, '/x', 'a,b');
    ok(defined $t, 'go-zero: a second instance registers and gets traffic')
      and cmp_ok($t, '<', 1.5, sprintf('... within a second or so (%.2f s)', $t));
    stop_reg($ra);
    ok(defined wait_who($g, '/x', 'b'), 'go-zero: a stopped instance (lease revoked) leaves');
    stop_reg($rb, signal => 'KILL');
    ok(defined wait_who($g, '/x', 'status:503'), 'go-zero: a killed instance leaves when its lease runs out');
    is(stop_gateway($g), 0, 'the gateway stops cleanly');
    stop_etcd($e);
}

stop_all();
done_testing();
