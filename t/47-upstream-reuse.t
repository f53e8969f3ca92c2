# A node that closes a kept-alive connection at the moment the gateway
# reuses it (its idle timeout crossing our request): an idempotent request
# without a body is sent once more on a new connection to the same node,
# counted in gateway_upstream_reused_conn_retries_total, outside `retries`
# and without a failure for passive health; a POST, or a request with a
# body, gets 502 and reaches the node once; a node that closes new
# connections too gets one new connection, not a loop; the route's timeout
# bounds the new attempt.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;
use Time::HiRes qw(time sleep);

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my $dir  = tmpdir();
my $mode = "$dir/origin-mode";
my $log  = "$dir/origin.log";

sub set_mode {
    open my $fh, '>', $mode or die "$mode: $!";
    print $fh $_[0];
    close $fh;
}

# Per connection (each one is its own process): the head count on it. By
# the mode in $mode, read at each head:
#   stale  the first request of a connection is answered with keep-alive,
#          the next one on it is read and the connection closed unanswered
#   never  every request is read and its connection closed unanswered
#   hang   a connection's first request waits 3 s, then as never
# Each head is logged as "CONNECTION SEQ METHOD TARGET".
my $seq = 0;
set_mode('stale');
my $origin = start_scripted_origin(answer => sub {
    my ($head) = @_;
    $seq++;
    my ($m, $t) = $head =~ /^(\S+) (\S+)/;
    open my $lf, '>>', $log or die "$log: $!";
    syswrite($lf, "$$ $seq $m $t\n");
    close $lf;
    open my $mf, '<', $mode or die "$mode: $!";
    my $md = <$mf>;
    close $mf;
    if ($md eq 'stale' && $seq == 1) {
        return (["HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Conn: $$\r\n\r\nfresh!"], 0);
    }
    sleep 3 if $md eq 'hang' && $seq == 1;
    return ([], 1);
});
my $node = "127.0.0.1:$origin->{port}";

sub seen {
    my ($target) = @_;
    open my $fh, '<', $log or return ();
    return grep { (split / /)[3] eq $target } map { chomp; $_ } <$fh>;
}

my %t = (connect => '1s', send => '5s', read => '5s');
# one node each, so that nothing but the same node can answer; separate
# upstreams keep separate pools
my @ups = (
    { name => 'get', retries => 0, nodes => [$node], timeouts => {%t},
      health => { passive => { unhealthy => 2, window => '10s' } } },
    { name => 'post', nodes => [$node], timeouts => {%t} },
    { name => 'never', retries => 1, nodes => [$node], timeouts => {%t} },
    { name => 'hang', nodes => [$node], timeouts => {%t} },
);
my $gw = start_gateway(config => {
    upstreams => \@ups,
    routes => [ map { { name => $_->{name}, match => { path => "/$_->{name}/*" },
                        upstream => $_->{name}, strip_prefix => "/$_->{name}",
                        ($_->{name} eq 'hang' ? (timeout => '600ms') : ()) } } @ups ],
});

sub req {
    my ($method, $path, %o) = @_;
    my $c = gw_connect($gw->{port}, timeout => 10 * mult());
    my $r = $c->request($method, $path, %o);
    $c->close;
    return $r // { status => 0, headers => {}, body => '' };
}

sub metrics { http_request($gw->{status_port}, 'GET', '/metrics')->{body} }

sub retries_of {
    my ($up) = @_;
    my $m = metrics();
    return $m =~ /^gateway_upstream_reused_conn_retries_total\{upstream="\Q$up\E"\} (\d+)$/m
      ? $1 : undef;
}

# --- an idempotent request: sent again on a new connection -----------------
{
    my $r = req('GET', '/get/first');
    is($r->{status}, 200, 'GET on a new connection: 200');
    my $pooled = $r->{headers}{'x-conn'} // '';
    for my $i (1 .. 3) {
        $r = req('GET', "/get/again$i");
        is($r->{status}, 200, "GET $i on a connection the node closes at reuse: 200");
        is($r->{body}, 'fresh!', "GET $i: the body from the new connection");
        my @s = seen("/again$i");
        is(scalar @s, 2, "GET $i: the node saw it twice, once per connection") or diag(explain(\@s));
        my ($old, $new) = map { (split / /, $_ // "")[0] } @s[0, 1];
        $_ //= '' for $old, $new;
        is($old, $pooled, "GET $i: first on the pooled connection");
        isnt($new, $old, "GET $i: then on another connection");
        is($r->{headers}{'x-conn'} // '', $new, "GET $i: answered by that new connection");
        is((split / /, $s[1] // '')[1] // 0, 1, "GET $i: which was new (its first request)");
        $pooled = $new;
    }
    is(retries_of('get'), 3, 'gateway_upstream_reused_conn_retries_total{upstream="get"} counts 3');
    my $m = metrics();
    like($m, qr/^gateway_upstream_nodes\{upstream="get",state="healthy"\} 1$/m,
        'passive health (unhealthy: 2) did not count the closed connections');
    unlike($m, qr/^gateway_upstream_requests_total\{upstream="get",[^}]*status="error"\}/m,
        'no attempt on a closed kept-alive connection counted as an upstream error');
    like($m, qr/^gateway_upstream_requests_total\{upstream="get",[^}]*status="200"\} 4$/m,
        'the four answered attempts are counted');
    like(gateway_log($gw), qr/kept-alive connection closed, sending again on a new one/,
        'the error log says why the request went out again');
}

# --- POST, and a request with a body: never sent twice ----------------------
{
    is(req('GET', '/post/prime')->{status}, 200, 'POST case: the pool is primed');
    my $r = req('POST', '/post/p', body => 'pay once');
    gw_error_ok($r, 502, 'POST on a connection the node closes at reuse');
    my @s = seen('/p');
    is(scalar @s, 1, 'POST: the node saw it once') or diag(explain(\@s));

    is(req('GET', '/post/prime2')->{status}, 200, 'PUT case: the pool is primed');
    $r = req('PUT', '/post/put', body => 'a body');
    gw_error_ok($r, 502, 'PUT with a body on a connection the node closes at reuse');
    @s = seen('/put');
    is(scalar @s, 1, 'PUT with a body: the node saw it once (the body is not kept)')
      or diag(explain(\@s));
    is(retries_of('post'), 0, 'no new-connection retry counted for them');
}

# --- a node that closes new connections too: one retry, then 502 -----------
{
    is(req('GET', '/never/prime')->{status}, 200, 'closing node: the pool is primed');
    set_mode('never');
    my $r = req('GET', '/never/x');
    gw_error_ok($r, 502, 'GET to a node that closes every connection');
    sleep 0.3;
    my @s = seen('/x');
    is(scalar @s, 2, 'it went out twice: the pooled connection and one new one')
      or diag(explain(\@s));
    is(retries_of('never'), 1, 'one new-connection retry counted');
    set_mode('stale');
}

# --- the route's timeout bounds the new attempt ---------------------------------
{
    is(req('GET', '/hang/prime')->{status}, 200, 'slow node: the pool is primed');
    set_mode('hang');
    my $t0 = time;
    my $r = req('GET', '/hang/slow');
    my $took = time - $t0;
    gw_error_ok($r, 504, 'GET whose new connection hangs: the route timeout answers');
    ok($took < 2.5 * mult(), sprintf('after the 600ms route timeout, not the 5 s read timeout (%.2fs)', $took));
    is(scalar(my @s = seen('/slow')), 2, 'the node saw it on both connections');
    is(retries_of('hang'), 1, 'one new-connection retry counted');
    set_mode('stale');
}

stop_all();
done_testing();
