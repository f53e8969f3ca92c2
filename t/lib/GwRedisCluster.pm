package GwRedisCluster;

# A Redis Cluster for the tests: redis-server nodes in cluster mode on free
# loopback ports (client and bus ports both picked, since port + 10000 may
# be past 65535 for an ephemeral port), each in its own temporary
# directory, joined by `redis-cli --cluster create`, and ready once every
# node's CLUSTER INFO says cluster_state:ok. Every process is stopped by
# PID.

use strict;
use warnings;

use Exporter 'import';
use POSIX qw(:sys_wait_h);
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use GwTest;
use GwRedisFixtures;

our @EXPORT = qw(
  have_redis_cluster start_redis_cluster stop_redis_cluster cluster_node_cmd
  cluster_masters cluster_info cluster_cmd cluster_node cluster_live cluster_myid
  cluster_replica_of cluster_owner cluster_kill cluster_asking
);

my @clusters;

sub have_redis_cluster {
    return have_redis() && -x '/usr/bin/redis-cli';
}

# One node; dies when it does not answer PING in time.
sub _start_node {
    my (%o) = @_;
    my $n = { port => free_port(), bus => free_port(), dir => GwTest::subdir('rcluster-') };
    my @args = ('/usr/bin/redis-server', '--port', $n->{port}, '--cluster-port', $n->{bus},
        '--bind', '127.0.0.1', '--protected-mode', 'no', '--save', '', '--appendonly', 'no',
        '--dir', $n->{dir}, '--daemonize', 'no', '--loglevel', 'notice',
        '--cluster-enabled', 'yes', '--cluster-config-file', "$n->{dir}/nodes.conf",
        '--cluster-node-timeout', $o{node_timeout}, '--enable-debug-command', 'local',
        '--cluster-require-full-coverage', $o{full_coverage} // 'yes');
    push @args, '--requirepass', $o{password}, '--masterauth', $o{password}
      if defined $o{password};
    $n->{password} = $o{password};
    $n->{pid} = GwTest::spawn(\@args, "$n->{dir}/stdout", "$n->{dir}/stdout");
    redis_wait_up($n, 'cluster node');
    return $n;
}

# cluster_info($node) -> { cluster_state => 'ok', ... } from CLUSTER INFO.
sub cluster_info {
    my ($n) = @_;
    my $r = eval { redis_cmd($n, 'CLUSTER', 'INFO') } // '';
    return { map { /^(\w+):(\S*)/ ? ($1, $2) : () } split /\r?\n/, ref $r ? '' : $r };
}

# start_redis_cluster([masters => 3], [replicas => 1], [node_timeout => ms],
# [password => S], [full_coverage => 'yes'|'no']) -> { nodes => [...],
# seeds => ['127.0.0.1:P', ...] }.
# Ready when every node says cluster_state:ok and knows every other.
sub start_redis_cluster {
    my (%o) = @_;
    my $masters  = $o{masters}  // 3;
    my $replicas = $o{replicas} // 1;
    my $cl = { nodes => [] };
    push @clusters, $cl;
    for (1 .. $masters * (1 + $replicas)) {
        push @{ $cl->{nodes} },
          _start_node(node_timeout => $o{node_timeout} // 2000, password => $o{password},
            full_coverage => $o{full_coverage});
    }
    $cl->{seeds} = [map { "127.0.0.1:$_->{port}" } @{ $cl->{nodes} }];
    my $dir = GwTest::subdir('rcluster-create-');
    my @cmd = ('/usr/bin/redis-cli', '--cluster', 'create', @{ $cl->{seeds} },
        '--cluster-replicas', $replicas, '--cluster-yes');
    push @cmd, '-a', $o{password}, '--no-auth-warning' if defined $o{password};
    my $pid = GwTest::spawn(\@cmd, "$dir/out", "$dir/out");
    my $code = GwTest::reap($pid, 30 * mult());
    die "redis-cli --cluster create failed ($code): " . slurp_file("$dir/out") if $code;
    my $total = @{ $cl->{nodes} };
    my $ok = wait_for(sub {
        for my $n (@{ $cl->{nodes} }) {
            my $i = cluster_info($n);
            return 0 unless ($i->{cluster_state} // '') eq 'ok'
              && ($i->{cluster_known_nodes} // 0) == $total;
        }
        return 1;
    }, 20);
    die "the cluster did not become ok: " . slurp_file("$dir/out") unless $ok;
    return $cl;
}

# The masters as { 'host:port' => [[start, end], ...] }, from CLUSTER SLOTS
# asked of NODE (default the first).
sub cluster_masters {
    my ($cl, $node) = @_;
    my $r = redis_cmd($node // $cl->{nodes}[0], 'CLUSTER', 'SLOTS');
    die "CLUSTER SLOTS: $r\n" unless ref $r;
    my %m;
    for my $e (@$r) {
        my ($start, $end, $master) = @$e;
        push @{ $m{"$master->[0]:$master->[1]"} }, [$start, $end];
    }
    return \%m;
}

# A command on the node whose client port is PORT (no redirects followed).
sub cluster_node_cmd {
    my ($cl, $port, @cmd) = @_;
    my ($n) = grep { $_->{port} == $port } @{ $cl->{nodes} };
    die "no node on port $port\n" unless $n;
    return redis_cmd($n, @cmd);
}

# The node whose client port is PORT.
sub cluster_node {
    my ($cl, $port) = @_;
    my ($n) = grep { $_->{port} == $port } @{ $cl->{nodes} };
    die "no node on port $port\n" unless $n;
    return $n;
}

# A node still running, to ask about the cluster.
sub cluster_live {
    my ($cl) = @_;
    my ($n) = grep { !$_->{stopped} } @{ $cl->{nodes} };
    return $n;
}

sub cluster_myid {
    my ($cl, $port) = @_;
    return redis_cmd(cluster_node($cl, $port), 'CLUSTER', 'MYID');
}

# The port of the master serving KEY, from CLUSTER KEYSLOT and CLUSTER
# SLOTS as a running node sees them.
sub cluster_owner {
    my ($cl, $key) = @_;
    my $n    = cluster_live($cl);
    my $slot = redis_cmd($n, 'CLUSTER', 'KEYSLOT', $key);
    my $m    = cluster_masters($cl, $n);
    for my $addr (keys %$m) {
        for my $r (@{ $m->{$addr} }) {
            return ($addr =~ /:(\d+)$/)[0] if $slot >= $r->[0] && $slot <= $r->[1];
        }
    }
    return undef;
}

# A replica of the master on PORT (a node whose CLUSTER NODES line says
# "slave <master id>").
sub cluster_replica_of {
    my ($cl, $port) = @_;
    my $id    = cluster_myid($cl, $port);
    my $nodes = redis_cmd(cluster_live($cl), 'CLUSTER', 'NODES');
    for my $line (split /\n/, $nodes) {
        my @f = split ' ', $line;
        next unless @f > 3 && $f[2] =~ /slave/ && $f[3] eq $id;
        return cluster_node($cl, ($f[1] =~ /:(\d+)/)[0]);
    }
    return undef;
}

# A command with a key (CMD[1]), sent to a running node and following up
# to three MOVED answers.
sub cluster_cmd {
    my ($cl, @cmd) = @_;
    my $n = cluster_live($cl);
    for (1 .. 4) {
        my $r = redis_cmd($n, @cmd);
        return $r unless defined $r && !ref $r && $r =~ /^ERR:MOVED \d+ [^:]*:(\d+)/;
        $n = cluster_node($cl, $1);
    }
    die "cluster_cmd @cmd: too many redirects\n";
}

# CMD on NODE just after ASKING, on one connection (a key in a slot NODE
# is importing).
sub cluster_asking {
    my ($n, @cmd) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $n->{port},
        Proto => 'tcp', Timeout => 2 * mult()) or die "redis connect: $!\n";
    my $enc = sub { join '', '*' . @_ . "\r\n", map { '$' . length($_) . "\r\n$_\r\n" } @_ };
    print $s $enc->('AUTH', $n->{password}) if defined $n->{password};
    print $s $enc->('ASKING'), $enc->(@cmd);
    GwTest::_resp_read($s) if defined $n->{password};
    GwTest::_resp_read($s);
    my $r = GwTest::_resp_read($s);
    close $s;
    return $r;
}

# kill -9 of NODE, reaped at once.
sub cluster_kill {
    my ($cl, $n) = @_;
    $n->{stopped} = 1;
    kill 'KILL', $n->{pid};
    GwTest::reap($n->{pid}, 5 * mult());
}

sub stop_redis_cluster {
    my ($cl, %o) = @_;
    my @now = grep { !$_->{stopped}++ } @{ $cl->{nodes} };
    for my $n (@now) {
        kill($o{signal} // 'TERM', $n->{pid});
        kill 'CONT', $n->{pid};
    }
    GwTest::reap($_->{pid}, 5 * mult()) for @now;
}

END {
    my $st = $?;
    stop_redis_cluster($_) for @clusters;
    $? = $st;
}

1;
