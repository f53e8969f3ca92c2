# Upstreams: every balancer, keep-alive reuse, retries (connect failure,
# timeout, a dropped connection; GET versus POST), passing upstream 5xx
# through, all nodes down, large responses and a slow reader.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;
use IO::Socket::INET;
use Socket qw(PF_INET SOCK_STREAM SOL_SOCKET SO_RCVBUF pack_sockaddr_in inet_aton);
use POSIX qw(:sys_wait_h);
use IO::Select;
use Time::HiRes qw(time sleep);

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

# --- a second kind of origin ----------------------------------------------------
# The echo upstream drops every /drop request; the retry test needs a node
# that answers /drop. This one answers 200 "plain" to anything, one request
# per connection, and logs "METHOD TARGET BODYLEN" per request.
my @plain_pids;

sub start_plain {
    my $dir = tmpdir();
    my $log = "$dir/plain-" . scalar(@plain_pids) . '.log';
    open my $fh, '>', $log or die "$log: $!";
    close $fh;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
        Proto => 'tcp', Listen => 64, ReuseAddr => 1) or die "listen: $!";
    my $port = $l->sockport;
    my $parent = $$;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        # never keep the test's output pipe open, never outlive the test
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        $SIG{TERM} = sub { POSIX::_exit(0) };
        my $sel = IO::Select->new($l);
        while (1) {
            POSIX::_exit(0) if getppid() != $parent;
            next unless $sel->can_read(0.5);
            my $c = $l->accept or next;
            my $buf = '';
            while (index($buf, "\r\n\r\n") < 0) {
                my $n = sysread($c, $buf, 65536, length $buf);
                last unless $n;
            }
            my ($line) = $buf =~ /^([^\r\n]*)/;
            my ($len) = $buf =~ /\r\ncontent-length:\s*(\d+)/i;
            $len //= 0;
            my $have = length($buf) - (index($buf, "\r\n\r\n") + 4);
            while ($have < $len) {
                my $n = sysread($c, $buf, 65536, length $buf) or last;
                $have += $n;
            }
            my ($m, $t) = split / /, $line // '';
            open my $lf, '>>', $log;
            syswrite($lf, join(' ', $m // '', $t // '', $have) . "\n");
            close $lf;
            syswrite($c, "HTTP/1.1 200 OK\r\nX-Upstream: plain\r\nContent-Length: 5\r\n"
                . "Connection: close\r\n\r\nplain");
            close $c;
        }
        POSIX::_exit(0);
    }
    close $l;
    push @plain_pids, $pid;
    return { port => $port, pid => $pid, log => $log };
}

END {
    for my $pid (@plain_pids) {
        kill 'TERM', $pid;
        waitpid($pid, 0);
    }
}

sub plain_lines {
    my ($p) = @_;
    open my $fh, '<', $p->{log} or return ();
    chomp(my @l = <$fh>);
    return @l;
}

# ---------------------------------------------------------------------------
my %up = map { $_ => start_upstream(name => $_) } qw(a b c);
sub node { "127.0.0.1:$up{$_[0]}{port}" }
my $plain = start_plain();
my $plain_node = "127.0.0.1:$plain->{port}";
my ($dead1, $dead2) = (free_port(), free_port());
$dead2 = free_port() while $dead2 == $dead1;

my %t = (connect => '1s', send => '5s', read => '5s');
my @ups = (
    { name => 'rr',  nodes => [node('a'), node('b')] },
    { name => 'wrr', balancer => 'weighted_round_robin',
      nodes => [{ addr => node('a'), weight => 3 }, { addr => node('b'), weight => 1 }] },
    { name => 'rrw', nodes => [{ addr => node('a'), weight => 3 }, { addr => node('b'), weight => 1 }] },
    { name => 'lc',  balancer => 'least_conn', nodes => [node('a'), node('b')] },
    { name => 'ch',  balancer => 'consistent_hash', hash_on => 'header:X-User-Id',
      nodes => [node('a'), node('b'), node('c')] },
    { name => 'rnd', balancer => 'random', nodes => [node('a'), node('b')] },
    { name => 'p2c', balancer => 'p2c', nodes => [node('a'), node('b')] },
    { name => 'ka',  nodes => [node('a')], keepalive => { size => 8, idle_timeout => '60s' } },
    { name => 'halfdead', retries => 1, nodes => ["127.0.0.1:$dead1", node('a')] },
    { name => 'noretry', retries => 0, nodes => ["127.0.0.1:$dead1", node('a')] },
    { name => 'alldead', retries => 1, nodes => ["127.0.0.1:$dead1", "127.0.0.1:$dead2"] },
    { name => 'slowread', retries => 1, nodes => [node('a'), node('b')],
      timeouts => { %t, read => '300ms' } },
    { name => 'drop', retries => 1, nodes => [node('a'), $plain_node] },
    { name => 'five', retries => 1, nodes => [node('a'), node('b')] },
);
$_->{timeouts} //= {%t} for @ups;

