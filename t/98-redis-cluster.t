#!/usr/bin/perl
# Redis Cluster, the groundwork: a real cluster of three masters and three
# replicas; gw_cluster's key slots agree with CLUSTER KEYSLOT, its slot map
# with CLUSTER SLOTS as this redis-server writes it; `-t` on redis.type.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use IO::Select;
use GwTest;
use GwRedisFixtures;
use GwRedisCluster;

plan skip_all => 'redis-server or redis-cli not installed (make deps)' unless have_redis_cluster();
my $helper = 'build/unit/test_cluster';
plan skip_all => "$helper not built (make)" unless -x $helper;

# ---- -t on the new keys (no server needed) --------------------------------

sub check_yaml { return check_redis_yaml('t98', @_) }

{
    my ($code, $out) = check_yaml("redis: {type: node, addr: \"127.0.0.1:6379\"}\n");
    is($code, 0, '-t: type node is fine') or diag $out;

    ($code, $out) = check_yaml("redis: {type: cluster, addrs: [\"127.0.0.1:7000\"]}\n");
    is($code, 0, '-t: type cluster is accepted') or diag $out;

    ($code, $out) = check_yaml(
        "redis: {type: cluster, addrs: [\"127.0.0.1:7000\", nope], db: 2, master_name: m}\n");
    isnt($code, 0, '-t: cluster config errors');
    like($out, qr/^redis\.addrs\[1\]: bad address "nope"/m, '  bad seed with its index') or diag $out;
    like($out, qr/^redis\.db: a Redis Cluster has only database 0, got 2$/m, '  db refused')
      or diag $out;
    like($out, qr/^redis\.master_name: not used with type: cluster/m, '  master_name refused')
      or diag $out;

    ($code, $out) = check_yaml("redis: {type: sentinel, addrs: [\"127.0.0.1:26379\"]}\n");
    like($out, qr/^redis: missing key "master_name"$/m, '-t: sentinel needs master_name')
      or diag $out;
    ($code, $out) = check_yaml("redis: {type: ring, addr: \"127.0.0.1:1\"}\n");
    like($out, qr/^redis\.type: expected node, cluster or sentinel, got "ring"$/m,
        '-t: unknown type') or diag $out;
}

# ---- a real cluster ---------------------------------------------------------

my $t0 = time;
my $cl = start_redis_cluster(masters => 3, replicas => 1);
note(sprintf('cluster of six formed in %.1f s', time - $t0));
my $masters = cluster_masters($cl);
is(scalar(keys %$masters), 3, 'three masters serve slots');

# Key shapes the limiters and go-zero use, and the corner cases of the tag rule.
my @keys = (
    'limit:period:route:user1', 'limit:period:api:10.0.0.1', 'limit:period:r:',
    'limit:period:', '{key}.tokens', '{key}.ts', '{limit:token:r:user1}.tokens',
    '{limit:token:r:user1}.ts', '{}', '{}.tokens', '{a}{b}', '{}{a}', '{', 'x{',
    '}', 'x}{y', 'x}{y}', '{{a}}', 'a{b}c', 'foo{hash_tag}', 'somekey', '123456789',
    "caf\xc3\xa9", 'a b', "tab\there", 'user:1000', 'x' x 300,
    (map { "limit:period:route:user$_" } 1 .. 60),
);
my @printed = `$helper --keyslot @{[ map { quotemeta } @keys ]}`;
is(scalar(@printed), scalar(@keys), 'the helper printed one slot per key');
my ($agree, @disagree) = (0);
for my $i (0 .. $#keys) {
    my ($k, $mine) = $printed[$i] =~ /^(.*)\t(\d+)$/s;
    my $real = redis_cmd($cl->{nodes}[0], 'CLUSTER', 'KEYSLOT', $keys[$i]);
    if (defined $mine && $k eq $keys[$i] && $mine == $real) {
        $agree++;
    } else {
        push @disagree, "$keys[$i]: redis $real, ours " . ($mine // 'none');
    }
}
is($agree, scalar(@keys), 'every slot agrees with CLUSTER KEYSLOT') or diag join("\n", @disagree);

my %seen;
for my $i (1 .. 60) {
    my ($slot) = $printed[-61 + $i] =~ /\t(\d+)$/;
    for my $m (keys %$masters) {
        $seen{$m}++ if grep { $slot >= $_->[0] && $slot <= $_->[1] } @{ $masters->{$m} };
    }
}
is(scalar(keys %seen), 3, 'sixty user keys spread over all three masters');

# The raw CLUSTER SLOTS reply of this redis-server through gw_cluster's map.
sub raw_reply {
    my ($port, $cmd) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
        Timeout => 2 * mult()) or die "connect: $!";
    print $s $cmd;
    my ($buf, $sel) = ('', IO::Select->new($s));
    while ($sel->can_read(length $buf ? 0.3 : 2 * mult())) {
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
    }
    return $buf;
}

