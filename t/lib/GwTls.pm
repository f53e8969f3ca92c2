package GwTls;

# TLS helpers for the tests: a throw-away CA and certificates made with the
# openssl command, and thin wrappers over `openssl s_client` and `curl`.

use strict;
use warnings;
use Exporter 'import';
use GwTest;

our @EXPORT = qw(have_tls_tools make_ca make_cert s_client curl_https);

sub have_tls_tools {
    for my $t (qw(openssl curl timeout)) {
        return 0 unless grep { -x "$_/$t" } split /:/, $ENV{PATH};
    }
    return 1;
}

sub run_quiet {
    my ($cmd) = @_;
    my $out = `$cmd 2>&1`;
    die "$cmd failed:\n$out" if $? != 0;
    return $out;
}

sub keygen {
    my ($type, $key) = @_;
    my $alg = $type eq 'rsa' ? '-algorithm RSA -pkeyopt rsa_keygen_bits:2048'
                             : '-algorithm EC -pkeyopt ec_paramgen_curve:P-256';
    run_quiet("openssl genpkey $alg -out $key");
}

# make_ca($dir, $name) -> {pem, key}
sub make_ca {
    my ($dir, $name) = @_;
    my $ca = { pem => "$dir/$name.pem", key => "$dir/$name.key" };
    keygen('ec', $ca->{key});
    run_quiet("openssl req -x509 -new -key $ca->{key} -out $ca->{pem} -days 30 "
        . "-subj '/CN=$name'");
    return $ca;
}

# make_cert($dir, $name, ca => $ca, cn => CN, [san => ['a.example', ...]],
#           [type => 'ec'|'rsa'], [days => N], [client => 1]) -> {pem, key}
sub make_cert {
    my ($dir, $name, %o) = @_;
    my $c = { pem => "$dir/$name.pem", key => "$dir/$name.key" };
    keygen($o{type} // 'ec', $c->{key});
    run_quiet("openssl req -new -key $c->{key} -out $dir/$name.csr -subj '/CN=$o{cn}"
        . ($o{o} ? "/O=$o{o}" : '') . "'");
    my @ext;
    push @ext, 'subjectAltName=' . join(',', map { "DNS:$_" } @{ $o{san} }) if $o{san};
    push @ext, 'extendedKeyUsage=' . ($o{client} ? 'clientAuth' : 'serverAuth');
    GwTest::spew_file("$dir/$name.ext", join("\n", @ext) . "\n");
    my $days = $o{days} // 90;
    run_quiet("openssl x509 -req -in $dir/$name.csr -CA $o{ca}{pem} -CAkey $o{ca}{key} "
        . "-CAcreateserial -out $c->{pem} -days $days -extfile $dir/$name.ext");
    return $c;
}

# s_client($port, [{wait => s}], ARGS...) -> everything s_client printed.
# It waits a moment (wait, default 0.25 s) before quitting, so that TLS 1.3
# tickets arrive.
sub s_client {
    my ($port, @args) = @_;
    my $o = ref $args[0] eq 'HASH' ? shift @args : {};
    my $w = $o->{wait} // 0.25;
    my $t = int(10 * GwTest::mult());
    my $cmd = "(sleep $w; echo Q 2>/dev/null) | timeout $t openssl s_client -connect 127.0.0.1:$port "
      . join(' ', @args) . ' 2>&1';
    return scalar `$cmd`;
}

# curl_https($port, $path, host => H, ca => FILE, [args => [..]])
#   -> (exit code, output: head and body with -i)
sub curl_https {
    my ($port, $path, %o) = @_;
    my $host = $o{host} // 'api.example.com';
    my $t = int(10 * GwTest::mult());
    my $cmd = "curl -sS -i --max-time $t --resolve $host:$port:127.0.0.1 "
      . ($o{ca} ? "--cacert $o{ca} " : '-k ')
      . join(' ', @{ $o{args} // [] }) . " https://$host:$port$path 2>&1";
    my $out = `$cmd`;
    return ($? >> 8, $out);
}

1;
