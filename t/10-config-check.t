# `gateway -t -c FILE`: "configuration OK" and exit 0 for a valid file;
# exit 1 and one line per error, each naming its YAML path, otherwise.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my $base = <<'YAML';
gateway:
  listen: ["127.0.0.1:%PORT%"]
  workers: 1
  status_listen: "127.0.0.1:%STATUS_PORT%"
  pid_file: "%DIR%/gateway.pid"
  error_log: {path: "%DIR%/error.log", level: info}
  access_log: off
  timeouts: {client_header: 10s, client_body: 30s, keepalive: 75s, drain: 5s}
  limits: {max_header_size: 16k, max_body_size: 8m, max_connections: 100}
upstreams:
  - name: svc
    nodes: ["127.0.0.1:9001", {addr: "127.0.0.1:9002", weight: 3, meta: {version: v2}}]
    balancer: round_robin
    timeouts: {connect: 1s, send: 5s, read: 5s}
    retries: 1
    keepalive: {size: 16, idle_timeout: 60s}
routes:
  - name: users
    match:
      host: api.example.com
      path: /api/v1/users/*
      methods: [GET, POST]
      headers: [{name: X-Env, op: equals, value: prod}]
      query: [{name: debug, op: absent}]
    priority: 10
    upstream: svc
    strip_prefix: /api/v1
    timeout: 3s
  - name: by-regex
    match: {path: {regex: "^/v[0-9]+/"}}
    upstream: svc
YAML

my ($code, $out) = check_config(yaml => $base);
is($code, 0, 'valid config: exit 0') or diag($out);
like($out, qr/configuration OK/, 'valid config: "configuration OK"');

# Each case: a name, an edit of the base text, and the YAML path the error
# line must name.
my @bad = (
    ['unknown top-level key', sub { "bogus: 1\n" . $_[0] }, qr/\bbogus\b/],
    ['unknown key in gateway',
     sub { $_[0] =~ s/  workers: 1\n/  workers: 1\n  wrokers: 2\n/r },
     qr/gateway\.wrokers/],
    ['unknown key in a route',
     sub { $_[0] =~ s/    priority: 10\n/    priority: 10\n    prio: 3\n/r },
     qr/routes\[0\]\.prio\b/],
    ['bad duration',
     sub { $_[0] =~ s/client_header: 10s/client_header: 10 parsecs/r },
     qr/gateway\.timeouts\.client_header/],
    ['bad duration unit',
     sub { $_[0] =~ s/read: 5s/read: 5x/r },
     qr/upstreams\[0\]\.timeouts\.read/],
    ['bad size',
     sub { $_[0] =~ s/max_body_size: 8m/max_body_size: 8q/r },
     qr/gateway\.limits\.max_body_size/],
    ['route to a missing upstream',
     sub { $_[0] =~ s/    upstream: svc\n    strip_prefix/    upstream: nope\n    strip_prefix/r },
     qr/routes\[0\]\.upstream: no upstream named "nope"/],
    ['bad regex',
     sub { $_[0] =~ s/\^\/v\[0-9\]\+\//^\/(unclosed/r },
     qr/routes\[1\]\.match\.path/],
    ['unknown balancer',
     sub { $_[0] =~ s/balancer: round_robin/balancer: fastest/r },
     qr/upstreams\[0\]\.balancer/],
    ['unknown predicate op',
     sub { $_[0] =~ s/op: equals/op: sounds_like/r },
     qr/routes\[0\]\.match\.headers\[0\]\.op/],
    ['route subset not a map',
     sub { $_[0] =~ s/    timeout: 3s\n/    timeout: 3s\n    subset: v2\n/r },
     qr/routes\[0\]\.subset: expected a map of strings/],
    ['route subset value a list',
     sub { $_[0] =~ s/    timeout: 3s\n/    timeout: 3s\n    subset: {version: [v1, v2]}\n/r },
     qr/routes\[0\]\.subset\.version: expected a string, got a list/],
    ['route subset value a map',
     sub { $_[0] =~ s/    timeout: 3s\n/    timeout: 3s\n    subset: {version: {is: v2}}\n/r },
     qr/routes\[0\]\.subset\.version: expected a string, got a map/],
    ['route subset value null',
     sub { $_[0] =~ s/    timeout: 3s\n/    timeout: 3s\n    subset: {version: ~}\n/r },
     qr/routes\[0\]\.subset\.version: expected a string, got null/],
    ['split rule subset value a list',
     sub { $_[0] =~ s/    timeout: 3s\n/    timeout: 3s\n    split: [{when: {weight: 5}, upstream: svc, subset: {version: [v2]}}]\n/r },
     qr/routes\[0\]\.split\[0\]\.subset\.version: expected a string, got a list/],
    ['bad listen address',
     sub { $_[0] =~ s/listen: \["127\.0\.0\.1:%PORT%"\]/listen: ["127.0.0.1:notaport"]/r },
     qr/gateway\.listen/],
);

for my $c (@bad) {
    my ($name, $edit, $path_re) = @$c;
    my $text = $edit->($base);
    isnt($text, $base, "$name: the edit applies");
    my ($code, $out) = check_config(yaml => $text);
    is($code, 1, "$name: exit 1");
    like($out, $path_re, "$name: names the path") or diag($out);
    unlike($out, qr/configuration OK/, "$name: no OK line");
}

# Warnings: the config is valid (exit 0, "configuration OK"), but -t says
# what will not do what it seems to, and the gateway logs it at start.
{
    my $route_subset = sub { $_[0] =~ s/    timeout: 3s\n/    timeout: 3s\n    subset: {version: $_[1]}\n/r };
    my ($code, $out) = check_config(yaml => $route_subset->($base, 'v2'));
    is($code, 0, 'route subset matching a node: exit 0') or diag($out);
    like($out, qr/configuration OK/, 'route subset matching a node: OK');
    unlike($out, qr/warning/, 'route subset matching a node: no warning');

    ($code, $out) = check_config(yaml => $route_subset->($base, 'v1'));
    is($code, 0, 'route subset matching no node: still exit 0') or diag($out);
    like($out, qr/configuration OK/, 'route subset matching no node: OK');
    like($out, qr/^warning: routes\[0\]\.subset: matches no node of upstream "svc": .*503/m,
        'route subset matching no node: a warning naming the path') or diag($out);

    my $split = $base =~ s/    timeout: 3s\n/    timeout: 3s\n    split:\n      - {when: {weight: 5}, upstream: svc, subset: {version: v2}}\n      - {when: {weight: 5}, upstream: svc, subset: {zone: x}}\n/r;
    ($code, $out) = check_config(yaml => $split);
    is($code, 0, 'split subset matching no node: exit 0') or diag($out);
    like($out, qr/^warning: routes\[0\]\.split\[1\]\.subset: matches no node of upstream "svc"/m,
        'split subset matching no node: a warning naming the rule') or diag($out);
    unlike($out, qr/split\[0\]/, 'split subset matching a node: no warning for it');

    # weights: round_robin counts them (no warning); random and p2c ignore them
    unlike((check_config(yaml => $base))[1], qr/warning/, 'round_robin with weights: no warning');
    for my $bal (qw(random p2c)) {
        ($code, $out) = check_config(yaml => $base =~ s/balancer: round_robin/balancer: $bal/r);
        is($code, 0, "$bal with weights: exit 0") or diag($out);
        like($out, qr/configuration OK/, "$bal with weights: OK");
        like($out, qr/^warning: upstreams\[0\]\.balancer: $bal ignores node weights/m,
            "$bal with weights: a warning") or diag($out);
        ($code, $out) = check_config(yaml => $base =~ s/balancer: round_robin/balancer: $bal/r =~ s/weight: 3, //r);
        unlike($out, qr/warning/, "$bal with equal weights: no warning");
    }

    # at start, the same warnings go to the error log and the gateway runs
    my $up = start_upstream(name => 'w');
    my $text = $route_subset->($base, 'v1') =~ s/balancer: round_robin/balancer: p2c/r
        =~ s/127\.0\.0\.1:9001/127.0.0.1:$up->{port}/r;
    my $gw = start_gateway(yaml => $text);
    ok(wait_for(sub { gateway_log($gw) =~ /routes\[0\]\.subset: matches no node/ }, 5),
        'start: the route subset warning is logged') or diag(gateway_log($gw));
    like(gateway_log($gw), qr/\[warn\].*upstreams\[0\]\.balancer: p2c ignores node weights/,
        'start: the weight warning is logged at warn');
    is(stop_gateway($gw), 0, 'start with warnings: runs and stops cleanly');
}

# Two independent errors: one line each.
{
    my $text = "bogus: 1\n" . ($base =~ s/    upstream: svc\n    strip_prefix/    upstream: nope\n    strip_prefix/r);
    my ($code, $out) = check_config(yaml => $text);
    is($code, 1, 'two errors: exit 1');
    like($out, qr/bogus/, 'two errors: the first is named');
    like($out, qr/routes\[0\]\.upstream: no upstream named "nope"/,
        'two errors: the second is named');
    my @lines = grep { /\S/ } split /\n/, $out;
    cmp_ok(scalar(@lines), '>=', 2, 'two errors: one line each') or diag($out);
}

# upstream_path: every {name} must be a :param of the route's match.path;
# only exact and :param paths (without a final /*) take one, never beside
# strip_prefix.
{
    my $route = sub {
        my ($path, $tmpl, $extra) = @_;
        return $base . "  - name: up\n    match: {path: $path}\n    upstream: svc\n"
          . "    upstream_path: \"$tmpl\"\n" . ($extra // '');
    };
    my ($code, $out) = check_config(yaml => $route->('/users/:id/:tab', '/v1/{tab}/x-{id}'));
    is($code, 0, 'upstream_path with two captured parameters: OK') or diag($out);
    ($code, $out) = check_config(yaml => $route->('/health', '/status'));
    is($code, 0, 'upstream_path without parameters on an exact path: OK') or diag($out);

    my @cases = (
        ['a parameter the path does not capture', $route->('/users/:id', '/v1/user/{name}'),
         qr{^routes\[2\]\.upstream_path: \{name\} is not captured by match\.path "/users/:id"$}m],
        ['a parameter on an exact path', $route->('/users', '/v1/{id}'),
         qr{^routes\[2\]\.upstream_path: \{id\} is not captured by match\.path "/users"$}m],
        ['a prefix path', $route->('/users/*', '/v1/users'),
         qr{^routes\[2\]\.upstream_path: needs an exact or :param match\.path without a final /\*, got "/users/\*"}m],
        ['a :param path ending in /*', $route->('/users/:id/*', '/v1/{id}'),
         qr{^routes\[2\]\.upstream_path: needs an exact or :param match\.path}m],
        ['a regex path', $route->('{regex: "^/u"}', '/v1'),
         qr{^routes\[2\]\.upstream_path: needs an exact or :param match\.path.*got \{regex: "\^/u"\}}m],
        ['beside strip_prefix', $route->('/users/:id', '/v1/{id}', "    strip_prefix: /users\n"),
         qr{^routes\[2\]\.upstream_path: cannot be combined with strip_prefix$}m],
        ['an unclosed brace', $route->('/users/:id', '/v1/{id'),
         qr{^routes\[2\]\.upstream_path: a parameter is written \{name\}, got "/v1/\{id"$}m],
        ['an empty name', $route->('/users/:id', '/v1/{}'),
         qr{^routes\[2\]\.upstream_path: a parameter is written \{name\}}m],
        ['a stray }', $route->('/users/:id', '/v1/id}'),
         qr{^routes\[2\]\.upstream_path: '\}' without '\{'}m],
        ['a relative template', $route->('/users/:id', 'v1/{id}'),
         qr{^routes\[2\]\.upstream_path: must start with '/'}m],
        ['a query in the template', $route->('/users/:id', '/v1/{id}?x=1'),
         qr{^routes\[2\]\.upstream_path: must not contain spaces, '\?' or '#'}m],
    );
    for my $c (@cases) {
        my ($name, $text, $want) = @$c;
        ($code, $out) = check_config(yaml => $text);
        is($code, 1, "upstream_path, $name: exit 1");
        like($out, $want, "upstream_path, $name: the error names routes[2].upstream_path") or diag($out);
    }
}

# YAML syntax error: exit 1, a message (no crash).
{
    my $text = $base . "routes: [unclosed\n  - {\n";
    my ($code, $out) = check_config(yaml => $text);
    is($code, 1, 'YAML syntax error: exit 1');
    like($out, qr/\S/, 'YAML syntax error: says something') or diag($out);
    unlike($out, qr/configuration OK/, 'YAML syntax error: no OK line');
}

# A tab-indented file is a syntax error too.
{
    my ($code, $out) = check_config(yaml => "gateway:\n\tworkers: 1\n");
    is($code, 1, 'tab indentation: exit 1') or diag($out);
}

# Wrong shapes: a list where a mapping belongs, a string where a number
# belongs.
{
    my ($code, $out) = check_config(yaml => $base =~ s/retries: 1/retries: [1]/r);
    is($code, 1, 'list for a number: exit 1');
    like($out, qr/upstreams\[0\]\.retries/, 'list for a number: names the path')
      or diag($out);
    ($code, $out) = check_config(yaml => $base =~ s/workers: 1/workers: lots/r);
    is($code, 1, 'bad workers: exit 1');
    like($out, qr/gateway\.workers/, 'bad workers: names the path') or diag($out);
}

# An empty file and a missing file.
{
    my ($code, $out) = check_config(yaml => '');
    is($code, 1, 'empty file: exit 1') or diag($out);
    my $missing = tmpdir() . '/does-not-exist.yaml';
    ($code, $out) = check_config(file => $missing);
    is($code, 1, 'missing file: exit 1');
    like($out, qr/does-not-exist\.yaml/, 'missing file: names the file')
      or diag($out);
}

SKIP: {
    skip 'conf/gateway.yaml not written yet', 2 unless -f 'conf/gateway.yaml';
    my ($code, $out) = check_config(file => 'conf/gateway.yaml');
    is($code, 0, 'conf/gateway.yaml passes -t') or diag($out);
    like($out, qr/configuration OK/, 'conf/gateway.yaml: "configuration OK"');
}

# -h names every -s signal the master takes
{
    my $bin = gw_bin();
    my $help = `$bin -h 2>&1`;
    is($? >> 8, 0, '-h: exit 0');
    like($help, qr/-s reload\|stop\|reopen/, '-h: lists reload, stop and reopen');
    like($help, qr/reopen the logs/, '-h: says what reopen does');
}

# a plugin directory that is not there is an error, not silence
{
    my ($code, $out) = check_config(yaml => "gateway:\n  listen: [\"127.0.0.1:1\"]\n"
        . "  plugin_paths: [\"plugins\", \"my-plugins\"]\n");
    is($code, 1, 'missing plugin directory: exit 1');
    like($out, qr/gateway\.plugin_paths\[1\]: "my-plugins": No such file or directory \(relative to the working directory\)/,
        'missing plugin directory: named, with how it was resolved') or diag($out);
}

stop_all();
done_testing();
