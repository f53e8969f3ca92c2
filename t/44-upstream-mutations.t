# Mutated upstream responses (bytes replaced, inserted or deleted; some sent
# in two pieces, some followed by a close): whatever the upstream sends, the
# client gets a well-formed answer (a valid upstream status, or a 502/504
# JSON error), never a hang, an invalid status or a dead worker. A fixed
# seed keeps the cases the same from run to run.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

srand(12345);
my @base = (
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
    "HTTP/1.1 404 Not Found\r\nX-A: b\r\nContent-Length: 0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc",
);
my @bytes = ("\r", "\n", " ", "\t", ":", "\0", "\x7f", "\x80", "a", "0", "-", "\r\n", "\r\n\r\n");
my @cases;
for (1 .. 300) {
    my $s = $base[int rand @base];
    for (1 .. 1 + int rand 3) {
        my $pos = int rand length $s;
        my $op  = int rand 3;
        if    ($op == 0) { substr($s, $pos, 1, $bytes[int rand @bytes]) }
        elsif ($op == 1) { substr($s, $pos, 0, $bytes[int rand @bytes]) }
        else             { substr($s, $pos, 1, '') }
    }
    push @cases, $s;
}

# The origin: GET /c/N answers case N; every third answer goes in two
# pieces, every fifth connection closes after its answer.
my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
    Listen => 64, ReuseAddr => 1) or die "listen: $!";
my $port   = $l->sockport;
my $parent = $$;
my $origin = fork // die "fork: $!";
if ($origin == 0) {
    open STDOUT, '>', '/dev/null';
    open STDERR, '>', '/dev/null';
    $SIG{TERM} = sub { POSIX::_exit(0) };
    $SIG{CHLD} = 'IGNORE';
    while (1) {
        POSIX::_exit(0) if getppid() != $parent;
        my $c = $l->accept or next;
        my $kid = fork;
        next if !defined $kid || $kid;
        my $buf = '';
        while (1) {
            my $i;
            while (($i = index($buf, "\r\n\r\n")) < 0) {
                my $n = sysread($c, $buf, 65536, length $buf);
                POSIX::_exit(0) unless $n;
            }
            my $head = substr($buf, 0, $i + 4, '');
            my ($n) = $head =~ m{^\S+ /c/(\d+)};
            my $out = $cases[$n // 0];
            if (length($out) > 10 && ($n // 0) % 3 == 0) {
                my $k = int(length($out) / 2);
                syswrite($c, substr($out, 0, $k));
                sleep 0.005;
                syswrite($c, substr($out, $k));
            } else {
                syswrite($c, $out);
            }
            POSIX::_exit(0) if ($n // 0) % 5 == 0;
        }
    }
}
close $l;
END { if ($origin) { kill 'TERM', $origin; waitpid($origin, 0) } }

my $gw = start_gateway(config => {
    upstreams => [{ name => 'o', nodes => ["127.0.0.1:$port"], retries => 0, breaker => 'off',
                    timeouts => { read => '300ms' } }],
    routes    => [{ name => 'r', match => { path => '/*' }, upstream => 'o' }],
});

my (%st, $slow, $bad);
($slow, $bad) = (0, 0);
for my $i (0 .. $#cases) {
    my $t0 = time;
    my $r  = http_request($gw->{port}, 'GET', "/c/$i", timeout => 3 * mult());
    if (time - $t0 > 2 * mult()) {
        $slow++;
        diag(sprintf 'case %d hangs: %vd', $i, $cases[$i]);
    }
    $st{ $r->{status} }++;
    if ($r->{status} !~ /^(200|404|502|504)$/) {
        $bad++;
        diag(sprintf 'case %d: status %s for %vd', $i, $r->{status}, $cases[$i]);
    }
}
note(join ' ', map { "$_:$st{$_}" } sort keys %st);
is($slow, 0, 'no request hangs');
is($bad, 0, 'every answer is a valid upstream status or a 502/504');
ok(($st{502} // 0) > 0 && ($st{200} // 0) > 0, 'both kinds of answers occur');
unlike(gateway_log($gw), qr/worker \d+ (died|exited on signal)/, 'no worker died');

stop_all();
done_testing();