my $gw = start_gateway(config => {
    upstreams => \@ups,
    routes => [ map { { name => $_->{name}, match => { path => "/$_->{name}/*" },
                        upstream => $_->{name}, strip_prefix => "/$_->{name}" } } @ups ],
});
my $port = $gw->{port};

sub req {
    my ($method, $path, %o) = @_;
    my $c = gw_connect($port);
    my $r = $c->request($method, $path, %o);
    $c->close;
    return $r // { status => 0, headers => {}, body => '' };
}

sub who { my $r = req('GET', @_); $r->{status} == 200 ? $r->{headers}{'x-upstream'} // '?' : "status $r->{status}" }

sub clear_all { clear_upstream_log($_) for values %up }

sub count_logged {
    my ($pred) = @_;
    my $n = 0;
    for my $u (values %up) { $n += grep { $pred->($_) } upstream_requests($u) }
    return $n;
}

# --- round robin -----------------------------------------------------------------
{
    my @seq = map { who('/rr/x') } 1 .. 10;
    my $alt = 1;
    $alt &&= $seq[$_] ne $seq[$_ - 1] for 1 .. $#seq;
    ok($alt, 'round_robin: alternates between the two nodes') or diag("@seq");
    is_deeply([sort { $a cmp $b } keys %{ { map { $_ => 1 } @seq } }], [qw(a b)], 'round_robin: both nodes');
}

# --- weighted round robin ----------------------------------------------------------
{
    my @seq = map { who('/wrr/x') } 1 .. 40;
    my %n; $n{$_}++ for @seq;
    is($n{a} // 0, 30, 'weighted_round_robin 3:1: a got 30 of 40');
    is($n{b} // 0, 10, 'weighted_round_robin 3:1: b got 10 of 40');
    my $ok = 1;
    for my $i (0 .. $#seq - 3) {
        my $w = grep { $_ eq 'a' } @seq[$i .. $i + 3];
        $ok = 0 if $w != 3;
    }
    ok($ok, 'weighted_round_robin: every 4 consecutive picks are exactly 3:1') or diag("@seq");
}

# --- round robin with weights (the default balancer counts them, as nginx) ------------
{
    my @seq = map { who('/rrw/x') } 1 .. 40;
    my %n; $n{$_}++ for @seq;
    is($n{a} // 0, 30, 'round_robin with weights 3:1: a got 30 of 40') or diag("@seq");
    is($n{b} // 0, 10, 'round_robin with weights 3:1: b got 10 of 40');
    my $ok = 1;
    for my $i (0 .. $#seq - 3) {
        my $w = grep { $_ eq 'a' } @seq[$i .. $i + 3];
        $ok = 0 if $w != 3;
    }
    ok($ok, 'round_robin with weights: every 4 consecutive picks are exactly 3:1 (smooth)')
      or diag("@seq");
}

# --- least_conn ------------------------------------------------------------------------
{
    clear_all();
    my $busy = gw_connect($port, timeout => 10);
    $busy->write(build_request('GET', '/lc/sleep/1500'));
    my $slow_node;
    wait_for(sub {
        for my $n (qw(a b)) {
            $slow_node = $n if grep { $_->{uri} eq '/sleep/1500' } upstream_requests($up{$n});
        }
        $slow_node;
    }, 5);
    ok($slow_node, 'least_conn: the slow request reached a node');
    my $other = ($slow_node // 'a') eq 'a' ? 'b' : 'a';
    my @seq = map { who('/lc/x') } 1 .. 6;
    is_deeply(\@seq, [($other) x 6], "least_conn: all quick requests go to the idle node ($other)")
      or diag("@seq");
    my $r = $busy->read_response;
    is($r && $r->{status}, 200, 'least_conn: the slow request completes');
    $busy->close;
    my %n;
    $n{ who('/lc/x') }++ for 1 .. 10;
    ok(($n{a} // 0) >= 3 && ($n{b} // 0) >= 3, 'least_conn: ties are taken in turn') or diag(explain(\%n));
}

# --- consistent hash --------------------------------------------------------------------
{
    my (%node_of, $unstable);
    for my $k (map { "user-$_" } 1 .. 30) {
        my %seen;
        $seen{ who('/ch/x', headers => ['X-User-Id' => $k]) }++ for 1 .. 3;
        $unstable++ if keys %seen != 1;
        $node_of{$k} = (keys %seen)[0];
    }
    ok(!$unstable, 'consistent_hash: every key hits the same node each time');
    my %used = map { $_ => 1 } values %node_of;
    ok(keys %used >= 2, 'consistent_hash: 30 keys spread over several nodes') or diag(explain(\%used));
    ok(!(grep { !/^[abc]$/ } keys %used), 'consistent_hash: all answered');
    my %nokey;
    $nokey{ who('/ch/x') }++ for 1 .. 9;
    ok(keys %nokey >= 2, 'consistent_hash: without the key, requests are spread') or diag(explain(\%nokey));
}

# --- random and p2c ------------------------------------------------------------------------
{
    my %n;
    $n{ who('/rnd/x') }++ for 1 .. 40;
    is_deeply([sort keys %n], [qw(a b)], 'random: covers both nodes') or diag(explain(\%n));
    %n = ();
    $n{ who('/p2c/x') }++ for 1 .. 40;
    is(($n{a} // 0) + ($n{b} // 0), 40, 'p2c: all 40 requests answered by the nodes') or diag(explain(\%n));
}

# --- keep-alive reuse ------------------------------------------------------------------------
{
    sleep 0.1;
    clear_all();
    my $ok = 0;
    for (1 .. 20) { $ok++ if req('GET', '/ka/x')->{status} == 200 }
    is($ok, 20, 'keep-alive: 20 sequential requests answered');
    my @r = upstream_requests($up{a});
    is(scalar @r, 20, 'keep-alive: 20 requests reached the node');
    my %conns = map { $_->{conn} => 1 } @r;
    ok(keys %conns <= 2, 'keep-alive: at most 2 upstream connections for 20 requests ('
        . scalar(keys %conns) . ')');
}

# --- retries -------------------------------------------------------------------------------------
{
    clear_all();
    my @st = map { req('GET', '/halfdead/x')->{status} } 1 .. 4;
    is_deeply(\@st, [200, 200, 200, 200], 'retry: GET with one node down succeeds via retry');

    # A connect failure means nothing was sent: docs/upstreams.md allows a
    # retry of a POST then ("never once a non-idempotent request may have
    # reached the upstream").
    clear_all();
    my $body = 'payload-' . ('z' x 1000);
    my @post = map { req('POST', '/halfdead/p', body => $body) } 1 .. 4;
    is_deeply([map { $_->{status} } @post], [200, 200, 200, 200],
        'retry: POST whose connect failed is retried on the live node');
    my @got = grep { $_->{method} eq 'POST' } upstream_requests($up{a});
    is(scalar @got, 4, 'retry: the live node got each POST exactly once');
    ok(!(grep { $_->{body} ne $body || !$_->{complete} } @got), 'retry: POST bodies intact');

    my %nr;
    $nr{ req('GET', '/noretry/x')->{status} }++ for 1 .. 4;
    is_deeply(\%nr, { 200 => 2, 502 => 2 }, 'retries: 0: round robin over a dead and a live node, half fail with 502')
      or diag(explain(\%nr));

    my $r = req('GET', '/alldead/x');
    gw_error_ok($r, 502, 'all nodes down: GET');
    $r = req('POST', '/alldead/x', body => $body);
    gw_error_ok($r, 502, 'all nodes down: POST with body');
}

# --- read timeout --------------------------------------------------------------------------------
{
    clear_all();
    my $r = req('POST', '/slowread/sleep/1000', body => 'once');
    gw_error_ok($r, 504, 'read timeout: POST');
    sleep 0.3;
    is(count_logged(sub { $_[0]{uri} eq '/sleep/1000' }), 1, 'read timeout: the POST was not retried');
    clear_all();
    $r = req('GET', '/slowread/sleep/1000');
    gw_error_ok($r, 504, 'read timeout: GET');
    $r = req('GET', '/slowread/x');
    is($r->{status}, 200, 'read timeout: a quick request on the same upstream still works');
}

# --- dropped connection ------------------------------------------------------------------------------
{
    clear_all();
    my @st = map { req('GET', '/drop/drop')->{status} } 1 .. 4;
    is_deeply(\@st, [200, 200, 200, 200], 'drop: GET retried on the other node');
    my $dropped = grep { $_->{uri} eq '/drop' } upstream_requests($up{a});
    ok($dropped >= 1, "drop: the echo node did drop GETs ($dropped), so retries happened");
    my $plain_before = grep { /^POST / } plain_lines($plain);
    my %pst;
    $pst{ req('POST', '/drop/drop', body => 'data')->{status} }++ for 1 .. 4;
    my $a_posts = grep { $_->{method} eq 'POST' } upstream_requests($up{a});
    my $plain_posts = (grep { /^POST / } plain_lines($plain)) - $plain_before;
    ok($a_posts >= 1, "drop: some POSTs reached the dropping node ($a_posts)");
    is($pst{502} // 0, $a_posts, 'drop: every POST the node dropped got 502 (no retry)')
      or diag(explain(\%pst));
    is($pst{200} // 0, $plain_posts, 'drop: the POSTs the other node got were answered 200');
    is($a_posts + $plain_posts, 4, 'drop: each POST reached exactly one node');
}

# --- upstream 500 passes through ---------------------------------------------------------------------
{
    clear_all();
    my $r = req('GET', '/five/status/500');
    is($r->{status}, 500, 'upstream 500: passed through');
    is((json_body($r) // {})->{status}, 500, 'upstream 500: the upstream body');
    sleep 0.1;
    is(count_logged(sub { $_[0]{uri} eq '/status/500' }), 1, 'upstream 500: not retried');
    $r = req('GET', '/five/status/503');
    is($r->{status}, 503, 'upstream 503: passed through');
}

# --- large response ------------------------------------------------------------------------------------
{
    my $n = 5_000_000;
    my $r = req('GET', "/rr/big/$n");
    is($r->{status}, 200, 'big: 200');
    is(length $r->{body}, $n, 'big: all 5000000 bytes');
    ok($r->{body} !~ /[^x]/, 'big: content intact');
}

# --- slow reader (back-pressure) ---------------------------------------------------------------------------
{
    my $n = 5_000_000;
    # a small receive window, set before connect so that it is the one
    # announced from the start
    socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
    setsockopt($s, SOL_SOCKET, SO_RCVBUF, pack('i', 16384));
    connect($s, pack_sockaddr_in($port, inet_aton('127.0.0.1'))) or die "connect: $!";
    binmode $s;
    # through the upstream with a 300ms read timeout: while the client is
    # the one behind, the node is not late
    syswrite($s, build_request('GET', "/slowread/big/$n"));
    sleep 1.5; # let every buffer between the node and us fill up, and wait
               # well past the node's read timeout
    my $buf = '';
    my $deadline = time + 30 * mult();
    my $reads = 0;
    while (time < $deadline) {
        my $got = sysread($s, $buf, 8192, length $buf);
        last unless $got;
        sleep 0.02 if ++$reads % 8 == 0; # about 3 MB/s
        my $h = index($buf, "\r\n\r\n");
        last if $h >= 0 && length($buf) - $h - 4 >= $n;
    }
    close $s;
    my $h = index($buf, "\r\n\r\n");
    like(substr($buf, 0, 12), qr{^HTTP/1\.1 200}, 'slow reader: 200');
    is($h >= 0 ? length($buf) - $h - 4 : -1, $n, 'slow reader: every byte arrives');
    ok(substr($buf, $h + 4) !~ /[^x]/, 'slow reader: content intact');
    is(req('GET', '/rr/x')->{status}, 200, 'slow reader: the gateway still serves');
}

stop_all();
done_testing();
