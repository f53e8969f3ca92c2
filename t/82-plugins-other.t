# The other built-in plugins through the real gateway: cors, request-id,
# response-rewrite, error-mapping and degradation (on errors the gateway
# makes: 502 with the upstream port closed, 504 on a read timeout, 404 from a
# global plugin).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my $pdir = tmpdir() . '/plugins';
mkdir $pdir or die "mkdir $pdir: $!";
{
    # a degradation handler module, next to the plugins
    open my $fh, '>', "$pdir/fallbacks.lua" or die $!;
    print $fh <<'LUA';
local M = {}
function M.orders(ctx, err)
  return 200, { status = "PENDING", kind = err.kind }, { ["Retry-After"] = "5" }
end
return M
LUA
    close $fh;
}

my $up     = start_upstream(name => 'a');
my $closed = free_port();

sub route {
    my ($name, $plugins, %o) = @_;
    return { name => $name, match => { path => "/$name/*" }, upstream => $o{upstream} // 'a',
             strip_prefix => "/$name", ($plugins ? (plugins => $plugins) : ()) };
}

my $cors_conf = {
    allow_origins  => ['https://app.example.com', 'https://*.example.org'],
    allow_methods  => ['GET', 'POST'],
    max_age        => 600,
    expose_headers => ['X-Upstream'],
};

my $gw = start_gateway(config => {
    gateway   => { plugin_paths => [$pdir] },
    upstreams => [
        { name => 'a', nodes => ["127.0.0.1:$up->{port}"] },
        { name => 'down', nodes => ["127.0.0.1:$closed"] },
        { name => 'slow', nodes => ["127.0.0.1:$up->{port}"], timeouts => { read => '200ms' },
          retries => 0 },
    ],
    consumers => [{ name => 'alice', 'key-auth' => { key => 'alice-key' } }],
    routes    => [
        route('cors', { cors => $cors_conf }),
        route('cors-any', { cors => {} }),
        route('cors-auth', { cors => $cors_conf, 'key-auth' => {} }),
        route('rid', { 'request-id' => { header => 'X-Trace-Id' } }),
        route('rid-quiet', { 'request-id' => { header => 'X-Correlation-Id', response => JSON::PP::false } }),
        route('rr', { 'response-rewrite' => { status => 202, body => 'rewritten',
            headers => { set => { 'X-New' => 'v' }, remove => ['X-Upstream'] } } }),
        route('rr-404', { 'response-rewrite' => { statuses => [404], status => 200,
            headers => { set => { 'X-Was' => 'was-404' } } } }),
        route('em-down', { 'error-mapping' => { kinds => { upstream_error =>
            { code => 10502, message => 'service unavailable', http_status => 200 } } } },
            upstream => 'down'),
        route('em-slow', { 'error-mapping' => { kinds => { timeout => { code => 10504 } } } },
            upstream => 'slow'),
        route('em-default', { 'error-mapping' => { default => { code => 1, message => 'oops' },
            http_status => 299 } }, upstream => 'down'),
        route('em-other', { 'error-mapping' => { kinds => { timeout => { code => 10504 } } } },
            upstream => 'down'),
        route('em-body', { 'error-mapping' => { upstream_body => { statuses => [500],
            code_field => 'status', message_field => 'name',
            codes => { '500' => { code => 20500, message => 'internal' } } } } }),
        route('deg-down', { degradation => { on => ['upstream_error'], status => 200,
            json => { status => 'PENDING' }, headers => { 'X-Degraded' => 'yes' } } },
            upstream => 'down'),
        route('deg-slow', { degradation => { on => ['timeout'], status => 203, text => 'try later' } },
            upstream => 'slow'),
        route('deg-other', { degradation => { on => ['timeout'], json => { x => 1 } } },
            upstream => 'down'),
        route('deg-handler', { degradation => { on => ['upstream_error'], handler => 'fallbacks.orders' } },
            upstream => 'down'),
        route('em-up', { 'error-mapping' => { upstream_statuses => [503],
            statuses => { '503' => { code => 30503, message => 'busy', http_status => 200 } } } }),
        route('deg-up', { degradation => { upstream_statuses => [503], json => { cached => JSON::PP::true } } }),
        route('deg-both', { degradation => { on => ['upstream_error'], json => { from => 'degradation' } },
            'error-mapping' => { kinds => { timeout => { code => 7 } } } }, upstream => 'down'),
    ],
});

sub ups { my @r = upstream_requests($up); scalar @r }

sub last_up { my @r = upstream_requests($up); $r[-1] }

sub up_header {
    my ($req, $name) = @_;
    return undef unless $req;
    my @v = map { $_->[1] } grep { lc $_->[0] eq lc $name } @{ $req->{headers} };
    return @v ? $v[0] : undef;
}

