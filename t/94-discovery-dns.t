# The DNS watcher against a DNS server of the test's own (t/lib/dns-server.pl)
# whose zone changes while it runs: A and AAAA records with the configured
# port, SRV records (port, weight, lowest priority only, targets asked or
# taken from the additional section, a truncated answer asked again over
# TCP), re-resolution at the TTL and its min/max clamps, an unchanged answer
# printing nothing, NXDOMAIN as an empty list, a stalled or failing server
# (down, last list kept, back up).
#
# Lists are read from `gateway -d -c FILE`.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use POSIX qw(:sys_wait_h);
use GwTest;
use GwDns;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();


my $ZONE = <<'Z';
web.test A 127.0.0.2 1
web.test A 127.0.0.3 1
web.test AAAA ::1 1
_http._tcp.svc.test SRV 1 10 9001 a.svc.test 30
_http._tcp.svc.test SRV 1 0 9002 b.svc.test 30
_http._tcp.svc.test SRV 2 50 9003 c.svc.test 30
a.svc.test A 10.0.0.1 30
b.svc.test AAAA ::2 30
c.svc.test A 10.0.0.3 30
zero.test A 10.1.0.1 0
long.test A 10.2.0.1 3600
_t._tcp.svc.test SRV 1 1 1 nowhere.test 1
_t._tcp.svc.test SRV 1 1 2 e.svc.test 1
e.svc.test A 10.0.0.5 1
Z
$ZONE .= "_big._tcp.svc.test SRV 1 1 " . (9100 + $_) . " 10.3.0.$_ 30\n" for 1 .. 40;

my $dns = start_dns(zone => $ZONE);
my $ns = "127.0.0.1:$dns->{port}";
my $dir = tmpdir();

my $conf = <<"Y";
gateway: {listen: ["127.0.0.1:1"]}
registries:
  k8s: {type: dns, nameservers: ["$ns"], min_ttl: 200ms, max_ttl: 10s, timeout: 500ms}
  slow: {type: dns, nameservers: ["$ns"], min_ttl: 2s, max_ttl: 10s, timeout: 500ms}
  quick: {type: dns, nameservers: ["$ns"], min_ttl: 100ms, max_ttl: 1s, timeout: 500ms}
upstreams:
  - {name: web, discovery: {registry: k8s, host: web.test, port: 8080}}
  - {name: srv, discovery: {registry: k8s, srv: _http._tcp.svc.test}}
  - {name: big, discovery: {registry: k8s, srv: _big._tcp.svc.test}}
  - {name: gone, discovery: {registry: k8s, host: gone.test, port: 80}}
  - {name: zero, discovery: {registry: slow, host: zero.test, port: 80}}
  - {name: long, discovery: {registry: quick, host: long.test, port: 80}}
  - {name: part, discovery: {registry: k8s, srv: _t._tcp.svc.test}}
  - {name: add, discovery: {registry: k8s, srv: _add._tcp.svc.test}}
