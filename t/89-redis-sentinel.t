#!/usr/bin/perl
# redis.type: sentinel with real servers: a master, a replica and three
# Sentinels (passwords on the data nodes and on the Sentinels). The
# limiters count on the master Sentinel gives; SENTINEL FAILOVER under a
# light load costs no 5xx and the gateway follows within a few seconds; a
# stalled master (DEBUG SLEEP) gets no writes once the gateway moved; all
# Sentinels down, at start or later, gives one clear log line and the
# on_redis_error policy.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use GwTest;
use GwRedisFixtures;
use GwRedisSentinel;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();
plan skip_all => 'redis-server not installed (make deps)' unless have_redis_sentinel();

my $t_start = time;
my $TIMEOUT = 0.25;   # redis.timeout (a loaded machine under ASan)
my $FOLLOW  = 3 * mult() + 1;    # a failover seen by the gateway, at most

# ---- -t (no server needed) --------------------------------------------------

sub check_yaml { return check_redis_yaml('t89', @_) }

{
    my ($code, $out) = check_yaml("redis: {type: sentinel, addrs: [\"127.0.0.1:26379\", "
          . "\"sentinel.example:26379\"], master_name: m, sentinel_password: s, password: p, db: 2}\n");
    is($code, 0, '-t: type sentinel with addrs, master_name, passwords and db') or diag $out;
    ($code, $out) = check_yaml("redis: {type: sentinel, addrs: [], master_name: m}\n");
    like($out, qr/^redis\.addrs: at least one address is required$/m, '-t: empty addrs refused')
      or diag $out;
    ($code, $out) = check_yaml("redis: {type: sentinel, addrs: [\"127.0.0.1:1\"], master_name: \"\"}\n");
    like($out, qr/^redis\.master_name: the name is empty$/m, '-t: empty master_name refused')
      or diag $out;
    ($code, $out) = check_yaml("redis: {type: sentinel, addr: \"127.0.0.1:1\", master_name: m}\n");
    isnt($code, 0, '-t: addr (not addrs) refused with type sentinel');
}

note(sprintf('%.1f s: the set and a gateway on it', time - $t_start));
# ---- the set and a gateway on it --------------------------------------------

my $t0  = time;
my $set = start_sentinel_set(password => 'data-pw', sentinel_password => 'sent-pw');
note(sprintf('master, replica and three Sentinels ready in %.1f s', time - $t0));
my $up = start_upstream(name => 'a');

sub route {
    my ($name, $plugin, %c) = @_;
    return { name => $name, match => { path => "/$name/*" }, upstream => 'a',
             strip_prefix => "/$name", plugins => { $plugin => { key => 'header:X-User', %c } } };
}

sub gateway_for {
    my (@addrs) = @_;
    return start_gateway(config => {
        redis => { type => 'sentinel', addrs => \@addrs, master_name => $set->{name},
                   password => 'data-pw', sentinel_password => 'sent-pw',
                   timeout => ($TIMEOUT * 1000) . 'ms' },
        upstreams => [{ name => 'a', nodes => ["127.0.0.1:$up->{port}"] }],
        routes => [
            route('loc', 'limit-period', period => 60, quota => 3),
            route('allow', 'limit-period', period => 60, quota => 1, on_redis_error => 'allow'),
            route('big', 'limit-period', period => 60, quota => 100000),
            route('tok', 'limit-token', rate => 0.01, burst => 3),
        ],
    });
}

