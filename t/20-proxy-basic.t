# Plain proxying: status and body from the upstream, the headers the gateway
# adds and removes, the gateway's own errors (404, 502, 504), response
# framing (chunked, large, HEAD, 204).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my $up   = start_upstream(name => 'a');
my $dead = free_port(); # nothing listens here

my $node = "127.0.0.1:$up->{port}";
my $gw = start_gateway(config => {
    upstreams => [
        { name => 'a', nodes => [$node], retries => 0,
          timeouts => { connect => '1s', send => '5s', read => '5s' },
          keepalive => { size => 8, idle_timeout => '60s' } },
        { name => 'slow', nodes => [$node], retries => 0,
          timeouts => { connect => '1s', send => '5s', read => '300ms' } },
        { name => 'dead', nodes => ["127.0.0.1:$dead"], retries => 0,
          timeouts => { connect => '1s', send => '1s', read => '1s' } },
    ],
    routes => [
        { name => 'api', match => { host => 'localhost', path => '/api/*' },
          upstream => 'a', strip_prefix => '/api' },
        { name => 'slow', match => { host => 'localhost', path => '/slow/*' },
          upstream => 'slow', strip_prefix => '/slow' },
        { name => 'budget', match => { host => 'localhost', path => '/budget/*' },
          upstream => 'a', strip_prefix => '/budget', timeout => '300ms' },
        { name => 'dead', match => { host => 'localhost', path => '/dead/*' },
          upstream => 'dead', strip_prefix => '/dead' },
    ],
});
my $port = $gw->{port};

my $DATE_RE = qr/^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$/;
my $RID_RE  = qr/^[A-Za-z0-9._:-]{1,128}$/;
my $TP_RE   = qr/^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

