# Canary split: header rules, user_hash (FNV-1a 32 mod 100 < percent, the
# same decision in every worker), a missing key, weight shares, subsets by
# node meta, a route's own subset for its default traffic (with health
# checks), and first-matching-rule order.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

# FNV-1a 32-bit, as docs/routing-and-canary.md defines it.
sub fnv1a32 {
    my ($s) = @_;
    my $h = 2166136261;
    for my $b (unpack 'C*', $s) {
        $h ^= $b;
        # multiply by 16777619 = 2**24 + 403 in two halves so that no
        # intermediate exceeds 2**53 (exact in a double as well as an IV)
        $h = (($h * 403) + ((($h & 0xff) << 24))) % 4294967296;
    }
    return $h;
}

# The worked examples of the docs pin the Perl implementation down.
is(fnv1a32('alice'), 2267157479, 'fnv1a32(alice) = 0x872213e7');
is(fnv1a32('alice') % 100, 79, 'alice -> bucket 79');
is(fnv1a32('user-1') % 100, 0,  'user-1 -> bucket 0');
is(fnv1a32('user-2') % 100, 57, 'user-2 -> bucket 57');
is(fnv1a32('bob') % 100, 44,    'bob -> bucket 44');
is(fnv1a32('42') % 100, 11,     '42 -> bucket 11');

my %up = map { $_ => start_upstream(name => $_) } qw(stable canary v1 v1b v2a v2b);
sub node { "127.0.0.1:$up{$_[0]}{port}" }
my $dead = free_port();
$dead = free_port() while grep { $_->{port} == $dead } values %up;

my $PERCENT = 30;

