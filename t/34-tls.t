# Downstream TLS termination: -t checks on certificates, the protocol and
# cipher policy, SNI, ALPN, renegotiation, resumption, plain HTTP and
# garbage on a TLS port, the handshake under client_header, metrics, and
# certificates reloaded on SIGHUP.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(time sleep);
use GwTest;
use GwTls;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();
plan skip_all => 'openssl, curl or timeout missing' unless have_tls_tools();

my $dir = GwTest::subdir('certs-');
my $ca  = make_ca($dir, 'ca');
my $dflt = make_cert($dir, 'default', ca => $ca, cn => 'default.test', type => 'rsa',
                     san => ['default.test']);
my $api = make_cert($dir, 'api', ca => $ca, cn => 'api.example.com',
                    san => ['api.example.com', '*.wild.test']);
my $expired = make_cert($dir, 'expired', ca => $ca, cn => 'old.test', days => -1);
my $soon    = make_cert($dir, 'soon', ca => $ca, cn => 'soon.test', days => 10);

sub tls_conf {
    my (@certs) = @_;
    return { certificates => [map { { cert => $_->[0]{pem}, key => $_->[0]{key},
                                      ($_->[1] ? (sni => $_->[1]) : ()) } } @certs] };
}

# --- -t ------------------------------------------------------------------
{
    my $tp = free_port();
    my %listen = (listen => [{ addr => "127.0.0.1:$tp", tls => 'true' }]);
    my ($code, $out) = check_config(config => { gateway => { %listen,
        tls => tls_conf([$dflt], [$api, ['api.example.com']]) } });
    is($code, 0, '-t: two certificates pass') or diag($out);
    unlike($out, qr/warning/, "-t: no warning for certificates valid 90 days");

    ($code, $out) = check_config(config => { gateway => { %listen,
        tls => tls_conf([$expired]) } });
    isnt($code, 0, '-t: an expired certificate fails');
    like($out, qr/gateway\.tls\.certificates\[0\]\.cert: ".*expired\.pem" expired/, '-t: says which and why');

    ($code, $out) = check_config(config => { gateway => { %listen,
        tls => { certificates => [{ cert => $api->{pem}, key => $dflt->{key} }] } } });
    isnt($code, 0, '-t: a key that is not the certificate\'s fails');
    like($out, qr/certificates\[0\]\.key: .*does not match the certificate/, '-t: key mismatch named');

    ($code, $out) = check_config(config => { gateway => { %listen,
        tls => { certificates => [{ cert => "$dir/nope.pem", key => $api->{key} }] } } });
    isnt($code, 0, '-t: an unreadable certificate fails');
    like($out, qr/certificates\[0\]\.cert: ".*nope\.pem": No such file or directory/, '-t: unreadable file named');

    ($code, $out) = check_config(config => { gateway => { %listen,
        tls => tls_conf([$soon]) } });
    is($code, 0, '-t: a certificate expiring in 10 days passes') or diag($out);
    like($out, qr/warning: gateway\.tls\.certificates\[0\]\.cert: ".*soon\.pem" expires in (9|10) day/,
         '-t: ... with a warning');

    ($code, $out) = check_config(config => { gateway => { %listen } });
    isnt($code, 0, '-t: tls: true without certificates fails');
    like($out, qr/listen\[0\]\.tls: needs gateway\.tls\.certificates/, '-t: says so');

    ($code, $out) = check_config(config => { gateway => { %listen,
        tls => { %{ tls_conf([$api, ['*.com', 'a b']]) }, min_protocol => 'TLSv1.1' } } });
    isnt($code, 0, '-t: bad tls keys fail');
    like($out, qr/min_protocol: must be TLSv1\.2 or TLSv1\.3/, '-t: TLSv1.1 refused');
    like($out, qr/sni\[0\]: "\*\.com" is not/, '-t: a wildcard over a top-level domain refused');
    like($out, qr/sni\[1\]: "a b" is not/, '-t: a bad name refused');
}

