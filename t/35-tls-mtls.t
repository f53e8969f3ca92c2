# Client certificates (mTLS) per certificate entry: a client with a
# certificate from the entry's client_ca gets in and its subject reaches
# plugins (gw.var.tls_client_dn), the upstream (through a plugin) and the
# access log; no certificate or one from another CA is refused in the
# handshake; an entry without client_ca asks for none.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;
use GwTls;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();
plan skip_all => 'openssl, curl or timeout missing' unless have_tls_tools();

my $dir   = GwTest::subdir('certs-');
my $ca    = make_ca($dir, 'ca');
my $cca   = make_ca($dir, 'client-ca');
my $other = make_ca($dir, 'other-ca');
my $srv   = make_cert($dir, 'srv', ca => $ca, cn => 'open.test', san => ['open.test']);
my $msrv  = make_cert($dir, 'msrv', ca => $ca, cn => 'mtls.test', san => ['mtls.test']);
my $cli   = make_cert($dir, 'cli', ca => $cca, cn => 'svc-billing', o => 'Acme', client => 1);
my $bad   = make_cert($dir, 'bad', ca => $other, cn => 'intruder', client => 1);

my $up = start_upstream(name => 'a');
plugin_file('t-dn', <<'LUA');
local plugin = { name = "t-dn", priority = 100 }
function plugin.access(conf, ctx)
  gw.req.set_header("X-Client-DN", gw.var.tls_client_dn or "none")
end
return plugin
LUA

my $port  = free_port();
my $tport = free_port();
my $gw = start_gateway(port => $port, config => {
    gateway => {
        listen => ["127.0.0.1:$port", { addr => "127.0.0.1:$tport", tls => 'true' }],
        workers => 2,
        plugin_paths => [plugin_dir()],
        tls => { certificates => [
            { cert => $srv->{pem}, key => $srv->{key}, sni => ['open.test'] },
            { cert => $msrv->{pem}, key => $msrv->{key}, sni => ['mtls.test'],
              client_ca => $cca->{pem} },
        ] },
    },
    upstreams => [{ name => 'a', nodes => ["127.0.0.1:$up->{port}"] }],
    routes => [{ name => 'all', match => { path => '/*' }, upstream => 'a',
                 plugins => { 't-dn' => {} } }],
});
ok(wait_for(sub { GwTest::port_open($tport) }, 10), 'TLS listener accepts');

sub up_hdr {
    my ($name) = @_;
    my $last = (upstream_requests($up))[-1] // {};
    my @v = map { $_->[1] } grep { lc $_->[0] eq lc $name } @{ $last->{headers} // [] };
    return $v[0];
}

{
    my ($rc, $out) = curl_https($tport, '/in', host => 'mtls.test', ca => $ca->{pem},
        args => ['--cert', $cli->{pem}, '--key', $cli->{key}]);
    like($out, qr{^HTTP/1\.1 200}m, 'mTLS: a client certificate from client_ca gets in') or diag($out);
    is(up_hdr('X-Client-DN'), 'O=Acme,CN=svc-billing', 'mTLS: the subject reaches a plugin (RFC 2253)');
    my $n = () = upstream_requests($up);

    ($rc, $out) = curl_https($tport, '/nocert', host => 'mtls.test', ca => $ca->{pem});
    unlike($out, qr{^HTTP/1\.1 200}m, 'mTLS: no client certificate: refused');
    ($rc, $out) = curl_https($tport, '/othercert', host => 'mtls.test', ca => $ca->{pem},
        args => ['--cert', $bad->{pem}, '--key', $bad->{key}]);
    unlike($out, qr{^HTTP/1\.1 200}m, 'mTLS: a certificate from another CA: refused');
    is(scalar(() = upstream_requests($up)), $n, 'mTLS: nothing refused reached the upstream');
    like(slurp_file($gw->{error_log}), qr/tls: handshake failed from 127\.0\.0\.1: .*(certificate|unable)/i,
         'mTLS: the refusal is logged with the reason');

    ($rc, $out) = curl_https($tport, '/open', host => 'open.test', ca => $ca->{pem});
    like($out, qr{^HTTP/1\.1 200}m, 'an entry without client_ca asks for no certificate');
    is(up_hdr('X-Client-DN'), 'none', '... and gw.var.tls_client_dn is nil there');

    my $o = s_client($tport, '-servername', 'mtls.test');
    like($o, qr/Acceptable client certificate CA names\s*\n\s*CN ?= ?client-ca/,
         'mTLS: the server names client_ca in its request');
}

# two workers, one ticket secret: a ticket resumes whichever worker the
# kernel hands the connection to
{
    my $sess = "$dir/sess";
    like(s_client($tport, { wait => 0.5 * mult() }, '-servername', 'open.test', '-sess_out', $sess),
         qr/^New, TLSv1\.3/m, 'two workers: a full handshake, a ticket');
    my @r = map { s_client($tport, '-servername', 'open.test', '-sess_in', $sess) =~ /^(Reused|New), /m ? $1 : 'none' } 1 .. 8;
    is("@r", join(' ', ('Reused') x 8), 'two workers: eight connections all resume');
    # a session of the entry without client_ca does not resume on the mTLS
    # entry (that would skip the client certificate)
    my $x = s_client($tport, '-servername', 'mtls.test', '-sess_in', $sess);
    unlike($x, qr/^Reused, /m, 'a ticket of another entry does not resume on the mTLS name');
    my $c12 = "$dir/sess12";
    s_client($tport, { wait => 0.5 * mult() }, '-tls1_2', '-servername', 'open.test', '-sess_out', $c12);
    unlike(s_client($tport, '-tls1_2', '-servername', 'mtls.test', '-sess_in', $c12), qr/^Reused, /m,
           'nor a TLS 1.2 session');
    my $m = http_request($gw->{status_port}, 'GET', '/metrics')->{body} // '';
    ok($m =~ /gateway_tls_handshakes_total\{result="resumed"\} (\d+)/ && $1 >= 8, 'two workers: counted as resumed');
}

# the access log carries the subject
stop_gateway($gw);
my $al = slurp_file("$gw->{dir}/access.log");
like($al, qr/"uri":"\/in".*"tls_client_dn":"O=Acme,CN=svc-billing"/, 'access log: tls_client_dn');
unlike($al, qr/"uri":"\/open".*tls_client_dn/, 'access log: no tls_client_dn without a certificate');

stop_all();
done_testing();
