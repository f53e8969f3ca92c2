# Keep-alive and pipelining: many requests on one connection, pipelined
# requests answered in order, a malformed request in a pipeline, HTTP/1.0
# and Connection: close semantics.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use GwTest;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my $up = start_upstream(name => 'a');
my $gw = start_gateway(config => {
    upstreams => [{ name => 'a', nodes => ["127.0.0.1:$up->{port}"], retries => 0,
                    keepalive => { size => 4, idle_timeout => '30s' } }],
    routes    => [{ name => 'all', match => { path => '/*' }, upstream => 'a' }],
});
my $port = $gw->{port};
my $H = "Host: localhost\r\n";

sub uri_of { (json_body($_[0]) // {})->{uri} // '' }

# --- 100 requests on one connection --------------------------------------------
{
    clear_upstream_log($up);
    my $c = gw_connect($port);
    my ($ok, $bad) = (0, '');
    for my $i (1 .. 100) {
        my $r = $i % 3 == 0
          ? $c->request('POST', "/seq/$i", body => "body-$i")
          : $c->request('GET', "/seq/$i");
        if ($r && $r->{status} == 200 && uri_of($r) eq "/seq/$i"
            && ($r->{headers}{connection} // '') !~ /close/i) {
            $ok++;
        }
        else {
            $bad ||= "request $i: " . ($r ? "status $r->{status}" : 'no answer');
            last unless $r;
        }
    }
    is($ok, 100, '100 requests on one connection') or diag($bad);
    ok(!$c->wait_closed(0.1), 'still open after 100');
    $c->close;
    my @reqs = upstream_requests($up);
    is(scalar @reqs, 100, '100 requests reached the upstream');
    is($reqs[2]{body} // '', 'body-3', 'bodies kept with their requests');
}

# --- pipelining --------------------------------------------------------------
{
    clear_upstream_log($up);
    my $raw = "GET /p/1 HTTP/1.1\r\n$H\r\n"
      . "POST /p/2 HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nxyz"
      . "GET /p/3 HTTP/1.1\r\n$H\r\n";
    my $c = gw_connect($port);
    $c->write($raw);
    my @r = map { $c->read_response } 1 .. 3;
    is_deeply([map { $_ ? uri_of($_) : '' } @r], ['/p/1', '/p/2', '/p/3'],
        'three pipelined requests: answers in order');
    is((json_body($r[1] // {}) // {})->{body}, 'xyz', 'pipelined POST: its body');
    ok(!$c->wait_closed(0.1), 'pipeline: connection stays open');
    $c->close;
}

{
    # a slow first request must not let the fast ones overtake it
    my $raw = "GET /sleep/300 HTTP/1.1\r\n$H\r\n"
      . "GET /fast/2 HTTP/1.1\r\n$H\r\n"
      . "HEAD /big/10 HTTP/1.1\r\n$H\r\n"
      . "GET /chunked HTTP/1.1\r\n$H\r\n"
      . "GET /fast/5 HTTP/1.1\r\n$H\r\n";
    my $c = gw_connect($port);
    $c->write($raw);
    my @r = ($c->read_response, $c->read_response, $c->read_response(head => 1),
             $c->read_response, $c->read_response);
    is(uri_of($r[0] // {}), '/sleep/300', 'slow first: answered first');
    is(uri_of($r[1] // {}), '/fast/2', 'then the fast one');
    is(($r[2] // {})->{headers}{'content-length'}, 10, 'then HEAD (no body)');
    is(($r[3] // {})->{body}, 'chunk-one|chunk-two|chunk-three', 'then the chunked answer');
    is(uri_of($r[4] // {}), '/fast/5', 'then the last one');
    $c->close;
}

{
    # many in one write
    my $raw = join '', map { "GET /many/$_ HTTP/1.1\r\n$H\r\n" } 1 .. 50;
    my $c = gw_connect($port);
    $c->write($raw);
    my @uris = map { my $r = $c->read_response; $r ? uri_of($r) : '' } 1 .. 50;
    is_deeply(\@uris, [map { "/many/$_" } 1 .. 50], '50 pipelined requests in order');
    $c->close;
}

{
    # a chunked body in the middle of a pipeline
    my $raw = "GET /m/1 HTTP/1.1\r\n$H\r\n"
      . "POST /m/2 HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
      . "GET /m/3 HTTP/1.1\r\n$H\r\n";
    my $c = gw_connect($port);
    $c->write($raw);
    my @r = map { $c->read_response } 1 .. 3;
    is_deeply([map { $_ ? uri_of($_) : '' } @r], ['/m/1', '/m/2', '/m/3'],
        'pipeline with a chunked body: in order');
    is((json_body($r[1] // {}) // {})->{body}, 'abc', 'pipeline with a chunked body: body');
    $c->close;
}

# --- a malformed request in a pipeline ------------------------------------------
{
    clear_upstream_log($up);
    my $raw = "GET /ok/1 HTTP/1.1\r\n$H\r\n"
      . "POST /bad/2 HTTP/1.1\r\n${H}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab"
      . "GET /never/3 HTTP/1.1\r\n$H\r\n";
    my ($resp, $closed) = raw_exchange($port, $raw, timeout => 3);
    my @r = parse_responses($resp);
    is(scalar @r, 2, 'malformed second: two answers');
    is($r[0] && $r[0]{status}, 200, 'malformed second: first answered 200');
    is($r[0] && uri_of($r[0]), '/ok/1', 'malformed second: first is /ok/1');
    gw_error_ok($r[1] // {}, 400, 'malformed second');
    like(($r[1] // {})->{headers}{connection} // '', qr/close/i, 'malformed second: Connection: close');
    ok($closed, 'malformed second: connection closed');
    sleep 0.1;
    is_deeply([map { $_->{uri} } upstream_requests($up)], ['/ok/1'],
        'malformed second: only the first reached the upstream');
}

{
    # a request smuggled behind a body the gateway must not misframe
    clear_upstream_log($up);
    my $raw = "POST /ok/1 HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
      . "0\r\n\r\nGET /smuggled HTTP/1.1\r\n$H\r\n";
    my ($resp, $closed) = raw_exchange($port, $raw, timeout => 3);
    my @r = parse_responses($resp);
    is(scalar @r, 1, 'CL+TE then a request: one answer');
    gw_error_ok($r[0] // {}, 400, 'CL+TE then a request');
    ok($closed, 'CL+TE then a request: closed');
    sleep 0.1;
    is(scalar(upstream_requests($up)), 0, 'CL+TE then a request: nothing upstream');
}

# --- HTTP/1.0 and Connection: close ---------------------------------------------
{
    my $c = gw_connect($port);
    $c->write("GET /v10 HTTP/1.0\r\n$H\r\n");
    my $r = $c->read_response;
    is($r && $r->{status}, 200, 'HTTP/1.0: 200');
    unlike(($r // {})->{headers}{connection} // '', qr/keep-alive/i, 'HTTP/1.0: no keep-alive offered');
    ok($c->wait_closed(2), 'HTTP/1.0 without keep-alive: closed after the response');
    $c->close;

    $c = gw_connect($port);
    $c->write("GET /v10ka/1 HTTP/1.0\r\n${H}Connection: keep-alive\r\n\r\n");
    $r = $c->read_response;
    is($r && $r->{status}, 200, 'HTTP/1.0 keep-alive: 200');
    like(($r // {})->{headers}{connection} // '', qr/keep-alive/i,
        'HTTP/1.0 keep-alive: Connection: keep-alive in the answer');
    ok(defined(($r // {})->{headers}{'content-length'}),
        'HTTP/1.0 keep-alive: a Content-Length (no chunked to a 1.0 client)');
    ok(!$c->wait_closed(0.3), 'HTTP/1.0 keep-alive: kept open');
    $c->write("GET /chunked HTTP/1.0\r\n${H}Connection: keep-alive\r\n\r\n");
    $r = $c->read_response;
    is($r && $r->{status}, 200, 'HTTP/1.0 keep-alive: second request');
    is(($r // {})->{body}, 'chunk-one|chunk-two|chunk-three',
        'HTTP/1.0: a chunked upstream answer arrives intact');
    ok(!(($r // {})->{headers}{'transfer-encoding'}), 'HTTP/1.0: never chunked to a 1.0 client');
    $c->close;

    $c = gw_connect($port);
    $c->write("GET /bye HTTP/1.1\r\n${H}Connection: close\r\n\r\n");
    $r = $c->read_response;
    is($r && $r->{status}, 200, 'Connection: close: 200');
    like(($r // {})->{headers}{connection} // '', qr/close/i, 'Connection: close: echoed in the answer');
    ok($c->wait_closed(2), 'Connection: close: socket closed');
    $c->close;

    # pipelined after Connection: close: the rest is not served
    clear_upstream_log($up);
    my ($resp, $closed) = raw_exchange($port,
        "GET /last HTTP/1.1\r\n${H}Connection: close\r\n\r\nGET /after HTTP/1.1\r\n$H\r\n",
        timeout => 3);
    my @r = parse_responses($resp);
    is(scalar @r, 1, 'requests after Connection: close are not answered');
    ok($closed, 'and the connection is closed');
    is_deeply([map { $_->{uri} } upstream_requests($up)], ['/last'],
        'nor sent upstream');
}

# --- the upstream's keep-alive pool is used across client connections --------
{
    clear_upstream_log($up);
    for my $i (1 .. 3) {
        my $c = gw_connect($port);
        $c->request('GET', "/pool/$i");
        $c->close;
    }
    my %conns = map { $_->{conn} => 1 } upstream_requests($up);
    is(scalar keys %conns, 1, 'one upstream connection serves three clients in turn');
}

my $r = http_request($port, 'GET', '/alive');
is($r->{status}, 200, 'gateway still serving');
is(stop_gateway($gw), 0, 'SIGTERM: exit 0');
stop_all();
done_testing();
