# A node that closes a kept-alive connection at the moment the gateway
# reuses it (its idle timeout crossing our request): an idempotent request
# without a body is sent once more on a new connection to the same node,
# counted in gateway_upstream_reused_conn_retries_total, outside `retries`
# and without a failure for passive health; a POST, or a request with a
# body, gets 502 and reaches the node once; a node that closes new
# connections too gets one new connection, not a loop; the route's timeout
# bounds the new attempt. A reset found by the write (nothing sent) is
# handled the same way.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use IO::Select;
use Socket qw(SOL_SOCKET SO_LINGER);
use POSIX ();

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

# For the write side: an origin that answers every request 200 with
# keep-alive, and resets (SO_LINGER 0) the one connection that sees the
# file $rst_now appear first (it takes the file away). Heads are logged as
# above, in $rst_log.
my $rst_now = "$dir/rst-now";
my $rst_log = "$dir/rst.log";
my @rst_pids;

sub start_resetting_origin {
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
        Listen => 16, ReuseAddr => 1) or die "listen: $!";
    my $parent = $$;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        $SIG{TERM} = sub { POSIX::_exit(0) };
        $SIG{CHLD} = 'IGNORE';
        my $sel = IO::Select->new($l);
        while (1) {
            POSIX::_exit(0) if getppid() != $parent;
            next unless $sel->can_read(0.5);
            my $c = $l->accept or next;
            my $kid = fork;
            next if !defined $kid || $kid;
            my ($buf, $n, $cs) = ('', 0, IO::Select->new($c));
            while (1) {
                POSIX::_exit(0) if getppid() == 1;
                if (unlink $rst_now) {
                    setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
                    POSIX::_exit(0);
                }
                next unless $cs->can_read(0.01);
                sysread($c, $buf, 65536, length $buf) or POSIX::_exit(0);
                while ((my $i = index($buf, "\r\n\r\n")) >= 0) {
                    my ($m, $t) = substr($buf, 0, $i + 4, '') =~ /^(\S+) (\S+)/;
                    $n++;
                    open my $lf, '>>', $rst_log or die;
                    syswrite($lf, "$$ $n $m $t\n");
                    close $lf;
                    syswrite($c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Conn: $$\r\n\r\nok");
                }
            }
        }
    }
    my $port = $l->sockport;
    close $l;
    push @rst_pids, $pid;
    return $port;
}

END { kill 'TERM', $_ for @rst_pids; waitpid($_, 0) for @rst_pids }

sub rst_seen {
    my ($target) = @_;
    open my $fh, '<', $rst_log or return ();
    return grep { (split / /)[3] eq $target } map { chomp; $_ } <$fh>;
}

# Blocks the worker in the access phase for X-Spin seconds: a reset that
# arrives meanwhile is only seen when the request is written.
my $pdir = "$dir/plugins";
mkdir $pdir or die "$pdir: $!";
open my $pf, '>', "$pdir/t-spin.lua" or die "$pdir: $!";
print $pf <<'LUA';
local plugin = { name = "t-spin", priority = 100, schema = { type = "object" } }
function plugin.access(conf, ctx)
  local s = tonumber(gw.req.header("X-Spin") or "")
  if s then
    local t = gw.now() + s
    while gw.now() < t do end
  end
end
return plugin
LUA
close $pf;
my $rst_node = '127.0.0.1:' . start_resetting_origin();

my %t = (connect => '1s', send => '5s', read => '5s');
# one node each, so that nothing but the same node can answer; separate
# upstreams keep separate pools
my @ups = (
    { name => 'get', retries => 0, nodes => [$node], timeouts => {%t},
      health => { passive => { unhealthy => 2, window => '10s' } } },
    { name => 'post', nodes => [$node], timeouts => {%t} },
    { name => 'never', retries => 1, nodes => [$node], timeouts => {%t} },
    { name => 'hang', nodes => [$node], timeouts => {%t} },
    { name => 'spin', retries => 0, nodes => [$rst_node], timeouts => {%t} },
);
my $gw = start_gateway(config => {
    gateway   => { plugin_paths => [$pdir] },
    upstreams => \@ups,
    routes => [ map { { name => $_->{name}, match => { path => "/$_->{name}/*" },
                        upstream => $_->{name}, strip_prefix => "/$_->{name}",
                        ($_->{name} eq 'hang' ? (timeout => '600ms') : ()),
                        ($_->{name} eq 'spin' ? (plugins => { 't-spin' => {} }) : ()) } } @ups ],
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

# --- the reset seen by the write: nothing of the request reached the node -----
# The GET waits in the access phase while the node resets the pooled
# connection; its write then fails (ECONNRESET), and the request goes out
# on a new connection.
{
    my $r = req('GET', '/spin/prime');
    is($r->{status}, 200, 'reset before the write: the pool is primed');
    my $pooled = $r->{headers}{'x-conn'} // '';
    my $c = gw_connect($gw->{port}, timeout => 10 * mult());
    $c->write(build_request('GET', '/spin/w', headers => ['X-Spin' => 1.5 * mult()]));
    sleep 0.3 * mult(); # the worker is in the access phase now
    open my $fh, '>', $rst_now or die "$rst_now: $!";
    close $fh;
    $r = $c->read_response // { status => 0, headers => {} };
    $c->close;
    is($r->{status}, 200, 'reset before the write: 200');
    ok(!-e $rst_now, 'reset before the write: the pooled connection was reset meanwhile');
    my @s = rst_seen('/w');
    is(scalar @s, 1, 'reset before the write: the node saw it once, on a new connection')
      or diag(explain(\@s));
    isnt((split / /, $s[0] // '')[0] // '', $pooled, 'reset before the write: not on the pooled one');
    is(retries_of('spin'), 1, 'reset before the write: one new-connection retry counted');
}

stop_all();
done_testing();
