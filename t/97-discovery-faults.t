# Discovery under faults found in review: signals reaching the discovery
# process (log reopen, a terminal's hangup), reloads, and what workers see
# while lists change. Consul through the stand-in (t/lib/consul-mock.pl).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use GwTest;
use GwConsul;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my %up = map { $_ => start_upstream(name => $_) } qw(a b);
sub reg {
    my ($c, $name, %o) = @_;
    consul_ctl($c, '/mock/register', { ID => "web-$name", Service => 'web',
        Address => '127.0.0.1', Port => $up{$name}{port}, Meta => $o{meta} // {} });
}
sub who {
    my ($gw, $path, $n) = @_;
    my %seen;
    for (1 .. $n) {
        my $r = http_request($gw->{port}, 'GET', $path);
        $seen{ $r->{status} == 200 ? json_body($r)->{name} : "status:$r->{status}" }++;
    }
    return join ',', sort keys %seen;
}
sub wait_who { my ($gw, $path, $want) = @_; wait_for(sub { who($gw, $path, 6) eq $want }, 5) }
sub is_worker {
    my ($g, $pid) = @_;
    return gateway_log($g) =~ /worker \d+: started \(pid $pid\)/;
}
sub disc_pid {
    my ($g) = @_;
    my ($dp) = grep { !is_worker($g, $_) } GwTest::children_of($g->{pid});
    return $dp;
}

# ---- signals: the discovery process reopens its log, survives a hangup -----

{
    my $c = start_consul();
    reg($c, 'a');
    my $gw = start_gateway(config => {
        gateway    => { workers => 1 },
        registries => { c1 => { type => 'consul', addr => "http://127.0.0.1:$c->{port}", wait => '2s',
                                timeout => '1s' } },
        upstreams  => [{ name => 'web', discovery => { registry => 'c1', service => 'web' } }],
        routes     => [{ match => { path => '/*' }, upstream => 'web' }],
    });
    ok(wait_who($gw, '/x', 'a'), 'routing through the registry');
    ok(wait_for(sub { slurp_file($gw->{error_log}) =~ /discovery: registry c1: connected/ }, 5),
        'the discovery process logs into the error log');
    my $dp = disc_pid($gw);
    ok($dp, "the discovery process found ($dp)");

    # logrotate: move the file, ask for a reopen
    rename $gw->{error_log}, "$gw->{error_log}.1" or die "rename: $!";
    kill 'USR1', $gw->{pid};
    ok(wait_for(sub { -e $gw->{error_log} }, 5), 'the master reopened the error log');
    sleep 0.3;
    is(disc_pid($gw), $dp, 'the discovery process lives through a reopen');
    stop_consul($c);
    ok(wait_for(sub { slurp_file($gw->{error_log}) =~ /registry c1: unreachable/ }, 5),
        'the discovery process writes into the reopened log')
      or diag "new log:\n" . slurp_file($gw->{error_log}) . "old log:\n"
              . slurp_file("$gw->{error_log}.1");

    # a terminal's hangup reaches the whole process group; workers ignore it
    kill 'HUP', $dp;
    sleep 0.5;
    my $all = slurp_file($gw->{error_log}) . slurp_file("$gw->{error_log}.1");
    unlike($all, qr/discovery process \(pid $dp\) killed by signal 1/,
        'a SIGHUP does not kill the discovery process');
    is(stop_gateway($gw), 0, 'the gateway stops cleanly');
}

# ---- a reload that points a registry elsewhere: no list of the old one ------

{
    my $c = start_consul();
    reg($c, 'a');
    my $dead = free_port();
    my %cfg = (
        gateway    => { workers => 1 },
        registries => { c1 => { type => 'consul', addr => "http://127.0.0.1:$c->{port}", wait => '2s',
                                timeout => '1s' } },
        upstreams  => [{ name => 'web', discovery => { registry => 'c1', service => 'web' } }],
        routes     => [{ match => { path => '/*' }, upstream => 'web' }],
    );
    my $gw = start_gateway(config => \%cfg);
    ok(wait_who($gw, '/x', 'a'), 'routing through the first Consul');
    $cfg{registries}{c1}{addr} = "http://127.0.0.1:$dead";
    spew_file($gw->{conf}, GwTest::config_text($gw, config => \%cfg));
    kill 'HUP', $gw->{pid};
    ok(wait_for(sub { gateway_log($gw) =~ /reloaded/ }, 5), 'reloaded onto a Consul that is down');
    ok(wait_for(sub { gateway_log($gw) =~ /registry c1: unreachable/ }, 5), '... which is logged');
    sleep 0.3;
    my $r = http_request($gw->{port}, 'GET', '/x');
    is($r->{status}, 503, 'the old registry\'s nodes are not used for the new one');
    like(json_body($r)->{message} // '', qr/no node yet/, '... the new registry was never read');
    is(stop_gateway($gw), 0, 'the gateway stops cleanly');
    stop_consul($c);
}

# ---- reloads away from discovery and back: no list from long ago ----------

{
    my $c = start_consul();
    reg($c, 'a');
    my %with = (
        gateway    => { workers => 1 },
        registries => { c1 => { type => 'consul', addr => "http://127.0.0.1:$c->{port}", wait => '2s',
                                timeout => '1s' } },
        upstreams  => [{ name => 'web', discovery => { registry => 'c1', service => 'web' } }],
        routes     => [{ match => { path => '/*' }, upstream => 'web' }],
    );
    my %without = (
        gateway   => { workers => 1 },
        upstreams => [{ name => 'web', nodes => ["127.0.0.1:$up{b}{port}"] }],
        routes    => [{ match => { path => '/*' }, upstream => 'web' }],
    );
    my $gw = start_gateway(config => \%with);
    ok(wait_who($gw, '/x', 'a'), 'routing through Consul');
    my $reloads = 0;
    my $reload = sub {
        my ($cfg) = @_;
        spew_file($gw->{conf}, GwTest::config_text($gw, config => $cfg));
        kill 'HUP', $gw->{pid};
        $reloads++;
        return wait_for(sub { (() = gateway_log($gw) =~ /reloaded/g) == $reloads }, 5);
    };
    ok($reload->(\%without), 'reloaded without discovery');
    ok(wait_who($gw, '/x', 'b'), 'static nodes in use');
    stop_consul($c); # the registry goes away meanwhile (and instance a with it)
    ok($reload->(\%with), 'reloaded with discovery again, the registry down');
    sleep 0.5;
    my $r = http_request($gw->{port}, 'GET', '/x');
    is($r->{status}, 503, 'the list of two reloads ago is not used');
    like(json_body($r)->{message} // '', qr/no node yet/, '... the registry was never read');
    is(stop_gateway($gw), 0, 'the gateway stops cleanly');
}

stop_all();
done_testing();
