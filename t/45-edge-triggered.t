# Keep-alive sockets (client and upstream) are switched to edge-triggered
# readiness once they serve a second request. Edge-triggered readiness
# loses data if a reader ever stops before the socket is empty, so this
# file drives such sockets through everything that leaves bytes behind:
# bodies far larger than the read buffer both ways, a client that reads
# late (the upstream read pauses and resumes), pipelined requests arriving
# in one write, and a slow trickle. Each exchange must complete, with the
# right bytes, on the same connections.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use GwTest;
use Digest::MD5 qw(md5_hex);

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my $up = start_upstream(name => 'a');
my $gw = start_gateway(config => {
    gateway   => { workers => 1, limits => { max_body_size => '32m' } },
    upstreams => [{ name => 'a', nodes => ["127.0.0.1:$up->{port}"], retries => 0,
                    keepalive => { size => 4, idle_timeout => '30s' } }],
    routes    => [{ name => 'all', match => { path => '/*' }, upstream => 'a' }],
});
my $port = $gw->{port};

sub warm_up {
    my ($c, $n) = @_;
    my $good = 0;
    for my $i (1 .. $n) {
        my $r = $c->request('GET', "/warm/$i");
        $good++ if $r && $r->{status} == 200;
    }
    return $good;
}

my $c = gw_connect($port, timeout => 30);
is(warm_up($c, 3), 3, 'three small requests on one connection');

# --- a body far larger than the read buffer, to the upstream ---------------------
{
    my $body = join '', map { chr(65 + $_ % 26) x 1000 } 1 .. 6 * 1024;
    my $r = $c->request('POST', '/sink/upload', body => $body);
    is($r && $r->{status}, 200, '6 MB upload on a kept-alive connection: 200');
    my $echo = $r ? json_body($r) : undef;
    is($echo->{body} // '', sprintf('bytes=%d md5=%s', length $body, md5_hex($body)),
       'the upstream received every byte, in order');
    is(warm_up($c, 2), 2, 'the connection serves requests after it');
}

# --- a response far larger than the read buffer, from a reused upstream connection
{
    my $r = $c->request('GET', '/big/20000000');
    is($r && $r->{status}, 200, '20 MB download: 200');
    is(length($r ? $r->{body} : ''), 20_000_000, 'every byte of it');
    is(warm_up($c, 2), 2, 'the connection serves requests after it');
}

# --- the same, read late: the gateway stops reading the upstream and resumes -----
{
    $c->write(GwTest::build_request('GET', '/big/16000000')) or die "write: $!";
    sleep 1; # the socket buffers fill; the upstream read pauses
    my $r = $c->read_response(timeout => 30);
    is($r && $r->{status}, 200, '16 MB download read a second late: 200');
    is(length($r ? $r->{body} : ''), 16_000_000, 'every byte of it');
    is(warm_up($c, 2), 2, 'the connection serves requests after it');
}

# --- many pipelined requests in one write -----------------------------------------
{
    my $n = 300;
    my $batch = join '', map { GwTest::build_request('GET', "/pipe/$_") } 1 .. $n;
    $c->write($batch) or die "write: $!";
    my ($ok, $bad) = (0, '');
    for my $i (1 .. $n) {
        my $r = $c->read_response(timeout => 10);
        my $uri = $r ? (json_body($r) // {})->{uri} // '' : '';
        if ($r && $r->{status} == 200 && $uri eq "/pipe/$i") { $ok++ }
        else { $bad ||= "response $i: " . ($r ? "status $r->{status} uri $uri" : 'none'); last }
    }
    is($ok, $n, "$n pipelined requests in one write all answered, in order") or diag $bad;
}

# --- a request trickled a few bytes at a time ---------------------------------------
{
    my $req = GwTest::build_request('POST', '/trickle', body => 'x' x 300);
    for (my $i = 0; $i < length $req; $i += 7) {
        $c->write(substr($req, $i, 7)) or die "write: $!";
        sleep 0.002;
    }
    my $r = $c->read_response(timeout => 10);
    is($r && $r->{status}, 200, 'trickled request: 200');
    is(length((json_body($r) // {})->{body} // ''), 300, 'its body arrived whole');
}

# --- both directions at once on a second client, many times -------------------------
{
    my $c2 = gw_connect($port, timeout => 30);
    my $good = 0;
    for my $i (1 .. 20) {
        my $body = 'm' x (100_000 * $i);
        my $r = $c2->request('POST', "/sink/mix/$i", body => $body);
        $good++ if $r && $r->{status} == 200
          && ((json_body($r) // {})->{body} // '') eq sprintf('bytes=%d md5=%s', length $body, md5_hex($body));
    }
    is($good, 20, 'uploads of 0.1-2 MB answered in full, 20 times on one connection');
    $c2->close;
}

$c->close;
stop_all();

done_testing();
