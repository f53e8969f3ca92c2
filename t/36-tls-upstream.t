# Upstream TLS: `scheme: https` upstreams against an HTTPS origin started
# here (t/lib/tls-origin.pl, certificates from t/lib/GwTlsOrigin.pm): the
# response comes back, the connection is kept alive and reused, a new
# connection resumes the node's session, SNI and ALPN; a certificate from
# another CA or for another name is a 502 with a log line naming the node
# and the reason; `verify: false`; a client certificate for an origin that
# requires one; active health checks over https; gw.http.request to an
# https URL; what -t refuses.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use IO::Socket::INET;
use POSIX ();
use GwTest;
use GwTlsOrigin;
use GwEtcd ();

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();
plan skip_all => 'no IO::Socket::SSL (libio-socket-ssl-perl)'
  unless eval { require IO::Socket::SSL; 1 };

my $dir = tmpdir();
my $pki = make_pki($dir);
my $origin = start_tls_origin(%{ $pki->{server} });
my $node = "127.0.0.1:$origin->{port}";

sub gw_with {
    my (%up) = @_;
    my $extra = delete $up{gateway} // {};
    return start_gateway(config => {
        gateway   => { timeouts => { keepalive => '5s' }, %$extra },
        upstreams => [{ name => 'tls', nodes => [$node], scheme => 'https', retries => 0,
                        %up }],
        routes    => [{ name => 'all', match => { path => '/*' }, upstream => 'tls' }],
    });
}

sub log_like {
    my ($gw, $re, $name) = @_;
    ok(wait_for(sub { gateway_log($gw) =~ $re }, 5), $name) or diag(gateway_log($gw));
}

# ---- the response comes back; keep-alive; resumption -------------------
{
    my $gw = gw_with(tls => { ca_file => $pki->{ca}{cert} },
                     keepalive => { idle_timeout => '300ms' });
    my $c = gw_connect($gw->{port});
    for my $i (1 .. 3) {
        my $r = $c->request('GET', "/one/$i");
        is($r->{status}, 200, "request $i over https: 200");
        is($r->{body}, "tls-ok /one/$i", "request $i: the origin's body");
    }
    my @seen = tls_requests($origin);
    is(scalar @seen, 3, 'the origin saw three requests');
    is(scalar(keys %{ { map { $_->{conn} => 1 } @seen } }), 1,
       'one TLS connection for the three (kept alive and reused)');
    is_deeply([map { $_->{seq} } @seen], [1, 2, 3], 'in order on it');
    is($seen[0]{alpn}, 'http/1.1', 'ALPN http/1.1');
    is($seen[0]{sni}, '', 'an IP node: no SNI (checked against the IP SAN)');
    is($seen[0]{resumed}, 0, 'the first handshake is a full one');

    # the idle timeout closes the pooled connection: the next one resumes
    sleep(0.8 * mult());
    my $r = $c->request('GET', '/two');
    is($r->{status}, 200, 'after the idle close: 200 on a new connection');
    my $last = (tls_requests($origin))[-1];
    isnt($last->{conn}, $seen[0]{conn}, 'a new connection');
    is($last->{resumed}, 1, "it resumed the node's session");
    $c->close;
    is(stop_gateway($gw), 0, 'stopped cleanly');
}

# ---- a host name: SNI and the name checked ------------------------------
{
    my $gw = start_gateway(config => {
        upstreams => [{ name => 'tls', nodes => ["localhost:$origin->{port}"], scheme => 'https',
                        tls => { ca_file => $pki->{ca}{cert} } }],
        routes    => [{ name => 'all', match => { path => '/*' }, upstream => 'tls' }],
    });
    my $r = http_request($gw->{port}, 'GET', '/named');
    is($r->{status}, 200, 'node localhost: 200');
    is((tls_requests($origin))[-1]{sni}, 'localhost', 'SNI: the node\'s host name');
    stop_gateway($gw);
}

