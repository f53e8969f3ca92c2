#!/usr/bin/perl
# The limiters through the gateway over a real Redis Cluster (three masters,
# three replicas): keys on every master and exact limits; counts seeded by
# go-zero's scripts through `redis-cli -c`; SCRIPT FLUSH on one master; a
# token key pair whose slot migrates (TRYAGAIN, ASK, then MOVED); CLUSTER
# FAILOVER and kill -9 of a master under a light load: no 5xx, only that
# master's keys counted locally meanwhile, Redis again within seconds, and
# the slot map asked for a bounded number of times.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use GwTest;
use GwRedisCluster;
use GwRedisFixtures;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();
plan skip_all => 'redis-server or redis-cli not installed (make deps)' unless have_redis_cluster();

my $T0 = time;
# full coverage off: with Redis's default every master refuses every key
# between a master's FAIL and its replacement (CLUSTERDOWN), and the
# gateway then counts every key locally for that time
my $cl = start_redis_cluster(masters => 3, replicas => 1, node_timeout => 1000,
                             full_coverage => 'no');
note(sprintf('cluster formed in %.1f s', time - $T0));
my $up = start_upstream(name => 'a');

sub route {
    my ($name, $plugin, $conf) = @_;
    return { name => $name, match => { path => "/$name/*" }, upstream => 'a',
             strip_prefix => "/$name",
             plugins => { $plugin => { key => 'header:X-User', %$conf } } };
}

my $gw = start_gateway(config => {
    redis     => { type => 'cluster', addrs => $cl->{seeds}, timeout => '200ms' },
    upstreams => [{ name => 'a', nodes => ["127.0.0.1:$up->{port}"] }],
    routes    => [
        route('p',  'limit-period', { period => 60, quota => 3 }),
        route('t',  'limit-token',  { rate => 0.01, burst => 3 }),
        route('tm', 'limit-token',  { rate => 0.01, burst => 100 }),
        route('pl', 'limit-period', { period => 60, quota => 1000000 }),
    ],
});

sub req {
    my ($path, $user) = @_;
    return http_request($gw->{port}, 'GET', $path, headers => ['X-User' => $user], timeout => 5);
}

sub metrics { return http_request($gw->{status_port}, 'GET', '/metrics')->{body} // '' }

sub metric {
    my ($series) = @_;
    return metrics() =~ /^\Q$series\E (\S+)$/m ? $1 + 0 : 0;
}

sub refreshes {
    my ($sum, $body) = (0, metrics());
    $sum += $1 while $body =~ /^gateway_redis_cluster_refreshes_total\{[^}]*\} (\d+)$/mg;
    return $sum;
}

sub log_count {
    my ($re) = @_;
    return scalar grep { /$re/ } split /\n/, gateway_log($gw);
}

ok(wait_for(sub { log_count(qr/redis cluster: slot map from .*3 masters, 16384 of 16384/) }, 5),
   'the gateway has the slot map') or diag gateway_log($gw);
ok(wait_for(sub { req('/pl/x', 'warm')->{status} == 200
                  && log_count(qr/redis 127\.0\.0\.1:\d+: connected/) >= 3 }, 5),
   'every master connected');

# ---- keys on every master, exact limits ---------------------------------------

