# Waiting in the later phases: a log phase that waits (gw.sleep and
# gw.http.request) holds the next request on its connection, completes even
# when the client goes away, and an error phase that waits can fetch a
# fallback before answering.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use GwTest;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my $pdir = tmpdir() . '/plugins';
mkdir $pdir or die "mkdir $pdir: $!";
GwTest::spew("$pdir/t-audit.lua", <<'LUA');
local plugin = { name = "t-audit", priority = 100,
  schema = { type = "object", properties = { url = { type = "string" } }, required = { "url" } } }
function plugin.log(conf, ctx)
  gw.sleep(0.2)
  local res, err = gw.http.request{ url = conf.url .. "/audit" .. gw.req.path() }
  gw.log("info", "t-audit ", gw.req.path(), " ", res and res.status or err)
end
return plugin
LUA
GwTest::spew("$pdir/t-fallback.lua", <<'LUA');
local plugin = { name = "t-fallback", priority = 100,
  schema = { type = "object", properties = { url = { type = "string" } }, required = { "url" } } }
function plugin.error(conf, ctx, err)
  gw.sleep(0.05)
  local res = gw.http.request{ url = conf.url .. "/fallback" }
  return 200, { kind = err.kind, fallback = res and res.status }
end
return plugin
LUA

my $up = start_upstream(name => 'a');
my $audit = start_upstream(name => 'audit');
my $closed = free_port();
my $gw = start_gateway(config => {
    gateway   => { plugin_paths => [$pdir] },
    upstreams => [
        { name => 'a', nodes => ["127.0.0.1:$up->{port}"] },
        { name => 'down', nodes => ["127.0.0.1:$closed"] },
    ],
    routes => [
        { name => 'audited', match => { path => '/aud/*' }, upstream => 'a',
          plugins => { 't-audit' => { url => "http://127.0.0.1:$audit->{port}" } } },
        { name => 'fallback', match => { path => '/fb/*' }, upstream => 'down',
          plugins => { 't-fallback' => { url => "http://127.0.0.1:$audit->{port}" } } },
    ],
});

# two requests on one keep-alive connection: the second waits for the
# first one's log phase, both are answered
my $c = gw_connect($gw->{port});
my $t0 = time;
$c->write(build_request('GET', '/aud/one'));
my $r1 = $c->read_response;
$c->write(build_request('GET', '/aud/two'));
my $r2 = $c->read_response;
my $dt = time - $t0;
is($r1 && $r1->{status}, 200, 'log waits: first answer');
is($r2 && $r2->{status}, 200, 'log waits: second answer on the same connection');
cmp_ok($dt, '>=', 0.18, 'log waits: the second request waited for the first log phase');
$c->close;

# the client leaves at once: the log phase still completes
my $r3 = http_request($gw->{port}, 'GET', '/aud/three', headers => ['Connection' => 'close']);
is($r3->{status}, 200, 'log waits: answer with Connection: close');
ok(wait_for(sub { gateway_log($gw) =~ m{t-audit /aud/three 200} }, 3),
   'log waits: completes after the client left');
ok(wait_for(sub { grep { $_->{uri} eq '/audit/aud/three' } upstream_requests($audit) }, 3),
   'log waits: its request reached the audit service');
like(gateway_log($gw), qr{t-audit /aud/one 200}, 'log waits: first log line');

# the error phase waits for a fallback
my $r4 = http_request($gw->{port}, 'GET', '/fb/x');
is($r4->{status}, 200, 'error waits: fallback answer');
my $j = json_body($r4) // {};
is($j->{kind}, 'upstream_error', 'error waits: err.kind');
is($j->{fallback}, 200, 'error waits: the fallback request answered');

stop_all();
done_testing();