# --- conf/examples/tls.yaml, with certificates made here ------------------
{
    my $ex = slurp_file("$FindBin::Bin/../conf/examples/tls.yaml");
    my $ed = GwTest::subdir('example-');
    mkdir "$ed/tls";
    my $eca = make_ca("$ed/tls", 'partner-ca');
    make_cert("$ed/tls", $_, ca => $ca, cn => "$_.test") for qw(default api partners);
    $ex =~ s{\btls/}{$ed/tls/}g;
    spew_file("$ed/tls.yaml", $ex);
    my ($code, $out) = check_config(file => "$ed/tls.yaml");
    is($code, 0, '-t accepts conf/examples/tls.yaml') or diag($out);
}

# --- one gateway: a plain and a TLS listener ------------------------------
my $up = start_upstream(name => 'a');
my $pdir = plugin_dir();
plugin_file('t-scheme', <<'LUA');
local plugin = { name = "t-scheme", priority = 100 }
function plugin.access(conf, ctx)
  gw.req.set_header("X-Scheme", gw.var.scheme)
end
return plugin
LUA

my $port = free_port();
my $tport = free_port();
my $certs_conf = tls_conf([$dflt], [$api, ['api.example.com', '*.wild.test']]);
my $gw = start_gateway(port => $port, config => {
    gateway => {
        listen => ["127.0.0.1:$port", { addr => "127.0.0.1:$tport", tls => 'true' }],
        plugin_paths => [$pdir],
        timeouts => { client_header => '1s' },
        tls => $certs_conf,
    },
    upstreams => [{ name => 'a', nodes => ["127.0.0.1:$up->{port}"],
                    timeouts => { connect => '2s', send => '30s', read => '30s' } }],
    routes => [{ name => 'all', match => { path => '/*' }, upstream => 'a',
                 plugins => { 't-scheme' => {} } }],
});
ok(wait_for(sub { GwTest::port_open($tport) }, 10), 'TLS listener accepts');
my @workers = GwTest::children_of($gw->{pid});

