# Discovery from etcd: a real etcd, services registered by etcd's own Go
# client the way go-zero and go-micro register them (t/reg), and the lists
# the watcher reports (one JSON line per change). Adds, removals, lease
# expiry after SIGKILL, a value that does not parse, go-micro records
# (version and metadata), compaction while the stream is down, etcd killed
# and restarted, a first endpoint that is down, auth (and a new token after
# a restart), a watch message over the size limit.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use GwTest;
use GwEtcd;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();
plan skip_all => 'etcd not installed (make deps)' unless have_etcd();
my ($REG, $why) = reg_bin();
plan skip_all => "registration program: $why" unless $REG;

my $TTL = 4; # seconds; go-zero uses 10, shorter keeps the test short

sub conf {
    my (%o) = @_;
    my $eps = join ', ', map { "\"$_\"" } @{ $o{endpoints} };
    my $auth = $o{user} ? ", username: $o{user}, password: $o{password}" : '';
    my $y = "gateway: {listen: [\"127.0.0.1:" . free_port() . "\"]}\n"
      . "registries:\n  etcd1: {type: etcd, endpoints: [$eps]$auth, timeout: 2s}\n"
      . "upstreams:\n";
    my @names;
    for my $u (@{ $o{upstreams} }) {
        my ($name, $disc) = @$u;
        $y .= "  - name: $name\n    discovery: {registry: etcd1, $disc}\n";
        push @names, $name;
    }
    $y .= "routes:\n";
    $y .= "  - {match: {path: /$_/*}, upstream: $_}\n" for @names;
    return $y;
}

sub addrs {
    my ($nodes) = @_;
    return join ' ', sort map { $_->{addr} } @$nodes;
}

sub has_addrs {
    my ($want) = @_;
    return sub { addrs($_[0]) eq $want };
}

sub up_states {
    my ($d) = @_;
    return join ' ', map { $_->{up} ? 'up' : 'down' } grep { exists $_->{up} } disc_lines($d);
}

my $e = start_etcd();

# --- go-zero: add, remove, lease expiry, a value that does not parse --------
{
    my $d = start_disc(conf(endpoints => [$e->{url}],
        upstreams => [['user', 'format: go-zero, key: user.rpc']]));
    my $src = 'etcd1|go-zero|user.rpc';
    ok(disc_wait($d, $src, has_addrs('')), 'go-zero: an empty prefix is an empty list');

    my $a = start_reg($e, mode => 'go-zero', key => 'user.rpc', addr => '127.0.0.1:9001',
        ttl => $TTL);
    like($a->{key}, qr{^user\.rpc/\d+$}, "go-zero key is <key>/<lease id in decimal> ($a->{key})");
    my $n = disc_wait($d, $src, has_addrs('127.0.0.1:9001'));
    ok($n, 'go-zero: a registered instance appears');
    is($n && $n->[0]{id}, $a->{key}, 'go-zero: the node id is the etcd key');
    is($n && $n->[0]{weight}, 1, 'go-zero: weight 1');

    my $b = start_reg($e, mode => 'go-zero', key => 'user.rpc', addr => '[::1]:9002', ttl => $TTL);
    ok(disc_wait($d, $src, has_addrs('127.0.0.1:9001 [::1]:9002')),
        'go-zero: a second instance (IPv6) is added to the list');

    etcdctl($e, 'put', 'user.rpc/garbage', 'not-an-address');
    ok(wait_for(sub { disc_log($d) =~ m{skipping etcd key "user\.rpc/garbage"} }, 5),
        'a value that does not parse is logged with its key');
    etcdctl($e, 'put', 'user.rpc/static', '127.0.0.1:9003');
    ok(disc_wait($d, $src, has_addrs('127.0.0.1:9001 127.0.0.1:9003 [::1]:9002')),
        'the bad value is skipped, the others are kept');
    etcdctl($e, 'put', 'user.rpcx/other', '127.0.0.1:9999');
    etcdctl($e, 'put', 'user.rpc', '127.0.0.1:9998');

    stop_reg($a);
    ok(disc_wait($d, $src, has_addrs('127.0.0.1:9003 [::1]:9002')),
        'go-zero: a stopped instance (lease revoked) is removed');
    ok(!grep({ $_->{addr} =~ /999[89]/ } @{ disc_last($d, $src) }),
        'keys beside the prefix are not in the list');

    my $t0 = time;
    stop_reg($b, signal => 'KILL');
    ok(disc_wait($d, $src, has_addrs('127.0.0.1:9003'), $TTL + 6),
        'go-zero: a SIGKILLed instance goes when its lease expires');
    my $took = time - $t0;
    cmp_ok($took, '<', ($TTL + 6) * mult(), sprintf('... within TTL + margin (%.1fs)', $took));

    etcdctl($e, 'del', 'user.rpc/static');
    ok(disc_wait($d, $src, has_addrs('')), 'a deleted key is removed; the list can become empty');
    my ($ev) = reverse grep { defined $_->{events} } disc_lines($d);
    cmp_ok($ev && $ev->{events}, '>=', 6, 'events are counted');
    is(up_states($d), 'up', 'the registry was up all along (one state line)');
    is(stop_disc($d), 0, 'the watcher stops cleanly on SIGTERM');
}