sub req {
    my ($method, $path, @h) = @_;
    clear_upstream_log($up);
    return http_request($gw->{port}, $method, $path, headers => \@h);
}

# --- cors ----------------------------------------------------------------------

my $r = req('OPTIONS', '/cors/x', Origin => 'https://app.example.com',
    'Access-Control-Request-Method' => 'POST', 'Access-Control-Request-Headers' => 'X-Foo, Content-Type');
is($r->{status}, 204, 'cors preflight: 204');
is($r->{headers}{'access-control-allow-origin'}, 'https://app.example.com', 'cors preflight: origin reflected');
is($r->{headers}{'access-control-allow-methods'}, 'GET, POST', 'cors preflight: methods');
is($r->{headers}{'access-control-allow-headers'}, 'X-Foo, Content-Type', 'cors preflight: requested headers allowed');
is($r->{headers}{'access-control-max-age'}, '600', 'cors preflight: max age');
like($r->{headers}{vary} // '', qr/\bOrigin\b/, 'cors preflight: Vary: Origin');
ok(!$r->{headers}{'access-control-allow-credentials'}, 'cors preflight: no credentials');
is($r->{body}, '', 'cors preflight: no body');
is(ups(), 0, 'cors preflight: nothing upstream');

$r = req('OPTIONS', '/cors/x', Origin => 'https://a.b.example.org', 'Access-Control-Request-Method' => 'GET');
is($r->{status}, 204, 'cors preflight, wildcard subdomain: 204');
is($r->{headers}{'access-control-allow-origin'}, 'https://a.b.example.org', 'cors wildcard: origin reflected');

for my $bad ('https://evil.com', 'https://example.org', 'http://app.example.com',
             'https://app.example.com.evil.com', 'https://evil.com/.example.org') {
    $r = req('OPTIONS', '/cors/x', Origin => $bad, 'Access-Control-Request-Method' => 'GET');
    error_envelope_is($r, 403, 'CORS origin not allowed', "cors preflight from $bad");
    ok(!$r->{headers}{'access-control-allow-origin'}, "cors preflight from $bad: no allow-origin");
    is(ups(), 0, "cors preflight from $bad: nothing upstream");
}

$r = req('GET', '/cors/simple', Origin => 'https://app.example.com');
is($r->{status}, 200, 'cors simple request: 200');
is($r->{headers}{'access-control-allow-origin'}, 'https://app.example.com', 'cors simple: allow-origin');
is($r->{headers}{'access-control-expose-headers'}, 'X-Upstream', 'cors simple: expose headers');
like($r->{headers}{vary} // '', qr/\bOrigin\b/, 'cors simple: Vary: Origin');
is(ups(), 1, 'cors simple: reached the upstream');
is(up_header(last_up(), 'Origin'), 'https://app.example.com', 'cors simple: Origin passed upstream');

$r = req('GET', '/cors/simple', Origin => 'https://evil.com');
is($r->{status}, 200, 'cors simple, foreign origin: still proxied');
ok(!exists $r->{headers}{'access-control-allow-origin'}, 'cors simple, foreign origin: no allow-origin');

$r = req('GET', '/cors/simple');
ok(!exists $r->{headers}{'access-control-allow-origin'}, 'cors: no Origin, no CORS headers');

$r = req('OPTIONS', '/cors/opt', Origin => 'https://app.example.com');
is($r->{status}, 200, 'cors: OPTIONS without Access-Control-Request-Method is proxied');
is(ups(), 1, 'cors: plain OPTIONS reached the upstream');

$r = req('GET', '/cors-any/x', Origin => 'https://whoever.test');
is($r->{headers}{'access-control-allow-origin'}, '*', 'cors default: allow-origin *');
$r = req('OPTIONS', '/cors-any/x', Origin => 'https://whoever.test', 'Access-Control-Request-Method' => 'PUT');
is($r->{status}, 204, 'cors default preflight: 204');
is($r->{headers}{'access-control-allow-methods'}, 'GET, HEAD, POST, PUT, PATCH, DELETE', 'cors default: methods');

# cors runs before key-auth: the preflight needs no key
$r = req('OPTIONS', '/cors-auth/x', Origin => 'https://app.example.com', 'Access-Control-Request-Method' => 'GET');
is($r->{status}, 204, 'cors + key-auth: preflight without a key: 204');
is(ups(), 0, 'cors + key-auth: preflight not upstream');
$r = req('GET', '/cors-auth/x', Origin => 'https://app.example.com');
error_envelope_is($r, 401, 'missing API key', 'cors + key-auth: GET without a key');
is($r->{headers}{'access-control-allow-origin'}, 'https://app.example.com',
    'cors + key-auth: the 401 carries allow-origin (header_filter on gw.exit answers)');
is(ups(), 0, 'cors + key-auth: 401 not upstream');
$r = req('GET', '/cors-auth/x', Origin => 'https://app.example.com', 'X-API-Key' => 'alice-key');
is($r->{status}, 200, 'cors + key-auth: with a key: 200');
is($r->{headers}{'access-control-allow-origin'}, 'https://app.example.com', 'cors + key-auth: allow-origin');

# --- request-id ------------------------------------------------------------------

$r = req('GET', '/rid/x');
is($r->{status}, 200, 'request-id: 200');
my $id = $r->{headers}{'x-request-id'};
ok($id, 'request-id: X-Request-Id still returned');
is($r->{headers}{'x-trace-id'}, $id, 'request-id: X-Trace-Id on the response = the request id');
is(up_header(last_up(), 'X-Trace-Id'), $id, 'request-id: X-Trace-Id sent upstream');
is(up_header(last_up(), 'X-Request-Id'), $id, 'request-id: X-Request-Id sent upstream too');

$r = req('GET', '/rid/x', 'X-Request-Id' => 'client-chosen-id-123', 'X-Trace-Id' => 'spoofed');
is($r->{headers}{'x-trace-id'}, $r->{headers}{'x-request-id'}, 'request-id: client id carried into X-Trace-Id');
my @tid = grep { lc $_->[0] eq 'x-trace-id' } @{ last_up()->{headers} };
is(scalar(@tid), 1, 'request-id: one X-Trace-Id upstream (the client\'s replaced)');
is($tid[0][1], $r->{headers}{'x-request-id'}, 'request-id: the client\'s X-Trace-Id is overwritten');

$r = req('GET', '/rid-quiet/x');
ok(!exists $r->{headers}{'x-correlation-id'}, 'request-id response false: not on the response');
is(up_header(last_up(), 'X-Correlation-Id'), $r->{headers}{'x-request-id'},
    'request-id response false: still sent upstream');

# --- response-rewrite ---------------------------------------------------------------

$r = req('GET', '/rr/x');
is($r->{status}, 202, 'response-rewrite: status');
is($r->{body}, 'rewritten', 'response-rewrite: body');
is($r->{headers}{'x-new'}, 'v', 'response-rewrite: header set');
ok(!exists $r->{headers}{'x-upstream'}, 'response-rewrite: header removed');
ok(!exists $r->{headers}{'content-length'} || $r->{headers}{'content-length'} eq '9',
    'response-rewrite: no stale Content-Length');
is(ups(), 1, 'response-rewrite: the upstream was asked');

$r = req('GET', '/rr-404/status/404');
is($r->{status}, 200, 'response-rewrite statuses [404]: 404 rewritten to 200');
is($r->{headers}{'x-was'}, 'was-404', 'response-rewrite statuses: header set');
$r = req('GET', '/rr-404/fine');
is($r->{status}, 200, 'response-rewrite statuses: a 200 passes');
ok(!exists $r->{headers}{'x-was'}, 'response-rewrite statuses: a 200 is untouched');
$r = req('GET', '/rr-404/status/500');
is($r->{status}, 500, 'response-rewrite statuses: a 500 is untouched');

# --- error-mapping ----------------------------------------------------------------

sub mapped {
    my ($r, $status, $code, $message, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    is($r->{status}, $status, "$name: status $status");
    like($r->{headers}{'content-type'} // '', qr{^application/json}, "$name: JSON");
    my $j = json_body($r) // {};
    is($j->{code}, $code, "$name: code $code");
    if (ref $message) { like($j->{message} // '', $message, "$name: message") }
    else { is($j->{message}, $message, "$name: message") }
    ok($j->{request_id} && $j->{request_id} eq ($r->{headers}{'x-request-id'} // ''),
        "$name: request_id = X-Request-Id");
}

$r = req('GET', '/em-down/x');
mapped($r, 200, 10502, 'service unavailable', 'error-mapping 502 (upstream closed)');

$r = req('GET', '/em-slow/sleep/1500');
mapped($r, 504, 10504, qr/\S/, 'error-mapping 504 (read timeout 200ms)');
is(ups(), 1, 'error-mapping 504: the request did reach the slow upstream once');

$r = req('GET', '/em-default/x');
mapped($r, 299, 1, 'oops', 'error-mapping default rule and http_status');

$r = req('GET', '/em-other/x');
gw_error_ok($r, 502, 'error-mapping without a rule for the kind: the gateway error');

$r = req('GET', '/em-up/status/503');
mapped($r, 200, 30503, 'busy', 'error-mapping upstream_statuses: an upstream 503 replaced');
is(ups(), 1, 'error-mapping upstream_statuses: the upstream was asked once');
$r = req('GET', '/em-up/status/500');
is($r->{status}, 500, 'error-mapping upstream_statuses: a 500 not listed passes');
is_deeply(json_body($r), { name => 'a', status => 500 }, 'error-mapping upstream_statuses: its body untouched');
$r = req('GET', '/em-up/fine');
is($r->{status}, 200, 'error-mapping upstream_statuses: a 200 passes');

$r = req('GET', '/em-body/status/500');
mapped($r, 500, 20500, 'internal', 'error-mapping upstream_body: code table by the upstream code');
ok(!exists $r->{headers}{'content-length'} || $r->{headers}{'content-length'} == length $r->{body},
    'error-mapping upstream_body: framing matches the new body');
$r = req('GET', '/em-body/fine');
is($r->{status}, 200, 'error-mapping upstream_body: a 200 passes');
is((json_body($r) // {})->{uri}, '/fine', 'error-mapping upstream_body: a 200 body untouched');

# --- degradation ----------------------------------------------------------------------

$r = req('GET', '/deg-down/x');
is($r->{status}, 200, 'degradation on upstream_error: 200');
is_deeply(json_body($r), { status => 'PENDING' }, 'degradation: the JSON fallback');
is($r->{headers}{'x-degraded'}, 'yes', 'degradation: fallback headers');
ok(wait_for(sub { gateway_log($gw) =~ /degradation: route deg-down answered a fallback for upstream_error \(1 so far\)/ }, 3),
    'degradation: log line with the count');
req('GET', '/deg-down/y');
ok(wait_for(sub { gateway_log($gw) =~ /degradation: route deg-down answered a fallback for upstream_error \(2 so far\)/ }, 3),
    'degradation: the count grows');

$r = req('GET', '/deg-slow/sleep/1500');
is($r->{status}, 203, 'degradation on timeout: status');
is($r->{body}, 'try later', 'degradation on timeout: text body');
like($r->{headers}{'content-type'} // '', qr{^text/plain}, 'degradation: text content type');

$r = req('GET', '/deg-up/status/503');
is($r->{status}, 200, 'degradation upstream_statuses: an upstream 503 degraded');
is_deeply(json_body($r), { cached => JSON::PP::true }, 'degradation upstream_statuses: the fallback');
$r = req('GET', '/deg-up/status/502');
is($r->{status}, 502, 'degradation upstream_statuses: a 502 not listed passes');

$r = req('GET', '/deg-other/x');
gw_error_ok($r, 502, 'degradation on another kind: the gateway error');

$r = req('GET', '/deg-handler/x');
is($r->{status}, 200, 'degradation handler (module next to the plugins): 200')
  or diag("log: " . join "\n", grep { /degradation/ } split /\n/, gateway_log($gw));
is_deeply(json_body($r), { status => 'PENDING', kind => 'upstream_error' }, 'degradation handler: its body');
is($r->{headers}{'retry-after'}, '5', 'degradation handler: its headers');

$r = req('GET', '/deg-both/x');
is($r->{status}, 200, 'error-mapping without a rule leaves the error to degradation');
is_deeply(json_body($r), { from => 'degradation' }, 'error-mapping + degradation: degradation answered');

my @died = gateway_log($gw) =~ /(master: worker \d+ .*(?:killed by signal|exited with status).*)/g;
is(scalar(@died), 0, 'gateway 1: no worker died') or diag(join "\n", @died);
is(stop_gateway($gw), 0, 'gateway 1: SIGTERM exit 0');

# --- a global error-mapping sees the 404 of a request with no route -------------------

my $gw2 = start_gateway(config => {
    gateway   => { plugin_paths => [$pdir] },
    upstreams => [{ name => 'a', nodes => ["127.0.0.1:$up->{port}"] }],
    plugins   => { 'error-mapping' => { statuses => { '404' => { code => 10404, message => 'no such api' } } },
                   'request-id' => { header => 'X-Trace-Id' } },
    routes    => [route('ok')],
});
clear_upstream_log($up);
$r = http_request($gw2->{port}, 'GET', '/nothing/here');
mapped($r, 404, 10404, 'no such api', 'global error-mapping on no route');
is(ups(), 0, 'no route: nothing upstream');
$r = http_request($gw2->{port}, 'GET', '/ok/x');
is($r->{status}, 200, 'global plugins: a routed request passes');
is($r->{headers}{'x-trace-id'}, $r->{headers}{'x-request-id'}, 'global request-id on a route');
@died = gateway_log($gw2) =~ /(master: worker \d+ .*(?:killed by signal|exited with status).*)/g;
is(scalar(@died), 0, 'gateway 2: no worker died') or diag(join "\n", @died);
is(stop_gateway($gw2), 0, 'gateway 2: SIGTERM exit 0');

stop_all();
done_testing();