sub last_request { (upstream_requests($up))[-1] // {} }

sub hdr {
    my ($rec, $name) = @_;
    my @v = map { $_->[1] } grep { lc $_->[0] eq lc $name } @{ $rec->{headers} // [] };
    return @v ? join(', ', @v) : undef;
}

# --- GET ---------------------------------------------------------------
{
    clear_upstream_log($up);
    my $r = http_request($port, 'GET', '/api/hello?x=1&y=2', close_wait => 0.2);
    is($r->{status}, 200, 'GET: 200');
    is($r->{headers}{'x-upstream'}, 'a', 'GET: answered by upstream a');
    my $j = json_body($r) // {};
    is($j->{uri}, '/hello?x=1&y=2', 'GET: prefix stripped, query kept');
    is($j->{method}, 'GET', 'GET: method');
    like($r->{headers}{date} // '', $DATE_RE, 'GET: Date header');
    like($r->{headers}{'x-request-id'} // '', $RID_RE, 'GET: X-Request-Id returned');
    ok(!$r->{closed}, 'GET: connection kept alive');
    my @reqs = upstream_requests($up);
    is(scalar @reqs, 1, 'GET: one request upstream');
    is($reqs[0]{version}, 'HTTP/1.1', 'GET: HTTP/1.1 upstream');
    is($reqs[0]{body}, '', 'GET: no body upstream');
}

# --- POST with a Content-Length body -----------------------------------
{
    clear_upstream_log($up);
    my $body = '{"hello":"world"}';
    my $r = http_request($port, 'POST', '/api/items', body => $body,
        headers => ['Content-Type' => 'application/json']);
    is($r->{status}, 200, 'POST: 200');
    is((json_body($r) // {})->{body}, $body, 'POST: body echoed');
    my $rec = last_request();
    is($rec->{method}, 'POST', 'POST: method upstream');
    is($rec->{body}, $body, 'POST: body upstream');
    is(hdr($rec, 'Content-Length'), length $body, 'POST: same Content-Length');
    is($rec->{chunked}, 0, 'POST: not re-chunked');
    is(hdr($rec, 'Content-Type'), 'application/json', 'POST: Content-Type kept');
}

# --- a larger request body streams through --------------------------------
{
    clear_upstream_log($up);
    my $body = join '', map { chr(65 + $_ % 26) } 0 .. 300_000 - 1;
    my $r = http_request($port, 'PUT', '/api/upload', body => $body, timeout => 20);
    is($r->{status}, 200, 'PUT 300 kB: 200');
    my $rec = last_request();
    is(length($rec->{body} // ''), length $body, 'PUT 300 kB: whole body upstream');
    ok(($rec->{body} // '') eq $body, 'PUT 300 kB: same bytes');
}

# --- a chunked request body is forwarded re-chunked ------------------------
{
    clear_upstream_log($up);
    my $c = gw_connect($port);
    $c->write("POST /api/chunked-in HTTP/1.1\r\nHost: localhost\r\n"
        . "Transfer-Encoding: chunked\r\n\r\n"
        . "5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n");
    my $r = $c->read_response;
    is($r && $r->{status}, 200, 'chunked request: 200');
    my $rec = last_request();
    is($rec->{body}, 'hello world', 'chunked request: body de-framed upstream');
    is($rec->{chunked}, 1, 'chunked request: sent chunked upstream');
    like(hdr($rec, 'Transfer-Encoding') // '', qr/^chunked$/i,
        'chunked request: Transfer-Encoding: chunked');
    ok(!defined hdr($rec, 'Content-Length'), 'chunked request: no Content-Length');
    is_deeply($rec->{trailers}, [], 'chunked request: trailers dropped');
    $c->close;
}

# --- headers sent upstream ----------------------------------------------
{
    clear_upstream_log($up);
    my $tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    my $r = http_request($port, 'GET', '/api/headers', headers => [
        'X-Request-Id'        => 'abc-123.X:y_z',
        'traceparent'         => $tp,
        'X-Forwarded-For'     => '10.0.0.1',
        'Connection'          => 'keep-alive, X-Drop-Me',
        'X-Drop-Me'           => 'secret',
        'Keep-Alive'          => 'timeout=5',
        'Proxy-Connection'    => 'keep-alive',
        'TE'                  => 'trailers',
        'Trailer'             => 'X-Foo',
        'Upgrade'             => 'h2c',
        'Proxy-Authorization' => 'Basic Zm9vOmJhcg==',
        'X-Custom'            => 'kept',
    ]);
    is($r->{status}, 200, 'headers: 200');
    is($r->{headers}{'x-request-id'}, 'abc-123.X:y_z',
        'headers: sane X-Request-Id returned as sent');
    my $rec = last_request();
    is(hdr($rec, 'Host'), 'localhost', 'upstream: original Host');
    is(hdr($rec, 'X-Request-Id'), 'abc-123.X:y_z', 'upstream: X-Request-Id kept');
    my ($trace, $parent, $flags) = (hdr($rec, 'traceparent') // '') =~ $TP_RE;
    is($trace, '0af7651916cd43dd8448eb211c80319c', 'upstream: trace id propagated');
    ok(defined $parent && $parent ne '0000000000000000', 'upstream: valid parent id');
    is(hdr($rec, 'X-Forwarded-For'), '10.0.0.1, 127.0.0.1',
        'upstream: client ip appended to X-Forwarded-For');
    is(hdr($rec, 'X-Forwarded-Proto'), 'http', 'upstream: X-Forwarded-Proto');
    is(hdr($rec, 'X-Forwarded-Host'), 'localhost', 'upstream: X-Forwarded-Host');
    is(hdr($rec, 'X-Custom'), 'kept', 'upstream: end-to-end header kept');
    for my $h ('Connection', 'Keep-Alive', 'Proxy-Connection', 'TE', 'Trailer',
               'Upgrade', 'Proxy-Authorization', 'X-Drop-Me') {
        ok(!defined hdr($rec, $h), "upstream: hop-by-hop $h removed")
          or diag("$h: " . hdr($rec, $h));
    }
}

# --- generated ids --------------------------------------------------------
{
    clear_upstream_log($up);
    my $r = http_request($port, 'GET', '/api/gen');
    my $rid = $r->{headers}{'x-request-id'} // '';
    like($rid, $RID_RE, 'generated X-Request-Id returned');
    my $rec = last_request();
    is(hdr($rec, 'X-Request-Id'), $rid, 'upstream got the same X-Request-Id');
    my ($trace, $parent, $flags) = (hdr($rec, 'traceparent') // '') =~ $TP_RE;
    ok(defined $trace && $trace ne '0' x 32, 'traceparent started')
      or diag(hdr($rec, 'traceparent'));
    is($flags, '01', 'started traceparent is sampled');
    ok(!defined hdr($rec, 'X-Forwarded-For') || hdr($rec, 'X-Forwarded-For') eq '127.0.0.1',
        'X-Forwarded-For is the client ip');

    my $r2 = http_request($port, 'GET', '/api/gen');
    isnt($r2->{headers}{'x-request-id'}, $rid, 'generated ids differ');
}

for my $bad ('has spaces in it', 'x' x 129, 'semi;colon', '') {
    clear_upstream_log($up);
    my $r = http_request($port, 'GET', '/api/rid', headers => ['X-Request-Id' => $bad]);
    my $rid = $r->{headers}{'x-request-id'} // '';
    my $label = length $bad > 20 ? 'a 129-char id' : "'$bad'";
    isnt($rid, $bad, "insane X-Request-Id $label replaced");
    like($rid, $RID_RE, "insane X-Request-Id $label: generated one is sane");
    is(hdr(last_request(), 'X-Request-Id'), $rid, "insane X-Request-Id $label: upstream got the new one");
}

for my $bad ('garbage',
             '00-00000000000000000000000000000000-b7ad6b7169203331-01',
             '00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01',
             '00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01',
             'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01') {
    clear_upstream_log($up);
    http_request($port, 'GET', '/api/tp', headers => [traceparent => $bad]);
    my $tp = hdr(last_request(), 'traceparent') // '';
    like($tp, $TP_RE, "invalid traceparent '$bad': a valid one sent");
    isnt($tp, $bad, "invalid traceparent '$bad': not forwarded as is");
    my ($trace) = $tp =~ $TP_RE;
    ok(defined $trace && $trace ne '0' x 32, "invalid traceparent '$bad': new trace id");
}

# --- the upstream's own statuses pass through --------------------------------
{
    my $r = http_request($port, 'GET', '/api/status/503');
    is($r->{status}, 503, 'upstream 503 passes through');
    is((json_body($r) // {})->{name}, 'a', 'upstream 503: the upstream body, not a gateway error');
    $r = http_request($port, 'GET', '/api/status/404');
    is($r->{status}, 404, 'upstream 404 passes through');
    is((json_body($r) // {})->{name}, 'a', 'upstream 404: the upstream body');
    $r = http_request($port, 'DELETE', '/api/status/201');
    is($r->{status}, 201, 'DELETE: upstream 201 passes through');
}

# --- no route -------------------------------------------------------------
{
    clear_upstream_log($up);
    my $r = http_request($port, 'GET', '/api/x', host => 'nowhere.example');
    gw_error_ok($r, 404, 'no route (host)');
    $r = http_request($port, 'GET', '/not-routed', close_wait => 0.2);
    gw_error_ok($r, 404, 'no route (path)');
    ok(!$r->{closed}, 'no route: connection kept');
    is(scalar(upstream_requests($up)), 0, 'no route: nothing upstream');
}

# --- 502: connect refused, reset, bad upstream responses -------------------
{
    my $r = http_request($port, 'GET', '/dead/x');
    gw_error_ok($r, 502, 'connect refused');
    for my $p ('/api/drop', '/api/bad/cl-te', '/api/bad/two-cl', '/api/bad/status') {
        is(http_request($port, 'GET', '/api/x')->{status}, 200, "upstream $p: a kept-alive connection first");
        clear_upstream_log($up);
        my $r = http_request($port, 'GET', $p);
        gw_error_ok($r, 502, "upstream $p");
        my @got = upstream_requests($up);
        if ($p eq '/api/drop') {
            # a close before any answer on a kept-alive connection: sent
            # once more on a new one (docs/upstreams.md), and no more
            is(scalar @got, 2, "upstream $p: sent again once, on a new connection");
            isnt($got[0]{conn} // '', $got[1]{conn} // '', "upstream $p: two connections");
        } else {
            is(scalar @got, 1, "upstream $p: sent once (no retry)");
        }
    }
    unlike(gateway_log($gw), qr/\b(?:AddressSanitizer|Segmentation)\b/, '502s: no crash in the log');
}

# --- 504: upstream read timeout and route budget ----------------------------
{
    my $r = http_request($port, 'GET', '/slow/sleep/2000');
    gw_error_ok($r, 504, 'upstream read timeout');
    $r = http_request($port, 'GET', '/budget/sleep/2000');
    gw_error_ok($r, 504, 'route timeout budget');
    $r = http_request($port, 'GET', '/slow/sleep/10');
    is($r->{status}, 200, 'a fast answer within the read timeout');
}

# --- response framing --------------------------------------------------------
{
    my $c = gw_connect($port);
    my $r = $c->request('GET', '/api/chunked');
    is($r && $r->{status}, 200, 'chunked response: 200');
    is($r && $r->{body}, 'chunk-one|chunk-two|chunk-three', 'chunked response: body intact');
    ok(!($r->{headers}{'transfer-encoding'} && $r->{headers}{'content-length'}),
        'chunked response: not both TE and CL');

    $r = $c->request('GET', '/api/big/1000000');
    is($r && length($r->{body}), 1000000, 'big response: 1000000 bytes');
    ok($r && $r->{body} =~ /^x+$/, 'big response: content intact');

    $r = $c->request('HEAD', '/api/big/100');
    is($r && $r->{status}, 200, 'HEAD: 200');
    is($r && $r->{headers}{'content-length'}, 100, 'HEAD: Content-Length of the GET');
    is($r && $r->{body}, '', 'HEAD: no body');

    $r = $c->request('GET', '/api/nobody/204');
    is($r && $r->{status}, 204, '204 passes');
    is($r && $r->{body}, '', '204: no body');
    ok(!($r && defined $r->{headers}{'transfer-encoding'}), '204: no Transfer-Encoding');

    $r = $c->request('GET', '/api/status/304');
    is($r && $r->{status}, 304, '304 passes');

    $r = $c->request('GET', '/api/after');
    is($r && $r->{status}, 200, 'connection usable after HEAD, 204, 304');
    is($r && (json_body($r) // {})->{uri}, '/after', 'and in sync');
    ok(!$c->wait_closed(0.1), 'still open');
    $c->close;
}

# --- an upstream that closes: the next request still works ------------------
{
    my $c = gw_connect($port);
    my $r = $c->request('GET', '/api/close');
    is($r && $r->{status}, 200, 'upstream Connection: close: 200');
    unlike($r->{headers}{connection} // '', qr/close/i,
        'upstream Connection: close not passed to the client');
    for my $i (1 .. 3) {
        $r = $c->request('POST', "/api/after-close/$i", body => "b$i");
        is($r && $r->{status}, 200, "after upstream close: request $i answered");
    }
    $c->close;
}

# --- upstream keep-alive: sequential requests share a connection -----------
{
    clear_upstream_log($up);
    for my $i (1 .. 5) {
        http_request($port, 'GET', "/api/reuse/$i");
    }
    my @conns = map { $_->{conn} } upstream_requests($up);
    is(scalar @conns, 5, 'keep-alive pool: 5 requests upstream');
    my %distinct = map { $_ => 1 } @conns;
    is(scalar keys %distinct, 1, 'keep-alive pool: one upstream connection reused');
}

my $r = http_request($port, 'GET', '/api/alive');
is($r->{status}, 200, 'gateway still serving');
is(stop_gateway($gw), 0, 'SIGTERM: exit 0');
stop_all();
done_testing();
