#!/usr/bin/perl
# A small HTTPS/1.1 origin for the upstream TLS tests (t/36), on
# IO::Socket::SSL. One process per connection (forked after accept, so a
# broken handshake never holds the others), keep-alive, one TLS context
# made before the forks so that every connection shares its session
# ticket keys and a client can resume.
#
#   tls-origin.pl --port P --cert C --key K --log FILE [--client-ca CA]
#                 [--down FILE]
#
# --client-ca: a client certificate signed by CA is required.
# --down FILE: while FILE exists, GET /health answers 503.
# Every request appends one JSON line to FILE: method, uri, conn (the
# connection's process id), seq (requests so far on it), resumed (the
# handshake resumed a session), sni, alpn, subject (the client
# certificate's), host. Answers 200 with "tls-ok URI" and X-Conn.
use strict;
use warnings;
use Getopt::Long;
use IO::Socket::INET;
use IO::Socket::SSL;
use JSON::PP;
use POSIX ();

my ($port, $cert, $key, $log, $client_ca, $down);
GetOptions('port=i' => \$port, 'cert=s' => \$cert, 'key=s' => \$key, 'log=s' => \$log,
    'client-ca=s' => \$client_ca, 'down=s' => \$down) or die "bad options\n";

my $ctx = IO::Socket::SSL::SSL_Context->new(
    SSL_server      => 1,
    SSL_cert_file   => $cert,
    SSL_key_file    => $key,
    SSL_alpn_protocols => ['http/1.1'],
    $client_ca ? (SSL_verify_mode => SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                  SSL_ca_file => $client_ca)
               : (SSL_verify_mode => SSL_VERIFY_NONE),
) or die "context: $SSL_ERROR\n";

my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port, Proto => 'tcp',
    Listen => 64, ReuseAddr => 1) or die "listen $port: $!\n";
my $parent = $$;
$SIG{TERM} = sub { POSIX::_exit(0) };
$SIG{CHLD} = 'IGNORE';
my $json = JSON::PP->new->canonical;

while (1) {
    my $c = $l->accept or next;
    my $pid = fork;
    if (!defined $pid || $pid) {
        close $c;
        next;
    }
    close $l;
    $SIG{TERM} = sub { POSIX::_exit(0) };
    my $s = IO::Socket::SSL->start_SSL($c, SSL_server => 1, SSL_reuse_ctx => $ctx,
        Timeout => 10);
    POSIX::_exit(0) unless $s;
    my $resumed = $s->get_session_reused ? 1 : 0;
    my $sni = $s->get_servername // '';
    my $alpn = $s->alpn_selected // '';
    my $subject = $s->peer_certificate('subject') // '';
    my ($buf, $seq) = ('', 0);
    while (1) {
        POSIX::_exit(0) if getppid() != $parent;
        my $i = index($buf, "\r\n\r\n");
        if ($i < 0) {
            my $n = sysread($s, $buf, 65536, length $buf);
            POSIX::_exit(0) unless $n;
            next;
        }
        my $head = substr($buf, 0, $i + 4, '');
        my ($m, $uri) = $head =~ /^(\S+) (\S+)/;
        my ($host) = $head =~ /^Host:\s*(\S+)/mi;
        my ($cl) = $head =~ /^Content-Length:\s*(\d+)/mi;
        $cl //= 0;
        while (length $buf < $cl) {
            my $n = sysread($s, $buf, 65536, length $buf);
            POSIX::_exit(0) unless $n;
        }
        my $body = substr($buf, 0, $cl, '');
        $seq++;
        open my $lf, '>>', $log or die "$log: $!";
        syswrite($lf, $json->encode({method => $m, uri => $uri, conn => $$, seq => $seq,
            resumed => $resumed, sni => $sni, alpn => $alpn, subject => $subject,
            host => $host // '', body_len => length $body}) . "\n");
        close $lf;
        my ($status, $out) = (200, "tls-ok $uri");
        $status = 503 if $uri eq '/health' && $down && -e $down;
        $out = 'x' x $1 if $uri =~ m{^/big/(\d+)$};
        my $resp = "HTTP/1.1 $status X\r\nContent-Length: " . length($out)
            . "\r\nX-Conn: $$\r\n\r\n$out";
        while (length $resp) { # a TLS socket takes one record (16 kB) a call
            my $n = syswrite($s, $resp);
            POSIX::_exit(0) unless $n;
            substr($resp, 0, $n, '');
        }
    }
}