# --- go-micro: records, version and metadata ---------------------------------
{
    my $d = start_disc(conf(endpoints => [$e->{url}],
        upstreams => [['greeter', 'format: go-micro, service: greeter'],
                      ['other', 'format: go-micro, service: other']]));
    my $src = 'etcd1|go-micro|/micro/registry/greeter';
    my $r1 = start_reg($e, mode => 'go-micro', service => 'greeter', node => 'greeter-1',
        addr => '127.0.0.1:9101', version => 'v2', meta => 'zone=a', ttl => $TTL);
    is($r1->{key}, '/micro/registry/greeter/greeter-1', 'go-micro key');
    my $n = disc_wait($d, $src, has_addrs('127.0.0.1:9101'));
    ok($n, 'go-micro: a registered node appears');
    is($n && $n->[0]{meta}{version}, 'v2', 'go-micro: meta.version is the service version');
    is($n && $n->[0]{meta}{zone}, 'a', 'go-micro: node metadata kept');
    is($n && $n->[0]{meta}{protocol}, 'mucp', 'go-micro: all of it');
    is($n && $n->[0]{id}, '/micro/registry/greeter/greeter-1', 'go-micro: id is the key');

    my $r2 = start_reg($e, mode => 'go-micro', service => 'greeter', node => 'greeter-2',
        addr => '127.0.0.1:9102', version => 'v1', meta => 'weight=7', ttl => $TTL);
    $n = disc_wait($d, $src, has_addrs('127.0.0.1:9101 127.0.0.1:9102'));
    ok($n, 'go-micro: nodes of one service are merged');
    my ($n2) = grep { $_->{addr} eq '127.0.0.1:9102' } @{ $n || [] };
    is($n2 && $n2->{meta}{version}, 'v1', 'go-micro: each node has its own version');
    is($n2 && $n2->{weight}, 7, 'go-micro: a numeric meta.weight is the weight');

    etcdctl($e, 'put', '/micro/registry/greeter/broken', '{"name":"greeter","nodes":[{"id"');
    ok(wait_for(sub { disc_log($d) =~ m{skipping etcd key "/micro/registry/greeter/broken"} }, 5),
        'go-micro: a record that does not parse is logged with its key');
    etcdctl($e, 'put', '/micro/registry/greeter/noaddr',
        '{"name":"greeter","version":"v9","nodes":[{"id":"x","address":"nowhere"}]}');
    ok(wait_for(sub { disc_log($d) =~ m{skipping etcd key "/micro/registry/greeter/noaddr"} }, 5),
        'go-micro: a node without host:port is skipped');
    is(addrs(disc_last($d, $src)), '127.0.0.1:9101 127.0.0.1:9102', '... the list stays right');
    is(addrs(disc_last($d, 'etcd1|go-micro|/micro/registry/other') // []), '', 'another service is apart');

    stop_reg($r1);
    ok(disc_wait($d, $src, has_addrs('127.0.0.1:9102')), 'go-micro: a deregistered node goes');
    stop_reg($r2);
    etcdctl($e, 'del', '--prefix', '/micro/registry/');
    ok(disc_wait($d, $src, has_addrs('')), 'go-micro: empty at the end');
    stop_disc($d);
}

# --- compaction while the stream is down --------------------------------------
{
    my $px = start_proxy($e->{port});
    my $d = start_disc(conf(endpoints => ["http://127.0.0.1:$px->{port}"],
        upstreams => [['c', 'format: go-zero, key: comp'], ['c2', 'format: go-zero, key: comp2']]));
    etcdctl($e, 'put', 'comp/1', '127.0.0.1:9201');
    ok(disc_wait($d, 'etcd1|go-zero|comp', has_addrs('127.0.0.1:9201')), 'compaction: first list');
    ok(disc_wait($d, 'etcd1|go-zero|comp2', has_addrs('')), 'compaction: the second target too');
    my $port = $px->{port};
    stop_proxy($px); # the stream breaks; etcd stays up
    ok(wait_for(sub { up_states($d) =~ /down$/ }, 5), 'compaction: the watcher saw the stream go');
    etcdctl($e, 'del', 'comp/1');
    etcdctl($e, 'put', 'comp/2', '127.0.0.1:9202');
    etcdctl($e, 'put', 'comp2/1', '127.0.0.1:9203');
    my (undef, $out) = etcdctl($e, 'put', '-w', 'json', 'other/x', 'y');
    my ($rev) = $out =~ /"revision":(\d+)/;
    my ($rc, $cout) = etcdctl($e, 'compact', $rev);
    is($rc, 0, "compacted at $rev") or diag $cout;
    $px = start_proxy($e->{port}, port => $port);
    ok(disc_wait($d, 'etcd1|go-zero|comp', has_addrs('127.0.0.1:9202'), 15),
        'compaction: the list is read again and is right');
    ok(disc_wait($d, 'etcd1|go-zero|comp2', has_addrs('127.0.0.1:9203'), 15),
        'compaction: every compacted target is read again');
    like(disc_log($d), qr/compacted/, 'compaction: logged');
    etcdctl($e, 'put', 'comp/3', '127.0.0.1:9204');
    ok(disc_wait($d, 'etcd1|go-zero|comp', has_addrs('127.0.0.1:9202 127.0.0.1:9204')),
        'compaction: the watch goes on after the read');
    stop_disc($d);
    stop_proxy($px);
}

# --- a watch message over the limit --------------------------------------------
{
    my $d = start_disc(conf(endpoints => [$e->{url}],
        upstreams => [['big', 'format: go-zero, key: big']]));
    etcdctl($e, 'put', 'big/1', '127.0.0.1:9301');
    ok(disc_wait($d, 'etcd1|go-zero|big', has_addrs('127.0.0.1:9301')), 'big: first list');
    my ($rc, $out) = etcdctl($e, 'put', 'big/huge', \('x' x (1024 * 1024 + 100)));
    is($rc, 0, 'a 1 MiB value is put') or diag $out;
    etcdctl($e, 'put', 'big/2', '127.0.0.1:9302');
    ok(wait_for(sub { disc_log($d) =~ /watch message over/ }, 5),
        'a watch message over 1 MiB is refused with a log line');
    ok(disc_wait($d, 'etcd1|go-zero|big', has_addrs('127.0.0.1:9301 127.0.0.1:9302'), 15),
        '... then the prefix is read again (the huge value skipped)');
    etcdctl($e, 'del', 'big/huge');
    stop_disc($d);
}

# --- etcd killed and restarted; a first endpoint that is down -------------------
{
    my $dead = free_port();
    my $d = start_disc(conf(endpoints => ["http://127.0.0.1:$dead", $e->{url}],
        upstreams => [['r', 'format: go-zero, key: restart']]));
    etcdctl($e, 'put', 'restart/1', '127.0.0.1:9401');
    my $src = 'etcd1|go-zero|restart';
    ok(disc_wait($d, $src, has_addrs('127.0.0.1:9401')),
        'two endpoints, the first down: the list comes from the second');
    like(up_states($d), qr/up$/, 'two endpoints: up');

    stop_etcd($e, signal => 'KILL');
    ok(wait_for(sub { up_states($d) =~ /down$/ }, 10), 'etcd killed: the registry is down');
    sleep 0.5;
    is(addrs(disc_last($d, $src)), '127.0.0.1:9401', 'etcd killed: the last list stays');
    restart_etcd($e);
    ok(wait_for(sub { up_states($d) =~ /up$/ }, 15), 'etcd restarted: the registry is up again');
    etcdctl($e, 'put', 'restart/2', '127.0.0.1:9402');
    ok(disc_wait($d, $src, has_addrs('127.0.0.1:9401 127.0.0.1:9402'), 10),
        'etcd restarted: changes arrive again');
    stop_disc($d);
}

# --- auth -----------------------------------------------------------------------
{
    my $ea = start_etcd();
    my $root = 'root:rootpw';
    for my $cmd (['user', 'add', 'root:rootpw'], ['user', 'grant-role', 'root', 'root'],
                 ['role', 'add', 'reader'],
                 ['role', 'grant-permission', 'reader', '--prefix=true', 'read', 'sec/'],
                 ['user', 'add', 'gw:gwpw'], ['user', 'grant-role', 'gw', 'reader'],
                 ['auth', 'enable']) {
        my ($rc, $out) = etcdctl($ea, @$cmd);
        is($rc, 0, "etcdctl @$cmd") or diag $out;
    }
    my $d = start_disc(conf(endpoints => [$ea->{url}], user => 'gw', password => 'gwpw',
        upstreams => [['s', 'format: go-zero, key: sec']]));
    my $src = 'etcd1|go-zero|sec';
    my $r = start_reg($ea, mode => 'go-zero', key => 'sec', addr => '127.0.0.1:9501',
        user => 'root', password => 'rootpw', ttl => 30);
    ok(disc_wait($d, $src, has_addrs('127.0.0.1:9501')), 'auth: a reader user sees the list');

    # simple tokens live in memory: the held one is refused by the new
    # etcd. On a loaded host the watcher may first meet the old etcd as it
    # shuts down ("transport is closing") and come back later; either way
    # it must be back, and changes must arrive (below).
    restart_etcd($ea);
    ok(wait_for(sub { disc_log($d) =~ /refused the token.*authenticating again|answering again/ },
        15), 'auth: the watcher is back after etcd restarted (a refused token is replaced)');
    etcdctl($ea, 'user', \$root, 'put', 'sec/2', '127.0.0.1:9502');
    ok(disc_wait($d, $src, sub { addrs($_[0]) =~ /127\.0\.0\.1:9502/ }, 15),
        'auth: changes arrive with the new token');
    stop_reg($r);
    stop_disc($d);

    my $bad = start_disc(conf(endpoints => [$ea->{url}], user => 'gw', password => 'wrong',
        upstreams => [['s', 'format: go-zero, key: sec']]));
    ok(wait_for(sub {
        grep { exists $_->{up} && !$_->{up} && $_->{why} =~ /authentication failed/ }
          disc_lines($bad) }, 10), 'auth: a wrong password is a reported failure');
    ok(!defined disc_last($bad, $src), 'auth: no list without a token');
    stop_disc($bad);
    stop_etcd($ea);
}

stop_etcd($e);
done_testing();