sub last_req { (upstream_requests($up))[-1] // {} }
sub up_hdr {
    my ($name) = @_;
    my @v = map { $_->[1] } grep { lc $_->[0] eq lc $name } @{ last_req()->{headers} // [] };
    return $v[0];
}

# --- requests over TLS ----------------------------------------------------
{
    my ($rc, $out) = curl_https($tport, '/hello', ca => $ca->{pem});
    is($rc, 0, 'curl: HTTPS request verified against the test CA') or diag($out);
    like($out, qr{^HTTP/1\.1 200}m, 'curl: 200');
    is(up_hdr('X-Forwarded-Proto'), 'https', 'upstream gets X-Forwarded-Proto: https');
    is(up_hdr('X-Scheme'), 'https', 'gw.var.scheme is https');
    my $r = http_request($port, 'GET', '/plain', close_wait => 0.2);
    is($r->{status}, 200, 'the plain listener still serves');
    is(up_hdr('X-Forwarded-Proto'), 'http', 'plain: X-Forwarded-Proto: http');
    is(up_hdr('X-Scheme'), 'http', 'plain: gw.var.scheme is http');

    # keep-alive: three requests on one connection, one of them a 4 MB
    # response (the client's window fills: back-pressure), then a body up
    my $n = 4_000_000;
    ($rc, $out) = curl_https($tport, '/k1', ca => $ca->{pem},
        args => ['-v', "https://api.example.com:$tport/big/$n", "https://api.example.com:$tport/k3"]);
    is($rc, 0, 'keep-alive: three requests') or diag(substr($out, 0, 2000));
    my @ok = $out =~ m{^HTTP/1\.1 200}mg;
    is(scalar @ok, 3, 'keep-alive: three 200s');
    like($out, qr/Re-using existing connection|Reusing existing/, 'keep-alive: the connection was reused');
    my $xs = () = $out =~ /x{1000}/g;
    cmp_ok($xs, '>=', int($n / 1000) - 1, 'keep-alive: the 4 MB response arrived whole');
    my $big = "$dir/big";
    spew_file($big, 'y' x (96 * 1024));
    ($rc, $out) = curl_https($tport, '/post', ca => $ca->{pem}, args => ['--data-binary', "\@$big"]);
    like($out, qr{^HTTP/1\.1 200}m, 'a 96 KB request body (larger than the read buffer) goes up')
      or diag(substr($out, 0, 500));
    is(length(json_body({ body => ($out =~ /\r\n\r\n(.*)\z/s)[0] })->{body} // ''), 96 * 1024,
       '... whole');
}

# --- pipelining over TLS: two requests in one write, answers in order -------
{
    my $t = int(10 * mult());
    my $req = 'GET /p1 HTTP/1.1\r\nHost: a\r\n\r\nGET /p2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n';
    my $o = `printf '$req' | timeout $t openssl s_client -quiet -ign_eof -connect 127.0.0.1:$tport 2>/dev/null`;
    my @st = $o =~ m{HTTP/1\.1 (\d{3}) }g;
    is("@st", '200 200', 'pipelining over TLS: two answers');
    like($o, qr{"uri":"/p1".*"uri":"/p2"}s, '... in order');
}

# --- protocol and cipher policy ------------------------------------------
{
    my $o = s_client($tport, '-tls1_1');
    unlike($o, qr/Cipher is (?!\(NONE\))/, 'TLS 1.1 refused');
    like($o, qr/protocol version|unsupported protocol|no protocols available/i, 'TLS 1.1: protocol version alert');

    $o = s_client($tport, '-no_tls1_3', '-cipher', 'AES128-GCM-SHA256');
    unlike($o, qr/Cipher is (?!\(NONE\))/, 'TLS 1.2 without ECDHE (RSA key exchange) refused');
    $o = s_client($tport, '-no_tls1_3', '-cipher', 'ECDHE-RSA-AES128-SHA');
    unlike($o, qr/Cipher is (?!\(NONE\))/, 'TLS 1.2 ECDHE without AEAD (CBC) refused');
    $o = s_client($tport, '-no_tls1_3', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256');
    like($o, qr/Cipher is ECDHE-RSA-AES128-GCM-SHA256/, 'TLS 1.2 ECDHE + AEAD accepted');
    $o = s_client($tport);
    like($o, qr/New, TLSv1\.3/, 'TLS 1.3 preferred');
}

# --- SNI --------------------------------------------------------------------
{
    like(s_client($tport, '-servername', 'api.example.com'), qr/subject=CN ?= ?api\.example\.com/,
         'SNI exact name: its certificate');
    like(s_client($tport, '-servername', 'a.wild.test'), qr/subject=CN ?= ?api\.example\.com/,
         'SNI under a wildcard: its certificate');
    like(s_client($tport, '-servername', 'b.a.wild.test'), qr/subject=CN ?= ?default\.test/,
         'SNI two labels under a wildcard: the default');
    like(s_client($tport, '-servername', 'unknown.test'), qr/subject=CN ?= ?default\.test/,
         'unknown SNI: the default certificate');
    like(s_client($tport, '-noservername'), qr/subject=CN ?= ?default\.test/,
         'no SNI: the default certificate');
}

# --- ALPN, renegotiation --------------------------------------------------
{
    like(s_client($tport, '-alpn', 'h2,http/1.1'), qr{ALPN protocol: http/1\.1}, 'ALPN: http/1.1 chosen');
    my $o = s_client($tport, '-alpn', 'h2');
    like($o, qr/no application protocol|alert number 120/i, 'ALPN without http/1.1: refused');

    my $t = int(10 * mult());
    $o = `(echo R; sleep 1; echo Q 2>/dev/null) | timeout $t openssl s_client -connect 127.0.0.1:$tport -no_tls1_3 2>&1`;
    like($o, qr/RENEGOTIATING/, 'renegotiation attempted');
    like($o, qr/no renegotiation|alert number 100/i, 'renegotiation refused');
}

# --- resumption ---------------------------------------------------------------
{
    for my $v (['TLSv1.3', []], ['TLSv1.2 ticket', ['-no_tls1_3']],
               ['TLSv1.2 session cache', ['-no_tls1_3', '-no_ticket']]) {
        my ($name, $args) = @$v;
        my $sess = "$dir/sess-" . ($name =~ s/\W/_/gr);
        my $o1 = s_client($tport, { wait => 0.5 * mult() }, @$args, '-servername', 'api.example.com', '-sess_out', $sess);
        like($o1, qr/^New, /m, "$name: first handshake is full");
        my $o2 = s_client($tport, @$args, '-servername', 'api.example.com', '-sess_in', $sess);
        like($o2, qr/^Reused, /m, "$name: the session resumes");
    }
}

# --- plain HTTP, garbage, truncated and huge records ------------------------
sub raw_tls {
    my ($bytes, $wait) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tport, Proto => 'tcp')
      or return undef;
    syswrite($s, $bytes) if length $bytes;
    my $got = '';
    my $deadline = time + ($wait // 3) * mult();
    $s->blocking(0);
    while (time < $deadline) {
        my $n = sysread($s, my $buf, 65536);
        if (defined $n) {
            last if $n == 0;
            $got .= $buf;
        }
        sleep 0.02;
    }
    return { data => $got, closed => time < $deadline };
}

{
    my $r = raw_tls("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    like($r->{data}, qr{^HTTP/1\.1 400 Bad Request}, 'plain HTTP to the TLS port: a plain 400');
    like($r->{data}, qr/plain HTTP sent to an HTTPS port/, '... saying why');
    ok($r->{closed}, '... then the connection closes');

    $r = raw_tls(join('', map { chr(int(rand(256))) } 1 .. 300));
    ok($r->{closed}, 'garbage: the connection closes');
    # a ClientHello record cut short, then the client leaves
    $r = raw_tls("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" . ("\x11" x 40), 0.5);
    # a record header announcing 64 KB: larger than TLS allows
    $r = raw_tls("\x16\x03\x03\xff\xff" . ("\0" x 20000));
    ok($r->{closed}, 'a record over 16 KB: the connection closes');
    $r = raw_tls("\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00");
    ok($r->{closed}, 'a malformed ClientHello: the connection closes');

    my ($rc, $out) = curl_https($tport, '/after', ca => $ca->{pem});
    like($out, qr{^HTTP/1\.1 200}m, 'after bad handshakes a request succeeds');
    is_deeply([sort(GwTest::children_of($gw->{pid}))], [sort @workers], '... on the same worker');
    my $log = slurp_file($gw->{error_log});
    like($log, qr/tls: handshake failed from 127\.0\.0\.1: /, 'failed handshakes are logged');

    # a burst: the log stays bounded
    my $before = () = $log =~ /tls: handshake failed/g;
    # all at once, so that they land within a second or two even on a slow host
    my @socks = grep { defined } map {
        IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tport, Proto => 'tcp')
    } 1 .. 30;
    syswrite($_, "\x16\x03\x03\x00\x04\xff\x00\x00\x00") for @socks;
    for my $s (@socks) { sysread($s, my $buf, 100) } # each closes after its alert
    close $_ for @socks;
    sleep 0.2 * mult(); # the worker writes its lines as it closes
    $log = slurp_file($gw->{error_log});
    my $after = () = $log =~ /tls: handshake failed/g;
    cmp_ok($after - $before, '<', 30, 'a burst of 30 broken handshakes logs fewer lines');
}

# --- the handshake counts against client_header -----------------------------
{
    my $t0 = time;
    my $r = raw_tls("\x16\x03\x01", 6);
    my $took = time - $t0;
    ok($r->{closed}, 'a handshake that trickles is cut');
    cmp_ok($took, '<', 1 + 2 * mult(), "... after client_header (1s), took ${\ sprintf('%.2f', $took)}s");
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tport, Proto => 'tcp');
    $t0 = time;
    my $n = sysread($s, my $buf, 10);
    $took = time - $t0;
    ok(defined $n && $n == 0 && $took < 1 + 2 * mult(), 'a silent client is cut after client_header too');
}

# --- metrics ---------------------------------------------------------------
{
    my $r = http_request($gw->{status_port}, 'GET', '/metrics');
    my $m = $r->{body} // '';
    like($m, qr/^gateway_tls_handshakes_total\{result="full"\} [1-9]/m, 'metrics: full handshakes');
    like($m, qr/^gateway_tls_handshakes_total\{result="resumed"\} [1-9]/m, 'metrics: resumed handshakes');
    like($m, qr/^gateway_tls_handshakes_total\{result="failed"\} [1-9]/m, 'metrics: failed handshakes');
    my ($left) = $m =~ /^gateway_tls_cert_expiry_seconds\{sni="api\.example\.com"\} (-?\d+)/m;
    ok(defined $left && $left > 89 * 86400 && $left <= 90 * 86400, 'metrics: certificate expiry for an SNI name');
    like($m, qr/^gateway_tls_cert_expiry_seconds\{sni=""\} \d+/m, 'metrics: the default entry without names');
}

# --- SIGHUP reloads certificates ------------------------------------------
{
    my $new = make_cert($dir, 'api-new', ca => $ca, cn => 'reloaded.example.com',
                        san => ['api.example.com']);
    for my $f (qw(pem key)) {
        spew_file($api->{$f}, slurp_file($new->{$f}));
    }
    kill 'HUP', $gw->{pid};
    ok(wait_for(sub { s_client($tport, '-servername', 'api.example.com') =~ /CN ?= ?reloaded\.example\.com/ }, 15),
       'SIGHUP: the new certificate is served');
    my ($rc, $out) = curl_https($tport, '/reloaded', ca => $ca->{pem});
    like($out, qr{^HTTP/1\.1 200}m, 'SIGHUP: requests go on');
    # the ticket secret outlives the reload: a ticket from before resumes
    like(s_client($tport, '-servername', 'api.example.com', '-sess_in', "$dir/sess-TLSv1_3"),
         qr/^Reused, /m, 'SIGHUP: a TLS 1.3 ticket issued before the reload resumes');
}

# --- a binary upgrade hands the ticket secret over ----------------------------
{
    my $pidfile = "$gw->{dir}/gateway.pid";
    my $pid_in = sub { (slurp_file($_[0]) // '') =~ /(\d+)/ ? $1 : 0 };
    my $old = $gw->{pid};
    kill 'USR2', $old;
    my $new;
    ok(wait_for(sub { $new = $pid_in->($pidfile); $new && $new != $old }, 10),
       'upgrade: a new master runs');
    ok(wait_for(sub { (grep { kill 0, $_ } GwTest::children_of($new)) >= 1 }, 10),
       'upgrade: its worker runs');
    kill 'QUIT', $old;
    ok(wait_for(sub { !kill(0, $old) || slurp_file("/proc/$old/stat") =~ /^\d+ \(.*\) Z/s }, 15),
       'upgrade: the old master exits on QUIT');
    like(s_client($tport, '-servername', 'api.example.com', '-sess_in', "$dir/sess-TLSv1_3"),
         qr/^Reused, /m, 'upgrade: a TLS 1.3 ticket issued before the upgrade resumes');
    kill 'TERM', $new;
    ok(wait_for(sub { !kill 0, $new }, 15), 'the new master stops');
}

stop_all();    # reaps the old master, the test's child
done_testing();
