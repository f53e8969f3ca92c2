# Upstream response heads, as the client sees them: the common form
# (HTTP/1.1, Content-Length, plain headers) and every variant that takes the
# other parser (other version, chunked, close-delimited, obs-fold, odd
# bytes, trailing spaces or tabs, 204/304, HEAD) give the same answers; heads that
# arrive in pieces; a bare LF fails at once (502), not at the read timeout;
# bytes after the body or "Connection: close" keep the connection out of the
# pool; the head is checked as strictly on both paths.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;
use Time::HiRes qw(time sleep);

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

# A scripted origin: GET /case/NAME answers with $cases{NAME}, a list of
# byte strings written with a short pause between them; one connection
# serves requests until the client closes. Each accepted connection is
# logged as a line "conn", so tests can see whether one was reused.
my %cases = (
    plain     => ["HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"],
    pieces    => ["HTTP/1.1 200 OK\r\nX-A:", " 1\r\nContent-Le", "ngth: 5\r", "\n\r\nhel", "lo"],
    pieces2   => ["HTT", "P/1.1 201 Created\r\n", "Content-Length: 2\r\n", "\r\n", "ok"],
    empty     => ["HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"],
    http10    => ["HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nten!"],
    chunked   => ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"],
    trailing  => ["HTTP/1.1 200 OK\r\nX-T: v  \r\nContent-Length: 2\r\n\r\nok"],
    tabcl     => ["HTTP/1.1 200 OK\r\nContent-Length:\t5\t\r\nX-T:\tv\t\r\n\r\nhello"],
    tabte     => ["HTTP/1.1 200 OK\r\nTransfer-Encoding:\tchunked\t\r\n\r\n3\r\nabc\r\n0\r\n\r\n"],
    tab100    => ["HTTP/1.1 100 Continue\r\nX-I:\t1\t\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length:\t2\t\r\n\r\nok"],
    tabclose  => ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection:\tclose\t\r\n\r\nok"],
    obstext   => ["HTTP/1.1 200 OK\r\nX-O: caf\xc3\xa9\r\nContent-Length: 2\r\n\r\nok"],
    lower     => ["HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\nCONNECTION: keep-alive\r\n\r\nnop"],
    noreason  => ["HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok"],
    status500 => ["HTTP/1.1 500 Internal Server Error\r\nContent-Length: 3\r\n\r\nbad"],
    nocontent => ["HTTP/1.1 204 No Content\r\nX-N: 1\r\n\r\n"],
    close     => ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"],
    extra     => ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"],
    bigbody   => ["HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", ('x' x 50000), ('y' x 50000)],
    barelf    => ["HTTP/1.1 200 OK\nContent-Length: 2\n\nok"],
    barelf2   => ["HTTP/1.1 200 OK\r\nX: a\nContent-Length: 2\r\n\r\nok"],
    fold      => ["HTTP/1.1 200 OK\r\nX-F: a\r\n b\r\nContent-Length: 2\r\n\r\nok"],
    twocl     => ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"],
    clte      => ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
    badcl     => ["HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok"],
    badname   => ["HTTP/1.1 200 OK\r\nX Bad: 1\r\nContent-Length: 2\r\n\r\nok"],
    ctl       => ["HTTP/1.1 200 OK\r\nX-C: a\x01b\r\nContent-Length: 2\r\n\r\nok"],
    badstatus => ["HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok"],
    short     => ["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nonly5"],
    garbage   => ["SMTP ready\r\n\r\n"],
    twodigit  => ["HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok"],
    lowstatus => ["HTTP/1.1 004 Odd\r\nContent-Length: 2\r\n\r\nok"],
    lastlf    => ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\n"],
    chunkext  => ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n"],
    trailers  => ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"],
    badchunk  => ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"],
);

