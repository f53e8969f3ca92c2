# Processes and signals: master + workers, re-spawn of a killed worker,
# graceful stop with a request in flight, SIGHUP reload (good and broken
# configs) without failed requests, `-s reload|stop`, `-t`.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my $ua = start_upstream(name => 'a');
my $ub = start_upstream(name => 'b');

sub config {
    my (%o) = @_;
    return {
        gateway => { workers => 2, timeouts => { drain => '5s' }, %{ $o{gateway} // {} } },
        upstreams => [
            { name => 'a', nodes => ["127.0.0.1:$ua->{port}"] },
            { name => 'b', nodes => ["127.0.0.1:$ub->{port}"] },
        ],
        routes => [{ name => 'v', match => { path => '/*' }, upstream => $o{route_to} // 'a' }],
    };
}

# Worker pids of a master, from /proc.
sub workers_of {
    my ($pid) = @_;
    my @kids;
    opendir my $d, '/proc' or return ();
    for my $p (grep { /^\d+$/ } readdir $d) {
        open my $fh, '<', "/proc/$p/stat" or next;
        my $st = <$fh> // '';
        push @kids, $p if $st =~ /^\d+ \(.*\) (\S) (\d+)/s && $2 == $pid && $1 ne 'Z';
    }
    return sort { $a <=> $b } @kids;
}

# One request on a new connection -> "STATUS NAME"
sub probe {
    my ($port, $path) = @_;
    my $c = eval { gw_connect($port) } or return 'connect failed';
    my $r = $c->request('GET', $path // '/x');
    $c->close;
    return 'no answer' unless $r;
    return "$r->{status} " . ($r->{headers}{'x-upstream'} // '-');
}

# Runs requests in a child process for $secs seconds; returns a handle to
# collect the results ("STATUS NAME" per line) with finish_loop.
sub start_loop {
    my ($port, $secs) = @_;
    my $file = tmpdir() . "/loop-" . int(rand 1e9);
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open my $fh, '>', $file or POSIX::_exit(1);
        $fh->autoflush(1);
        my $end = time + $secs;
        while (time < $end) {
            print $fh probe($port, '/loop'), "\n";
            sleep 0.01;
        }
        close $fh;
        POSIX::_exit(0);
    }
    return { pid => $pid, file => $file };
}

sub finish_loop {
    my ($l) = @_;
    waitpid($l->{pid}, 0);
    return split /\n/, slurp_file($l->{file});
}

sub run_cli {
    my (@args) = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        exec gw_bin(), @args or POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($? >> 8, $out);
}

# --- -t ------------------------------------------------------------------------
{
    my ($code, $out) = check_config(config => config());
    is($code, 0, '-t: exit 0');
    like($out, qr/configuration OK/, '-t: prints "configuration OK"');
}

# --- master + 2 workers, re-spawn ----------------------------------------------------
{
    my $gw = start_gateway(config => config());
    my @w;
    ok(wait_for(sub { @w = workers_of($gw->{pid}); @w == 2 }, 5), 'workers: 2 -> master + 2 worker processes')
      or diag("workers: @w");
    my $old = $w[0];
    kill 'KILL', $old;
    my @now;
    ok(wait_for(sub { @now = workers_of($gw->{pid}); @now == 2 && !grep { $_ == $old } @now }, 2),
        'kill -9 a worker: the master starts a new one within 2 s') or diag("now: @now");
    my @st = map { probe($gw->{port}) } 1 .. 20;
    is_deeply(\@st, [('200 a') x 20], 'after the re-spawn: 20 requests succeed');
    like(slurp_file($gw->{error_log}), qr/worker .*\b$old\b.*(signal 9|killed)/,
        'error log: the killed worker is reported');
    ok(kill(0, $gw->{pid}), 'the master is still running');
    is(stop_gateway($gw), 0, 'SIGTERM: exit 0');
    ok(!workers_of($gw->{pid}), 'no worker left after the master exited');
}

# --- SIGTERM drains an in-flight request -------------------------------------------------
{
    my $gw = start_gateway(config => config());
    clear_upstream_log($ua);
    my $c = gw_connect($gw->{port}, timeout => 10);
    $c->write(build_request('GET', '/sleep/1500'));
    ok(wait_for(sub { grep { $_->{uri} eq '/sleep/1500' } upstream_requests($ua) }, 5),
        'drain: the slow request reached the upstream');
    my @w = workers_of($gw->{pid});
    my $t0 = time;
    my $exit = stop_gateway($gw); # SIGTERM, waits for the exit
    is($exit, 0, 'drain: the master exits 0 after SIGTERM');
    my $r = $c->read_response(timeout => 5);
    is($r && $r->{status}, 200, 'drain: the in-flight request completed with 200');
    is($r && $r->{headers}{'x-upstream'}, 'a', 'drain: with the upstream answer');
    like($r ? $r->{headers}{connection} // '' : '', qr/close/i, 'drain: the response says Connection: close');
    ok(!(grep { kill 0, $_ } @w), 'drain: the workers are gone');
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $gw->{port}, Proto => 'tcp', Timeout => 2);
    ok(!$s, 'after the stop: new connections are refused');
}

# --- SIGHUP reload ----------------------------------------------------------------------
{
    my $gw = start_gateway(config => config());
    is(probe($gw->{port}), '200 a', 'before reload: route goes to a');
    my @w0 = workers_of($gw->{pid});
    my $text = slurp_file($gw->{conf});
    (my $to_b = $text) =~ s/upstream: "a"/upstream: "b"/ or die 'route not found in the config';
    my $ka = gw_connect($gw->{port});
    my $r0 = $ka->request('GET', '/ka');
    is($r0 && $r0->{status}, 200, 'reload: a keep-alive connection opened before');
    my $loop = start_loop($gw->{port}, 2.5);
    sleep 0.7;
    spew_file($gw->{conf}, $to_b);
    kill 'HUP', $gw->{pid};
    my @res = finish_loop($loop);
    $ka->poll(0.05);
    my $closed_idle = $ka->{eof};
    my $r1 = $ka->request('GET', '/ka');
    is($r1 && $r1->{status}, 200, 'reload: the keep-alive connection still gets its next answer')
      or diag($closed_idle ? 'the gateway closed the idle keep-alive connection at the reload'
                           : 'the connection was open, the request got no answer');
    like($r1 ? $r1->{headers}{connection} // '' : '', qr/close/i, 'reload: ... with Connection: close');
    ok($ka->wait_closed(2), 'reload: ... and is then closed');
    $ka->close;
    my @bad = grep { !/^200 [ab]$/ } @res;
    ok(@res >= 20, 'reload: the loop made ' . scalar(@res) . ' requests');
    is(scalar @bad, 0, 'reload: no failed request across the reload') or diag(join ', ', @bad[0 .. ($#bad < 9 ? $#bad : 9)]);
    is($res[0], '200 a', 'reload: the first requests went to a');
    is($res[-1], '200 b', 'reload: the last requests went to b');
    my $switched = 0;
    for my $i (1 .. $#res) { $switched++ if $res[$i] ne $res[$i - 1] }
    ok($switched <= 3, "reload: the switch is clean ($switched changes)");
    is_deeply([map { probe($gw->{port}) } 1 .. 6], [('200 b') x 6], 'after reload: new behaviour');
    like(slurp_file($gw->{error_log}), qr/\breloaded\b/, 'error log: reload reported');
    my @w1;
    ok(wait_for(sub { @w1 = workers_of($gw->{pid}); @w1 == 2 && !grep { my $o = $_; grep { $_ == $o } @w1 } @w0 }, 10),
        'reload: 2 new workers, the old ones gone') or diag("old @w0, now @w1");

    # a broken config: the old one keeps serving
    (my $broken = $to_b) =~ s/upstream: "b"/upstream: "nope"/ or die;
    my $log_before = length slurp_file($gw->{error_log});
    spew_file($gw->{conf}, $broken);
    kill 'HUP', $gw->{pid};
    my $el = '';
    ok(wait_for(sub { $el = substr(slurp_file($gw->{error_log}), $log_before); $el =~ /routes\[0\]\.upstream/ }, 3),
        'broken reload: the error log names the problem (routes[0].upstream)') or diag($el);
    like($el, qr/reload failed|keeping/i, 'broken reload: the log says the running configuration stays');
    is_deeply([map { probe($gw->{port}) } 1 .. 6], [('200 b') x 6], 'broken reload: the old config still serves');
    ok(kill(0, $gw->{pid}), 'broken reload: the master is still running');
    is_deeply([workers_of($gw->{pid})], \@w1, 'broken reload: the workers were left alone');

    # -s reload with a good file again (back to a)
    spew_file($gw->{conf}, $text);
    my ($code, $out) = run_cli('-s', 'reload', '-c', $gw->{conf});
    is($code, 0, '-s reload: exit 0') or diag($out);
    ok(wait_for(sub { probe($gw->{port}) eq '200 a' }, 5), '-s reload: new behaviour');

    # -s stop
    ok(-s "$gw->{dir}/gateway.pid", 'pid file written');
    is(slurp_file("$gw->{dir}/gateway.pid") =~ s/\s+//gr, $gw->{pid}, 'pid file holds the master pid');
    ($code, $out) = run_cli('-s', 'stop', '-c', $gw->{conf});
    is($code, 0, '-s stop: exit 0') or diag($out);
    my $gone = wait_for(sub { waitpid($gw->{pid}, WNOHANG) == $gw->{pid} ? ($gw->{st} = $?, 1) : 0 }, 10);
    ok($gone, '-s stop: the master exits');
    if ($gone) {
        $gw->{stopped} = 1;
        is($gw->{st} >> 8, 0, '-s stop: exit status 0');
        is($gw->{st} & 127, 0, '-s stop: not killed by a signal');
    }
}

# --- TERM the moment the port accepts -------------------------------------------------
# A supervisor may signal as soon as it sees the port open, while the
# master is still mapping its shared memory and forking: that TERM stops
# it cleanly (exit 0), it does not kill it by the default action.
{
    my $up = start_upstream(name => 'early');
    for my $i (1 .. 5) {
        my $gw = start_gateway(config => {
            gateway => { workers => 2 },
            upstreams => [{ name => 'u', nodes => ["127.0.0.1:$up->{port}"] }],
            routes => [{ name => 'r', match => { path => '/*' }, upstream => 'u' }],
        });
        is(stop_gateway($gw, no_check => $i < 5), 0, "TERM at once ($i): exit 0")
            or diag(gateway_log($gw));
    }
}

stop_all();
done_testing();
