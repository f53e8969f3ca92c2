# The limiters when Redis misbehaves: CLIENT PAUSE, SIGSTOP/SIGCONT, kill
# and restart on the same port, a wrong password, SCRIPT FLUSH. No request
# waits longer than redis.timeout plus a margin, each route follows its
# on_redis_error policy (local: a local count; allow; deny), counting goes
# back to Redis within about a second of recovery, and each change of state
# is logged once and shows in /metrics.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use GwTest;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();
plan skip_all => 'redis-server not installed' unless have_redis();

my $TIMEOUT = 0.1;                      # redis.timeout
my $LIMIT   = $TIMEOUT + 0.5 * mult();  # the longest any request may take
my $RECOVER = 1.0 * mult() + 0.3;       # counting back in Redis after a fault ends

my $pdir = tmpdir() . '/plugins';
mkdir $pdir or die "mkdir $pdir: $!";
{
    open my $fh, '>', "$pdir/t-ping.lua" or die $!;
    print $fh <<'LUA';
local plugin = { name = "t-ping", priority = 100 }
function plugin.access(conf, ctx)
  local v, err = gw.redis("PING")
  return gw.exit(200, { value = v, err = err })
end
return plugin
LUA
    close $fh;
}

my $rd = start_redis();
my $up = start_upstream(name => 'a');

sub route {
    my ($name, $plugins) = @_;
    return { name => $name, match => { path => "/$name/*" }, upstream => 'a',
             strip_prefix => "/$name", plugins => $plugins };
}

sub limiter_routes {
    return (
        route('loc', { 'limit-period' => { period => 60, quota => 3, key => 'header:X-User' } }),
        route('allow', { 'limit-period' => { period => 60, quota => 1, key => 'header:X-User',
                                             on_redis_error => 'allow' } }),
        route('deny', { 'limit-period' => { period => 60, quota => 1000, key => 'header:X-User',
                                            on_redis_error => 'deny' } }),
        route('tok', { 'limit-token' => { rate => 0.01, burst => 3, key => 'header:X-User',
                                          on_redis_error => 'local' } }),
        route('tokbig', { 'limit-token' => { rate => 0.01, burst => 1000, key => 'header:X-User',
                                             on_redis_error => 'deny' } }),
        route('ping', { 't-ping' => {} }),
    );
}

sub gateway_for {
    my ($r, %o) = @_;
    return start_gateway(config => {
        gateway   => { plugin_paths => [$pdir] },
        redis     => { addr => "127.0.0.1:$r->{port}", timeout => ($TIMEOUT * 1000) . 'ms',
                       (defined $o{password} ? (password => $o{password}) : ()) },
        upstreams => [{ name => 'a', nodes => ["127.0.0.1:$up->{port}"] }],
        routes    => [limiter_routes()],
    });
}

my $gw = gateway_for($rd);
ok(wait_for(sub { gateway_log($gw) =~ /redis 127\.0\.0\.1:\d+: connected/ }, 5), 'connected to redis')
  or diag gateway_log($gw);

# One request on a fresh connection -> (response, seconds it took).
sub treq {
    my ($g, $path, $user) = @_;
    my $t0 = time;
    my $r = http_request($g->{port}, 'GET', $path, headers => [defined $user ? ('X-User' => $user) : ()],
        timeout => 5);
    return ($r, time - $t0);
}

sub metric {
    my ($g, $series) = @_;
    my $body = http_request($g->{status_port}, 'GET', '/metrics')->{body} // '';
    return $body =~ /^\Q$series\E (\S+)$/m ? $1 + 0 : 0;
}

sub log_count {
    my ($g, $re) = @_;
    my @l = grep { /$re/ } split /\n/, gateway_log($g);
    return scalar @l;
}

sub count_of {
    my ($key) = @_;
    my $v = eval { redis_cmd($rd, 'GET', $key) };
    return defined $v && $v =~ /^\d+$/ ? $v : 0;
}

# The statuses of requests made while Redis is unavailable, and the
# longest time one took.
sub during {
    my ($g, $user) = @_;
    my (%s, $max);
    $max = 0;
    my %n = (loc => 4, allow => 3, deny => 2, tok => 4);
    my $deny;
    for my $route (qw(loc allow deny tok)) {
        for (1 .. $n{$route}) {
            my ($r, $t) = treq($g, "/$route/x", $user);
            push @{ $s{$route} }, $r->{status};
            $max = $t if $t > $max;
            $deny //= $r if $route eq 'deny';
        }
    }
    my ($r, $t) = treq($g, '/ping/x');
    $max = $t if $t > $max;
    $s{ping} = json_body($r) // {};
    $s{deny_response} = $deny;
    return (\%s, $max);
}

