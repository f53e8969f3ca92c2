# Binary upgrade: `-s upgrade` (SIGUSR2) starts the binary again on the
# same listening sockets while keep-alive and connect-per-request clients
# run; the pid file moves to the new master (the old one's at .oldbin),
# the old master serves on until SIGQUIT and then drains and exits: zero
# socket errors, zero non-2xx. Then a rollback: QUIT to the newest master
# leaves the previous one running with its pid file back.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;
use GwLoad;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my $ua = start_upstream(name => 'a');
my $gw = start_gateway(config => {
    gateway => { workers => 2, timeouts => { drain => '5s' } },
    upstreams => [{ name => 'a', nodes => ["127.0.0.1:$ua->{port}"] }],
    routes => [{ name => 'all', match => { path => '/*' }, upstream => 'a' }],
});
my $pidfile = "$gw->{dir}/gateway.pid";

sub pid_in {
    my ($f) = @_;
    return (slurp_file($f) =~ /(\d+)/) ? $1 : 0;
}

# Gone, or a zombie nobody reaped yet.
sub gone {
    my ($pid) = @_;
    return 1 unless kill 0, $pid;
    return slurp_file("/proc/$pid/stat") =~ /^\d+ \(.*\) Z/s;
}

sub workers_of {
    my ($pid) = @_;
    return grep { !gone($_) } GwTest::children_of($pid);
}

sub probe {
    my $c = eval { gw_connect($gw->{port}, timeout => 3) } or return 'refused';
    my $r = $c->request('GET', '/x');
    $c->close;
    return $r ? $r->{status} : 'no answer';
}

sub run_cli {
    my (@args) = @_;
    my $out = GwTest::tmpdir() . '/cli-' . int(rand 1e9);
    my $pid = GwTest::spawn([gw_bin(), @args], $out, $out);
    return (GwTest::reap($pid, 10 * GwTest::mult()), slurp_file($out));
}

my $old = $gw->{pid};
ok(wait_for(sub { pid_in($pidfile) == $old }, 5), 'the pid file names the master')
    or diag(slurp_file($pidfile));
ok(wait_for(sub { workers_of($old) == 2 }, 10), 'two workers');

# --- upgrade under load, then QUIT to the old master ----------------------------------
my $new;
{
    my $load = start_load(port => $gw->{port}, paths => ['/a', '/b'], secs => 6,
        keepalive => 2, churn => 2);
    sleep 1;
    my ($code, $out) = run_cli('-s', 'upgrade', '-c', $gw->{conf});
    is($code, 0, '-s upgrade: exit 0') or diag($out);
    ok(wait_for(sub { $new = pid_in($pidfile); $new && $new != $old }, 10),
        'the pid file moves to the new master') or diag(gateway_log($gw));
    is(pid_in("$pidfile.oldbin"), $old, 'the old master\'s pid is in .oldbin');
    ok(wait_for(sub { workers_of($new) == 2 }, 10), 'the new master started its two workers');
    ok(!gone($old) && workers_of($old) >= 2, 'the old master and its workers still run');
    like(gateway_log($gw), qr/inherited \d+ listening socket/, 'the new master inherited the sockets');
    kill 'USR2', $new;
    ok(wait_for(sub { gateway_log($gw) =~ /upgrade refused: the previous master \(pid $old\) still runs/ }, 5),
        'an upgrade of the new master while the old one runs is refused');
    is(pid_in($pidfile), $new, '... and the pid file stays');
    sleep 1;
    kill 'QUIT', $old;
    my $st = GwTest::reap($old, 15 * GwTest::mult());
    $gw->{stopped} = 1;
    is($st, 0, 'QUIT: the old master drains and exits 0');
    my $res = finish_load($load);
    diag("load: $res->{requests} requests, $res->{ok} 2xx, $res->{non2xx} other, "
        . "$res->{errors} socket errors");
    ok($res->{requests} > 100, "$res->{requests} requests across the upgrade");
    is($res->{errors}, 0, 'upgrade under load: zero socket errors')
      or diag(join "\n", @{ $res->{samples} });
    is($res->{non2xx}, 0, 'upgrade under load: zero non-2xx')
      or diag(join "\n", @{ $res->{samples} });
    ok(!-e "$pidfile.oldbin", 'the old master removed .oldbin');
    is(pid_in($pidfile), $new, 'the pid file still names the new master');
    is(probe(), 200, 'the new master serves');
}

# --- a rollback: upgrade again (SIGUSR2), QUIT the newest -----------------------------
{
    my $log0 = length slurp_file($gw->{error_log});
    kill 'USR2', $new;
    my $newest;
    ok(wait_for(sub { $newest = pid_in($pidfile); $newest && $newest != $new }, 10),
        'SIGUSR2: the pid file moves on');
    ok(wait_for(sub { workers_of($newest) == 2 }, 10), 'the newest master runs two workers');
    kill 'QUIT', $newest;
    ok(wait_for(sub { gone($newest) }, 15), 'QUIT to the newest master: it exits');
    ok(wait_for(sub { pid_in($pidfile) == $new && !-e "$pidfile.oldbin" }, 5),
        'rollback: the pid file names the previous master again');
    like(substr(slurp_file($gw->{error_log}), $log0), qr/upgrade: the new master \(pid $newest\) exited with status 0; this master stays/,
        'rollback: the previous master logs it');
    is(probe(), 200, 'rollback: the previous master serves');
}

kill 'TERM', $new;
ok(wait_for(sub { gone($new) }, 15), 'the master stops');
ok(!-e $pidfile, 'and removes its pid file');
GwTest::sanitizer_check($gw);
stop_all();
done_testing();
