# Certificates and an HTTPS origin for the upstream TLS tests.
#
#   my $pki = make_pki($dir);   # CA, server (localhost, 127.0.0.1), other
#                               # CA, client CA and client certificate
#   my $o = start_tls_origin(cert => ..., key => ..., client_ca => ...);
#   tls_requests($o)            # the origin's JSON lines
#
# Certificates come from the openssl command line, ECDSA P-256, valid for
# a day: nothing is shipped, nothing expires between runs.
package GwTlsOrigin;

use strict;
use warnings;
use Exporter 'import';
use JSON::PP;
use POSIX ();
use File::Basename qw(dirname);
use Cwd qw(abs_path);
use GwTest;

my $LIBDIR = dirname(abs_path(__FILE__));
my @origins;
END { stop_tls_origin($_) for @origins }

our @EXPORT = qw(make_pki start_tls_origin stop_tls_origin tls_requests);

sub run_openssl {
    my (@args) = @_;
    my $out = `openssl @args 2>&1`;
    die "openssl @args: $out" if $?;
}

# A key and a certificate signed by CA (or self-signed without CA).
sub issue {
    my ($dir, $name, %o) = @_;
    my ($key, $crt, $csr) = ("$dir/$name.key", "$dir/$name.crt", "$dir/$name.csr");
    run_openssl("ecparam -name prime256v1 -genkey -noout -out $key");
    my $ext = "$dir/$name.ext";
    open my $fh, '>', $ext or die "$ext: $!";
    print $fh $o{ca} ? "basicConstraints=critical,CA:FALSE\n" : "basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n";
    print $fh "subjectAltName=$o{san}\n" if $o{san};
    print $fh "extendedKeyUsage=$o{eku}\n" if $o{eku};
    close $fh;
    run_openssl("req -new -key $key -subj '/CN=$o{cn}' -out $csr");
    if ($o{ca}) {
        run_openssl("x509 -req -in $csr -CA $o{ca}.crt -CAkey $o{ca}.key -CAcreateserial"
            . " -days 1 -extfile $ext -out $crt");
    } else {
        run_openssl("x509 -req -in $csr -signkey $key -days 1 -extfile $ext -out $crt");
    }
    return {key => $key, cert => $crt};
}

sub make_pki {
    my ($dir) = @_;
    my %p;
    $p{ca} = issue($dir, 'ca', cn => 'Test CA');
    $p{server} = issue($dir, 'server', cn => 'localhost', ca => "$dir/ca",
        san => 'DNS:localhost,IP:127.0.0.1', eku => 'serverAuth');
    $p{other_ca} = issue($dir, 'other-ca', cn => 'Other CA');
    $p{client_ca} = issue($dir, 'client-ca', cn => 'Client CA');
    $p{client} = issue($dir, 'client', cn => 'gateway-client', ca => "$dir/client-ca",
        eku => 'clientAuth');
    return \%p;
}

sub start_tls_origin {
    my (%o) = @_;
    my $dir = GwTest::subdir('tls-origin-');
    my $port = $o{port} // free_port();
    my $origin = {port => $port, dir => $dir, log => "$dir/requests.log",
        down => "$dir/down"};
    GwTest::spew_file($origin->{log}, '');
    my @extra = $o{client_ca} ? ('--client-ca', $o{client_ca}) : ();
    $origin->{pid} = GwTest::spawn([$^X, "$LIBDIR/tls-origin.pl", '--port', $port,
        '--cert', $o{cert}, '--key', $o{key}, '--log', $origin->{log},
        '--down', $origin->{down}, @extra], "$dir/stdout", "$dir/stderr");
    my $ok = wait_for(sub { GwTest::port_open($port) }, 10);
    die "tls origin did not start: " . GwTest::slurp_file("$dir/stderr") unless $ok;
    push @origins, $origin;
    return $origin;
}

sub tls_requests {
    my ($o) = @_;
    open my $fh, '<', $o->{log} or return ();
    return map { decode_json($_) } grep { /\S/ } <$fh>;
}

sub stop_tls_origin {
    my ($o) = @_;
    return unless $o->{pid};
    kill 'TERM', $o->{pid};
    waitpid($o->{pid}, 0);
    delete $o->{pid};
}

1;