# ---- verification failures -----------------------------------------------
{
    my $gw = gw_with(tls => { ca_file => $pki->{other_ca}{cert} },
                     health => { passive => { unhealthy => 2, window => '10s' } });
    my $r = http_request($gw->{port}, 'GET', '/wrong-ca');
    is($r->{status}, 502, 'a certificate from another CA: 502');
    log_like($gw, qr/upstream "tls" node \Q$node\E: TLS handshake failed: certificate verify failed: unable to get local issuer certificate/,
             'the log names the node and the reason');
    $r = http_request($gw->{port}, 'GET', '/wrong-ca-2');
    is($r->{status}, 502, 'again: 502');
    log_like($gw, qr/node \Q$node\E ejected: 2 failures in 10s/,
             'verification failures count against the node (passive health)');
    stop_gateway($gw);

    $gw = gw_with(tls => { ca_file => $pki->{ca}{cert}, sni => 'api.example.com' });
    $r = http_request($gw->{port}, 'GET', '/wrong-name');
    is($r->{status}, 502, 'a certificate for another name: 502');
    log_like($gw, qr/node \Q$node\E: TLS handshake failed: certificate verify failed: hostname mismatch/,
             'hostname mismatch logged');
    is((grep { $_->{uri} eq '/wrong-name' } tls_requests($origin)), 0, 'nothing reached the origin');
    stop_gateway($gw);

    # the system store does not know the test CA
    $gw = gw_with();
    $r = http_request($gw->{port}, 'GET', '/system-store');
    is($r->{status}, 502, 'no ca_file: the system store, which does not trust the test CA: 502');
    stop_gateway($gw);

    $gw = gw_with(tls => { verify => 'false', sni => 'api.example.com' });
    $r = http_request($gw->{port}, 'GET', '/no-verify');
    is($r->{status}, 200, 'verify: false: 200 whatever the certificate');
    is((tls_requests($origin))[-1]{sni}, 'api.example.com', 'the configured sni is sent');
    stop_gateway($gw);

    # TLS to a node that speaks plain HTTP: it answers the ClientHello
    # with an HTTP error, as a plain server does
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 8,
        ReuseAddr => 1) or die "listen: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        while (my $c = $l->accept) {
            sysread($c, my $junk, 4096);
            syswrite($c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            close $c;
        }
        POSIX::_exit(0);
    }
    my $plain_port = $l->sockport;
    close $l;
    $gw = start_gateway(config => {
        upstreams => [{ name => 'tls', nodes => ["127.0.0.1:$plain_port"], scheme => 'https',
                        retries => 0, tls => { ca_file => $pki->{ca}{cert} } }],
        routes    => [{ name => 'all', match => { path => '/*' }, upstream => 'tls' }],
    });
    $r = http_request($gw->{port}, 'GET', '/to-plain');
    is($r->{status}, 502, 'https to a node that answers in plain HTTP: 502');
    log_like($gw, qr/TLS handshake failed: (wrong version number|packet length too long|record layer failure|unexpected end)/,
             'logged with the reason');
    stop_gateway($gw);
    kill 'TERM', $pid;
    waitpid($pid, 0);
}

# ---- a handshake that never ends: the connect timeout covers it ----------
{
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 8,
        ReuseAddr => 1) or die "listen: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my @held;
        while (my $c = $l->accept) { push @held, $c } # accepted, never answered
        POSIX::_exit(0);
    }
    my $port = $l->sockport;
    close $l;
    my $gw = start_gateway(config => {
        upstreams => [{ name => 'tls', nodes => ["127.0.0.1:$port"], scheme => 'https',
                        retries => 0, timeouts => { connect => '300ms' },
                        tls => { ca_file => $pki->{ca}{cert} } }],
        routes    => [{ name => 'all', match => { path => '/*' }, upstream => 'tls' }],
    });
    my $r = http_request($gw->{port}, 'GET', '/silent');
    is($r->{status}, 504, 'a node that never answers the ClientHello: 504 (connect timeout)');
    log_like($gw, qr/connect timed out/, 'logged as a connect timeout');
    stop_gateway($gw);
    kill 'TERM', $pid;
    waitpid($pid, 0);
}

# ---- client certificate ---------------------------------------------------
{
    my $mtls = start_tls_origin(%{ $pki->{server} }, client_ca => $pki->{client_ca}{cert});
    my $mnode = "127.0.0.1:$mtls->{port}";
    my $cfg = sub {
        my (%tls) = @_;
        return { upstreams => [{ name => 'm', nodes => [$mnode], scheme => 'https', retries => 0,
                                 tls => { ca_file => $pki->{ca}{cert}, %tls } }],
                 routes => [{ name => 'all', match => { path => '/*' }, upstream => 'm' }] };
    };
    my $gw = start_gateway(config => $cfg->());
    my $r = http_request($gw->{port}, 'GET', '/no-cert');
    is($r->{status}, 502, 'an origin that requires a client certificate, none configured: 502');
    stop_gateway($gw);

    $gw = start_gateway(config => $cfg->(cert => $pki->{client}{cert}, key => $pki->{client}{key}));
    $r = http_request($gw->{port}, 'GET', '/with-cert');
    is($r->{status}, 200, 'with cert and key: 200');
    like((tls_requests($mtls))[-1]{subject}, qr/gateway-client/, 'the origin saw our certificate');
    stop_gateway($gw);
    stop_tls_origin($mtls);
}

