# Downstream timeouts: client_header (a silent or trickling client is cut
# off), keepalive (idle connections closed), client_body (a stalled body gets
# 408). Bounds are generous: they check that the timeout acts, not its
# precision (timing belongs to bench/).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use GwTest;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my $up = start_upstream(name => 'a');
my $gw = start_gateway(config => {
    gateway => { timeouts => { client_header => '1s', client_body => '1s',
                               keepalive => '1s', drain => '2s' } },
    upstreams => [{ name => 'a', nodes => ["127.0.0.1:$up->{port}"], retries => 0,
                    timeouts => { connect => '1s', send => '5s', read => '5s' } }],
    routes => [{ name => 'all', match => { path => '/*' }, upstream => 'a' }],
});
my $port = $gw->{port};
my $H = "Host: localhost\r\n";
my $M = mult();

# A 408 is optional when the client sent nothing; when there is one, it is
# the gateway's JSON error.
sub maybe_408 {
    my ($raw, $name) = @_;
    my ($r) = parse_responses($raw // '');
    if ($r) {
        gw_error_ok($r, 408, "$name: 408");
    }
    else {
        pass("$name: closed without an answer");
    }
}

# --- client_header: silent client -----------------------------------------------
{
    my $c = gw_connect($port);
    my $t0 = time;
    ok($c->wait_closed(4), 'silent client: closed');
    my $dt = time - $t0;
    cmp_ok($dt, '>=', 0.5, 'silent client: not closed at once');
    cmp_ok($dt, '<', 4 * $M, 'silent client: closed near client_header');
    maybe_408($c->{buf}, 'silent client');
    $c->close;
}

# --- client_header: half a head, then silence -------------------------------------
{
    my $c = gw_connect($port);
    $c->write("GET /f HTTP/1.1\r\n$H");
    my $t0 = time;
    ok($c->wait_closed(4), 'partial head: closed');
    my ($r) = parse_responses($c->{buf});
    ok(!$r || $r->{status} == 408, 'partial head: 408 or a plain close');
    gw_error_ok($r, 408, 'partial head') if $r;
    $c->close;
}

# --- client_header: a trickling client cannot keep the connection ----------------
{
    clear_upstream_log($up);
    my $head = "GET /trickle HTTP/1.1\r\n${H}X-Slow: " . ('s' x 60) . "\r\n\r\n";
    my $t = trickle($port, $head, delay => 0.3, step => 1, timeout => 3);
    ok($t->{closed}, 'trickling client: closed');
    cmp_ok($t->{sent}, '<', length $head, 'trickling client: cut off before the head was done');
    cmp_ok($t->{elapsed}, '<', 4 * $M, 'trickling client: closed near client_header, not per byte')
      or diag("elapsed $t->{elapsed}");
    maybe_408($t->{raw}, 'trickling client');
    is(scalar(upstream_requests($up)), 0, 'trickling client: nothing upstream');
}

# --- keepalive --------------------------------------------------------------
{
    my $c = gw_connect($port);
    my $r = $c->request('GET', '/ka');
    is($r && $r->{status}, 200, 'keepalive: first request');
    my $t0 = time;
    ok($c->wait_closed(4), 'keepalive: idle connection closed');
    my $dt = time - $t0;
    cmp_ok($dt, '>=', 0.5, 'keepalive: not closed at once');
    is($c->{buf}, '', 'keepalive: closed without sending anything');
    $c->close;

    # Requests spaced under the timeout keep the connection alive, even when
    # the total is well over it.
    $c = gw_connect($port);
    my $ok = 1;
    for my $i (1 .. 4) {
        my $r = $c->request('GET', "/spaced/$i");
        $ok &&= $r && $r->{status} == 200;
        sleep 0.5;
    }
    ok($ok, 'keepalive: the timer restarts with each request');
    $c->close;
}

# --- an upstream slower than the client timeouts is not cut off ----------------
{
    my $r = http_request($port, 'GET', '/sleep/1500');
    is($r->{status}, 200, 'a request waiting on its upstream is not hit by client timeouts');
}

# --- client_body: a stalled body ----------------------------------------------
{
    clear_upstream_log($up);
    my $c = gw_connect($port);
    $c->write("POST /stall HTTP/1.1\r\n${H}Content-Length: 100\r\n\r\n" . ('b' x 10));
    my $r = $c->read_response(timeout => 4);
    gw_error_ok($r // {}, 408, 'stalled Content-Length body');
    like(($r // {})->{headers}{connection} // '', qr/close/i, 'stalled body: Connection: close');
    ok($c->wait_closed(2), 'stalled body: connection closed');
    $c->close;
    sleep 0.2;
    is(scalar(grep { $_->{complete} } upstream_requests($up)), 0,
        'stalled body: no complete request upstream');

    clear_upstream_log($up);
    $c = gw_connect($port);
    $c->write("POST /stall HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    $r = $c->read_response(timeout => 4);
    gw_error_ok($r // {}, 408, 'stalled chunked body');
    ok($c->wait_closed(2), 'stalled chunked body: connection closed');
    $c->close;
    sleep 0.2;
    is(scalar(grep { $_->{complete} } upstream_requests($up)), 0,
        'stalled chunked body: no complete request upstream');
}

# --- a body sent steadily, slower in total than client_body --------------------
# Whether client_body bounds the gap between reads (as nginx) or the whole
# body is not part of the contract: the outcome is reported, not asserted.
{
    my $c = gw_connect($port);
    $c->write("POST /steady HTTP/1.1\r\n${H}Content-Length: 6\r\n\r\n");
    for my $b (split //, 'abcdef') {
        sleep 0.3;
        last unless $c->write($b);
    }
    my $r = $c->read_response(timeout => 4);
    note('a body sent a byte every 0.3 s for 1.8 s: '
        . ($r ? "status $r->{status}" : 'no answer'));
    ok(!$r || $r->{status} == 200 || $r->{status} == 408,
        'steady slow body: 200 or 408');
    $c->close;
}

my $r = http_request($port, 'GET', '/alive');
is($r->{status}, 200, 'gateway still serving');
is(stop_gateway($gw), 0, 'SIGTERM: exit 0');
stop_all();
done_testing();
