package GwRedisSentinel;

# A Sentinel set for the tests: a master and a replica (redis-server with
# --replicaof) and Sentinels (redis-server <conf> --sentinel), all on free
# loopback ports, each in its own temporary directory, with short
# down-after-milliseconds and failover-timeout so a failover takes about a
# second. Ready once every Sentinel knows the replica and the other
# Sentinels. Every process is stopped by PID.

use strict;
use warnings;

use Exporter 'import';
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use GwTest;
use GwRedisFixtures;

our @EXPORT = qw(
  have_redis_sentinel start_sentinel_set stop_sentinel_set start_sentinels stop_sentinels
  sentinel_master_port sentinel_failover redis_info data_node start_fake_sentinel sentinel_logs
  stop_fake_sentinel
);

my @sets;

sub have_redis_sentinel {
    return have_redis() && -x '/usr/bin/redis-server';
}

# A data node; REPLICAOF a port or undef.
sub _start_data {
    my ($set, $replicaof) = @_;
    my $n = { port => free_port(), dir => GwTest::subdir('rsentinel-'),
              password => $set->{password} };
    my @args = ('/usr/bin/redis-server', '--port', $n->{port}, '--bind', '127.0.0.1',
        '--protected-mode', 'no', '--save', '', '--appendonly', 'no', '--dir', $n->{dir},
        '--daemonize', 'no', '--loglevel', 'notice', '--enable-debug-command', 'local',
        '--repl-diskless-sync-delay', '0');
    push @args, '--requirepass', $set->{password}, '--masterauth', $set->{password}
      if defined $set->{password};
    push @args, '--replicaof', '127.0.0.1', $replicaof if $replicaof;
    $n->{pid} = GwTest::spawn(\@args, "$n->{dir}/stdout", "$n->{dir}/stdout");
    redis_wait_up($n, 'redis-server');
    return $n;
}

sub _sentinel_conf {
    my ($set, $s) = @_;
    my $c = "port $s->{port}\nbind 127.0.0.1\nprotected-mode no\ndir $s->{dir}\n"
      . "sentinel monitor $set->{name} 127.0.0.1 $set->{master}{port} 2\n"
      . "sentinel down-after-milliseconds $set->{name} $set->{down_after}\n"
      . "sentinel failover-timeout $set->{name} $set->{failover_timeout}\n"
      . "sentinel parallel-syncs $set->{name} 1\n";
    $c .= "sentinel auth-pass $set->{name} $set->{password}\n" if defined $set->{password};
    $c .= "requirepass $set->{sentinel_password}\nsentinel sentinel-pass $set->{sentinel_password}\n"
      if defined $set->{sentinel_password};
    return $c;
}

sub _start_sentinel {
    my ($s) = @_;
    delete $s->{stopped};
    $s->{pid} = GwTest::spawn(['/usr/bin/redis-server', "$s->{dir}/sentinel.conf", '--sentinel'],
        "$s->{dir}/stdout", "$s->{dir}/stdout");
    redis_wait_up($s, 'redis-sentinel');
}

