# Request smuggling and malformed framing: each gets a JSON 400 (505 for an
# unsupported version), Connection: close, a closed socket, and nothing
# reaches the upstream. Legal variants still pass.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my $up = start_upstream(name => 'a');
my $gw = start_gateway(config => {
    upstreams => [{ name => 'a', nodes => ["127.0.0.1:$up->{port}"], retries => 0 }],
    routes    => [{ name => 'all', match => { path => '/*' }, upstream => 'a' }],
});
my $port = $gw->{port};

my $H = "Host: localhost\r\n";
my $POST = "POST /f HTTP/1.1\r\n$H";
my $TE = "${POST}Transfer-Encoding: chunked\r\n\r\n";

my @bad = (
    # Content-Length and Transfer-Encoding together, either order
    ['CL and TE', "${POST}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
    ['TE and CL', "${POST}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"],
    ['CL and TE: gzip, chunked', "${POST}Content-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"],

    # several or malformed Content-Length
    ['two CL, same value', "${POST}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"],
    ['two CL, different values', "${POST}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"],
    ['CL list "5, 5"', "${POST}Content-Length: 5, 5\r\n\r\nhello"],
    ['CL with a sign', "${POST}Content-Length: +5\r\n\r\nhello"],
    ['CL negative', "${POST}Content-Length: -5\r\n\r\nhello"],
    ['CL with a space inside', "${POST}Content-Length: 1 0\r\n\r\nhelloworld"],
    ['CL not digits', "${POST}Content-Length: 5a\r\n\r\nhello"],
    ['CL hex', "${POST}Content-Length: 0x5\r\n\r\nhello"],
    ['CL empty', "${POST}Content-Length: \r\n\r\nhello"],
    ['CL overflow', "${POST}Content-Length: 99999999999999999999999\r\n\r\nhello"],

    # any Transfer-Encoding that is not exactly a final chunked
    ['TE gzip', "${POST}Transfer-Encoding: gzip\r\n\r\nhello"],
    ['TE identity', "${POST}Transfer-Encoding: identity\r\n\r\nhello"],
    ['TE gzip, chunked', "${POST}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"],
    ['TE ,chunked', "${POST}Transfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n"],
    ['TE chunked, gzip', "${POST}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"],
    ['TE chunked, chunked', "${POST}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"],
    ['TE chunked twice', "${POST}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
    ['TE xchunked', "${POST}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"],
    ['TE chunked with a parameter', "${POST}Transfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n"],
    ['TE on HTTP/1.0', "POST /f HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"],

    # bad chunk sizes
    ['chunk size not hex', "${TE}zz\r\nhello\r\n0\r\n\r\n"],
    ['chunk size 0x prefix', "${TE}0x5\r\nhello\r\n0\r\n\r\n"],
    ['chunk size negative', "${TE}-5\r\nhello\r\n0\r\n\r\n"],
    ['chunk size overflow', "${TE}fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"],
    ['chunk size then space', "${TE}5 \r\nhello\r\n0\r\n\r\n"],
    ['chunk size empty', "${TE}\r\nhello\r\n0\r\n\r\n"],

    # bad chunk extensions
    ['chunk ext: bare ;', "${TE}5;\r\nhello\r\n0\r\n\r\n"],
    ['chunk ext: empty name', "${TE}5;=b\r\nhello\r\n0\r\n\r\n"],
    ['chunk ext: space in name', "${TE}5;a b\r\nhello\r\n0\r\n\r\n"],
    ['chunk ext: control char', "${TE}5;a\x01\r\nhello\r\n0\r\n\r\n"],
    ['chunk ext: unterminated quote', "${TE}5;a=\"b\r\nhello\r\n0\r\n\r\n"],
    ['chunk ext: bare LF', "${TE}5;a=b\nhello\r\n0\r\n\r\n"],

    # chunk data not followed by CRLF
    ['missing CRLF after chunk data', "${TE}5\r\nhelloXX0\r\n\r\n"],
    ['LF only after chunk data', "${TE}5\r\nhello\n0\r\n\r\n"],
    ['chunk data longer than its size', "${TE}3\r\nhello\r\n0\r\n\r\n"],

    # header syntax
    ['obs-fold (space)', "GET /f HTTP/1.1\r\n${H}X-A: b\r\n c\r\n\r\n"],
    ['obs-fold (tab)', "GET /f HTTP/1.1\r\n${H}X-A: b\r\n\tc\r\n\r\n"],
    ['bare LF line endings', "GET /f HTTP/1.1\nHost: localhost\n\n"],
    ['bare LF after the request line', "GET /f HTTP/1.1\n${H}\r\n"],
    ['bare LF inside the headers', "GET /f HTTP/1.1\r\n${H}X-A: b\nX-B: c\r\n\r\n"],
    ['bare LF ending the head', "GET /f HTTP/1.1\r\n${H}\n"],
    ['bare CR in a header value', "GET /f HTTP/1.1\r\n${H}X-A: b\rc\r\n\r\n"],
    ['NUL in a header value', "GET /f HTTP/1.1\r\n${H}X-A: b\0c\r\n\r\n"],
    ['DEL in a header value', "GET /f HTTP/1.1\r\n${H}X-A: b\x7fc\r\n\r\n"],
    ['space before the colon', "GET /f HTTP/1.1\r\n${H}X-A : b\r\n\r\n"],
    ['header without a colon', "GET /f HTTP/1.1\r\n${H}X-A\r\n\r\n"],
    ['empty header name', "GET /f HTTP/1.1\r\n${H}: b\r\n\r\n"],
    ['bad char in header name', "GET /f HTTP/1.1\r\n${H}X(A: b\r\n\r\n"],

    # Host
    ['missing Host on HTTP/1.1', "GET /f HTTP/1.1\r\nX-A: b\r\n\r\n"],
    ['two Host headers', "GET /f HTTP/1.1\r\n${H}Host: other.example\r\n\r\n"],
    ['two identical Host headers', "GET /f HTTP/1.1\r\n${H}${H}\r\n"],

    # request line
    ['invalid method token', "G(T /f HTTP/1.1\r\n$H\r\n"],
    ['space inside the target', "GET /a b HTTP/1.1\r\n$H\r\n"],
    ['lower-case protocol', "GET /f http/1.1\r\n$H\r\n"],
    ['garbage', "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"],
);

for my $c (@bad) {
    my ($name, $raw) = @$c;
    rejects_ok($port, $raw, 400, $name, upstreams => [$up]);
}

# unsupported versions: 505 (or 400), closed, nothing upstream
for my $v ('HTTP/2.0', 'HTTP/1.2', 'HTTP/3.0', 'HTTP/0.9') {
    rejects_ok($port, "GET /f $v\r\n$H\r\n", [505, 400], "version $v",
        upstreams => [$up]);
}
rejects_ok($port, "GET /f\r\n$H\r\n", [505, 400], 'no version (HTTP/0.9 form)',
    upstreams => [$up]);
rejects_ok($port, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", [505, 400],
    'HTTP/2 connection preface', upstreams => [$up]);

# --- legal variants pass ---------------------------------------------------

sub passes {
    my ($name, $raw, $check) = @_;
    clear_upstream_log($up);
    my $c = gw_connect($port);
    $c->write($raw);
    my $r = $c->read_response;
    $c->close;
    is($r && $r->{status}, 200, "$name: 200") or diag(explain($r));
    my @reqs = upstream_requests($up);
    is(scalar @reqs, 1, "$name: one request upstream");
    $check->($reqs[0] // {}, $r) if $check;
}

sub hdr {
    my ($rec, $name) = @_;
    my @v = map { $_->[1] } grep { lc $_->[0] eq lc $name } @{ $rec->{headers} // [] };
    return @v ? join(', ', @v) : undef;
}

passes('OWS tabs around a value', "GET /f HTTP/1.1\r\n${H}X-A:\t b \t\r\n\r\n", sub {
    is(hdr($_[0], 'X-A'), 'b', 'OWS tabs: value trimmed');
});
passes('Transfer-Encoding: CHUNKED', "${POST}Transfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n", sub {
    is($_[0]{body}, 'hello', 'CHUNKED: body');
});
passes('Transfer-Encoding with OWS', "${POST}Transfer-Encoding:  chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n", sub {
    is($_[0]{body}, 'hello', 'TE OWS: body');
});
passes('chunked body with trailers', "${TE}5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 1\r\nX-More: 2\r\n\r\n", sub {
    is($_[0]{body}, 'hello world', 'trailers: body');
    is_deeply($_[0]{trailers}, [], 'trailers: not forwarded');
});
passes('GET with a Content-Length body', "GET /f HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello", sub {
    is($_[0]{body}, 'hello', 'GET with body: body forwarded');
    is($_[0]{method}, 'GET', 'GET with body: method');
});
passes('chunk extension ;a=b', "${TE}5;a=b\r\nhello\r\n0\r\n\r\n", sub {
    is($_[0]{body}, 'hello', 'chunk extension: body');
});
passes('quoted chunk extension', "${TE}5;a=\"b c\"\r\nhello\r\n0\r\n\r\n", sub {
    is($_[0]{body}, 'hello', 'quoted chunk extension: body');
});
passes('Content-Length with OWS', "${POST}Content-Length:  5 \r\n\r\nhello", sub {
    is($_[0]{body}, 'hello', 'CL OWS: body');
});
passes('chunk size upper-case hex', "${TE}A\r\n0123456789\r\n0\r\n\r\n", sub {
    is($_[0]{body}, '0123456789', 'upper-case hex: body');
});
passes('empty chunked body', "${TE}0\r\n\r\n", sub {
    is($_[0]{body}, '', 'empty chunked: body');
});
passes('header value with obs-text', "GET /f HTTP/1.1\r\n${H}X-A: caf\xe9\r\n\r\n", sub {
    is(hdr($_[0], 'X-A'), "caf\xe9", 'obs-text: value kept');
});
passes('HTTP/1.0 without Host', "GET /f HTTP/1.0\r\n\r\n");
passes('Host with a port', "GET /f HTTP/1.1\r\nHost: localhost:$port\r\n\r\n", sub {
    is(hdr($_[0], 'Host'), "localhost:$port", 'Host with port: kept');
});

# OWS around a value is SP or HTAB alike (RFC 9110 5.6.3), also where the
# gateway or llhttp reads the value itself; it never reaches the upstream.
passes('HTAB around Content-Length', "${POST}Content-Length:\t5\t\r\n\r\nhello", sub {
    is($_[0]{body}, 'hello', 'CL HTAB: body intact');
    is(hdr($_[0], 'Content-Length'), '5', 'CL HTAB: Content-Length 5 upstream');
    ok($_[0]{complete}, 'CL HTAB: upstream got the whole body');
});
passes('SP and HTAB mixed after Content-Length', "${POST}Content-Length: 5 \t \t\r\n\r\nhello", sub {
    is($_[0]{body}, 'hello', 'CL SP/HTAB: body intact');
});
passes('HTAB around Transfer-Encoding', "${POST}Transfer-Encoding:\tchunked\t\r\n\r\n5\r\nhello\r\n0\r\n\r\n", sub {
    is($_[0]{body}, 'hello', 'TE HTAB: body');
    ok($_[0]{chunked}, 'TE HTAB: chunked upstream');
});
passes('HTAB around Host', "GET /f HTTP/1.1\r\nHost:\tlocalhost\t\r\n\r\n", sub {
    is(hdr($_[0], 'Host'), 'localhost', 'Host HTAB: Host trimmed');
    is(hdr($_[0], 'X-Forwarded-Host'), 'localhost', 'Host HTAB: X-Forwarded-Host trimmed');
});
passes('HTAB around values of a head with a body', "${POST}Content-Length:\t5\t\r\nX-A:\t a \t\r\n\r\nhello", sub {
    is(hdr($_[0], 'X-A'), 'a', 'llhttp path: value trimmed');
    is($_[0]{body}, 'hello', 'llhttp path: body');
});
{
    # the head in pieces, cut right after the HTAB: the same answer
    clear_upstream_log($up);
    my $c = gw_connect($port);
    $c->write("${POST}Content-Length: 5\t");
    select(undef, undef, undef, 0.1);
    $c->write("\t\r\nX-B: b\t");
    select(undef, undef, undef, 0.1);
    $c->write("\r\n\r\nhello");
    my $r = $c->read_response;
    $c->close;
    is($r && $r->{status}, 200, 'HTAB at the end of a piece: 200');
    my ($rec) = upstream_requests($up);
    is($rec && $rec->{body}, 'hello', 'HTAB at the end of a piece: body intact');
    is($rec && hdr($rec, 'X-B'), 'b', 'HTAB at the end of a piece: value trimmed');
}
{
    my $c = gw_connect($port);
    $c->write("${POST}Connection:\tclose\t\r\nContent-Length: 2\r\n\r\nhi");
    my $r = $c->read_response;
    is($r && $r->{status}, 200, 'HTAB around Connection: close: 200');
    like($r && $r->{headers}{connection} // '', qr/close/i, 'HTAB around close: Connection: close');
    ok($c->wait_closed(2), 'HTAB around close: connection closed');
    $c->close;

    $c = gw_connect($port);
    $c->write("POST /f HTTP/1.0\r\nConnection:\tkeep-alive\t\r\nContent-Length: 2\r\n\r\nhi");
    $r = $c->read_response;
    is($r && $r->{status}, 200, 'HTAB around keep-alive (HTTP/1.0): 200');
    ok(!$c->wait_closed(0.3), 'HTAB around keep-alive (HTTP/1.0): kept open');
    $c->close;

    $c = gw_connect($port);
    $c->write("${POST}Expect:\t100-continue\t\r\nContent-Length:\t5\t\r\n\r\n");
    $r = $c->read_response;
    is($r && $r->{status}, 100, 'HTAB around Expect: 100-continue: 100 Continue');
    $c->write('hello');
    $r = $c->read_response;
    is($r && $r->{status}, 200, 'HTAB around Expect: then 200');
    $c->close;
}

# Absolute-form targets (RFC 9112 3.2.2) are taken, routed on their path,
# with their authority as the host: t/21-routing.t. Forms a server must not
# take, or cannot serve, get a 400 that says why.
for my $c (
    ['unknown scheme', "GET ftp://localhost/f HTTP/1.1\r\n$H\r\n", 'unsupported URI scheme'],
    ['userinfo', "GET http://user\@localhost/f HTTP/1.1\r\n$H\r\n", 'userinfo in request target'],
    ['userinfo with password', "GET http://u:p\@localhost/f HTTP/1.1\r\n$H\r\n", 'userinfo in request target'],
    ['empty authority', "GET http:///f HTTP/1.1\r\n$H\r\n", 'bad authority in request target'],
    ['empty authority, no path', "GET http:// HTTP/1.1\r\n$H\r\n", 'bad authority in request target'],
    ['port not digits', "GET http://localhost:8x/f HTTP/1.1\r\n$H\r\n", 'bad authority in request target'],
    ['port too large', "GET http://localhost:65536/f HTTP/1.1\r\n$H\r\n", 'bad authority in request target'],
    ['empty port', "GET http://localhost:/f HTTP/1.1\r\n$H\r\n", 'bad authority in request target'],
    ['absolute-form with CONNECT', "CONNECT http://localhost:443/ HTTP/1.1\r\nHost: localhost:443\r\n\r\n", 'bad request target'],
    ['authority-form (CONNECT)', "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n", 'bad request target'],
    ['asterisk-form with GET', "GET * HTTP/1.1\r\n$H\r\n", 'bad request target'],
    ['no scheme, no slash (llhttp refuses it)', "GET localhost/f HTTP/1.1\r\n$H\r\n", 'bad request'],
    ['absolute-form without Host (HTTP/1.1)', "GET http://localhost/f HTTP/1.1\r\n\r\n", 'bad request'],
) {
    my ($name, $raw, $message) = @$c;
    my ($resp) = raw_exchange($port, $raw, timeout => 2);
    my ($r) = parse_responses($resp);
    rejects_ok($port, $raw, 400, "target: $name", upstreams => [$up]);
    is(($r ? json_body($r) // {} : {})->{message}, $message, "target: $name: message");
}

# --- tolerated or rejected, but always a clean answer --------------------------
# What the gateway does with these is documented by the status it gives;
# both outcomes are acceptable, a crash or a hang is not.
for my $c (
    ['two spaces in the request line', "GET  /f HTTP/1.1\r\n$H\r\n"],
    ['leading empty line', "\r\nGET /f HTTP/1.1\r\n$H\r\n"],
    ['CONNECT', "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n"],
    ['Upgrade: websocket', "GET /f HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"],
    ['unknown method', "FOO /f HTTP/1.1\r\n$H\r\n"],
    ['OPTIONS *', "OPTIONS * HTTP/1.1\r\n$H\r\n"],
) {
    my ($name, $raw) = @$c;
    my ($resp, $closed) = raw_exchange($port, $raw, timeout => 2);
    my ($r) = parse_responses($resp);
    ok($r && $r->{status} =~ /^[2-5]\d\d$/, "$name: a clean answer")
      or diag("received: " . ($resp // ''));
    note("$name -> " . ($r ? $r->{status} : 'nothing') . ($closed ? ', closed' : ''));
    if ($r && $r->{status} >= 400) {
        gw_error_ok($r, $r->{status}, "$name: error envelope");
    }
}

# Whatever the gateway answers to an upgrade request, the upstream never sees
# the upgrade: Upgrade and Connection are hop-by-hop.
{
    clear_upstream_log($up);
    raw_exchange($port, "GET /ws HTTP/1.1\r\n${H}Connection: Upgrade\r\n"
        . "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", timeout => 1);
    for my $rec (upstream_requests($up)) {
        ok(!defined hdr($rec, 'Upgrade'), 'upgrade request: no Upgrade upstream');
        ok(!defined hdr($rec, 'Connection'), 'upgrade request: no Connection upstream');
    }
    clear_upstream_log($up);
    raw_exchange($port, "GET /h2c HTTP/1.1\r\n${H}Connection: Upgrade, HTTP2-Settings\r\n"
        . "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", timeout => 1);
    for my $rec (upstream_requests($up)) {
        ok(!defined hdr($rec, 'Upgrade'), 'h2c upgrade: no Upgrade upstream');
        ok(!defined hdr($rec, 'HTTP2-Settings'), 'h2c upgrade: HTTP2-Settings (named in Connection) removed');
    }
}

my $r = http_request($port, 'GET', '/alive');
is($r->{status}, 200, 'gateway still serving after all that');
is(stop_gateway($gw), 0, 'SIGTERM: exit 0');
stop_all();
done_testing();
