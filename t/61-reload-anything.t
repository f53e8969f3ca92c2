# Reload of anything under load: a reload every 200 ms for 30 s while
# keep-alive and connect-per-request clients run, each reload changing the
# routes, the plugin code and config, and the worker count (1, 2, 3);
# every few reloads a broken config that must be refused. Zero socket
# errors, zero non-2xx. Then listen addresses and the status listener
# added and removed by a reload: the new port answers, the removed one
# refuses, the staying port never drops a request.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;
use GwLoad;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my $ua = start_upstream(name => 'a');
my $ub = start_upstream(name => 'b');
my $port = free_port();
my $status_port = free_port();

# The plugin's code changes at each reload too: its header names the
# version of the file the worker loaded and the config value.
# Files are replaced whole (rename), as an operator's deploy should: a
# reload never reads half a file.
sub atomic_write {
    my ($path, $text) = @_;
    spew_file("$path.tmp", $text);
    rename "$path.tmp", $path or die "rename $path: $!";
}

sub write_plugin {
    my ($v) = @_;
    atomic_write(plugin_dir() . '/t-stamp.lua', <<"LUA");
local plugin = { name = "t-stamp", priority = 100,
  schema = { type = "object", properties = { v = { type = "integer" } }, required = { "v" } } }
function plugin.access(conf, ctx)
  gw.resp.add_header("X-Stamp", "code$v-conf" .. conf.v)
end
return plugin
LUA
}

