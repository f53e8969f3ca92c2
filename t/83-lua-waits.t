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
GwTest::spew_file("$pdir/t-audit.lua", <<'LUA');
local plugin = { name = "t-audit", priority = 100,
  schema = { type = "object", properties = { url = { type = "string" } }, required = { "url" } } }
function plugin.log(conf, ctx)
  gw.sleep(0.2)
  local res, err = gw.http.request{ url = conf.url .. "/audit" .. gw.req.path() }
  gw.log("info", "t-audit ", gw.req.path(), " ", res and res.status or err)
end
return plugin
LUA
GwTest::spew_file("$pdir/t-slow-access.lua", <<'LUA');
local plugin = { name = "t-slow-access", priority = 200, schema = { type = "object" } }
function plugin.access(conf, ctx)
  gw.sleep(0.4)
  ctx.passed = true
end
function plugin.log(conf, ctx)
  gw.sleep(0.05)
  gw.log("info", "t-slow-access log ", gw.req.path(), " status=", gw.resp.status(),
         " passed=", tostring(ctx.passed))
end
return plugin
LUA
GwTest::spew_file("$pdir/t-fallback.lua", <<'LUA');
local plugin = { name = "t-fallback", priority = 100,
  schema = { type = "object", properties = { url = { type = "string" } }, required = { "url" } } }
function plugin.error(conf, ctx, err)
  gw.sleep(0.05)
  local res = gw.http.request{ url = conf.url .. "/fallback" }
  return 200, { kind = err.kind, fallback = res and res.status }
end
return plugin
LUA

GwTest::spew_file("$pdir/t-slow-upper.lua", <<'LUA');
local plugin = { name = "t-slow-upper", priority = 100, schema = { type = "object" } }
function plugin.body_filter(conf, ctx, chunk, eof)
  if chunk ~= "" then gw.sleep(0.01) end
  ctx.calls = (ctx.calls or 0) + 1
  if eof then return "|calls=" .. ctx.calls end
  return chunk:upper()
end
return plugin
LUA

GwTest::spew_file("$pdir/t-up-status.lua", <<'LUA');
local plugin = { name = "t-up-status", priority = 100, schema = { type = "object" } }
function plugin.wants_upstream_error(conf, status) return status == 503 end
function plugin.error(conf, ctx, err)
  gw.sleep(0.05)
  return 200, { replaced = err.upstream_status, kind = err.kind }
end
return plugin
LUA

GwTest::spew_file("$pdir/t-slow-header.lua", <<'LUA');
local plugin = { name = "t-slow-header", priority = 100, schema = { type = "object" } }
function plugin.access(conf, ctx)
  if gw.req.header("X-Deny") then return gw.exit(403, { message = "denied" }) end
end
function plugin.header_filter(conf, ctx)
  gw.sleep(0.02)
  gw.resp.set_header("X-Filtered-Late", tostring(gw.resp.status()))
end
return plugin
LUA

# waits in the error phase for a 500, then lets the node's answer through
GwTest::spew_file("$pdir/t-up-decline.lua", <<'LUA');
local plugin = { name = "t-up-decline", priority = 100, schema = { type = "object" } }
function plugin.wants_upstream_error(conf, status) return status == 500 end
function plugin.error(conf, ctx, err)
  gw.sleep(0.02)
end
return plugin
LUA