sub expected_map {
    my ($m) = @_;
    my @owner;
    for my $addr (keys %$m) {
        $owner[$_] = $addr for map { $_->[0] .. $_->[1] } @{ $m->{$addr} };
    }
    my @lines;
    for (my $s = 0; $s < 16384;) {
        my $e = $s;
        $e++ while $e + 1 < 16384 && ($owner[$e + 1] // '') eq ($owner[$s] // '');
        push @lines, "$s-$e $owner[$s]" if defined $owner[$s];
        $s = $e + 1;
    }
    return join("\n", @lines) . "\n";
}

for my $n ($cl->{nodes}[0], $cl->{nodes}[-1]) {
    my $file = tmpdir() . "/slots-$n->{port}.resp";
    spew_file($file, raw_reply($n->{port}, "CLUSTER SLOTS\r\n"));
    my $got = `$helper --map $file 127.0.0.1 $n->{port}`;
    is($got, expected_map(cluster_masters($cl, $n)),
        "the map from node $n->{port}'s CLUSTER SLOTS matches its masters");
}

# A MOVED as this server writes it, read by the helper's parser through the unit test
# (gw_cluster_redirect_parse is covered there); here only its shape is checked.
{
    my $slot = redis_cmd($cl->{nodes}[0], 'CLUSTER', 'KEYSLOT', '{key}.tokens');
    my ($owner) = grep { my $a = $_; grep { $slot >= $_->[0] && $slot <= $_->[1] } @{ $masters->{$a} } }
      keys %$masters;
    my ($other) = grep { $_ ne $owner } keys %$masters;
    my ($oport) = $other =~ /:(\d+)$/;
    my $r = cluster_node_cmd($cl, $oport, 'GET', '{key}.tokens');
    is($r, "ERR:MOVED $slot $owner", 'a key asked of the wrong master: MOVED slot host:port');
}

# gw_rcluster against this cluster: a script INCRs sixty keys through the
# client (EVALSHA, NOSCRIPT then EVAL on each master the first time); each key
# lands on the master that owns its slot.
my $driver = 'build/unit/test_rcluster';
SKIP: {
    skip "$driver not built", 7 unless -x $driver;
    my $owner_of = sub {
        my ($key) = @_;
        my $slot = redis_cmd($cl->{nodes}[0], 'CLUSTER', 'KEYSLOT', $key);
        for my $a (keys %$masters) {
            return $a if grep { $slot >= $_->[0] && $slot <= $_->[1] } @{ $masters->{$a} };
        }
        return '';
    };
    for my $round (1, 2) {
        my $out = `$driver --incr 60 $cl->{seeds}[0] $cl->{seeds}[1] 2>/dev/null`;
        my %got = $out =~ /^(user\d+)\t(\S+)$/mg;
        is(scalar(grep { ($got{"user$_"} // '') eq $round } 1 .. 60), 60,
            "round $round: the client INCRed sixty keys to $round") or diag $out;
        my ($maps) = $out =~ /^stats maps=(\d+)/m;
        is($maps, 1, "round $round: one slot map") or diag $out;
        my ($right, %on) = (0);
        for my $i (1 .. 60) {
            my $owner = $owner_of->("user$i");
            my ($port) = $owner =~ /:(\d+)$/;
            $on{$owner}++;
            $right++ if ($port && cluster_node_cmd($cl, $port, 'GET', "user$i") // '') eq $round;
        }
        is($right, 60, "round $round: every key is on the master that owns its slot");
        is(scalar(keys %on), 3, "round $round: the keys span all three masters") if $round == 2;
    }
}

stop_redis_cluster($cl);
done_testing();