sub config {
    my ($i, %o) = @_;
    my @listen = ("127.0.0.1:$port", @{ $o{more_listen} // [] });
    my @routes = (
        { name => 'stable', match => { path => '/s/*' }, upstream => 'a',
          plugins => { 't-stamp' => { v => $i } } },
        # a route that exists in this generation only
        { name => "only$i", match => { path => "/only$i" }, upstream => 'b' },
    );
    return {
        gateway => {
            listen => \@listen,
            workers => 1 + $i % 3,
            status_listen => "127.0.0.1:" . ($o{status_port} // $status_port),
            timeouts => { drain => '5s' },
            plugin_paths => [plugin_dir()],
        },
        upstreams => [
            { name => 'a', nodes => ["127.0.0.1:$ua->{port}"] },
            { name => 'b', nodes => ["127.0.0.1:$ub->{port}"] },
        ],
        routes => [ $i % 2 ? reverse @routes : @routes ],
    };
}

sub write_config {
    my ($gw, $cfg) = @_;
    atomic_write($gw->{conf}, GwTest::config_text($gw, config => $cfg));
}

sub probe {
    my ($p, $path) = @_;
    my $c = eval { gw_connect($p, timeout => 3) } or return 'refused';
    my $r = $c->request('GET', $path // '/s/x');
    $c->close;
    return $r ? "$r->{status}" : 'no answer';
}

sub log_since {
    my ($gw, $off) = @_;
    return substr(slurp_file($gw->{error_log}), $off);
}

write_plugin(0);
my $gw = start_gateway(port => $port, status_port => $status_port, config => config(0));
is(probe($port), '200', 'start: the stable route answers');

# --- 30 s of reloads every 200 ms under load -------------------------------------
{
    my $secs = 30;
    my $load = start_load(port => $port, paths => ['/s/a', '/s/b'], secs => $secs,
        keepalive => 2, churn => 2, track => 'X-Stamp');
    my ($reloads, $bad, $i) = (0, 0, 0);
    my $log0 = length slurp_file($gw->{error_log});
    my $end = time + $secs - 1;
    my $last_good = 0;
    while (time < $end) {
        sleep 0.2;
        $i++;
        if ($i % 10 == 5) {
            # broken: a route to an upstream that does not exist
            my $cfg = config($i);
            $cfg->{routes}[0]{upstream} = 'nope';
            write_config($gw, $cfg);
            $bad++;
        }
        else {
            write_plugin($i);
            write_config($gw, config($i));
            $last_good = $i;
            $reloads++;
        }
        kill 'HUP', $gw->{pid};
    }
    my $res = finish_load($load);
    my $el = log_since($gw, $log0);
    my $applied = () = $el =~ /\breloaded\b/g;
    my $refused = () = $el =~ /reload failed, keeping the running configuration/g;
    diag("load: $res->{requests} requests, $res->{ok} 2xx, $res->{non2xx} other, "
        . "$res->{errors} socket errors; $reloads reloads ($applied applied), $bad broken "
        . "($refused refused)");
    ok($res->{requests} > 500, "load: $res->{requests} requests made");
    is($res->{errors}, 0, 'reloads under load: zero socket errors')
      or diag(join "\n", @{ $res->{samples} });
    is($res->{non2xx}, 0, 'reloads under load: zero non-2xx')
      or diag(join "\n", @{ $res->{samples} });
    # SIGHUPs that arrive while the master is busy checking the previous
    # config merge into one (slower under ASan): many, not all, are applied
    # one by one
    ok($applied >= $reloads / 4, "reloads applied: $applied of $reloads");
    ok($refused >= 1, "broken configs refused: $refused of $bad");
    like($el, qr/routes\[\d\]\.upstream/, 'the refusal names the problem');
    my @stamps = grep { length } keys %{ $res->{headers} };
    ok(@stamps >= 10, 'plugin code and config changed under load: ' . scalar(@stamps)
        . ' different X-Stamp values seen');

    # the last config is in force: its route, stamp, worker count
    write_plugin($last_good);
    write_config($gw, config($last_good));
    kill 'HUP', $gw->{pid};
    my $want = "code$last_good-conf$last_good";
    ok(wait_for(sub {
        my $r = eval { GwTest::http_request($port, 'GET', '/s/z') };
        $r && ($r->{headers}{'x-stamp'} // '') eq $want }, 10),
        "after the storm: the last config answers ($want)");
    is(probe($port, "/only$last_good"), '200', 'after the storm: its own route exists');
    my $old = $last_good - 1;
    is(probe($port, "/only$old"), '404', 'after the storm: the previous one\'s route is gone');
    my $n = 1 + $last_good % 3;
    my @w;
    ok(wait_for(sub { @w = GwTest::children_of($gw->{pid}); @w == $n }, 15),
        "after the storm: $n worker(s) for workers: $n, the old ones drained")
      or diag("children: @w");
}

# --- listen addresses and the status listener added and removed ---------------------
{
    my $p2 = free_port();
    my $s2 = free_port();
    my $load = start_load(port => $port, paths => ['/s/a'], secs => 4, keepalive => 1,
        churn => 1);
    my $log0 = length slurp_file($gw->{error_log});
    write_plugin(100);
    write_config($gw, config(100, more_listen => ["127.0.0.1:$p2"], status_port => $s2));
    kill 'HUP', $gw->{pid};
    ok(wait_for(sub { probe($p2) eq '200' }, 5), 'listen added: the new port answers');
    ok(wait_for(sub { probe($s2, '/metrics') eq '200' }, 5),
        'status_listen moved: the new status port answers');
    ok(wait_for(sub { probe($status_port, '/metrics') eq 'refused' }, 10),
        'status_listen moved: the old status port refuses');
    sleep 0.5;
    write_plugin(101);
    write_config($gw, config(101));
    kill 'HUP', $gw->{pid};
    ok(wait_for(sub { probe($p2) eq 'refused' }, 10), 'listen removed: the port refuses');
    is(probe($port), '200', 'the staying port answers');

    # an address that cannot be bound: refused, the rest keeps running
    my $blocker = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
        Listen => 5, Proto => 'tcp') or die "listen: $!";
    my $busy = $blocker->sockport;
    write_config($gw, config(101, more_listen => ["127.0.0.1:$busy"]));
    my $log1 = length slurp_file($gw->{error_log});
    kill 'HUP', $gw->{pid};
    ok(wait_for(sub { log_since($gw, $log1) =~ /cannot listen on 127\.0\.0\.1:$busy/ }, 5),
        'a port in use: the reload is refused, the log says why');
    is(probe($port), '200', 'a port in use: the old config keeps serving');
    close $blocker;

    my $res = finish_load($load);
    is($res->{errors} + $res->{non2xx}, 0,
        "the staying port never dropped a request ($res->{requests} made)")
      or diag(join "\n", @{ $res->{samples} });
    unlike(log_since($gw, $log0), qr/worker \d+ \(pid \d+\) (killed|exited)/,
        'no worker died');
}

# --- the master's own checks ---------------------------------------------------------
{
    my ($code, $out) = check_config(config => { gateway => { watchdog => 'sometimes' } });
    isnt($code, 0, '-t: gateway.watchdog must be a duration or off');
    like($out, qr/gateway\.watchdog/, '-t: ... and says so');
}

is(stop_gateway($gw), 0, 'the master stops cleanly');
stop_all();
done_testing();