{
    my (%owners, @bad);
    for my $u (map { "u$_" } 1 .. 12) {
        my @s = map { req('/p/x', $u)->{status} } 1 .. 4;
        push @bad, "$u: @s" unless "@s" eq '200 200 200 429';
        my $key = "limit:period:p:$u";
        my $port = cluster_owner($cl, $key);
        $owners{$port}++;
        my $v = redis_cmd(cluster_node($cl, $port), 'GET', $key);
        push @bad, "$u: count $v on $port" unless ($v // '') eq '4';
    }
    is(scalar(keys %owners), 3, 'twelve period keys land on all three masters');
    is("@bad", '', 'period quota 3: 200 200 200 429 for each, the count on the owning master');
    @bad = ();
    for my $u (map { "t$_" } 1 .. 6) {
        my @s = map { req('/t/x', $u)->{status} } 1 .. 4;
        push @bad, "$u: @s" unless "@s" eq '200 200 200 429';
        my $base = "{limit:token:t:$u}";
        my $port = cluster_owner($cl, "$base.tokens");
        my $n = cluster_node($cl, $port);
        push @bad, "$u: .tokens/.ts apart"
          unless defined redis_cmd($n, 'GET', "$base.tokens") && defined redis_cmd($n, 'GET', "$base.ts");
    }
    is("@bad", '', 'token burst 3: 200 200 200 429, both keys on one master');
}

# ---- go-zero's scripts through redis-cli -c seed a count ------------------------

sub cli {
    my @cmd = ('/usr/bin/redis-cli', '-c', '-h', '127.0.0.1', '-p', cluster_live($cl)->{port}, @_);
    open my $fh, '-|', @cmd or die "redis-cli: $!";
    local $/;
    my $out = <$fh>;
    close $fh;
    $out =~ s/\s+\z//;
    return $out;
}

{
    my @gz = map { cli('EVAL', $GZ_PERIOD, 1, 'limit:period:p:gz1', 3, 60) } 1 .. 2;
    is("@gz", '1 1', "go-zero's period script through redis-cli -c: two Allowed");
    my @s = map { req('/p/x', 'gz1')->{status} } 1 .. 2;
    is("@s", '200 429', 'the gateway continues the count: third is HitQuota, fourth refused');
    is(cluster_cmd($cl, 'GET', 'limit:period:p:gz1'), 4, 'one count of 4 on the cluster');

    my $now = time;
    @gz = map { cli('EVAL', $GZ_TOKEN, 2, '{limit:token:t:gz2}.tokens', '{limit:token:t:gz2}.ts',
                    0.01, 3, int($now), 1) } 1 .. 2;
    is("@gz", '1 1', "go-zero's token script through redis-cli -c: two taken");
    @s = map { req('/t/x', 'gz2')->{status} } 1 .. 2;
    is("@s", '200 429', 'the gateway takes the last token of the same bucket');
}

# ---- SCRIPT FLUSH on one master -------------------------------------------------

{
    my $port = cluster_owner($cl, 'limit:period:p:u1');
    my $node = qq{node="127.0.0.1:$port"};
    my $moved = metric('gateway_redis_cluster_refreshes_total{reason="moved"}');
    is(redis_cmd(cluster_node($cl, $port), 'SCRIPT', 'FLUSH'), 'OK', "SCRIPT FLUSH on $port");
    my ($u) = grep { cluster_owner($cl, "limit:period:p:$_") == $port } map { "sf$_" } 1 .. 50;
    is(req('/p/x', $u)->{status}, 200, 'a key on that master: admitted');
    is(redis_cmd(cluster_node($cl, $port), 'GET', "limit:period:p:$u"), 1,
       '  counted in Redis (EVAL there after NOSCRIPT)');
    ok(wait_for(sub { metric("gateway_redis_node_noscript_total{$node}") >= 1 }, 3),
       '  NOSCRIPT counted for that node');
    is(metric('gateway_redis_cluster_refreshes_total{reason="moved"}'), $moved,
       '  no map refresh for it');
    is(log_count(qr/redis 127\.0\.0\.1:$port: unavailable/), 0, '  not a node failure');
}

# ---- a token pair's slot migrates: TRYAGAIN, ASK, MOVED -------------------------

{
    my $base = '{limit:token:tm:mig}';
    is(req('/tm/x', 'mig')->{status}, 200, 'migration: the pair made');
    my $from = cluster_owner($cl, "$base.tokens");
    my ($to) = grep { $_ != $from } map { /:(\d+)$/ } keys %{ cluster_masters($cl) };
    my ($fn, $tn) = (cluster_node($cl, $from), cluster_node($cl, $to));
    my ($fid, $tid) = (cluster_myid($cl, $from), cluster_myid($cl, $to));
    my $slot = redis_cmd($fn, 'CLUSTER', 'KEYSLOT', "$base.tokens");
    is(redis_cmd($tn, 'CLUSTER', 'SETSLOT', $slot, 'IMPORTING', $fid), 'OK', "slot $slot importing on $to");
    is(redis_cmd($fn, 'CLUSTER', 'SETSLOT', $slot, 'MIGRATING', $tid), 'OK', "  migrating on $from");
    is(req('/tm/x', 'mig')->{status}, 200, '  both keys still on the old master: served there');
    is(int(redis_cmd($fn, 'GET', "$base.tokens")), 98, '  counted there (98 left)');

    my $tryagain = metric('gateway_redis_cluster_redirects_total{kind="tryagain"}');
    is(redis_cmd($fn, 'MIGRATE', '127.0.0.1', $to, '', 0, 5000, 'KEYS', "$base.tokens"), 'OK',
       '  .tokens moved alone');
    my $r = req('/tm/x', 'mig');
    is($r->{status}, 200, '  the pair split: TRYAGAIN twice, then counted locally, admitted');
    ok(wait_for(sub { metric('gateway_redis_cluster_redirects_total{kind="tryagain"}') >= $tryagain + 2 }, 3),
       '  TRYAGAIN counted, retried once');

    is(redis_cmd($fn, 'MIGRATE', '127.0.0.1', $to, '', 0, 5000, 'KEYS', "$base.ts"), 'OK',
       '  .ts follows');
    my $cmds = metric('gateway_redis_commands_total');
    is(req('/tm/x', 'mig')->{status}, 200, '  ASK: admitted');
    is(metric('gateway_redis_commands_total'), $cmds + 1,
       '  one command in gateway_redis_commands_total, not one per node it went to');
    is(int(cluster_asking($tn, 'GET', "$base.tokens")), 97, '  counted on the new master after ASKING');
    ok(wait_for(sub { metric('gateway_redis_cluster_redirects_total{kind="ask"}') >= 1 }, 3),
       '  ASK counted');

    for my $m (keys %{ cluster_masters($cl) }) {
        my ($p) = $m =~ /:(\d+)$/;
        redis_cmd(cluster_node($cl, $p), 'CLUSTER', 'SETSLOT', $slot, 'NODE', $tid);
    }
    $cmds = metric('gateway_redis_commands_total');
    is(req('/tm/x', 'mig')->{status}, 200, '  slot handed over: MOVED followed');
    is(metric('gateway_redis_commands_total'), $cmds + 1, '  one command counted for it');
    is(int(redis_cmd($tn, 'GET', "$base.tokens")), 96, '  counted on the new master');
    ok(wait_for(sub { metric('gateway_redis_cluster_redirects_total{kind="moved"}') >= 1 }, 3),
       '  MOVED counted');
}

# ---- CLUSTER FAILOVER and kill -9 under a light load -------------------------------

# A user of /pl whose key lives on the master on PORT.
sub user_on {
    my ($port, $tag) = @_;
    my ($u) = grep { (cluster_owner($cl, "limit:period:pl:$_") // 0) == $port }
      map { "$tag$_" } 1 .. 200;
    return $u;
}

sub count_of {
    my ($u) = @_;
    return cluster_cmd($cl, 'GET', "limit:period:pl:$u") // 0;
}

# Requests for USERS in turn until DONE says so or SECS pass; the statuses seen.
sub load_until {
    my ($users, $done, $secs) = @_;
    my (%st, $ok);
    my $end = time + $secs * mult();
    while (time < $end) {
        for my $u (@$users) {
            $st{ req('/pl/x', $u)->{status} }++;
        }
        last if ($ok = $done->());
        sleep 0.02;
    }
    return (\%st, $ok);
}

# ---- a stalled master (DEBUG SLEEP) holds up only its own keys ---------------------

{
    my @masters = sort map { /:(\d+)$/ } keys %{ cluster_masters($cl) };
    my ($ms, $mo) = @masters[0, 1];
    my ($us, $uo) = (user_on($ms, 'ss'), user_on($mo, 'so'));
    my $o0 = count_of($uo);
    my $dir = GwTest::subdir('debug-sleep-');
    # shorter than cluster-node-timeout: a stall, not a failover
    my $pid = GwTest::spawn(['/usr/bin/redis-cli', '-p', $ms, 'DEBUG', 'SLEEP', '0.7'],
        "$dir/out", "$dir/out");
    sleep 0.1;
    my @st;
    my ($max_s, $max_o) = (0, 0);
    for (1 .. 5) {
        my $t = time;
        push @st, req('/pl/x', $us)->{status};
        $max_s = time - $t if time - $t > $max_s;
        $t = time;
        push @st, req('/pl/x', $uo)->{status};
        $max_o = time - $t if time - $t > $max_o;
    }
    is("@st", join(' ', ('200') x 10), 'DEBUG SLEEP on one master: every request admitted');
    ok($max_s <= 0.2 + 0.3 * mult(), sprintf('  its keys wait at most redis.timeout (%.3f s)', $max_s));
    ok($max_o <= 0.1 * mult(), sprintf('  keys on another master are not held up (%.3f s)', $max_o));
    is(count_of($uo), $o0 + 5, '  and keep counting in Redis');
    GwTest::reap($pid, 5 * mult());
    my $c0 = redis_cmd(cluster_node($cl, $ms), 'GET', "limit:period:pl:$us") // 0;
    ok(wait_for(sub {
        req('/pl/x', $us);
        (redis_cmd(cluster_node($cl, $ms), 'GET', "limit:period:pl:$us") // 0) > $c0;
    }, 3), '  the stalled master counts again once it answers');
    is(log_count(qr/redis 127\.0\.0\.1:$ms: unavailable \(timeout\)/), 1, '  one log line down');
    # back through the probe ("answering again") or, when it stayed silent
    # past the suspect limit, a new connection ("connected")
    is(log_count(qr/redis 127\.0\.0\.1:$ms: (answering again|connected)/), 2, '  one line up');
}

{
    my @masters = sort map { /:(\d+)$/ } keys %{ cluster_masters($cl) };
    my $m1 = $masters[0];
    my $r1 = cluster_replica_of($cl, $m1);
    ok(wait_for(sub { (redis_cmd($r1, 'CLUSTER', 'NODES') // '') !~ /fail/ }, 5),
       'the replica sees every node healthy');
    my @users = map { user_on($_, "fo$_-") } @masters;
    my $u1 = $users[0];
    my $ref0 = refreshes();
    my $t0 = time;
    is(redis_cmd($r1, 'CLUSTER', 'FAILOVER'), 'OK', "CLUSTER FAILOVER on $r1->{port} (replica of $m1)");
    my ($st, $ok) = load_until(\@users, sub {
        my $m = cluster_masters($cl, $r1);
        return 0 unless grep { $_ eq "127.0.0.1:$r1->{port}" } keys %$m;
        my $before = redis_cmd($r1, 'GET', "limit:period:pl:$u1") // 0;
        req('/pl/x', $u1);
        return (redis_cmd($r1, 'GET', "limit:period:pl:$u1") // 0) == $before + 1;
    }, 8);
    my $took = time - $t0;
    ok($ok, sprintf('failover: counting on the promoted replica after %.2f s', $took));
    is(join(',', grep { $_ >= 500 } keys %$st), '', 'failover: no 5xx (' .
       join(' ', map { "$_:$st->{$_}" } sort keys %$st) . ')');
    sleep 1.2;    # the worker publishes its counts once a second
    my $n = refreshes() - $ref0;
    note("map refreshes during the failover: $n");
    ok($n <= 2 + 2 * $took, "failover: $n map refreshes, at most about one a second");
}

{
    my @masters = sort map { /:(\d+)$/ } keys %{ cluster_masters($cl) };
    my ($m2, $m3) = @masters[1, 2];
    my $r2 = cluster_replica_of($cl, $m2);
    my ($ud, $uo) = (user_on($m2, 'kd'), user_on($m3, 'ko'));
    my $fb0 = metric('gateway_limiter_fallbacks_total{route="pl",plugin="limit-period"}');
    my $ref0 = refreshes();
    my $other0 = count_of($uo);
    my $sent_other = 0;
    my $t0 = time;
    cluster_kill($cl, cluster_node($cl, $m2));
    note("kill -9 of the master on $m2 (replica $r2->{port})");
    my ($st, $ok) = load_until([$ud, $uo], sub {
        $sent_other++;
        my $m = eval { cluster_masters($cl, $r2) } or return 0;
        return 0 unless grep { $_ eq "127.0.0.1:$r2->{port}" } keys %$m;
        my $before = redis_cmd($r2, 'GET', "limit:period:pl:$ud") // 0;
        req('/pl/x', $ud);
        return (redis_cmd($r2, 'GET', "limit:period:pl:$ud") // 0) == $before + 1;
    }, 15);
    my $took = time - $t0;
    ok($ok, sprintf('kill -9: counting in Redis again after %.2f s', $took));
    is(join(',', grep { $_ >= 500 } keys %$st), '', 'kill -9: no 5xx (' .
       join(' ', map { "$_:$st->{$_}" } sort keys %$st) . ')');
    is(count_of($uo), $other0 + $sent_other, 'kill -9: every request for a key on another master counted in Redis');
    my $fb = metric('gateway_limiter_fallbacks_total{route="pl",plugin="limit-period"}') - $fb0;
    ok($fb >= 1, "kill -9: only the dead master's key counted locally ($fb answers)");
    is(log_count(qr/redis 127\.0\.0\.1:$m2: unavailable/), 1, 'kill -9: one log line for the lost master');
    sleep 1.2;
    my $n = refreshes() - $ref0;
    note("map refreshes after the kill: $n");
    ok($n <= 2 + 2 * $took, "kill -9: $n map refreshes, at most about one a second");
    ok(wait_for(sub { metric(qq{gateway_redis_node_master{node="127.0.0.1:$r2->{port}"}}) == 1 }, 3),
       'metrics: the promoted replica shows as a master');
}

is(log_count(qr/\[(error|crit)\]|AddressSanitizer|runtime error/), 0, 'no errors in the log')
  or diag gateway_log($gw);
note(sprintf('t/99 took %.1f s', time - $T0));
done_testing();
