#!/usr/bin/perl
# Discovery from Consul, against the stand-in t/lib/consul-mock.pl (Consul
# itself is not installed here): what the watcher reports, through the
# discovery printer (`gateway -d`, or build/unit/disc_driver).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use Compress::Zlib ();
use GwTest;
use GwConsul;

plan skip_all => 'no discovery printer built' unless disc_printer();

# go-micro's tag encoding: hex of the zlib stream.
sub gomicro { my ($kind, $data) = @_; return "$kind-" . unpack('H*', Compress::Zlib::compress($data)) }

sub addrs { return join ',', sort map { $_->{addr} } @{ $_[0] // [] } }

my $printer_is_driver = disc_printer()->[0] =~ /disc_driver$/;

# ---- one stand-in, one watcher: lists, checks, meta, index rules ------------

my $c = start_consul(index => 100);
consul_ctl($c, '/mock/register', {ID => 'web-1', Service => 'web', Address => '127.0.0.1',
    Port => 9001});
my $idx = consul_ctl($c, '/mock/register', {ID => 'web-2', Service => 'web',
    Address => '127.0.0.1', Port => 9002, Weights => {Passing => 5, Warning => 1}})->{index};

my $yaml = <<"EOF";
gateway: {listen: ["127.0.0.1:1"], workers: 1}
registries:
  c1: {type: consul, addr: "http://127.0.0.1:$c->{port}/", wait: 2s, timeout: 1s}
upstreams:
  - {name: web, discovery: {registry: c1, service: web}}
  - {name: all-api, discovery: {registry: c1, service: api, passing: false}}
routes:
  - {name: r, match: {path: /*}, upstream: web}
EOF
my $w = start_watch(yaml => $yaml);

my $n = wait_nodes($w, 'c1|consul|web', sub { @{ $_[0] } == 2 });
is(addrs($n), '127.0.0.1:9001,127.0.0.1:9002', 'first list: both instances');
my $by = nodes_by_addr($n);
is($by->{'127.0.0.1:9002'}{weight}, 5, 'Weights.Passing is the weight');
is($by->{'127.0.0.1:9001'}{weight}, 1, 'default weight 1');
is_deeply($by->{'127.0.0.1:9001'}{meta}, {}, 'no meta, no tags: empty meta');
ok(wait_line($w, 0, sub { exists $_[0]{up} && $_[0]{up} }), 'state up');
is_deeply(last_nodes($w, 'c1|consul|api|all'), [], 'an unknown service is an empty list');

my @req = grep { $_->{path} eq '/v1/health/service/web' } consul_requests($c);
ok(!exists $req[0]{query}{index}, 'the first read does not block');
is($req[0]{query}{passing}, 'true', 'passing=true by default');
ok(wait_for(sub {
    grep { ($_->{query}{index} // '') eq $idx && $_->{query}{wait} eq '2s' }
      consul_requests($c) }), 'then a blocking query on X-Consul-Index with wait=2s');
ok(!grep({ $_->{path} eq '/v1/health/service/api' && exists $_->{query}{passing} }
    consul_requests($c)), 'passing: false sends no passing parameter');

# add, remove
consul_ctl($c, '/mock/register', {ID => 'web-3', Service => 'web', Address => '127.0.0.1',
    Port => 9003});
ok(wait_nodes($w, 'c1|consul|web', sub { addrs($_[0]) eq '127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003' }),
    'an instance registered shows up');
consul_ctl($c, '/mock/deregister', {ID => 'web-1'});
ok(wait_nodes($w, 'c1|consul|web', sub { addrs($_[0]) eq '127.0.0.1:9002,127.0.0.1:9003' }),
    'an instance deregistered goes away');

# checks
consul_ctl($c, '/mock/check', {ID => 'web-2', Status => 'critical'});
ok(wait_nodes($w, 'c1|consul|web', sub { addrs($_[0]) eq '127.0.0.1:9003' }),
    'a failing check drops the instance (passing)');
consul_ctl($c, '/mock/check', {ID => 'web-2', Status => 'passing'});
ok(wait_nodes($w, 'c1|consul|web', sub { addrs($_[0]) eq '127.0.0.1:9002,127.0.0.1:9003' }),
    'and a passing one brings it back');

consul_ctl($c, '/mock/register', {ID => 'api-1', Service => 'api', Address => '127.0.0.1',
    Port => 9101, Status => 'warning', Weights => {Passing => 10, Warning => 2}});
consul_ctl($c, '/mock/register', {ID => 'api-2', Service => 'api', Address => '127.0.0.1',
    Port => 9102, Status => 'critical'});
$n = wait_nodes($w, 'c1|consul|api|all', sub { @{ $_[0] } == 2 });
is(addrs($n), '127.0.0.1:9101,127.0.0.1:9102', 'passing: false lists failing instances');
is(nodes_by_addr($n)->{'127.0.0.1:9101'}{weight}, 2, 'a warning instance gets Weights.Warning');

# Node.Address fallback, bad entries
consul_ctl($c, '/mock/register', {ID => 'web-n', Service => 'web', Address => '',
    NodeAddress => '10.1.2.3', Port => 9004});
consul_ctl($c, '/mock/register', {ID => 'web-noport', Service => 'web', Address => '127.0.0.1',
    Port => 0});
consul_ctl($c, '/mock/register', {ID => 'web-badhost', Service => 'web',
    Address => 'bad host/x', Port => 9005});
consul_ctl($c, '/mock/register', {ID => 'web-v6', Service => 'web', Address => '::1',
    Port => 9006});
consul_ctl($c, '/mock/register', {ID => 'web-long', Service => 'web', Address => 'a' x 300,
    NodeAddress => '10.9.9.9', Port => 9007});
$n = wait_nodes($w, 'c1|consul|web', sub { grep { $_->{addr} eq '[::1]:9006' } @{ $_[0] } });
is(addrs($n), '10.1.2.3:9004,127.0.0.1:9002,127.0.0.1:9003,[::1]:9006',
    'empty Service.Address: Node.Address; IPv6; bad port and bad address skipped');
# web-long may come in a later answer than the one listing web-v6
wait_for(sub { slurp_file($w->{err}) =~ /instance web-long: bad address/ }, 5);
my $log = slurp_file($w->{err});
like($log, qr/instance web-noport: bad or missing port, skipped/, 'the bad port is logged with its id');
like($log, qr/instance web-badhost: bad address "bad host\/x", skipped/, 'the bad address too');
like($log, qr/instance web-long: bad address/, 'an address too long is not replaced by the node\'s');
for my $id (qw(web-n web-noport web-badhost web-v6 web-long)) {
    consul_ctl($c, '/mock/deregister', {ID => $id});
}

# meta and tags
consul_ctl($c, '/mock/register', {ID => 'web-m', Service => 'web', Address => '127.0.0.1',
    Port => 9010, Meta => {zone => 'meta-wins', owner => 'team-a'},
    Tags => ['canary', 'zone=tag', 'color=blue', 'color=red', 'x=', '=y']});
$n = wait_nodes($w, 'c1|consul|web', sub { nodes_by_addr($_[0])->{'127.0.0.1:9010'} });
is_deeply(nodes_by_addr($n)->{'127.0.0.1:9010'}{meta},
    {zone => 'meta-wins', owner => 'team-a', 'tag:canary' => '', color => 'blue', x => '',
     'tag:=y' => ''},
    'Meta, then key=value tags (first wins), other tags as tag:T');

# go-micro's tags
consul_ctl($c, '/mock/register', {ID => 'gm-1', Service => 'web', Address => '127.0.0.1',
    Port => 9011,
    Tags => [gomicro('t', '{"protocol":"grpc"}'), gomicro('t', '{"server":"grpc","protocol":"x"}'),
             gomicro('e', '{"name":"Greeter.Hello","request":{"name":"Request"}}'),
             gomicro('v', '1.2.0'), gomicro('v', '9.9.9')]});
consul_ctl($c, '/mock/register', {ID => 'gm-old', Service => 'web', Address => '127.0.0.1',
    Port => 9012, Tags => ['v=0.9', 't={"transport":"http"}', 'e={"name":"A"}']});
consul_ctl($c, '/mock/register', {ID => 'gm-bad', Service => 'web', Address => '127.0.0.1',
    Port => 9013, Tags => ['v-zz', 't-' . unpack('H*', 'not zlib'), gomicro('t', 'not json')]});
$n = wait_nodes($w, 'c1|consul|web', sub { nodes_by_addr($_[0])->{'127.0.0.1:9013'} });
$by = nodes_by_addr($n);
is_deeply($by->{'127.0.0.1:9011'}{meta}, {version => '1.2.0', protocol => 'grpc', server => 'grpc'},
    'go-micro v- and t- tags decoded (first version, first key), e- ignored');
is_deeply($by->{'127.0.0.1:9012'}{meta}, {version => '0.9', transport => 'http'},
    'go-micro\'s older v= and t= tags');
is_deeply($by->{'127.0.0.1:9013'}{meta}, {}, 'undecodable go-micro tags: instance kept, tags skipped');
$log = slurp_file($w->{err});
like($log, qr/instance gm-bad: tag "v-zz" is not hex of zlib data/, 'a bad v- tag is logged');
like($log, qr/instance gm-bad: tag "t-[0-9a-f]+.*is not a JSON object/, 'a t- tag that is not JSON too');
consul_ctl($c, '/mock/deregister', {ID => $_}) for qw(web-m gm-1 gm-old gm-bad);
ok(wait_nodes($w, 'c1|consul|web', sub { addrs($_[0]) eq '127.0.0.1:9002,127.0.0.1:9003' }), 'cleaned up');

# the index going backwards: a plain read, then blocking on the new index
my $before = () = consul_requests($c);
consul_ctl($c, '/mock/index', {Index => 7});
ok(wait_for(sub {
    my @r = (consul_requests($c))[$before .. 1000];
    grep { defined $_ && $_->{path} eq '/v1/health/service/web' && !exists $_->{query}{index} } @r;
}), 'index lower than before: the loop restarts with a plain read');
ok(wait_for(sub {
    grep { $_->{path} eq '/v1/health/service/web' && ($_->{query}{index} // '') eq '7' }
      consul_requests($c) }), 'then blocks on the new index');
consul_ctl($c, '/mock/register', {ID => 'web-4', Service => 'web', Address => '127.0.0.1',
    Port => 9020});
ok(wait_nodes($w, 'c1|consul|web', sub { addrs($_[0]) eq '127.0.0.1:9002,127.0.0.1:9003,127.0.0.1:9020' }),
    'changes after the reset are seen');

# an answer without X-Consul-Index: block on 1, not 0
consul_ctl($c, '/mock/mode', {Mode => 'noindex'});
consul_ctl($c, '/mock/register', {ID => 'web-5', Service => 'web', Address => '127.0.0.1',
    Port => 9021});
ok(wait_for(sub {
    grep { $_->{path} eq '/v1/health/service/web' && ($_->{query}{index} // '') eq '1' }
      consul_requests($c) }, 8), 'no X-Consul-Index: the next query blocks on index 1');
consul_ctl($c, '/mock/mode', {Mode => 'normal'});

# rate limit: a server that answers at once never gets more than ~10/s
consul_ctl($c, '/mock/mode', {Mode => 'instant'});
sleep 0.5;
my $t0 = time;
my $c0 = grep { $_->{path} eq '/v1/health/service/web' } consul_requests($c);
sleep 2;
my $c1 = grep { $_->{path} eq '/v1/health/service/web' } consul_requests($c);
my $dt = time - $t0;
my $rate = ($c1 - $c0) / $dt;
ok($c1 - $c0 >= 3, "the loop keeps asking (" . ($c1 - $c0) . " requests)");
ok($rate <= 12, sprintf('at most about 10 requests a second per target (%.1f/s)', $rate));
consul_ctl($c, '/mock/mode', {Mode => 'normal'});

# garbage, a huge body, a server error, a stall: down, last list kept
my $good = addrs(last_nodes($w, 'c1|consul|web'));
my $nlists = () = watch_lists($w, 'c1|consul|web');
for my $case (['garbage', qr/bad JSON in the answer/], ['huge', qr/too large/],
    ['error500', qr/HTTP 500: rpc error: simulated failure/], ['stall', qr/timeout/]) {
    my ($mode, $why) = @$case;
    my $skip = () = watch_lines($w);
    consul_ctl($c, '/mock/mode', {Mode => $mode});
    # wake the held query so the next request meets the new mode
    consul_ctl($c, '/mock/register', {ID => "web-$mode", Service => 'other', Port => 1});
    my $down = wait_line($w, $skip, sub { exists $_[0]{up} && !$_[0]{up} }, 10);
    ok($down && $down->{why} =~ $why, "$mode: state down ($down->{why})")
      or diag explain $down;
    consul_ctl($c, '/mock/mode', {Mode => 'normal'});
    my $up = wait_line($w, $skip, sub { $_[0]{up} }, 10);
    ok($up, "$mode: up again once the server answers");
}
is(addrs(last_nodes($w, 'c1|consul|web')), $good, 'the last good list is still the one reported');
ok(!grep({ !@$_ } watch_lists($w, 'c1|consul|web')), 'no empty list was ever reported for web');

# the server down, then back (restarted, same port, a higher index)
my $skip = () = watch_lines($w);
stop_consul($c);
my $down = wait_line($w, $skip, sub { exists $_[0]{up} && !$_[0]{up} }, 10);
ok($down, "server stopped: state down ($down->{why})");
sleep 0.5;
is(addrs(last_nodes($w, 'c1|consul|web')), $good, 'the list is kept while the server is away');
my $c2 = start_consul(port => $c->{port}, index => 500);
consul_ctl($c2, '/mock/register', {ID => 'web-9', Service => 'web', Address => '127.0.0.1',
    Port => 9030});
ok(wait_nodes($w, 'c1|consul|web', sub { addrs($_[0]) eq '127.0.0.1:9030' }, 10),
    'server back: its list is reported');
ok(wait_line($w, $skip, sub { $_[0]{up} }), 'state up again');
if ($printer_is_driver) {
    my $ev = 0;
    $ev += $_->{events} // 0 for watch_lines($w);
    ok($ev >= 10, "events counted ($ev)");
}
is(stop_watch($w), 0, 'the watcher stops cleanly (every handle closed)');
stop_consul($c2);

# ---- ACL token, datacenter ---------------------------------------------------

my $a = start_consul(token => 's3cret', limited_token => 'weak', dcs => 'dc1,dc2');
consul_ctl($a, '/mock/register', {ID => 'pay-1', Service => 'pay', Address => '127.0.0.1',
    Port => 9201});
consul_ctl($a, '/mock/register', {ID => 'pay-2', Service => 'pay', Address => '127.0.0.1',
    Port => 9202, Datacenter => 'dc2'});

sub acl_watch {
    my ($extra) = @_;
    return start_watch(yaml => <<"EOF");
gateway: {listen: ["127.0.0.1:1"], workers: 1}
registries:
  c1: {type: consul, addr: "http://127.0.0.1:$a->{port}", wait: 2s, $extra}
upstreams:
  - {name: pay, discovery: {registry: c1, service: pay}}
routes:
  - {name: r, match: {path: /*}, upstream: pay}
EOF
}

$w = acl_watch('token: s3cret');
ok(wait_nodes($w, 'c1|consul|pay', sub { addrs($_[0]) eq '127.0.0.1:9201' }), 'the right token: the list');
my ($r) = grep { $_->{path} eq '/v1/health/service/pay' } consul_requests($a);
is($r->{token}, 's3cret', 'sent as X-Consul-Token');
stop_watch($w);

$w = acl_watch('token: wrong');
my $st = wait_line($w, 0, sub { exists $_[0]{up} });
ok($st && !$st->{up} && $st->{why} eq 'HTTP 403: ACL not found', 'a wrong token: down, 403 ACL not found');
ok(!watch_lists($w, 'c1|consul|pay'), 'and no list');
stop_watch($w);

$w = acl_watch('token: weak');
ok(wait_nodes($w, 'c1|consul|pay', sub { !@{ $_[0] } }), 'a token that may read nothing: an empty list');
like(slurp_file($w->{err}), qr/service pay: Consul left out instances the token may not read/,
    'and a log line saying the answer was filtered');
stop_watch($w);

$w = acl_watch('token: s3cret, dc: dc2');
ok(wait_nodes($w, 'c1|consul|pay', sub { addrs($_[0]) eq '127.0.0.1:9202' }), 'dc: the other datacenter\'s list');
($r) = grep { $_->{path} eq '/v1/health/service/pay' && defined $_->{query}{dc} } consul_requests($a);
is($r->{query}{dc}, 'dc2', 'dc= sent');
stop_watch($w);

$w = acl_watch('token: s3cret, dc: nowhere');
$st = wait_line($w, 0, sub { exists $_[0]{up} });
ok($st && !$st->{up} && $st->{why} =~ /HTTP 500: No path to datacenter/, 'an unknown dc: down');
stop_watch($w);
stop_consul($a);

done_testing();