sub treq {
    my ($g, $path, $user) = @_;
    my $t = time;
    my $r = http_request($g->{port}, 'GET', $path, headers => ['X-User' => $user], timeout => 5);
    return ($r->{status} // 0, time - $t);
}

sub statuses {
    my ($g, $path, $user, $n) = @_;
    return join ' ', map { (treq($g, $path, $user))[0] } 1 .. $n;
}

sub metrics {
    my ($g) = @_;
    return http_request($g->{status_port}, 'GET', '/metrics')->{body} // '';
}

sub log_count {
    my ($g, $re) = @_;
    return scalar grep { /$re/ } split /\n/, gateway_log($g);
}

sub count_on {
    my ($port, $key) = @_;
    my $v = eval { redis_cmd(data_node($set, $port), 'GET', $key) };
    return defined $v && $v =~ /^\d+$/ ? $v : 0;
}

# Scripts the limiters ran on a node (answered, refused or failed).
sub script_calls {
    my ($port) = @_;
    my $i = redis_info(data_node($set, $port), 'commandstats');
    my $n = 0;
    for my $c (qw(evalsha eval)) {
        my $v = $i->{"cmdstat_$c"} // '';
        $n += $1 while $v =~ /(?:^|,)(?:calls|rejected_calls|failed_calls)=(\d+)/g;
    }
    return $n;
}

my $m1 = $set->{master}{port};
my $gw = gateway_for(@{ $set->{addrs} });
ok(wait_for(sub { gateway_log($gw) =~ /redis sentinel: master m is 127\.0\.0\.1:$m1$/m }, 5),
    'the gateway found the master through Sentinel') or diag gateway_log($gw);

is(statuses($gw, '/loc/x', 'u1', 4), '200 200 200 429', 'limit-period: 429 at the quota');
is(count_on($m1, 'limit:period:loc:u1'), 4, '  counted on the master') or diag gateway_log($gw);
is(statuses($gw, '/tok/x', 'u1', 4), '200 200 200 429', 'limit-token: 429 past the burst');
ok(eval { redis_cmd($set->{master}, 'EXISTS', '{limit:token:tok:u1}.tokens') }
  || eval { redis_cmd($set->{master}, 'KEYS', '*tok*') }, '  token keys on the master');
like(metrics($gw), qr/^gateway_redis_sentinel_master\{addr="127\.0\.0\.1:$m1"\} 1$/m,
    'metrics: the current master');
like(metrics($gw), qr/^gateway_redis_up 1$/m, 'metrics: redis up');
like(metrics($gw), qr/^gateway_redis_commands_total 8$/m,
    'metrics: 8 commands for 8 limited requests (ROLE and the Sentinel queries are not counted)')
  or diag(join "\n", grep { /^gateway_redis_(commands|errors)/ } split /\n/, metrics($gw));

note(sprintf('%.1f s: answers no real Sentinel gives', time - $t_start));
# ---- answers no real Sentinel gives ------------------------------------------

{
    my $rp = $set->{replica}{port};
    my %fake = (
        int     => ":42\r\n",
        short   => "*1\r\n\$9\r\n127.0.0.1\r\n",
        port    => "*2\r\n\$9\r\n127.0.0.1\r\n\$5\r\n99999\r\n",
        nil     => "*-1\r\n",
        replica => "*2\r\n\$9\r\n127.0.0.1\r\n\$" . length($rp) . "\r\n$rp\r\n",
    );
    my %f = map { $_ => start_fake_sentinel(reply => $fake{$_}) } keys %fake;
    my $g = gateway_for(map { "127.0.0.1:$f{$_}{port}" } qw(int short port nil));
    ok(wait_for(sub { log_count($g, qr/no Sentinel gives the master m \(4 listed; last: .*does not know the master\)/) }, 4),
        'bad answers (an integer, a short array, a bad port, nil): skipped, one log line')
      or diag gateway_log($g);
    is(statuses($g, '/loc/x', 'bad', 4), '200 200 200 429', '  the on_redis_error policy applies');
    stop_gateway($g);

    $g = gateway_for("127.0.0.1:$f{replica}{port}");
    ok(wait_for(sub { log_count($g, qr/127\.0\.0\.1:$rp, given for master m, is not usable as a master \(role slave\)/) }, 4),
        'a Sentinel that names a replica: ROLE refuses it, logged') or diag gateway_log($g);
    is(statuses($g, '/loc/x', 'rep', 4), '200 200 200 429', '  the on_redis_error policy applies');
    sleep 1;
    is(log_count($g, qr/is not usable as a master/), 1, '  logged once');
    is(log_count($g, qr/redis 127\.0\.0\.1:$rp: connected/), 1,
        '  one connection to it, asked ROLE again (no reconnect per retry)') or diag gateway_log($g);
    is(count_on($rp, 'limit:period:loc:rep'), 0, '  nothing written there');
    stop_gateway($g);
    stop_fake_sentinel($_) for values %f;
}

note(sprintf('%.1f s: SENTINEL FAILOVER under a light load', time - $t_start));
# ---- SENTINEL FAILOVER under a light load -----------------------------------

{
    my $m2 = $set->{replica}{port};
    my $before = count_on($m1, 'limit:period:big:f');
    my (%st, $max, $followed);
    $max = 0;
    my $t_fail = time;
    sentinel_failover($set);
    # a bounded loop: about 100 requests a second for at most FOLLOW + 2 s
    my $n = 0;
    my $again;
    while (time - $t_fail < $FOLLOW + 2) {
        # a Sentinel stalled by a loaded machine aborts its failover: ask
        # another one (the gateway's timing is measured from the first ask)
        if (!$again && time - $t_fail > 3 && (sentinel_master_port($set) // 0) != $m2) {
            $again = sentinel_failover($set, 1);
            note("failover asked again: $again");
        }
        my ($s, $t) = treq($gw, '/big/x', 'f');
        $st{$s}++;
        $n++;
        $max = $t if $t > $max;
        if (!defined $followed && $n % 5 == 0 && count_on($m2, 'limit:period:big:f') > $before
            && (sentinel_master_port($set) // 0) == $m2) {
            my $c = count_on($m2, 'limit:period:big:f');
            ($s) = treq($gw, '/big/x', 'f');
            $st{$s}++;
            $followed = time - $t_fail if count_on($m2, 'limit:period:big:f') == $c + 1;
        }
        last if defined $followed && time - $t_fail > $followed + 0.5;
        sleep 0.01;
    }
    my @bad = grep { $_ >= 500 || $_ == 0 } keys %st;
    ok(!@bad, 'failover: no 5xx nor failed request (' . join(', ', map { "$_: $st{$_}" } sort keys %st) . ')');
    ok($max <= $TIMEOUT + 0.5 * mult(), sprintf('failover: no request waited long (longest %.3f s)', $max));
    ok(defined $followed && $followed <= $FOLLOW,
        sprintf('failover: counting on the new master %.2f s after SENTINEL FAILOVER', $followed // -1))
      or diag sentinel_logs($set), gateway_log($gw);
    BAIL_OUT('no failover: the cases after this one need it') unless defined $followed;
    my $c = count_on($m2, 'limit:period:big:f');
    is(statuses($gw, '/big/x', 'f', 3), '200 200 200', 'failover: requests go on');
    is(count_on($m2, 'limit:period:big:f'), $c + 3, '  counted on the new master');
    ok($c >= $before, "  the count continues from the old master's ($before -> $c)");
    my $mt = metrics($gw);
    like($mt, qr/^gateway_redis_sentinel_master\{addr="127\.0\.0\.1:$m2"\} 1$/m,
        'metrics: the new master');
    unlike($mt, qr/gateway_redis_sentinel_master\{addr="127\.0\.0\.1:$m1"\}/, '  the old one gone');
    like($mt, qr/^gateway_redis_sentinel_switches_total 1$/m, 'metrics: one switch');
    is(log_count($gw, qr/redis sentinel: master m switched from 127\.0\.0\.1:$m1 to 127\.0\.0\.1:$m2/),
        1, 'the switch logged once');
    note(sprintf('failover followed in %.2f s, %d requests', $followed // -1, $n));
}

note(sprintf('%.1f s: a stalled master: DEBUG SLEEP', time - $t_start));
# ---- a stalled master: DEBUG SLEEP ------------------------------------------

{
    my $m2 = $set->{replica}{port};    # the master now
    # the old master must be a synced replica before it can take over
    # again; Sentinel would make it one only ~8 s after the failover (it
    # waits that long on a role mismatch), so the test does it now
    redis_cmd($set->{master}, 'REPLICAOF', '127.0.0.1', $m2);
    ok(wait_for(sub { (redis_info($set->{master})->{master_link_status} // '') eq 'up' }, 10),
        'stall: the old master is a replica in sync');
    note(sprintf('%.1f s: the old master in sync', time - $t_start));
    my $sleep = 3;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $m2, Proto => 'tcp')
      or die "connect: $!";
    print $s "*2\r\n\$4\r\nAUTH\r\n\$7\r\ndata-pw\r\n*3\r\n\$5\r\nDEBUG\r\n\$5\r\nSLEEP\r\n\$1\r\n$sleep\r\n";
    my $t_stall = time;
    my (%st, $max);
    $max = 0;
    my $moved;
    while (time - $t_stall < $sleep + $FOLLOW) {
        my ($code, $t) = treq($gw, '/big/x', 's');
        $st{$code}++;
        $max = $t if $t > $max;
        if (!defined $moved && gateway_log($gw) =~ /master m switched from 127\.0\.0\.1:$m2 to 127\.0\.0\.1:$m1/) {
            $moved = time - $t_stall;
        }
        last if defined $moved && time - $t_stall > $sleep + 0.5;
        sleep 0.02;
    }
    my @bad = grep { $_ >= 500 || $_ == 0 } keys %st;
    ok(!@bad, 'stall: no 5xx nor failed request (' . join(', ', map { "$_: $st{$_}" } sort keys %st) . ')');
    ok($max <= $TIMEOUT + 0.5 * mult(), sprintf('stall: no request waited long (longest %.3f s)', $max));
    ok(defined $moved, sprintf('stall: the gateway moved to the new master after %.2f s', $moved // -1))
      or diag gateway_log($gw);
    note(sprintf('%.1f s: moved after %.2f s', time - $t_start, $moved // -1));
    # the sleeper wakes and runs what was already in its socket buffers
    my $r = <$s>;
    $r = <$s>;
    close $s;
    sleep 0.3;
    my $calls = script_calls($m2);
    ok($calls > 0, "  (the stalled master had run $calls scripts)");
    my $c1 = count_on($m1, 'limit:period:big:s');
    is(statuses($gw, '/big/x', 's', 20), join(' ', ('200') x 20), 'stall: requests after the switch');
    is(count_on($m1, 'limit:period:big:s'), $c1 + 20, '  counted on the new master')
      or diag gateway_log($gw);
    is(script_calls($m2), $calls, '  the stalled master got no writes after the switch');
    # Sentinel would make the woken one a replica ~8 s later (its wait on
    # a role mismatch): the last case needs it now
    redis_cmd($set->{replica}, 'REPLICAOF', '127.0.0.1', $m1);
}

note(sprintf('%.1f s: all Sentinels down', time - $t_start));
# ---- all Sentinels down -------------------------------------------------------

{
    stop_sentinels($set);
    ok(wait_for(sub { log_count($gw, qr/no Sentinel gives the master m .*keeping/) >= 1 }, 3),
        'Sentinels gone later: logged') or diag gateway_log($gw);
    my $m = $set->{master}{port};
    my $c = count_on($m, 'limit:period:big:d');
    is(statuses($gw, '/big/x', 'd', 3), '200 200 200', '  the master found before keeps serving');
    is(count_on($m, 'limit:period:big:d'), $c + 3, '  counted on it');

    my $g2 = gateway_for(@{ $set->{addrs} });
    ok(wait_for(sub { log_count($g2, qr/no Sentinel gives the master m .*on_redis_error policy/) }, 3),
        'Sentinels down at start: logged') or diag gateway_log($g2);
    is(statuses($g2, '/loc/x', 'd2', 4), '200 200 200 429', '  on_redis_error local counts locally');
    is(statuses($g2, '/allow/x', 'd2', 3), '200 200 200', '  on_redis_error allow admits');
    is(count_on($m, 'limit:period:loc:d2'), 0, '  nothing written to Redis');
    like(metrics($g2), qr/^gateway_redis_sentinel_resolve_errors_total [1-9]/m,
        '  metrics: resolve errors');
    sleep 0.5;
    is(log_count($g2, qr/no Sentinel gives the master/), 1, '  logged once');

    start_sentinels($set);
    ok(wait_for(sub { gateway_log($g2) =~ /redis sentinel: master m is 127\.0\.0\.1:$m$/m }, 5),
        'Sentinels back: the master found') or diag gateway_log($g2);
    is(log_count($g2, qr/Sentinel 127\.0\.0\.1:\d+ answers again for master m/), 1,
        '  "answers again" logged once');
    is(statuses($g2, '/loc/x', 'd3', 1), '200', '  counting in Redis again');
    is(count_on($m, 'limit:period:loc:d3'), 1, '  on the master');
    stop_gateway($g2);
}

note(sprintf('%.1f s: the master killed', time - $t_start));

# ---- the master killed (kill -9) ---------------------------------------------

{
    my ($m, $r) = ($set->{master}{port}, $set->{replica}{port});
    ok(wait_for(sub { (redis_info($set->{replica})->{master_link_status} // '') eq 'up' }, 10),
        'kill: the replica is in sync');
    my $sw = qr/master m switched from 127\.0\.0\.1:$m to 127\.0\.0\.1:$r/;
    my $n0 = log_count($gw, $sw);
    kill 'KILL', $set->{master}{pid};
    GwTest::reap($set->{master}{pid}, 5);
    $set->{master}{stopped} = 1;
    my $t_kill = time;
    my (%st, $followed);
    while (time - $t_kill < $FOLLOW + 2) {
        my ($code) = treq($gw, '/big/x', 'k');
        $st{$code}++;
        if (log_count($gw, $sw) > $n0) {
            $followed = time - $t_kill;
            last;
        }
        sleep 0.02;
    }
    my @bad = grep { $_ >= 500 || $_ == 0 } keys %st;
    ok(!@bad, 'kill: no 5xx nor failed request (' . join(', ', map { "$_: $st{$_}" } sort keys %st) . ')');
    ok(defined $followed && $followed <= $FOLLOW,
        sprintf('kill: the gateway follows the promoted replica %.2f s after kill -9', $followed // -1))
      or diag sentinel_logs($set), gateway_log($gw);
    note(sprintf('kill -9 followed in %.2f s', $followed // -1));
    my $c = count_on($r, 'limit:period:big:k');
    is(statuses($gw, '/big/x', 'k', 3), '200 200 200', '  requests go on');
    is(count_on($r, 'limit:period:big:k'), $c + 3, '  counted on the new master')
      or diag sentinel_logs($set), gateway_log($gw);
    ok(log_count($gw, qr/redis 127\.0\.0\.1:$m: cannot connect/) <= 1,
        '  the dead master: "cannot connect" at most once while the Sentinels still named it')
      or diag gateway_log($gw);
}

stop_gateway($gw);
stop_all();
note(sprintf('t/89 took %.1f s', time - $t_start));
done_testing();