routes:
  - {name: r, match: {path: /*}, upstream: web}
Y
spew_file("$dir/gw.yaml", $conf);

my $out = "$dir/disc.out";
my $pid = fork;
die "fork: $!" unless defined $pid;
if ($pid == 0) {
    open STDIN, '<', '/dev/null';
    open STDOUT, '>', $out or POSIX::_exit(126);
    open STDERR, '>', "$dir/disc.err" or POSIX::_exit(126);
    my @cmd = (gw_bin(), '-d', '-c', "$dir/gw.yaml");
    exec @cmd or POSIX::_exit(127);
}

my $JSON = JSON::PP->new;

sub events {
    return map { $JSON->decode($_) } grep { /^\{/ } split /\n/, slurp_file($out);
}

# Every list printed for UPSTREAM, each as "addr/weight ..." in order.
sub lists {
    my ($up) = @_;
    return map { join ' ', map { "$_->{addr}/$_->{weight}" } @{ $_->{nodes} } }
      grep { $_->{nodes} && grep { $_ eq $up } @{ $_->{upstreams} } } events();
}

sub last_list {
    my @l = lists(@_);
    return @l ? $l[-1] : undef;
}

sub states {
    my ($reg) = @_;
    return map { $_->{up} ? 'up' : "down:$_->{why}" }
      grep { defined $_->{registry} && $_->{registry} eq $reg && exists $_->{up} } events();
}

sub wait_list {
    my ($up, $want, $t) = @_;
    return wait_for(sub { my $l = last_list($up); defined $l && $l eq $want }, $t // 5);
}

sub questions {
    my ($re) = @_;
    return scalar grep { /$re/ } dns_queries($dns);
}

# --- first answers --------------------------------------------------------------

ok(wait_list('web', '127.0.0.2:8080/1 127.0.0.3:8080/1 [::1]:8080/1'),
   'A and AAAA records: one node per address, the configured port, weight 1')
  or diag slurp_file($out), slurp_file("$dir/disc.err");
ok(wait_list('srv', '10.0.0.1:9001/10 [::2]:9002/1'),
   'SRV: port and weight from the records, weight 0 as 1, priority 2 unused')
  or diag explain [lists('srv')];
ok(wait_list('gone', ''), 'NXDOMAIN: an empty list');
# lists come sorted by their "ip:port" text
my $big = join ' ', map { "$_/1" } sort map { "10.3.0.$_:" . (9100 + $_) } 1 .. 40;
ok(wait_list('big', $big), 'an SRV answer too large for UDP: all 40 nodes');
ok(questions(qr/^_big\._tcp\.svc\.test SRV tcp$/), '... asked again over TCP');
ok(wait_list('part', '10.0.0.5:2/1'), 'an SRV target without addresses is skipped, the rest stays');
ok(wait_for(sub { slurp_file("$dir/disc.err") =~ /SRV target nowhere\.test has no address/ }, 2),
   '... with a log line naming it');
ok(wait_for(sub { grep { $_ eq 'up' } states('k8s') }, 3), 'registry up');
is(scalar(lists('web')), 1, 'one line per list');

# --- unchanged answers print nothing; TTLs and their clamps ---------------------------

{
    my $window = 3 * mult();
    my @q0 = map { questions($_) } qr/^web\.test A /, qr/^zero\.test A /, qr/^long\.test A /;
    sleep $window;
    my @d = map { questions($_) } qr/^web\.test A /, qr/^zero\.test A /, qr/^long\.test A /;
    $d[$_] -= $q0[$_] for 0 .. 2;
    ok($d[0] >= $window - 1 && $d[0] <= $window + 1,
       "web.test (TTL 1 s) asked again at its TTL: $d[0] times in $window s");
    ok($d[1] <= $window / 2 + 1, "TTL 0 with min_ttl 2 s: $d[1] times in $window s");
    ok($d[2] >= $window - 1, "TTL 3600 with max_ttl 1 s: $d[2] times in $window s");
    is(scalar(lists('web')), 1, 'the same records (in any order) print no new line');
    is(scalar(lists('srv')), 1, 'SRV: no new line either');
    is(scalar(lists('part')), 1, 'SRV with a skipped target: no new line either');
}

# --- a changed zone --------------------------------------------------------------

{
    (my $z = $ZONE) =~ s/^web\.test A 127\.0\.0\.3 1\n/web.test A 127.0.0.9 1\n/m;
    $z =~ s/^b\.svc\.test AAAA ::2 30\n//m;
    my $t0 = time;
    set_zone($dns, $z);
    ok(wait_list('web', '127.0.0.2:8080/1 127.0.0.9:8080/1 [::1]:8080/1', 1 + 1),
       'a changed record set is seen within its TTL');
    note sprintf('seen after %.2f s', time - $t0);
}

# --- NXDOMAIN: the list empties ----------------------------------------------------

{
    (my $z = $ZONE) =~ s/^web\.test .*\n//mg;
    set_zone($dns, $z);
    ok(wait_list('web', '', 3), 'the name gone (NXDOMAIN): an empty list');
    ok(scalar(grep { /^down/ } states('k8s')) == 0, 'NXDOMAIN is an answer: the registry stays up');
    set_zone($dns, $ZONE);
    ok(wait_list('web', '127.0.0.2:8080/1 127.0.0.3:8080/1 [::1]:8080/1', 3), 'back');
}

# --- the additional section -------------------------------------------------------

{
    ok(wait_list('add', ''), 'an SRV name not there yet: an empty list');
    set_zone($dns, "additional on\n$ZONE" . "_add._tcp.svc.test SRV 1 3 7000 d.svc.test 1\n"
                   . "d.svc.test A 10.0.0.4 1\nd.svc.test AAAA ::4 1\n");
    ok(wait_list('add', '10.0.0.4:7000/3 [::4]:7000/3', 3),
       'SRV targets from the additional section');
    is(questions(qr/^d\.svc\.test /), 0, '... without asking about them');
    set_zone($dns, $ZONE);
    ok(wait_list('add', '', 3), 'the SRV name gone: an empty list');
}

# --- a stalled server ---------------------------------------------------------------

{
    my $before = scalar lists('web');
    set_zone($dns, "mode drop\n");
    ok(wait_for(sub { grep { /^down:.*timed out/ } states('k8s') }, 4),
       'a server that does not answer: registry down, with why') or diag explain [states('k8s')];
    sleep 1 * mult();
    is(scalar(lists('web')), $before, 'the last list stays (nothing printed)');
    is(last_list('web'), '127.0.0.2:8080/1 127.0.0.3:8080/1 [::1]:8080/1', '... and it is the last good one');

    set_zone($dns, "mode servfail\n" . $ZONE);
    sleep 2 * mult();
    is(scalar(lists('web')), $before, 'SERVFAIL: the last list stays');
    ok(!grep({ /^up/ } (states('k8s'))[-1]), 'SERVFAIL: still down');

    set_zone($dns, $ZONE);
    ok(wait_for(sub { (states('k8s'))[-1] eq 'up' }, 6), 'the server answers again: registry up (retried with back-off)');
    is(scalar(lists('web')), $before, 'the same records: still no new line');
}

kill 'TERM', $pid;
my $deadline = time + 5 * mult();
my $r = 0;
while (time < $deadline) {
    $r = waitpid($pid, WNOHANG);
    last if $r == $pid;
    sleep 0.02;
}
is($r, $pid, 'the watcher process stops on SIGTERM');
is($? >> 8, 0, '... with exit code 0 (every handle closed)') if $r == $pid;
if ($r != $pid) { kill 'KILL', $pid; waitpid $pid, 0 }

stop_dns($dns);
done_testing();
