# The watchdog: a plugin that loops forever blocks its worker; the master
# sees the worker's loop stand still for gateway.watchdog, logs the route
# and the plugin, kills the worker and starts another, counted in
# gateway_worker_restarts_total{reason="watchdog"}. The other worker keeps
# answering throughout.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;
use Time::HiRes qw(time sleep);

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my $ua = start_upstream(name => 'a');

plugin_file('t-noop', <<'LUA');
local plugin = { name = "t-noop", priority = 10 }
function plugin.access(conf, ctx) end
return plugin
LUA
plugin_file('t-spin', <<'LUA');
local plugin = { name = "t-spin", priority = 5 }
function plugin.access(conf, ctx)
  if gw.req.header("X-Spin") then
    while true do end
  end
end
return plugin
LUA

my $watchdog_ms = 1000;
my $gw = start_gateway(config => {
    gateway => { workers => 2, watchdog => '1s', plugin_paths => [plugin_dir()],
                 timeouts => { drain => '2s' } },
    upstreams => [{ name => 'a', nodes => ["127.0.0.1:$ua->{port}"] }],
    routes => [
        { name => 'fine', match => { path => '/ok/*' }, upstream => 'a',
          plugins => { 't-noop' => {} } },
        { name => 'stuck', match => { path => '/spin/*' }, upstream => 'a',
          plugins => { 't-noop' => {}, 't-spin' => {} } },
    ],
});

sub probe {
    my ($path) = @_;
    my $c = eval { gw_connect($gw->{port}, timeout => 3) } or return 'refused';
    my $r = $c->request('GET', $path);
    $c->close;
    return $r ? $r->{status} : 'no answer';
}

sub restarts {
    my $c = eval { gw_connect($gw->{status_port}) } or return -1;
    my $r = $c->request('GET', '/metrics');
    $c->close;
    return -1 unless $r && $r->{body} =~ /^gateway_worker_restarts_total\{reason="watchdog"\} (\d+)$/m;
    return $1;
}

my @w0;
ok(wait_for(sub { @w0 = GwTest::children_of($gw->{pid}); @w0 == 2 }, 10), 'two workers');
is(probe('/ok/1'), 200, 'the fine route answers');
is(restarts(), 0, 'metric: no watchdog restart yet');

my $log0 = length slurp_file($gw->{error_log});
my $spin = gw_connect($gw->{port}, timeout => 10);
my $t0 = time;
$spin->write(build_request('GET', '/spin/x', headers => ['X-Spin' => '1']));

# meanwhile, requests on another route keep getting 200 (new connections:
# the stuck worker accepts none, the other one takes them all). A
# connection the stuck worker had accepted in the same loop turn as the
# spinning request would be lost with it (docs/operations.md), so the
# probes start once the worker is surely inside the plugin.
sleep 0.3;
my (@st, $replaced_at, @w1);
my $deadline = $t0 + ($watchdog_ms / 1000) * 3 * GwTest::mult();
while (time < $deadline) {
    push @st, probe('/ok/' . scalar @st);
    @w1 = GwTest::children_of($gw->{pid});
    if (@w1 == 2 && (grep { my $p = $_; !grep { $_ == $p } @w0 } @w1)) {
        $replaced_at //= time;
        last if @st >= 20;
    }
    sleep 0.05;
}
my @bad = grep { $_ ne '200' } @st;
ok(@st >= 10, scalar(@st) . ' requests on the fine route meanwhile');
is(scalar @bad, 0, 'every one answered 200') or diag("@bad");
ok(defined $replaced_at, 'the stuck worker was replaced') or diag("before @w0, after @w1");
my $took = defined $replaced_at ? $replaced_at - $t0 : 0;
ok($took < ($watchdog_ms / 1000 + 1) * GwTest::mult(),
    sprintf('... %.2f s after the plugin started spinning (watchdog %d ms)', $took, $watchdog_ms));

my $el = substr(slurp_file($gw->{error_log}), $log0);
like($el, qr/watchdog: worker \d \(pid \d+\) has not turned its loop for \d+ ms, in route "stuck", plugin "t-spin": killing it/,
    'the log names the route and the plugin');
if ($el =~ /has not turned its loop for (\d+) ms/) {
    ok($1 >= $watchdog_ms && $1 < $watchdog_ms + 1000, "killed after $1 ms of standing still");
}
my $r = $spin->read_response(timeout => 2);
ok(!$r || !$r->{status}, 'the stuck request itself gets no answer (its worker was killed)');
$spin->close;
ok(wait_for(sub { restarts() == 1 }, 5), 'metric: gateway_worker_restarts_total{reason="watchdog"} 1');
unlike($el, qr/worker \d \(pid \d+\) killed by signal/, 'not counted as a crash');
is_deeply([map { probe("/ok/after$_") } 1 .. 6], [(200) x 6], 'both workers serve afterwards');

# -t
{
    my ($code, $out) = check_config(config => { gateway => { watchdog => 'off' } });
    is($code, 0, '-t: watchdog: off is accepted') or diag($out);
    ($code, $out) = check_config(config => { gateway => { watchdog => '50ms' } });
    isnt($code, 0, '-t: watchdog: 50ms is refused');
    like($out, qr/gateway\.watchdog: must be at least 100ms/, '-t: ... with the reason');
    ($code, $out) = check_config(config => { gateway => { watchdog => [1] } });
    isnt($code, 0, '-t: watchdog: a list is refused');
}

is(stop_gateway($gw), 0, 'the master stops cleanly');
stop_all();
done_testing();