sub during_ok {
    my ($name, $s, $max) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    ok($max <= $LIMIT, sprintf('%s: no request waited longer than %.2f s (longest %.3f s)', $name,
       $LIMIT, $max));
    is("@{ $s->{loc} }", '200 200 200 429', "$name: on_redis_error local counts locally (quota 3)");
    is("@{ $s->{allow} }", '200 200 200', "$name: on_redis_error allow admits");
    is("@{ $s->{deny} }", '429 429', "$name: on_redis_error deny refuses");
    gw_error_ok($s->{deny_response}, 429, "$name: deny");
    ok(defined $s->{deny_response}{headers}{'retry-after'}, "$name: deny: Retry-After");
    is("@{ $s->{tok} }", '200 200 200 429', "$name: limit-token falls back to a local bucket (burst 3)");
    ok(!defined $s->{ping}{value}, "$name: gw.redis returns nil");
    like($s->{ping}{err} // '', qr/unavailable|timeout|connection/, "$name: gw.redis says why");
}

# Requests before the fault: their counts are in Redis.
sub before_ok {
    my ($g, $name, $user) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my @s = map { (treq($g, "/$_/x", $user))[0]{status} } qw(loc allow allow deny);
    is("@s", '200 200 429 200', "$name, before: answers from Redis");
    is(count_of("limit:period:loc:$user"), 1, "$name, before: counted in Redis");
}

# After FAULT_END (a time): polls until a request is counted in Redis
# again; -> (seconds it took from FAULT_END or undef, the count first seen).
sub recovered_after {
    my ($g, $user, $fault_end) = @_;
    my $deadline = time + 5 * mult();
    my $first;
    while (time < $deadline) {
        my $v0 = count_of("limit:period:loc:$user");
        $first //= $v0;
        my ($r, $t) = treq($g, '/loc/x', $user);
        return (undef, $first) if $r->{status} >= 500;
        my $v1 = count_of("limit:period:loc:$user");
        return (time - $fault_end, $first) if $v1 == $v0 + 1;
        sleep 0.05;
    }
    return (undef, $first);
}

sub after_ok {
    my ($g, $name, $user, $fault_end) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my ($took, $first) = recovered_after($g, $user, $fault_end);
    # 1 from before the fault, at most 1 more: a command that timed out but
    # that Redis ran once it woke up; no local answer is written back
    ok($first >= 1 && $first <= 2, "$name: the local answers were not written to Redis ($first)");
    ok(defined $took && $took <= $RECOVER,
       sprintf('%s: counting back in Redis %.2f s after the fault ended (at most %.2f)', $name,
       $took // -1, $RECOVER));
    my @s = map { (treq($g, "/$_/x", $user))[0]{status} } qw(allow deny);
    is("@s", '429 200', "$name, after: answers from Redis again (allow's count is over quota)");
    my ($r) = treq($g, '/ping/x');
    is((json_body($r) // {})->{value}, 'PONG', "$name, after: gw.redis works");
}

sub log_mark {
    my ($g) = @_;
    return { map { $_ => log_count($g, qr/redis 127\.0\.0\.1:\d+: $_/) }
             'unavailable \(', 'cannot connect \(', 'answering again|connected' };
}

sub log_ok {
    my ($g, $name, $mark, %want) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $now = log_mark($g);
    my %d = map { $_ => $now->{$_} - $mark->{$_} } keys %$now;
    is($d{'unavailable \('}, $want{unavailable} // 1, "$name: 'unavailable' logged once");
    ok($d{'cannot connect \('} <= 1, "$name: 'cannot connect' logged at most once ($d{'cannot connect \('})");
    is($d{'answering again|connected'}, 1, "$name: 'answering again' or 'connected' logged once");
}

# --- CLIENT PAUSE --------------------------------------------------------------------

{
    my $name = 'CLIENT PAUSE';
    before_ok($gw, $name, 'pause');
    my $mark = log_mark($gw);
    my $down0 = metric($gw, 'gateway_redis_state_changes_total{state="down"}');
    my $fb0 = metric($gw, 'gateway_limiter_fallbacks_total{route="loc",plugin="limit-period"}');
    my $t0 = time;
    is(redis_cmd($rd, 'CLIENT', 'PAUSE', 2000, 'ALL'), 'OK', "$name 2000 ALL");
    my $end = $t0 + 2.0;

    # many at once: each waits for Redis, none longer than the timeout
    my @c = map { gw_connect($gw->{port}) } 1 .. 8;
    my $c0 = time;
    $c[$_]->write(GwTest::build_request("GET", "/deny/x", headers => ["X-User" => "burst$_"])) for 0 .. 7;
    my @st = map { my $r = $_->read_response; $r ? $r->{status} : 0 } @c;
    my $cmax = time - $c0;
    $_->close for @c;
    is("@st", join(' ', ('429') x 8), "$name: 8 concurrent requests, deny policy");
    ok($cmax <= $LIMIT, sprintf("$name: the concurrent ones took %.3f s", $cmax));

    my ($s, $max) = during($gw, 'pause');
    ok(time < $end, "$name: the requests were made during the pause") or diag 'slow host';
    during_ok($name, $s, $max);
    sleep($end - time) if $end > time;
    after_ok($gw, $name, 'pause', $end);
    log_ok($gw, $name, $mark);
    is(metric($gw, 'gateway_redis_state_changes_total{state="down"}'), $down0 + 1,
       "$name: gateway_redis_state_changes_total{state=\"down\"} + 1");
    ok(metric($gw, 'gateway_limiter_fallbacks_total{route="loc",plugin="limit-period"}') >= $fb0 + 4,
       "$name: gateway_limiter_fallbacks_total counts the local answers");
    is(metric($gw, 'gateway_redis_up'), 1, "$name: gateway_redis_up 1 again");
}

# --- SIGSTOP / SIGCONT ---------------------------------------------------------------

{
    my $name = 'SIGSTOP';
    before_ok($gw, $name, 'stop');
    my $mark = log_mark($gw);
    my $down0 = metric($gw, 'gateway_redis_state_changes_total{state="down"}');
    my $t0 = time;
    kill 'STOP', $rd->{pid};
    # clients that leave while their request waits for Redis
    my @gone = map { gw_connect($gw->{port}) } 1 .. 6;
    for my $i (0 .. $#gone) {
        my $path = $i % 2 ? '/ping/x' : '/tokbig/x';
        $gone[$i]->write(GwTest::build_request('GET', $path, headers => ['X-User' => "gone$i"]));
    }
    sleep 0.02;
    $_->close for @gone;
    sleep $TIMEOUT + 0.05;
    my ($s, $max) = during($gw, 'stop');
    during_ok($name, $s, $max);
    is(metric($gw, 'gateway_redis_up'), 0, "$name: gateway_redis_up 0 meanwhile");
    # long enough for a reconnect whose handshake times out
    sleep(3.0 - (time - $t0)) if time - $t0 < 3.0;
    kill 'CONT', $rd->{pid};
    my $end = time;
    after_ok($gw, $name, 'stop', $end);
    log_ok($gw, $name, $mark);
    is(metric($gw, 'gateway_redis_state_changes_total{state="down"}'), $down0 + 1,
       "$name: one more change to down");
}

# --- kill and restart on the same port -------------------------------------------------

{
    my $name = 'kill and restart';
    before_ok($gw, $name, 'kill');
    my $mark = log_mark($gw);
    stop_redis($rd, signal => 'KILL');
    my ($s, $max) = during($gw, 'kill');
    during_ok($name, $s, $max);
    sleep 1;
    ($s, $max) = during($gw, 'kill2');
    during_ok("$name, a second later", $s, $max);
    my $refused = log_count($gw, qr/cannot connect \(.*refused/i);
    $rd = start_redis(port => $rd->{port}, dir => $rd->{dir});
    my $end = time;
    my ($took) = recovered_after($gw, 'kill', $end);
    # reconnects back off up to 0.5 s
    ok(defined $took && $took <= 1 * mult() + 0.3,
       sprintf("$name: counting in the new Redis %.2f s after it started", $took // -1));
    my @s = map { (treq($gw, "/$_/x", 'kill'))[0]{status} } qw(allow allow deny);
    is("@s", '200 429 200', "$name: a fresh count in the new Redis");
    log_ok($gw, $name, $mark);
    is($refused, 1, "$name: the refused connects are logged as refused, once");
}

# --- SCRIPT FLUSH -----------------------------------------------------------------------

{
    my (@bad, @counts);
    for my $i (1 .. 10) {
        redis_cmd($rd, 'SCRIPT', 'FLUSH');
        my $c = gw_connect($gw->{port});
        for my $route (qw(deny tokbig deny)) {
            my $r = $c->request('GET', "/$route/x", headers => ['X-User' => 'flush']);
            push @bad, "$i:$route:" . ($r ? $r->{status} : 0) if !$r || $r->{status} != 200;
        }
        $c->close;
        push @counts, count_of('limit:period:deny:flush');
    }
    is("@bad", '', 'SCRIPT FLUSH between requests: all answered 200, never a 5xx');
    is("@counts", join(' ', map { 2 * $_ } 1 .. 10), 'SCRIPT FLUSH: every request counted in Redis');
    # 10 taken from 1000; a second boundary crossed meanwhile refills 0.01 a second
    my $tokens = redis_cmd($rd, 'GET', '{limit:token:tokbig:flush}.tokens');
    cmp_ok(abs($tokens - 990), '<', 0.1, "SCRIPT FLUSH: the bucket too ($tokens tokens left)");
}

# --- a key holding something else -------------------------------------------------------

{
    # Another program left a value the scripts cannot count in (a string, a
    # list): that request gets Redis's error, but Redis itself is fine.
    my $name = 'bad value in one key';
    redis_cmd($rd, 'SET', 'limit:period:loc:badstr', 'abc');
    redis_cmd($rd, 'RPUSH', 'limit:period:loc:badlist', 'x');
    my $mark = log_mark($gw);
    my $down0 = metric($gw, 'gateway_redis_state_changes_total{state="down"}');
    my (@bad, @good);
    for my $u (qw(badstr badlist badstr)) {
        push @bad, (treq($gw, '/loc/x', $u))[0]{status};
        push @good, (treq($gw, '/loc/x', 'neighbour'))[0]{status};
    }
    is("@bad", '200 200 200', "$name: answered by the on_redis_error policy, no 5xx");
    is("@good", '200 200 200', "$name: other keys: quota 3");
    is(redis_cmd($rd, 'GET', 'limit:period:loc:badstr'), 'abc', "$name: the value is left alone");
    is(count_of('limit:period:loc:neighbour'), 3, "$name: other keys are still counted in Redis");
    my @said = gateway_log($gw) =~ /(limit-period limiter: Redis could not count key "limit:period:loc:bad\w+")/g;
    is(scalar(@said), 1, "$name: logged once (at most once per 10 s), naming the key");
    my $now = log_mark($gw);
    is($now->{'unavailable \('} - $mark->{'unavailable \('}, 0,
       "$name: Redis is not logged as unavailable");
    is(metric($gw, 'gateway_redis_state_changes_total{state="down"}'), $down0,
       "$name: no state change");
    wait_for(sub { metric($gw, 'gateway_redis_up') == 1 }, 2);
}

my $down_total = metric($gw, 'gateway_redis_state_changes_total{state="down"}');
ok($down_total >= 3, "gateway_redis_state_changes_total{state=\"down\"} is $down_total after three faults");
ok(metric($gw, 'gateway_limiter_rejections_total{route="deny",plugin="limit-period"}') >= 6,
   'policy deny answers count as rejections');
is(stop_gateway($gw), 0, 'the gateway exits cleanly');

# --- wrong password ----------------------------------------------------------------------

{
    my $name = 'wrong password';
    my $rp = start_redis(password => 'right-one');
    my $g = gateway_for($rp, password => 'wrong-one');
    my $t0 = time;
    my ($s, $max) = during($g, 'pw');
    during_ok($name, $s, $max);
    sleep(2.0 - (time - $t0)) if time - $t0 < 2.0; # several reconnects meanwhile
    ($s, $max) = during($g, 'pw2');
    during_ok("$name, later", $s, $max);
    is(log_count($g, qr/redis 127\.0\.0\.1:\d+: cannot connect \(.*(WRONGPASS|invalid)/), 1,
       "$name: said once in the log") or diag gateway_log($g);
    is(log_count($g, qr/redis 127\.0\.0\.1:\d+: (connected|answering again)/), 0, "$name: never connected");
    is(metric($g, 'gateway_redis_up'), 0, "$name: gateway_redis_up 0");
    ok(metric($g, 'gateway_limiter_fallbacks_total{route="loc",plugin="limit-period"}') >= 8,
       "$name: fallbacks counted");
    $rp->{no_auth} = 1;
    like(redis_cmd($rp, 'GET', 'x'), qr/^ERR:NOAUTH/, "$name: the server does require one");
    is_deeply(redis_cmd({ %$rp, no_auth => 0 }, 'KEYS', '*'), [], "$name: nothing written");
    is(stop_gateway($g), 0, "$name: the gateway exits cleanly");
}

stop_all();
done_testing();