# ---- request bodies and a large response ---------------------------------
{
    my $gw = gw_with(tls => { ca_file => $pki->{ca}{cert} });
    my $body = 'b' x 300000;
    my $r = http_request($gw->{port}, 'POST', '/post', body => $body);
    is($r->{status}, 200, 'a 300 kB request body over https: 200');
    is((tls_requests($origin))[-1]{body_len}, 300000, 'the origin got all of it');
    $r = http_request($gw->{port}, 'GET', '/big/1000000');
    is($r->{status}, 200, 'a 1 MB response over https');
    is(length $r->{body}, 1000000, 'all of it');
    stop_gateway($gw);
}

# ---- active health checks over https --------------------------------------
{
    my $gw = gw_with(tls => { ca_file => $pki->{ca}{cert} },
                     health => { active => { path => '/health', interval => '100ms',
                                             timeout => '1s', healthy => 1, unhealthy => 1 } });
    ok(wait_for(sub { grep { $_->{uri} eq '/health' } tls_requests($origin) }, 5),
       'probes reach the origin over https');
    GwTest::spew_file($origin->{down}, '');
    log_like($gw, qr/node \Q$node\E ejected: 1 failed probe: status 503/, 'a 503 probe ejects the node');
    my $r = http_request($gw->{port}, 'GET', '/while-down');
    is($r->{status}, 503, 'no healthy node: 503');
    unlink $origin->{down};
    log_like($gw, qr/node \Q$node\E is healthy again/, 'back once /health answers 200');
    stop_gateway($gw);

    $gw = gw_with(tls => { ca_file => $pki->{other_ca}{cert} },
                  health => { active => { path => '/health', interval => '100ms',
                                          timeout => '1s', healthy => 1, unhealthy => 1 } });
    log_like($gw, qr/node \Q$node\E ejected: 1 failed probe: TLS handshake with 127\.0\.0\.1:\d+ failed: certificate verify failed/,
             'a probe that fails verification ejects the node, with the reason');
    stop_gateway($gw);
}

# ---- gw.http.request to an https URL --------------------------------------
{
    plugin_file('t-https-call', <<'LUA');
local plugin = { name = "t-https-call", priority = 100,
  schema = { type = "object", properties = { url = { type = "string" } }, required = { "url" } } }
function plugin.access(conf, ctx)
  local res, err = gw.http.request{ url = conf.url }
  if res then return gw.exit(200, gw.json.encode({ status = res.status, body = res.body })) end
  return gw.exit(200, gw.json.encode({ err = err }))
end
return plugin
LUA
    my $cfg = {
        gateway   => { plugin_paths => [GwTest::plugin_dir()] },
        upstreams => [{ name => 'tls', nodes => [$node] }],
        routes    => [{ name => 'all', match => { path => '/*' }, upstream => 'tls',
                        plugins => { 't-https-call' => { url => "https://localhost:$origin->{port}/from-lua" } } }],
    };
    my $gw = start_gateway(config => $cfg);
    my $r = http_request($gw->{port}, 'GET', '/lua');
    like($r->{body}, qr/certificate verify failed/,
         'gw.http.request verifies against the system store (the test CA is not in it)');
    stop_gateway($gw);

    # the system store, as OpenSSL finds it: SSL_CERT_FILE
    local $ENV{SSL_CERT_FILE} = $pki->{ca}{cert};
    $gw = start_gateway(config => $cfg);
    $r = http_request($gw->{port}, 'GET', '/lua');
    my $j = json_body($r);
    is($j->{status}, 200, 'gw.http.request over https: 200 once the CA is trusted');
    is($j->{body}, 'tls-ok /from-lua', 'with the body');
    is((tls_requests($origin))[-1]{sni}, 'localhost', 'SNI from the URL');
    stop_gateway($gw);
}