sub config {
    my ($workers) = @_;
    return {
        gateway => { workers => $workers },
        upstreams => [
            { name => 'stable', nodes => [node('stable')] },
            { name => 'canary', nodes => [node('canary')] },
            { name => 'pool', nodes => [
                node('v1'),
                { addr => node('v2a'), meta => { version => 'v2' } },
                { addr => node('v2b'), meta => { version => 'v2', zone => 'x' } },
            ] },
            # one pool, both versions: a canary release as it is run
            { name => 'rel', nodes => [
                { addr => node('v1'),  meta => { version => 'v1' } },
                { addr => node('v2a'), meta => { version => 'v2' } },
                { addr => node('v1b'), meta => { version => 'v1' } },
                { addr => node('v2b'), meta => { version => 'v2' } },
            ] },
            # a v1 node that is down: a passive health check takes it out of
            # the subset at its first refused connection (per worker); no
            # breaker, whose 503s would blur what the subset does
            { name => 'relh', retries => 1, breaker => 'off', nodes => [
                { addr => "127.0.0.1:$dead", meta => { version => 'v1' } },
                { addr => node('v1'),  meta => { version => 'v1' } },
                { addr => node('v2a'), meta => { version => 'v2' } },
            ], health => { passive => { unhealthy => 1, window => '60s' } } },
            { name => 'relh0', retries => 0, breaker => 'off', nodes => [
                { addr => "127.0.0.1:$dead", meta => { version => 'v1' } },
                { addr => node('v2a'), meta => { version => 'v2' } },
            ], health => { passive => { unhealthy => 1, window => '60s' } } },
        ],
        routes => [
            { name => 'hdr', match => { path => '/hdr/*' }, upstream => 'stable',
              split => [
                  { when => { header => { name => 'X-Canary', value => 'true' } }, upstream => 'canary' },
                  { when => { header => { name => 'X-Any' } }, upstream => 'canary' },
              ] },
            { name => 'uh', match => { path => '/uh/*' }, upstream => 'stable',
              split => [{ when => { user_hash => { key => 'header:X-User-Id', percent => $PERCENT } },
                          upstream => 'canary' }] },
            { name => 'uq', match => { path => '/uq/*' }, upstream => 'stable',
              split => [{ when => { user_hash => { key => 'query:uid', percent => 50 } },
                          upstream => 'canary' }] },
            { name => 'uc', match => { path => '/uc/*' }, upstream => 'stable',
              split => [{ when => { user_hash => { key => 'cookie:uid', percent => 50 } },
                          upstream => 'canary' }] },
            { name => 'w', match => { path => '/w/*' }, upstream => 'stable',
              split => [{ when => { weight => 25 }, upstream => 'canary' }] },
            { name => 'w0', match => { path => '/w0/*' }, upstream => 'stable',
              split => [{ when => { weight => 0 }, upstream => 'canary' }] },
            { name => 'w100', match => { path => '/w100/*' }, upstream => 'stable',
              split => [{ when => { weight => 100 }, upstream => 'canary' }] },
            { name => 'sub', match => { path => '/sub/*' }, upstream => 'pool',
              split => [
                  { when => { header => { name => 'X-Canary', value => 'true' } },
                    upstream => 'pool', subset => { version => 'v2' } },
                  { when => { header => { name => 'X-Zone', value => 'x' } },
                    upstream => 'pool', subset => { version => 'v2', zone => 'x' } },
                  { when => { header => { name => 'X-V3', value => 'yes' } },
                    upstream => 'pool', subset => { version => 'v3' } },
              ] },
            { name => 'rel', match => { path => '/rel/*' }, upstream => 'rel',
              subset => { version => 'v1' },
              split => [
                  { when => { header => { name => 'X-Canary', value => 'true' } },
                    upstream => 'rel', subset => { version => 'v2' } },
                  { when => { user_hash => { key => 'header:X-User-Id', percent => $PERCENT } },
                    upstream => 'rel', subset => { version => 'v2' } },
                  # a rule without a subset: the whole upstream, not the route's subset
                  { when => { header => { name => 'X-All' } }, upstream => 'rel' },
              ] },
            { name => 'relnone', match => { path => '/relnone/*' }, upstream => 'rel',
              subset => { version => 'v9' },
              split => [{ when => { header => { name => 'X-Canary', value => 'true' } },
                          upstream => 'rel', subset => { version => 'v2' } }] },
            { name => 'relh', match => { path => '/relh/*' }, upstream => 'relh',
              subset => { version => 'v1' } },
            { name => 'relh0', match => { path => '/relh0/*' }, upstream => 'relh0',
              subset => { version => 'v1' },
              split => [{ when => { header => { name => 'X-Canary', value => 'true' } },
                          upstream => 'relh0', subset => { version => 'v2' } }] },
            { name => 'first', match => { path => '/first/*' }, upstream => 'stable',
              split => [
                  { when => { user_hash => { key => 'header:X-User-Id', percent => 100 } },
                    upstream => 'canary' },
                  { when => { header => { name => 'X-Canary', value => 'true' } },
                    upstream => 'pool', subset => { version => 'v2' } },
              ] },
        ],
    };
}

my $gw;

