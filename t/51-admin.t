# The admin API (docs/admin.md): its own listener, the key in X-API-Key
# (401 without it, 429 after repeated wrong keys from one address), each
# endpoint's JSON, secrets redacted in GET /config, POST /reload refusing a
# bad config with the -t errors and applying a good one, bounded request
# sizes, and a JSON error for every bad request.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;
use GwAdmin;
use Time::HiRes qw(sleep);

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my $KEY = 'adm-0123456789-abcdef-key';
my $a = start_upstream(name => 'a');
my $admin_port = free_port();

sub config {
    my (%extra) = @_;
    return {
        gateway => {
            workers => 2,
            admin   => { listen => "127.0.0.1:$admin_port", key => $KEY },
        },
        redis => { addr => '127.0.0.1:1', password => 'redis-pass-s3cr3t' },
        consumers => [
            { name => 'alice', 'key-auth' => { key => 'alice-key-s3cr3t' } },
            { name => 'bob', 'jwt-auth' => { key => 'bob', secret => 'bob-jwt-s3cr3t' } },
        ],
        upstreams => [{ name => 'u', nodes => ["127.0.0.1:$a->{port}"] }],
        routes => [
            { name => 'open', match => { path => '/open/*' }, upstream => 'u' },
            { name => 'keyed', match => { path => '/keyed/*' }, upstream => 'u',
              plugins => { 'key-auth' => {} } },
            @{ $extra{routes} // [] },
        ],
        %{ $extra{top} // {} },
    };
}

my $gw = start_gateway(config => config());
my $adm = GwAdmin->new(port => $admin_port, key => $KEY);
ok(wait_for(sub { $adm->get('/routes')->{status} == 200 }, 5), 'admin API answers');
like(gateway_log($gw), qr/admin API on 127\.0\.0\.1:$admin_port/, 'start: a log line says where admin listens');

# --- auth ----------------------------------------------------------------------

my $r = $adm->get('/routes', key => undef);
gw_error_ok($r, 401, 'no key');
like($r->{body}, qr/missing API key/, 'no key: says so');
$r = $adm->get('/routes', key => 'wrong');
gw_error_ok($r, 401, 'wrong key');
$r = $adm->get('/routes', key => substr($KEY, 0, -1));
is($r->{status}, 401, 'a prefix of the key: 401');
$r = $adm->get('/routes', key => "$KEY$KEY");
is($r->{status}, 401, 'the key twice: 401');
$r = $adm->get('/routes', headers => ['X-Forwarded-For' => '127.0.0.1', 'X-Real-IP' => '127.0.0.1'],
    key => undef);
is($r->{status}, 401, 'forwarded headers do not let anyone in');
$r = $adm->get('/routes', headers => ['X-API-Key' => $KEY]);
is($r->{status}, 401, 'two X-API-Key headers: 401');

# wrong keys from 127.0.0.2: blocked after 10, whatever it sends next;
# 127.0.0.1 is not affected
my @st = map { $adm->get('/routes', key => "bad$_", from => '127.0.0.2')->{status} } 1 .. 10;
is_deeply([ grep { $_ != 401 } @st ], [], 'ten wrong keys: 401 each');
$r = $adm->get('/routes', from => '127.0.0.2');
gw_error_ok($r, 429, 'after ten wrong keys, even the right key');
ok(($r->{headers}{'retry-after'} // 0) > 0, '429: Retry-After');
is($adm->get('/routes')->{status}, 200, 'another address is not blocked');
like(gateway_log($gw), qr/admin: 127\.0\.0\.2 sent 10 wrong keys/, 'the block is logged');
# a full table of other peers does not push a blocked one out
my $others = 0;
for my $i (1 .. 256) {
    my $from = sprintf '127.0.%d.%d', 1 + int(($i - 1) / 250), 1 + ($i - 1) % 250;
    $others++ if $adm->get('/routes', key => 'wrong', from => $from)->{status} == 401;
}
is($others, 256, '256 other addresses with one wrong key each');
is($adm->get('/routes', from => '127.0.0.2')->{status}, 429, 'the blocked address is still blocked');

# --- endpoints -------------------------------------------------------------------

$r = $adm->get('/routes');
my $j = json_body($r);
like($r->{headers}{'content-type'}, qr{^application/json}, 'routes: JSON');
is_deeply([ map { $_->{name} } @{ $j->{routes} } ], ['open', 'keyed'], 'routes: names in order');
is($j->{routes}[1]{upstream}, 'u', 'routes: upstream');
is($j->{routes}[1]{path}, '/keyed/*', 'routes: path');
is_deeply($j->{routes}[1]{plugins}, ['key-auth'], 'routes: plugins');
is($adm->get('/admin/routes')->{status}, 200, 'also under /admin/');

$j = json_body($adm->get('/upstreams'));
my $u = $j->{upstreams}[0];
is($u->{name}, 'u', 'upstreams: name');
my $n = $u->{nodes}[0];
is($n->{addr}, "127.0.0.1:$a->{port}", 'upstreams: node addr');
is($n->{health}, 'healthy', 'upstreams: health');
is($n->{source}, 'static', 'upstreams: source');
is($n->{weight}, 1, 'upstreams: weight');
ok(exists $n->{ewma_ms} && exists $n->{inflight}, 'upstreams: ewma_ms and inflight');
is($u->{breaker_scope}, 'route', 'upstreams: breaker scope');
is(scalar @{ $u->{route_breakers} }, 2, 'upstreams: one breaker per route');
is($u->{route_breakers}[0]{breaker}{state}, 'closed', 'upstreams: breaker state');
is($u->{route_breakers}[0]{breaker}{drop_ratio}, 0, 'upstreams: drop ratio');
ok($j->{shared_state}{enabled}, 'upstreams: shared state on');

$r = $adm->get('/consumers');
is_deeply(json_body($r), { consumers => [{ name => 'alice' }, { name => 'bob' }] },
    'consumers: names only');

$r = $adm->get('/config');
$j = json_body($r);
is($j->{config}{routes}[0]{name}, 'open', 'config: the routes');
is($j->{workers}, 2, 'config: workers');
unlike($r->{body}, qr/s3cr3t|\Q$KEY\E/, 'config: no secret in the body');
is($j->{config}{gateway}{admin}{key}, '[redacted]', 'config: admin key redacted');
is($j->{config}{redis}{password}, '[redacted]', 'config: Redis password redacted');
is($j->{config}{consumers}[0]{'key-auth'}{key}, '[redacted]', 'config: consumer key redacted');
is($j->{config}{consumers}[1]{'jwt-auth'}{secret}, '[redacted]', 'config: JWT secret redacted');
is($j->{config}{redis}{addr}, '127.0.0.1:1', 'config: the rest as written');

$j = json_body($adm->get('/plugins'));
my ($ka) = grep { $_->{name} eq 'key-auth' } @{ $j->{plugins} // [] };
ok($ka, 'plugins: key-auth loaded');
ok(defined $ka->{priority} && $ka->{priority} > 0, 'plugins: priority');
ok(ref $ka->{phases} eq 'ARRAY' && @{ $ka->{phases} }, 'plugins: phases')
  or diag(explain($ka));

# --- bad requests ------------------------------------------------------------------

$r = $adm->get('/nope');
gw_error_ok($r, 404, 'unknown path');
$r = $adm->request('POST', '/routes');
gw_error_ok($r, 405, 'POST /routes');
is($r->{headers}{allow}, 'GET', '405: Allow');
$r = $adm->request('GET', '/reload');
gw_error_ok($r, 405, 'GET /reload');
$r = $adm->request('POST', '/reload', body => '{"check_only":', ctype => 'application/json');
gw_error_ok($r, 400, 'reload: bad JSON');
$r = $adm->request('POST', '/reload', body => '{"force":true}', ctype => 'application/json');
gw_error_ok($r, 400, 'reload: unknown member');
$r = $adm->request('POST', '/reload', body => '{}', ctype => 'text/plain');
gw_error_ok($r, 415, 'reload: not JSON');
$r = $adm->get('/routes', headers => ['X-Big' => 'x' x 9000]);
gw_error_ok($r, 431, 'a head over 8 KiB');
$r = $adm->request('POST', '/reload', body => '{"check_only":true}' . (' ' x 70000),
    ctype => 'application/json');
gw_error_ok($r, 413, 'a body over 64 KiB');
$r = $adm->raw("GARBAGE\r\n\r\n");
like($r, qr{^HTTP/1\.1 400 .*"code":400}s, 'garbage: 400 with JSON');

# --- reload --------------------------------------------------------------------------

my $good = slurp_file($gw->{conf});
(my $bad = $good) =~ s/^(\s*)upstream: "u"$/$1upstream: "missing"/m;
isnt($bad, $good, 'a bad config: a route names an upstream that does not exist');
spew_file($gw->{conf}, $bad);
$r = $adm->request('POST', '/reload');
gw_error_ok($r, 400, 'reload of a bad config');
$j = json_body($r);
ok(ref $j->{errors} eq 'ARRAY' && grep({ /missing/ } @{ $j->{errors} }), 'reload: the -t errors')
  or diag($r->{body});
is(scalar @{ json_body($adm->get('/routes'))->{routes} }, 2, 'bad reload: routes unchanged');
is(http_request($gw->{port}, 'GET', '/open/x')->{status}, 200, 'bad reload: still serving');

(my $more = $good) =~ s/^routes:\n/routes:\n  - name: "added"\n    match:\n      path: "\/added\/*"\n    upstream: "u"\n/m;
spew_file($gw->{conf}, $more);
$r = $adm->request('POST', '/reload', body => '{"check_only":true}', ctype => 'application/json');
is($r->{status}, 200, 'check_only: 200');
is(json_body($r)->{status}, 'valid', 'check_only: valid');
is(scalar @{ json_body($adm->get('/routes'))->{routes} }, 2, 'check_only: nothing reloaded');
$r = $adm->request('POST', '/reload');
is($r->{status}, 202, 'reload of a good config: 202') or diag($r->{body});
is(json_body($r)->{status}, 'reloading', 'reload: status reloading');
ok(wait_for(sub {
    my $rt = json_body($adm->get('/routes'));
    $rt && grep { ($_->{name} // '') eq 'added' } @{ $rt->{routes} };
}, 10), 'reload: the new route is in GET /routes');
ok(wait_for(sub { http_request($gw->{port}, 'GET', '/added/x')->{status} == 200 }, 5),
    'reload: the new route serves');

is(stop_gateway($gw), 0, 'gateway stops cleanly');
stop_all();
done_testing();