my $up = start_upstream(name => 'a');
# head and a body longer than the head's status line, in one write: the
# body lands in the read buffer with the head
my $body500 = 'b' x 300;
my $origin500 = start_scripted_origin(answer => sub {
    return (["HTTP/1.1 500 Internal Server Error\r\nX-First: first-value\r\n"
             . "Content-Type: text/plain\r\nContent-Length: " . length($body500)
             . "\r\n\r\n$body500"], 0);
});
my $audit = start_upstream(name => 'audit');
my $closed = free_port();
my $gw = start_gateway(config => {
    gateway   => { plugin_paths => [$pdir] },
    upstreams => [
        { name => 'a', nodes => ["127.0.0.1:$up->{port}"] },
        { name => 'down', nodes => ["127.0.0.1:$closed"] },
        { name => 'o500', nodes => ["127.0.0.1:$origin500->{port}"] },
    ],
    routes => [
        { name => 'audited', match => { path => '/aud/*' }, upstream => 'a',
          plugins => { 't-audit' => { url => "http://127.0.0.1:$audit->{port}" } } },
        { name => 'slowacc', match => { path => '/sa/*' }, upstream => 'a',
          plugins => { 't-slow-access' => {} } },
        { name => 'upper', match => { path => '/up/*' }, upstream => 'a', strip_prefix => '/up',
          plugins => { 't-slow-upper' => {} } },
        { name => 'upstatus', match => { path => '/us/*' }, upstream => 'a', strip_prefix => '/us',
          plugins => { 't-up-status' => {} } },
        { name => 'slowhdr', match => { path => '/sh/*' }, upstream => 'a', strip_prefix => '/sh',
          plugins => { 't-slow-header' => {} } },
        { name => 'decline', match => { path => '/dc/*' }, upstream => 'o500',
          plugins => { 't-up-decline' => {} } },
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

# the client leaves before its answer: the log phase still runs, and waits
{
    clear_upstream_log($up);
    my $c = gw_connect($gw->{port});
    $c->write(build_request('GET', '/aud/sleep/400'));
    sleep 0.1;
    $c->close;
    ok(wait_for(sub { gateway_log($gw) =~ m{t-audit /aud/sleep/400 200} }, 3),
       'client gone mid-response: the log phase waited and reached the audit service');
    ok(wait_for(sub { grep { $_->{uri} eq '/audit/aud/sleep/400' } upstream_requests($audit) }, 3),
       'client gone mid-response: the audit request arrived');
}
# ... and while an access phase waits: that phase is dropped, the log phase runs
{
    clear_upstream_log($up);
    my $c = gw_connect($gw->{port});
    $c->write(build_request('GET', '/sa/x'));
    sleep 0.1;
    $c->close;
    ok(wait_for(sub { gateway_log($gw) =~ m{t-slow-access log /sa/x status=499 passed=nil} }, 3),
       'client gone during a waiting access phase: the log phase ran and waited, status 499');
    sleep 0.5;
    ok(!grep({ $_->{uri} =~ m{^/sa/} } upstream_requests($up)),
       'the dropped access phase never resumed: nothing went upstream');
    unlike(gateway_log($gw), qr/cannot wait here/, 'no "cannot wait here" error');
    my $r = http_request($gw->{port}, 'GET', '/sa/y');
    is($r->{status}, 200, 'the route serves the next client');
}

# the error phase waits for a fallback
my $r4 = http_request($gw->{port}, 'GET', '/fb/x');
is($r4->{status}, 200, 'error waits: fallback answer');
my $j = json_body($r4) // {};
is($j->{kind}, 'upstream_error', 'error waits: err.kind');
is($j->{fallback}, 200, 'error waits: the fallback request answered');

# body_filter waits on every chunk: chunks stay in order, the eof call comes last
my $r5 = http_request($gw->{port}, 'GET', '/up/chunked');
is($r5->{status}, 200, 'body_filter waits: 200');
like($r5->{body}, qr/^CHUNK-ONE\|CHUNK-TWO\|CHUNK-THREE\|calls=\d+$/, 'body_filter waits: in order, eof last');
my $r6 = http_request($gw->{port}, 'GET', '/up/big/200000');
my ($calls) = ($r6->{body} // '') =~ /\|calls=(\d+)$/;
is(length($r6->{body} // ''), 200000 + length("|calls=" . ($calls // '')), 'body_filter waits: a large body arrives whole');
is(substr($r6->{body} // '', 0, 200000), 'X' x 200000, 'body_filter waits: every byte filtered');

# the error phase for an upstream status waits too; other statuses pass
my $r7 = http_request($gw->{port}, 'GET', '/us/status/503');
is($r7->{status}, 200, 'upstream status error phase waits: replaced');
is((json_body($r7) // {})->{replaced}, 503, 'upstream status error phase: err.upstream_status');
my $r8 = http_request($gw->{port}, 'GET', '/us/status/500');
is($r8->{status}, 500, 'upstream status error phase: an unwanted status passes');
my $r9 = http_request($gw->{port}, 'GET', '/us/hello');
is($r9->{status}, 200, 'upstream status error phase: the route still proxies');

# an error phase that waits and then declines: the node's head goes out as
# the node sent it (its bytes were kept while the head was held)
my $r12 = http_request($gw->{port}, 'GET', '/dc/x');
is($r12->{status}, 500, 'declining error phase waits: the node\'s status');
is($r12->{headers}{'x-first'}, 'first-value', 'declining error phase waits: the node\'s headers');
is($r12->{headers}{'content-type'}, 'text/plain', 'declining error phase waits: its Content-Type');
is($r12->{body}, $body500, 'declining error phase waits: the node\'s body');

# header_filter waits on proxied and on gateway-made responses
my $r10 = http_request($gw->{port}, 'GET', '/sh/hello');
is($r10->{status}, 200, 'waiting header_filter: proxied 200');
is($r10->{headers}{'x-filtered-late'}, '200', 'waiting header_filter: header on a proxied response');
my $r11 = http_request($gw->{port}, 'GET', '/sh/hello', headers => ['X-Deny' => '1']);
is($r11->{status}, 403, 'waiting header_filter: gw.exit 403');
is($r11->{headers}{'x-filtered-late'}, '403', 'waiting header_filter: header on the gateway-made 403');
is((json_body($r11) // {})->{message}, 'denied', 'waiting header_filter: the body kept');

stop_all();
done_testing();
