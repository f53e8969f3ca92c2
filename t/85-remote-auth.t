# The remote-auth plugin through the real gateway, with a scripted auth
# service: tokens it accepts and refuses, the user id it passes upstream,
# the per-worker cache, and an auth service that is down or talks nonsense.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my $dir = tmpdir();
my $calls = "$dir/auth-calls";

# The auth service: "good" is u1, "weird" gets an answer without a user,
# "broken" a 500; anything else is refused. Each call appends its token.
my $auth = start_scripted_origin(pause => 0, answer => sub {
    my ($head) = @_;
    my ($token) = $head =~ /^Authorization: Bearer (\S+)\r$/mi;
    $token //= '-';
    if (open my $fh, '>>', $calls) { syswrite($fh, "$token\n"); close $fh }
    my ($status, $body) =
        $token eq 'good'   ? (200, '{"user":"u1"}')
      : $token eq 'weird'  ? (200, '{"id":"u1"}')
      : $token eq 'broken' ? (500, 'oops')
      :                      (401, '{"error":"no"}');
    return (["HTTP/1.1 $status X\r\nContent-Length: " . length($body)
             . "\r\nContent-Type: application/json\r\n\r\n$body"], 0);
});
my $up = start_upstream(name => 'orders');
my $dead = free_port();

my $gw = start_gateway(config => {
    upstreams => [{ name => 'orders', nodes => ["127.0.0.1:$up->{port}"] }],
    routes    => [
        { name => 'orders', match => { path => '/api/orders/*' }, upstream => 'orders',
          plugins => { 'remote-auth' => {
              url => "http://127.0.0.1:$auth->{port}/check", ttl => 30 } } },
        { name => 'down', match => { path => '/down/*' }, upstream => 'orders',
          plugins => { 'remote-auth' => { url => "http://127.0.0.1:$dead/check" } } },
    ],
});

sub ncalls { scalar(() = slurp_file($calls) =~ /\n/g) }

sub get {
    my ($path, $token) = @_;
    my @h = (defined $token ? (Authorization => "Bearer $token") : (), 'X-User-Id' => 'forged');
    return http_request($gw->{port}, 'GET', $path, headers => \@h);
}

sub error_is {
    my ($r, $status, $message, $what) = @_;
    is($r->{status}, $status, "$what: $status");
    my $b = json_body($r) // {};
    is($b->{message}, $message, "$what: message");
    is($b->{code}, $status, "$what: envelope code");
    is($b->{request_id}, $r->{headers}{'x-request-id'}, "$what: envelope request_id");
}

clear_upstream_log($up);
my $r = get('/api/orders/1', 'good');
is($r->{status}, 200, 'accepted token: 200');
my @seen = upstream_requests($up);
is(scalar @seen, 1, 'the request reached the upstream');
my %h = map { lc($_->[0]) => $_->[1] } @{ $seen[0]{headers} // [] };
is($h{'x-user-id'}, 'u1', 'the user id from the auth service replaced the client\'s');
is(ncalls(), 1, 'one auth call');

$r = get('/api/orders/2', 'good');
is($r->{status}, 200, 'second request: 200');
is(ncalls(), 1, 'served from the cache: no second auth call');

clear_upstream_log($up);
error_is(get('/api/orders/1', 'bad'), 401, 'invalid token', 'refused token');
error_is(get('/api/orders/1'), 401, 'missing token', 'no token');
error_is(get('/api/orders/1', 'weird'), 502, 'bad answer from auth service', 'answer without a user');
error_is(get('/api/orders/1', 'broken'), 503, 'auth service unavailable', 'auth service error');
error_is(get('/down/1', 'good'), 503, 'auth service unavailable', 'auth service down');
is(scalar(upstream_requests($up)), 0, 'nothing refused reached the upstream');

my $n = ncalls();
get('/api/orders/1', 'bad');
is(ncalls(), $n, 'a refusal is cached too');

my ($code, $out) = check_config(config => {
    upstreams => [{ name => 'orders', nodes => ["127.0.0.1:$up->{port}"] }],
    routes => [{ name => 'r', match => { path => '/x' }, upstream => 'orders',
                 plugins => { 'remote-auth' => { ttl => 5 } } }],
});
isnt($code, 0, 'remote-auth without url refused');
like($out, qr/routes\[0\]\.plugins\.remote-auth: missing key "url"/, 'the error names the path')
    or diag($out);

stop_all();
done_testing();