my $dir = tmpdir();
my $connlog = "$dir/conns.log";
open my $cfh, '>', $connlog or die $!;
close $cfh;
my $port = start_scripted_origin(
    conn_log => $connlog,
    answer   => sub {
        my ($name) = $_[0] =~ m{^\S+ /case/(\w+)};
        return $cases{$name // ''} // ["HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"];
    },
)->{port};

my $gw = start_gateway(config => {
    upstreams => [{ name => 'o', nodes => ["127.0.0.1:$port"], retries => 0,
                    timeouts => { read => '2s' } }],
    routes    => [{ name => 'r', match => { path => '/*' }, upstream => 'o' }],
});

sub get {
    my ($name, %o) = @_;
    my $t0 = time;
    my $r = http_request($gw->{port}, $o{method} // 'GET', "/case/$name");
    $r->{took} = time - $t0;
    return $r;
}

sub conns { my @l = split /\n/, GwTest::slurp_file($connlog); scalar @l }

# --- answers ------------------------------------------------------------------------

my %ok = (
    plain     => [200, 'hello'],
    pieces    => [200, 'hello'],
    pieces2   => [201, 'ok'],
    empty     => [200, ''],
    http10    => [200, 'ten!'],
    chunked   => [200, 'abc'],
    trailing  => [200, 'ok'],
    obstext   => [200, 'ok'],
    tabcl     => [200, 'hello'],
    tabte     => [200, 'abc'],
    tabclose  => [200, 'ok'],
    tab100    => [200, 'ok'],
    lower     => [404, 'nop'],
    noreason  => [200, 'ok'],
    status500 => [500, 'bad'],
    nocontent => [204, ''],
    close     => [200, 'ok'],
    extra     => [200, 'ok'],
);
for my $name (sort keys %ok) {
    my $r = get($name);
    is($r->{status}, $ok{$name}[0], "$name: status $ok{$name}[0]");
    is($r->{body}, $ok{$name}[1], "$name: body");
    ok($r->{complete}, "$name: a complete response");
}
my $r = get('pieces');
is($r->{headers}{'x-a'}, '1', 'a head in pieces: its headers');
$r = get('lower');
is($r->{headers}{'content-length'}, '3', 'lower-case names are passed on');
$r = get('trailing');
like($r->{headers}{'x-t'} // '', qr/^v\s*$/, 'a value with trailing spaces');
# HTAB is whitespace around a value as SP is (RFC 9110 5.6.3), and neither
# reaches the client
$r = get('tabcl');
like($r->{raw_head} // '', qr/\r\nX-T: v\r\n/, 'HTAB around a value: trimmed for the client');
like($r->{raw_head} // '', qr/\r\nContent-Length: 5\r\n/, 'HTAB around Content-Length: trimmed');
$r = get('bigbody');
is(length($r->{body}), 100000, 'a body in several reads: all of it');
is(substr($r->{body}, 49999, 2), 'xy', 'in order');
$r = get('plain', method => 'HEAD');
is($r->{status}, 200, 'HEAD: 200');
is($r->{body}, '', 'HEAD: no body');

# --- bad heads: 502 at once --------------------------------------------------------

for my $name (qw(barelf barelf2 fold twocl clte badcl badname ctl badstatus garbage twodigit
                  lowstatus badchunk)) {
    my $r = get($name);
    gw_error_ok($r, 502, "$name: 502");
    cmp_ok($r->{took}, '<', 1.5 * mult(), "$name: answered at once, not at the read timeout");
}
$r = get('short');
ok($r->{status} == 200 && !$r->{complete} || $r->{status} == 504 || $r->{status} == 502,
   'a body shorter than its Content-Length: the response is cut, never completed');

# --- chunked bodies go out in the gateway's own framing ----------------------------

for my $name (qw(lastlf chunkext trailers)) {
    my ($raw) = raw_exchange($gw->{port},
        "GET /case/$name HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout => 3);
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    like($head, qr/^HTTP\/1\.1 200 /, "$name: 200");
    like($head, qr/\r\nTransfer-Encoding: chunked\r\n/i, "$name: re-chunked");
    is($body, "5\r\nhello\r\n0\r\n\r\n", "$name: canonical chunks, nothing of the upstream's framing");
}

# --- reuse ---------------------------------------------------------------------------

# sequential requests on one client connection each take a pooled upstream
# connection when the last one was clean
get('plain');
my $c0 = conns();
get('plain') for 1 .. 5;
is(conns() - $c0, 0, 'plain answers: the pooled connection is reused');
$c0 = conns();
get('close') for 1 .. 3;
# the first of the three takes the pooled connection; each later one needs a new one
is(conns() - $c0, 2, 'Connection: close: never reused');
get('plain');
$c0 = conns();
get('tabclose') for 1 .. 3;
is(conns() - $c0, 2, 'Connection:<HTAB>close<HTAB>: never reused');
get('plain');
$c0 = conns();
get('extra') for 1 .. 3;
is(conns() - $c0, 2, 'bytes after the body: the connection is not reused');
get('plain');
$c0 = conns();
get('http10') for 1 .. 3;
is(conns() - $c0, 2, 'HTTP/1.0 without keep-alive: not reused');

stop_all();
done_testing();