# ---- a registry over https: etcd with a certificate -----------------------
SKIP: {
    skip 'etcd not installed', 3 unless GwEtcd::have_etcd();
    my $e = GwEtcd::start_etcd(tls => { %{ $pki->{server} }, ca => $pki->{ca}{cert} });
    my ($rc, $out) = GwEtcd::etcdctl($e, 'put', 'tls.rpc/1', $node);
    is($rc, 0, 'etcd over https: a go-zero registration written') or diag($out);
    my $gw = start_gateway(config => {
        registries => { e1 => { type => 'etcd', endpoints => [$e->{url}],
                                tls => { ca_file => $pki->{ca}{cert} } } },
        upstreams  => [{ name => 'tls', scheme => 'https', tls => { ca_file => $pki->{ca}{cert} },
                         discovery => { registry => 'e1', format => 'go-zero', key => 'tls.rpc' } }],
        routes     => [{ name => 'all', match => { path => '/*' }, upstream => 'tls' }],
    });
    my $r;
    ok(wait_for(sub { $r = http_request($gw->{port}, 'GET', '/via-etcd'); $r->{status} == 200 }, 10),
       'nodes read from etcd over https; the discovered node (an address) over https: 200')
      or diag(gateway_log($gw));
    is((tls_requests($origin))[-1]{sni}, '', 'a discovered address: no SNI');
    stop_gateway($gw);
    GwEtcd::stop_etcd($e);
}

# ---- -t ----------------------------------------------------------------------
{
    my $base = sub {
        my (%up) = @_;
        return { upstreams => [{ name => 'u', nodes => [$node], %up }],
                 routes => [{ name => 'r', match => { path => '/*' }, upstream => 'u' }] };
    };
    my ($rc, $out) = check_config(config => $base->(scheme => 'https',
        tls => { ca_file => $pki->{ca}{cert}, cert => $pki->{client}{cert}, key => $pki->{client}{key} }));
    is($rc, 0, '-t: https with ca_file and a client certificate') or diag($out);
    ($rc, $out) = check_config(config => $base->(scheme => 'https', tls => { ca_file => "$dir/nope.pem" }));
    isnt($rc, 0, '-t: an unreadable ca_file fails');
    like($out, qr/upstreams\[0\]\.tls: cannot read ca_file ".*nope\.pem": No such file/, 'and says which');
    ($rc, $out) = check_config(config => $base->(scheme => 'https',
        tls => { cert => $pki->{client}{cert}, key => $pki->{server}{key} }));
    isnt($rc, 0, '-t: a key that does not match its cert fails');
    like($out, qr/upstreams\[0\]\.tls: key ".*server\.key" does not match cert/, 'and says so');
    ($rc, $out) = check_config(config => $base->(scheme => 'https', tls => { cert => $pki->{client}{cert} }));
    like($out, qr/give both cert and key/, '-t: cert without key');
    ($rc, $out) = check_config(config => $base->(scheme => 'https', tls => { verify => 'off' }));
    isnt($rc, 0, '-t: verify: off is refused');
    like($out, qr/upstreams\[0\]\.tls\.verify: expected true or false/, 'only the literal false turns it off');
    ($rc, $out) = check_config(config => $base->(scheme => 'https', tls => { verify => 'false' }));
    is($rc, 0, '-t: verify: false is accepted');
    like($out, qr/upstreams\[0\]\.tls\.verify: false: the servers' certificates are not checked/, 'with a warning');
    ($rc, $out) = check_config(config => $base->(tls => { ca_file => $pki->{ca}{cert} }));
    like($out, qr/upstreams\[0\]\.tls: TLS settings for a server spoken to in plain HTTP/, '-t: tls without scheme https');
    ($rc, $out) = check_config(config => $base->(scheme => 'ftp'));
    like($out, qr/upstreams\[0\]\.scheme: expected http or https/, '-t: an unknown scheme');
    ($rc, $out) = check_config(config => $base->(scheme => 'https', tls => { verify => 'false', ca_file => $pki->{ca}{cert} }));
    like($out, qr/ca_file: not used with verify: false/, '-t: ca_file with verify: false');
    ($rc, $out) = check_config(file => "$FindBin::Bin/../conf/examples/upstream-tls.yaml");
    is($rc, 0, '-t: conf/examples/upstream-tls.yaml') or diag($out);
}

stop_all();
done_testing();
