# redis.addr given as a host name: the worker resolves it on its loop
# (c-ares, through gw_resolver), never with a blocking getaddrinfo. A name
# from the hosts file connects and the limiters count in Redis; a name that
# does not resolve gives one clear log line and the on_redis_error policy,
# while the worker keeps answering at once.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time);
use GwTest;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();
plan skip_all => 'redis-server not installed' unless have_redis();
plan skip_all => 'localhost is not 127.0.0.1 in /etc/hosts'
  unless slurp_file('/etc/hosts') =~ /^\s*127\.0\.0\.1\s+(?:\S+\s+)*localhost\b/m;

my $rd = start_redis();
my $up = start_upstream(name => 'a');

sub gateway_with {
    my ($addr) = @_;
    return start_gateway(config => {
        redis     => { addr => $addr, timeout => '200ms' },
        upstreams => [{ name => 'a', nodes => ["127.0.0.1:$up->{port}"] }],
        routes    => [
            { name => 'deny', match => { path => '/deny/*' }, upstream => 'a',
              plugins => { 'limit-period' => { period => 60, quota => 2, key => 'header:X-User',
                                                on_redis_error => 'deny' } } },
            { name => 'allow', match => { path => '/allow/*' }, upstream => 'a',
              plugins => { 'limit-period' => { period => 60, quota => 1, key => 'header:X-User',
                                                on_redis_error => 'allow' } } },
        ],
    });
}

sub statuses {
    my ($gw, $path, $user, $n) = @_;
    return join ' ', map {
        http_request($gw->{port}, 'GET', $path, headers => ['X-User' => $user])->{status}
    } 1 .. $n;
}

# --- a name from the hosts file ----------------------------------------------

{
    my $gw = gateway_with("localhost:$rd->{port}");
    ok(wait_for(sub { gateway_log($gw) =~ /redis localhost:$rd->{port}: connected/ }, 5),
       'redis.addr localhost:PORT connects') or diag gateway_log($gw);
    # deny would refuse everything without Redis: 200s mean Redis counts
    is(statuses($gw, '/deny/x', 'u1', 3), '200 200 429', 'the limiter counts in Redis');
    my $keys = GwTest::redis_cmd($rd, 'KEYS', '*u1*');
    ok(ref $keys eq 'ARRAY' ? scalar @$keys : $keys, 'the key is in Redis');
    is(stop_gateway($gw), 0, 'stops cleanly');
}

# --- a name that does not resolve --------------------------------------------

{
    my $gw = gateway_with('no-such-host.invalid:6379');
    ok(wait_for(sub {
        gateway_log($gw) =~ /redis no-such-host\.invalid:6379: cannot connect \(cannot resolve no-such-host\.invalid: [^)]+\)/
    }, 5), 'a clear log line names the name that does not resolve') or diag gateway_log($gw);
    my $t0 = time;
    is(statuses($gw, '/deny/x', 'u2', 2), '429 429', 'on_redis_error deny refuses');
    is(statuses($gw, '/allow/x', 'u2', 2), '200 200', 'on_redis_error allow admits');
    ok(time - $t0 < 2 * mult(), 'the worker answers at once while the name does not resolve')
      or diag(time - $t0);
    my @lines = gateway_log($gw) =~ /cannot resolve no-such-host/g;
    ok(@lines <= 2, 'the failure is logged once, not at every retry (' . scalar(@lines) . ')');
    is(stop_gateway($gw), 0, 'stops at once while resolving');
}

stop_all();
done_testing();