# One request on a new connection (no wait for a close, to stay quick);
# returns the name of the upstream that answered or "status N".
sub via {
    my ($path, @h) = @_;
    my $c = gw_connect($gw->{port});
    my $r = $c->request('GET', $path, headers => \@h);
    $c->close;
    return 'no answer' unless $r;
    return $r->{status} == 200 ? ($r->{headers}{'x-upstream'} // 'none')
                               : "status $r->{status}";
}

sub tally {
    my ($n, $path, @h) = @_;
    my %t;
    $t{ via($path, @h) }++ for 1 .. $n;
    return \%t;
}

my @users = map { "user-$_" } 1 .. 200;
my %decision; # workers -> user -> upstream

for my $workers (1, 2) {
    $gw = start_gateway(config => config($workers));
    my $tag = "workers: $workers";

    # --- header rule ---------------------------------------------------------
    is(via('/hdr/a', 'X-Canary' => 'true'), 'canary', "$tag: header equal -> canary");
    is(via('/hdr/a', 'x-canary' => 'true'), 'canary', "$tag: header name case-insensitive");
    is(via('/hdr/a', 'X-Canary' => 'TRUE'), 'stable', "$tag: header value compared byte for byte");
    is(via('/hdr/a', 'X-Canary' => 'false'), 'stable', "$tag: other value -> route upstream");
    is(via('/hdr/a'), 'stable', "$tag: no header -> route upstream");
    is(via('/hdr/a', 'X-Canary' => 'false', 'X-Canary' => 'true'), 'stable',
        "$tag: repeated header, the first counts");
    is(via('/hdr/a', 'X-Any' => 'whatever'), 'canary', "$tag: rule without value: presence is enough");

    # --- user_hash -------------------------------------------------------------
    my ($bad, $in) = (0, 0);
    for my $u (@users) {
        my $want = fnv1a32($u) % 100 < $PERCENT ? 'canary' : 'stable';
        $in++ if $want eq 'canary';
        my $got = via('/uh/x', 'X-User-Id' => $u);
        $decision{$workers}{$u} = $got;
        if ($got ne $want) {
            $bad++;
            diag("$tag: $u (bucket " . fnv1a32($u) % 100 . ") went to $got, want $want")
              if $bad <= 5;
        }
    }
    is($bad, 0, "$tag: user_hash: all 200 users routed as fnv1a32 % 100 < $PERCENT ($in in the canary)");
    # the same user twice more: stable decision
    my %again;
    $again{ via('/uh/x', 'X-User-Id' => 'alice') }++ for 1 .. 6;
    is_deeply(\%again, { stable => 6 }, "$tag: alice (bucket 79) always stable at $PERCENT%");
    is(via('/uh/x', 'X-User-Id' => 'user-1'), 'canary', "$tag: user-1 (bucket 0) in the canary");
    is(via('/uh/x', 'X-User-Id' => 'User-1'), fnv1a32('User-1') % 100 < $PERCENT ? 'canary' : 'stable',
        "$tag: the key is hashed as received (no case folding)");
    is(via('/uh/x'), 'stable', "$tag: missing key -> route upstream");
    is(via('/uh/x', 'X-User-Id' => ''), 'stable', "$tag: empty key -> route upstream");

    # query and cookie keys
    my ($qbad, $cbad) = (0, 0);
    for my $u (@users[0 .. 39]) {
        my $want = fnv1a32($u) % 100 < 50 ? 'canary' : 'stable';
        $qbad++ if via("/uq/x?a=1&uid=$u") ne $want;
        $cbad++ if via('/uc/x', 'Cookie' => "a=1; uid=$u; b=2") ne $want;
    }
    is($qbad, 0, "$tag: user_hash on query:uid follows the formula (40 users)");
    is($cbad, 0, "$tag: user_hash on cookie:uid follows the formula (40 users)");
    is(via('/uq/x?other=1'), 'stable', "$tag: query key missing -> route upstream");

    # --- weight -----------------------------------------------------------------
    if ($workers == 1) {
        my $t = tally(400, '/w/x');
        my $c = $t->{canary} // 0;
        ok($c >= 60 && $c <= 140, "$tag: weight 25: $c of 400 to the canary (expected ~100)")
          or diag(explain($t));
        is(($t->{canary} // 0) + ($t->{stable} // 0), 400, "$tag: weight: every request answered");
        is_deeply(tally(30, '/w0/x'), { stable => 30 }, "$tag: weight 0 never");
        is_deeply(tally(30, '/w100/x'), { canary => 30 }, "$tag: weight 100 always");
    }

    # --- subsets ----------------------------------------------------------------
    {
        my $t = tally(30, '/sub/x');
        is_deeply([sort keys %$t], [qw(v1 v2a v2b)], "$tag: no rule -> every node of the pool")
          or diag(explain($t));
        $t = tally(30, '/sub/x', 'X-Canary' => 'true');
        is_deeply([sort keys %$t], [qw(v2a v2b)], "$tag: subset version=v2 -> v2 nodes only")
          or diag(explain($t));
        $t = tally(10, '/sub/x', 'X-Zone' => 'x');
        is_deeply([sort keys %$t], [qw(v2b)], "$tag: subset version=v2,zone=x -> the one node with both")
          or diag(explain($t));
        # an empty subset: 503, never a fall back to the route's nodes
        my $c = gw_connect($gw->{port});
        my $r = $c->request('GET', '/sub/x', headers => ['X-V3' => 'yes']);
        $c->close;
        gw_error_ok($r // { status => 0, headers => {}, body => '' }, 503,
            "$tag: subset matching no node");
    }

    # --- a route subset: the default traffic of a canary release ----------------
    {
        my $t = tally(60, '/rel/x');
        is_deeply([sort keys %$t], [qw(v1 v1b)],
            "$tag: route subset version=v1: 60 requests without a canary header reach only v1 nodes")
          or diag(explain($t));
        $t = tally(30, '/rel/x', 'X-Canary' => 'true');
        is_deeply([sort keys %$t], [qw(v2a v2b)], "$tag: header rule -> only the v2 subset")
          or diag(explain($t));
        $t = tally(40, '/rel/x', 'X-All' => '1');
        is_deeply([sort keys %$t], [qw(v1 v1b v2a v2b)],
            "$tag: a rule without subset takes the whole upstream, not the route's subset")
          or diag(explain($t));

        my ($bad, $in) = (0, 0);
        for my $u (@users) {
            my $v2 = fnv1a32($u) % 100 < $PERCENT;
            $in++ if $v2;
            my $got = via('/rel/x', 'X-User-Id' => $u);
            my $ok = $v2 ? $got =~ /^v2[ab]$/ : $got =~ /^v1b?$/;
            if (!$ok) {
                $bad++;
                diag("$tag: $u (bucket " . fnv1a32($u) % 100 . ") went to $got") if $bad <= 5;
            }
        }
        is($bad, 0, "$tag: route subset + user_hash: 200 users, bucket < $PERCENT on v2, "
            . "the others on v1 ($in on v2)");

        # a route subset no node matches: 503, never a fall back to other nodes
        my $c = gw_connect($gw->{port});
        my $r = $c->request('GET', '/relnone/x');
        $c->close;
        gw_error_ok($r // { status => 0, headers => {}, body => '' }, 503,
            "$tag: route subset matching no node");
        like($r->{body} // '', qr/no healthy node/, "$tag: ... says no healthy node");
        like(via('/relnone/x', 'X-Canary' => 'true'), qr/^v2[ab]$/,
            "$tag: ... while its split rules still work");

        # health checks: only healthy nodes of the subset, and no fall back
        ok(wait_for(sub {
               my $t = tally(6, '/relh/x');
               return (keys %$t == 1 && $t->{v1});
           }, 5), "$tag: route subset with a dead v1 node: the live v1 node takes all");
        $t = tally(20, '/relh/x');
        is_deeply($t, { v1 => 20 }, "$tag: ... 20 requests, never the v2 node (retries stay in the subset)")
          or diag(explain($t));
        # every worker must have seen the node fail once
        ok(wait_for(sub {
               my $t = tally(6, '/relh0/x');
               return (keys %$t == 1 && $t->{'status 503'});
           }, 5), "$tag: route subset whose only node is down: 503");
        $t = tally(10, '/relh0/x');
        is_deeply($t, { 'status 503' => 10 }, "$tag: ... every time, never the healthy v2 node")
          or diag(explain($t));
        is(via('/relh0/x', 'X-Canary' => 'true'), 'v2a', "$tag: ... the canary rule still reaches v2");
    }

    # --- rule order -------------------------------------------------------------
    is(via('/first/x', 'X-User-Id' => 'bob', 'X-Canary' => 'true'), 'canary',
        "$tag: the first matching rule decides");
    like(via('/first/x', 'X-Canary' => 'true'), qr/^v2[ab]$/,
        "$tag: user_hash at 100% does not match without the key; the next rule does");
    is(via('/first/x'), 'stable', "$tag: no rule matches -> route upstream");

    is(stop_gateway($gw), 0, "$tag: gateway stopped, exit 0");
}

is_deeply($decision{2}, $decision{1}, 'user_hash: the same decision with 1 and 2 workers');

stop_all();
done_testing();