# start_sentinel_set([name => 'm'], [sentinels => 3], [down_after => ms],
# [failover_timeout => ms], [password => S], [sentinel_password => S])
#   -> { name, master, replica, sentinels => [...], addrs => ['127.0.0.1:P', ...] }
sub start_sentinel_set {
    my (%o) = @_;
    my $set = { name => $o{name} // 'm', down_after => $o{down_after} // 500,
                failover_timeout => $o{failover_timeout} // 5000,
                password => $o{password}, sentinel_password => $o{sentinel_password} };
    push @sets, $set;
    $set->{master}  = _start_data($set);
    $set->{replica} = _start_data($set, $set->{master}{port});
    $set->{data} = [$set->{master}, $set->{replica}];
    wait_for(sub { (redis_info($set->{replica})->{master_link_status} // '') eq 'up' }, 10)
      or die "the replica did not sync\n";
    for (1 .. ($o{sentinels} // 3)) {
        my $s = { port => free_port(), dir => GwTest::subdir('rsentinel-s-'),
                  password => $set->{sentinel_password} };
        spew_file("$s->{dir}/sentinel.conf", _sentinel_conf($set, $s));
        _start_sentinel($s);
        push @{ $set->{sentinels} }, $s;
    }
    $set->{addrs} = [map { "127.0.0.1:$_->{port}" } @{ $set->{sentinels} }];
    _wait_known($set);
    return $set;
}

# Every Sentinel knows the replica and the others: a failover can start.
sub _wait_known {
    my ($set) = @_;
    my $others = @{ $set->{sentinels} } - 1;
    my $ok = wait_for(sub {
        for my $s (@{ $set->{sentinels} }) {
            my $r = eval { redis_cmd($s, 'SENTINEL', 'MASTER', $set->{name}) };
            return 0 unless ref $r;
            my %m = @$r;
            return 0 unless ($m{'num-slaves'} // 0) >= 1 && ($m{'num-other-sentinels'} // 0) >= $others;
            # the replica's INFO seen, its link to the master up: a good
            # candidate (SENTINEL FAILOVER aborts without one)
            my $rs = eval { redis_cmd($s, 'SENTINEL', 'REPLICAS', $set->{name}) };
            return 0 unless ref $rs && @$rs;
            my %r = @{ $rs->[0] };
            return 0 unless ($r{flags} // '') eq 'slave' && ($r{'master-link-status'} // '') eq 'ok'
              && ($r{'info-refresh'} // 1e9) < 5000;
        }
        return 1;
    }, 15);
    die "the Sentinels did not find each other\n" unless $ok;
}

# The master's port as Sentinel S (default the first) gives it.
sub sentinel_master_port {
    my ($set, $s) = @_;
    my $r = eval { redis_cmd($s // $set->{sentinels}[0], 'SENTINEL', 'get-master-addr-by-name',
        $set->{name}) };
    return ref $r ? $r->[1] : undef;
}

# The data node (master or replica) listening on PORT.
sub data_node {
    my ($set, $port) = @_;
    my ($n) = grep { $_->{port} == $port } @{ $set->{data} };
    return $n;
}

# SENTINEL FAILOVER asked of Sentinel WHICH (default the first).
sub sentinel_failover {
    my ($set, $which) = @_;
    my $r = redis_cmd($set->{sentinels}[$which // 0], 'SENTINEL', 'FAILOVER', $set->{name});
    die "SENTINEL FAILOVER: $r\n" unless $r eq 'OK' || ($which && $r =~ /INPROG/);
    return $r;
}

# The Sentinels' logs, for a diagnosis.
sub sentinel_logs {
    my ($set) = @_;
    return join '', map { "--- sentinel $_->{port}\n" . slurp_file("$_->{dir}/stdout") }
      @{ $set->{sentinels} };
}

# INFO [SECTION] as { key => value }.
sub redis_info {
    my ($n, $section) = @_;
    my $r = eval { redis_cmd($n, 'INFO', $section // ()) } // '';
    return { map { /^([\w-]+):(.*?)\r?$/ ? ($1, $2) : () } split /\n/, ref $r ? '' : $r };
}

sub stop_sentinels {
    my ($set) = @_;
    my @now = grep { !$_->{stopped}++ } @{ $set->{sentinels} };
    kill 'TERM', $_->{pid} for @now;
    GwTest::reap($_->{pid}, 5 * mult()) for @now;
}

# Again on the same ports, from the config files they rewrote.
sub start_sentinels {
    my ($set) = @_;
    _start_sentinel($_) for grep { $_->{stopped} } @{ $set->{sentinels} };
}

sub stop_sentinel_set {
    my ($set) = @_;
    stop_sentinels($set);
    my @now = grep { !$_->{stopped}++ } @{ $set->{data} };
    for my $n (@now) {
        kill 'TERM', $n->{pid};
        kill 'CONT', $n->{pid};
    }
    GwTest::reap($_->{pid}, 5 * mult()) for @now;
}

# A Sentinel that answers every SENTINEL command with REPLY (raw RESP),
# PING and AUTH as a Sentinel would, and acknowledges SUBSCRIBE: for the
# answers no real Sentinel gives. -> {port, pid}
my @fakes;

sub start_fake_sentinel {
    my (%o) = @_;
    require IO::Socket::INET;
    require IO::Select;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 16,
        ReuseAddr => 1, Proto => 'tcp') or die "listen: $!";
    my $f = { port => $l->sockport };
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        my $sel = IO::Select->new($l);
        my %buf;
        while (1) {
            for my $c ($sel->can_read(1)) {
                if ($c == $l) {
                    my $n = $l->accept or next;
                    $sel->add($n);
                    $buf{$n} = '';
                    next;
                }
                my $got = sysread($c, my $chunk, 65536);
                if (!$got) {
                    $sel->remove($c);
                    delete $buf{$c};
                    close $c;
                    next;
                }
                $buf{$c} .= $chunk;
                while ($buf{$c} =~ s/\A\*(\d+)\r\n((?:\$\d+\r\n[^\r]*\r\n)*)//) {
                    my @a = $2 =~ /\$\d+\r\n([^\r]*)\r\n/g;
                    my $cmd = uc($a[0] // '');
                    my $out = $cmd eq 'PING' ? "+PONG\r\n"
                      : $cmd eq 'AUTH' ? "+OK\r\n"
                      : $cmd eq 'SENTINEL' ? $o{reply}
                      : $cmd eq 'SUBSCRIBE' ? "*3\r\n\$9\r\nsubscribe\r\n\$14\r\n+switch-master\r\n:1\r\n"
                      : "-ERR unknown command\r\n";
                    syswrite($c, $out);
                }
            }
        }
        POSIX::_exit(0);
    }
    close $l;
    $f->{pid} = $pid;
    push @fakes, $f;
    return $f;
}

sub stop_fake_sentinel {
    my ($f) = @_;
    return if $f->{stopped}++;
    kill 'TERM', $f->{pid};
    GwTest::reap($f->{pid}, 5 * mult());
}

END {
    my $st = $?;
    stop_fake_sentinel($_) for @fakes;
    stop_sentinel_set($_) for @sets;
    $? = $st;
}

1;
