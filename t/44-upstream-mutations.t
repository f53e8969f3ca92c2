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
my $port = start_scripted_origin(
    pause  => 0.005,
    answer => sub {
        my ($n) = $_[0] =~ m{^\S+ /c/(\d+)};
        $n //= 0;
        my $out = $cases[$n];
        my $k   = int(length($out) / 2);
        my @parts = length($out) > 10 && $n % 3 == 0 ? (substr($out, 0, $k), substr($out, $k)) : ($out);
        return (\@parts, $n % 5 == 0);
    },
)->{port};

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
