# Routing: host (exact, wildcard, any), path kinds (exact, prefix,
# parameters, regex), methods, header and query predicates (every op),
# priority, specificity, file order, strip_prefix, upstream_path templates,
# the 404 envelope, path normalisation, and the route timeout budget.
#
# Each route sends to an echo upstream whose name tells which route won
# (the X-Upstream response header).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my @names = qw(u1 u2 u3 u4 u5 u6);
my %up = map { $_ => start_upstream(name => $_) } @names;

sub upstream_def {
    my ($name, %o) = @_;
    my $node = delete $o{node} // $name;
    return { name => $name, nodes => ["127.0.0.1:$up{$node}{port}"],
             retries => 0, %o };
}

sub pred_route {
    my ($kind, $op, %p) = @_;
    return { name => "$kind-$op",
             match => { path => "/$kind/$op",
                        ($kind eq 'hp' ? 'headers' : 'query')
                          => [{ name => ($kind eq 'hp' ? 'X-T' : 'q'),
                                op => $op, %p }] },
             upstream => 'u1' };
}

my @ops = (
    [equals     => (value => 'prod')],
    [not_equals => (value => 'prod')],
    [contains   => (value => 'bc')],
    [in         => (values => ['a', 'b'])],
    [regex      => (value => '^v[0-9]+$')],
    [exists     => ()],
    [absent     => ()],
);

my $gw = start_gateway(config => {
    upstreams => [
        (map { upstream_def($_) } @names),
        upstream_def('slow', node => 'u1', timeouts => { connect => '1s', send => '5s', read => '5s' }),
    ],
    routes => [
        # host: same path and priority, so file order decides among them
        { name => 'host-exact', match => { host => 'api.example.com', path => '/h/*' }, upstream => 'u1' },
        { name => 'host-wild',  match => { host => '*.example.com',   path => '/h/*' }, upstream => 'u2' },
        { name => 'host-any',   match => { path => '/h/*' },                          upstream => 'u3' },
        { name => 'host-root',  match => { host => 'root.example', path => '/' },     upstream => 'u5' },

        # path kinds; the regex route is written first to show kind beats order
        { name => 'p-regex',  match => { path => { regex => '^/rx/v[0-9]+/' } }, upstream => 'u4' },
        { name => 'p-prefix', match => { path => '/p/*' },         upstream => 'u2' },
        { name => 'p-param',  match => { path => '/p/users/:id' }, upstream => 'u3' },
        { name => 'p-exact',  match => { path => '/p/exact' },     upstream => 'u1' },
        { name => 'p-param-prefix', match => { path => '/pp/:id/*' }, upstream => 'u4' },
        { name => 'p-head', match => { path => '/head', methods => ['HEAD'] }, upstream => 'u1' },
        { name => 'p-regex-any', match => { path => { regex => 'zz[0-9]' } }, upstream => 'u5' },

        # methods
        { name => 'm-getpost', match => { path => '/m/*', methods => ['GET', 'POST'] }, upstream => 'u1' },
        { name => 'm-delete',  match => { path => '/m/*', methods => ['delete'] },      upstream => 'u2' },

        # predicates, one route per op, no fallback (404 when it fails)
        (map { pred_route('hp', @$_) } @ops),
        (map { pred_route('qp', @$_) } @ops),
        { name => 'hp-multi', match => { path => '/hp/multi',
            headers => [{ name => 'x-a', op => 'exists' }, { name => 'X-B', value => 'y' }] },
          upstream => 'u1' },

        # priority: the catch-all with priority 5 beats the exact path
        { name => 'pr-exact', match => { path => '/pr/exact' }, upstream => 'u1' },
        { name => 'pr-all',   match => { path => '/pr/*' }, priority => 5, upstream => 'u2' },
        { name => 'pr-neg',   match => { path => '/pn/exact' }, priority => -1, upstream => 'u1' },
        { name => 'pr-zero',  match => { path => '/pn/*' }, upstream => 'u2' },

        # filters skip to the next best route
        { name => 'beta', match => { path => '/app/*', headers => [{ name => 'X-Beta', op => 'exists' }] }, upstream => 'u3' },
        { name => 'app',  match => { path => '/app/*' }, upstream => 'u4' },

        # specificity
        { name => 's-short',  match => { path => '/s/api/*' },             upstream => 'u1' },
        { name => 's-long',   match => { path => '/s/api/v1/*' },          upstream => 'u2' },
        { name => 's-params', match => { path => '/s/users/:id/:tab' },    upstream => 'u3' },
        { name => 's-lit',    match => { path => '/s/users/me/:tab' },     upstream => 'u4' },
        { name => 's-q-prefix', match => { path => '/s/q/:id/*' },        upstream => 'u5' },
        { name => 's-q-exact',  match => { path => '/s/q/:id' },          upstream => 'u6' },
        { name => 's-first',  match => { path => '/s/same' },              upstream => 'u5' },
        { name => 's-second', match => { path => '/s/same' },              upstream => 'u6' },

        # strip_prefix
        { name => 'strip', match => { path => '/strip/*' }, upstream => 'u5', strip_prefix => '/strip' },
        { name => 'strip-slash', match => { path => '/ss/*' }, upstream => 'u5', strip_prefix => '/ss/' },
        { name => 'strip-noboundary', match => { path => { regex => '^/sp' } }, upstream => 'u6', strip_prefix => '/sp' },

        # upstream_path: :params put into the path the upstream gets
        { name => 'up-one', match => { path => '/up/users/:id' }, upstream => 'u5',
          upstream_path => '/v1/user/{id}' },
        { name => 'up-two', match => { path => '/up/orgs/:org/repos/:repo' }, upstream => 'u5',
          upstream_path => '/v2/{repo}/of/{org}/x-{org}.json' },
        { name => 'up-exact', match => { path => '/up/health' }, upstream => 'u5',
          upstream_path => '/status' },

        # normalisation target
        { name => 'api', match => { path => '/api/*' }, upstream => 'u6' },

        # route timeout budget
        { name => 'budget', match => { path => '/to/*' }, upstream => 'slow',
          strip_prefix => '/to', timeout => '300ms' },
    ],
});
my $port = $gw->{port};

# -> the name of the upstream that answered, or "404" etc. for gateway errors
sub via {
    my ($method, $path, %o) = @_;
    my $r = http_request($port, $method, $path, %o);
    return $r->{status} == 200 ? ($r->{headers}{'x-upstream'} // 'none')
                               : "$r->{status}";
}

sub last_uri {
    my ($name) = @_;
    return ((upstream_requests($up{$name}))[-1] // {})->{uri};
}

# --- host --------------------------------------------------------------------
is(via('GET', '/h/x', host => 'api.example.com'), 'u1', 'host: exact');
is(via('GET', '/h/x', host => 'API.Example.COM'), 'u1', 'host: exact, any case');
is(via('GET', '/h/x', host => 'api.example.com:8080'), 'u1', 'host: port ignored');
is(via('GET', '/h/x', host => 'www.api.example.com'), 'u2', 'host: exact does not match a subdomain (wildcard does)');
is(via('GET', '/h/x', host => 'a.example.com'), 'u2', 'host: *.example.com matches a.example.com');
is(via('GET', '/h/x', host => 'a.b.example.com'), 'u2', 'host: *.example.com matches a.b.example.com');
is(via('GET', '/h/x', host => 'example.com'), 'u3', 'host: *.example.com does not match example.com');
is(via('GET', '/h/x', host => 'xexample.com'), 'u3', 'host: *.example.com does not match xexample.com');
is(via('GET', '/h/x', host => 'other.org'), 'u3', 'host: other host -> route without host');

# --- absolute-form targets (RFC 9112 3.2.2) ---------------------------------------
# The authority is the host (a conflicting Host is ignored): routing,
# the Host and X-Forwarded-Host the upstream gets; the path routes and goes
# upstream in origin-form with its query.
sub abs_via {
    my ($raw) = @_;
    clear_upstream_log($_) for values %up;
    my $c = gw_connect($port);
    $c->write($raw);
    my $r = $c->read_response;
    $c->close;
    return ($r ? ($r->{status} == 200 ? $r->{headers}{'x-upstream'} // 'none' : $r->{status}) : 'nothing');
}

sub last_req {
    my ($name) = @_;
    my $rec = (upstream_requests($up{$name}))[-1] // {};
    my %h;
    $h{lc $_->[0]} //= $_->[1] for @{ $rec->{headers} // [] };
    return { uri => $rec->{uri}, body => $rec->{body}, h => \%h };
}

is(abs_via("GET http://api.example.com/h/x?a=1&b=%20c HTTP/1.1\r\nHost: other.org\r\n\r\n"), 'u1',
   'absolute-form: routed by its authority over a conflicting Host');
my $ar = last_req('u1');
is($ar->{uri}, '/h/x?a=1&b=%20c', 'absolute-form: the upstream gets origin-form, query kept');
is($ar->{h}{host}, 'api.example.com', 'absolute-form: Host upstream is the authority');
is($ar->{h}{'x-forwarded-host'}, 'api.example.com', 'absolute-form: X-Forwarded-Host is the authority');
is(abs_via("GET http://other.org/h/x HTTP/1.1\r\nHost: api.example.com\r\n\r\n"), 'u3',
   'absolute-form: a Host that would match a route does not count');
is(last_req('u3')->{h}{host}, 'other.org', 'absolute-form: the Host sent is the authority, not Host');
is(abs_via("GET HTTP://API.Example.COM:8080/h/y HTTP/1.1\r\nHost: other.org\r\n\r\n"), 'u1',
   'absolute-form: scheme and host in any case, port ignored for matching');
is(last_req('u1')->{h}{host}, 'API.Example.COM:8080', 'absolute-form: the authority goes upstream as sent');
is(abs_via("GET https://a.example.com/h/z HTTP/1.1\r\nHost: other.org\r\n\r\n"), 'u2',
   'absolute-form: https scheme, wildcard host');
is(abs_via("GET http://root.example HTTP/1.1\r\nHost: other.org\r\n\r\n"), 'u5',
   'absolute-form: an empty path is /');
is(last_req('u5')->{uri}, '/', 'absolute-form: empty path sent as /');
is(abs_via("GET http://root.example:81?q=1 HTTP/1.1\r\nHost: other.org\r\n\r\n"), 'u5',
   'absolute-form: empty path with a query');
is(last_req('u5')->{uri}, '/?q=1', 'absolute-form: empty path with a query sent as /?q=1');
is(abs_via("GET http://api.example.com/h/10 HTTP/1.0\r\n\r\n"), 'u1',
   'absolute-form: HTTP/1.0 without Host');
is(last_req('u1')->{h}{host}, 'api.example.com', 'absolute-form, HTTP/1.0: Host from the authority');
is(abs_via("POST http://api.example.com/h/post HTTP/1.1\r\nHost: api.example.com\r\n"
           . "Content-Length: 5\r\n\r\nhello"), 'u1', 'absolute-form: POST with a body');
is(last_req('u1')->{body}, 'hello', 'absolute-form: body intact');
is(abs_via("GET http://x.test/strip/a/b?c=1 HTTP/1.1\r\nHost: x.test\r\n\r\n"), 'u5',
   'absolute-form: any host');
is(last_req('u5')->{uri}, '/a/b?c=1', 'absolute-form: strip_prefix applies to its path');
is(abs_via("GET http://x.test/api/a/../b HTTP/1.1\r\nHost: x.test\r\n\r\n"), 'u6',
   'absolute-form: its path is normalised');
is(last_uri('u6'), '/api/b', 'absolute-form: normalised path upstream');

# --- path kinds ----------------------------------------------------------------
is(via('GET', '/p/exact'), 'u1', 'path: exact');
is(via('GET', '/p/exact?a=1'), 'u1', 'path: exact, query ignored');
is(via('GET', '/p/exact/'), 'u2', 'path: exact is slash-sensitive (prefix takes /p/exact/)');
is(via('GET', '/p/exact/more'), 'u2', 'path: below an exact path -> prefix');
is(via('GET', '/p'), 'u2', 'path: prefix /p/* matches /p');
is(via('GET', '/p/'), 'u2', 'path: prefix /p/* matches /p/');
is(via('GET', '/p/a/b/c'), 'u2', 'path: prefix matches deep paths');
is(via('GET', '/pq'), '404', 'path: prefix only on a segment boundary');
is(via('GET', '/p/users/42'), 'u3', 'path: parameter beats prefix');
is(via('GET', '/p/users/42/orders'), 'u2', 'path: parameter is one segment');
is(via('GET', '/p/users/'), 'u2', 'path: empty parameter does not match');
is(via('GET', '/pp/42'), 'u4', 'path: /pp/:id/* matches /pp/42');
is(via('GET', '/pp/42/orders/7'), 'u4', 'path: /pp/:id/* matches /pp/42/orders/7');
is(via('GET', '/pp/'), '404', 'path: /pp/:id/* does not match /pp/');
is(via('GET', '/rx/v2/users'), 'u4', 'path: regex');
is(via('GET', '/rx/vx/users'), '404', 'path: regex not matching');
is(via('GET', '/a/rx/v2/'), '404', 'path: anchored regex does not match inside');
is(via('GET', '/a/zz7/b'), 'u5', 'path: unanchored regex matches anywhere');

# --- methods -------------------------------------------------------------------
is(via('GET', '/m/x'), 'u1', 'methods: GET');
is(via('POST', '/m/x', body => 'b'), 'u1', 'methods: POST');
is(via('DELETE', '/m/x'), 'u2', 'methods: DELETE (written lower case)');
is(via('PUT', '/m/x', body => 'b'), '404', 'methods: PUT matches no route');
is(via('HEAD', '/m/x'), '404', 'methods: HEAD is not implied by GET');
is(via('HEAD', '/head'), 'u1', 'methods: HEAD listed');
is(via('GET', '/head'), '404', 'methods: GET not implied by HEAD');

# --- header predicates -----------------------------------------------------------
{
    my @cases = (
        # op, header value (undef = absent), expected match
        [equals => 'prod', 1], [equals => 'Prod', 0], [equals => 'prod2', 0], [equals => undef, 0],
        [not_equals => 'dev', 1], [not_equals => undef, 1], [not_equals => 'prod', 0],
        [contains => 'abcd', 1], [contains => 'bc', 1], [contains => 'acb', 0], [contains => undef, 0],
        [in => 'a', 1], [in => 'b', 1], [in => 'c', 0], [in => 'ab', 0], [in => undef, 0],
        [regex => 'v12', 1], [regex => 'v', 0], [regex => 'xv1', 0], [regex => undef, 0],
        [exists => 'x', 1], [exists => '', 1], [exists => undef, 0],
        [absent => undef, 1], [absent => 'x', 0], [absent => '', 0],
    );
    for my $c (@cases) {
        my ($op, $v, $want) = @$c;
        my @h = defined $v ? ('X-T' => $v) : ();
        my $desc = defined $v ? "X-T: '$v'" : 'no X-T';
        is(via('GET', "/hp/$op", headers => \@h), $want ? 'u1' : '404',
            "header $op, $desc: " . ($want ? 'match' : 'no match'));
    }
    is(via('GET', '/hp/equals', headers => ['x-t' => 'prod']), 'u1',
        'header names are case-insensitive');
    is(via('GET', '/hp/equals', headers => ['X-T' => 'prod', 'X-T' => 'dev']), 'u1',
        'header: the first of repeated headers counts (first matches)');
    is(via('GET', '/hp/equals', headers => ['X-T' => 'dev', 'X-T' => 'prod']), '404',
        'header: the first of repeated headers counts (second ignored)');
    is(via('GET', '/hp/multi', headers => ['X-A' => '1', 'X-B' => 'y']), 'u1',
        'header: all predicates hold');
    is(via('GET', '/hp/multi', headers => ['X-A' => '1', 'X-B' => 'n']), '404',
        'header: one predicate fails');
    is(via('GET', '/hp/multi', headers => ['X-B' => 'y']), '404',
        'header: the other predicate fails');
}

# --- query predicates ------------------------------------------------------------
{
    my @cases = (
        [equals => '?q=prod', 1], [equals => '?q=prod2', 0], [equals => '?x=prod', 0], [equals => '', 0],
        [equals => '?a=1&q=prod&b=2', 1],
        [not_equals => '?q=dev', 1], [not_equals => '', 1], [not_equals => '?q=prod', 0],
        [contains => '?q=abc', 1], [contains => '?q=ac', 0],
        [in => '?q=b', 1], [in => '?q=c', 0],
        [regex => '?q=v3', 1], [regex => '?q=v3x', 0],
        [exists => '?q', 1], [exists => '?q=', 1], [exists => '?qq=1', 0], [exists => '', 0],
        [absent => '', 1], [absent => '?x=1', 1], [absent => '?q', 0], [absent => '?q=1', 0],
    );
    for my $c (@cases) {
        my ($op, $qs, $want) = @$c;
        is(via('GET', "/qp/$op$qs"), $want ? 'u1' : '404',
            "query $op, '$qs': " . ($want ? 'match' : 'no match'));
    }
    is(via('GET', '/qp/equals?q=pro%64'), '404', 'query: values are not %-decoded');
    is(via('GET', '/qp/equals?q=prod&q=dev'), 'u1', 'query: the first of repeated parameters counts');
    is(via('GET', '/qp/equals?q=dev&q=prod'), '404', 'query: later repeats are ignored');
}

# --- priority, filters, specificity, order -----------------------------------------
is(via('GET', '/pr/exact'), 'u2', 'priority: a priority 5 catch-all beats an exact path');
is(via('GET', '/pn/exact'), 'u2', 'priority: a negative priority loses to a prefix with 0');
is(via('GET', '/app/x', headers => ['X-Beta' => '1']), 'u3', 'filters: header present -> beta');
is(via('GET', '/app/x'), 'u4', 'filters: header absent -> next best route');
is(via('GET', '/s/api/v1/x'), 'u2', 'specificity: longer prefix wins (written second)');
is(via('GET', '/s/api/v2/x'), 'u1', 'specificity: shorter prefix still serves the rest');
is(via('GET', '/s/users/me/t'), 'u4', 'specificity: more literal segments win');
is(via('GET', '/s/users/42/t'), 'u3', 'specificity: the parameter route serves other ids');
is(via('GET', '/s/q/5'), 'u6', 'specificity: a parameter path without /* beats the same with /*');
is(via('GET', '/s/q/5/x'), 'u5', 'specificity: ... which still serves deeper paths');
is(via('GET', '/s/same'), 'u5', 'order: the route written first wins');

# --- strip_prefix ------------------------------------------------------------------
{
    my @cases = (
        ['/strip/users/42?x=1&y=%20', '/users/42?x=1&y=%20', 'prefix removed, query kept'],
        ['/strip', '/', 'the bare prefix -> /'],
        ['/strip/', '/', 'the prefix and slash -> /'],
        ['/strip?a=b', '/?a=b', 'the bare prefix with a query'],
        ['/ss/a', '/a', 'a trailing / in the prefix is ignored'],
        ['/sp/a?z=1', '/a?z=1', 'regex route with strip'],
        ['/sp10/users', '/sp10/users', 'not on a segment boundary: unchanged'],
    );
    for my $c (@cases) {
        my ($path, $want, $desc) = @$c;
        my $r = http_request($port, 'GET', $path);
        is($r->{status}, 200, "strip_prefix $path: 200");
        is((json_body($r) // {})->{uri}, $want, "strip_prefix $path: upstream sees $want ($desc)");
    }
}

# --- upstream_path ---------------------------------------------------------------
{
    my @cases = (
        ['/up/users/42', '/v1/user/42', 'one parameter'],
        ['/up/users/42?x=1&y=%20', '/v1/user/42?x=1&y=%20', 'query kept as sent'],
        ['/up/users/a%2Fb%20c', '/v1/user/a%2Fb%20c', 'the value as it is in the path: %2F and %20 stay encoded'],
        ['/up/orgs/acme/repos/gw?v=2', '/v2/gw/of/acme/x-acme.json?v=2',
         'two parameters, out of order, one used twice, inside a segment'],
        ['/up/health?deep=1', '/status?deep=1', 'exact route, literal template'],
        ['/p/users/7?z=1', '/p/users/7?z=1', 'a :param route without upstream_path: path unchanged'],
    );
    for my $c (@cases) {
        my ($path, $want, $desc) = @$c;
        my $r = http_request($port, 'GET', $path);
        is($r->{status}, 200, "upstream_path $path: 200");
        is((json_body($r) // {})->{uri}, $want, "upstream_path $path: upstream sees $want ($desc)");
    }
    my $seen = (upstream_requests($up{u5}))[-1] // {};
    is($seen->{uri}, '/status?deep=1', 'upstream_path: the request line the upstream received');
    is(via('GET', '/up/users/42/more'), '404', 'upstream_path: the :param route still matches one segment only');
}

# --- 404 ---------------------------------------------------------------------------
{
    my $r = http_request($port, 'GET', '/nothing/here');
    gw_error_ok($r, 404, 'no route');
    ok(!$r->{closed}, 'no route: connection kept alive');
    my $j = json_body($r) // {};
    is_deeply([sort keys %$j], [qw(code message request_id)], '404 body: exactly code, message, request_id');
    like($r->{headers}{'content-type'} // '', qr{^application/json\b}, '404: Content-Type application/json');
    my $r2 = http_request($port, 'GET', '/nothing/here', headers => ['X-Request-Id' => 'my-req-1']);
    is((json_body($r2) // {})->{request_id}, 'my-req-1', '404: a sane client request id is kept');
}

# --- path normalisation ---------------------------------------------------------------
is(via('GET', '/x/../p/exact'), 'u1', 'normalise: /x/../p/exact routes as /p/exact');
is(via('GET', '/p/./exact'), 'u1', 'normalise: /p/./exact routes as /p/exact');
is(via('GET', '/%61pi/x'), 'u6', 'normalise: /%61pi/x matches /api/*');
{
    my @before = map { scalar upstream_requests($up{$_}) } @names;
    my $r = http_request($port, 'GET', '/../etc/passwd');
    gw_error_ok($r, 400, 'path escaping the root');
    $r = http_request($port, 'GET', '/api/../../x');
    gw_error_ok($r, 400, 'path escaping the root via a segment');
    my @after  = map { scalar upstream_requests($up{$_}) } @names;
    is_deeply(\@after, \@before, 'escaping paths reached no upstream');
}

# --- route timeout --------------------------------------------------------------------
{
    my $r = http_request($port, 'GET', '/to/sleep/1500');
    gw_error_ok($r, 504, 'route timeout: upstream slower than the 300ms budget');
    $r = http_request($port, 'GET', '/to/sleep/10');
    is($r->{status}, 200, 'route timeout: a fast answer within the budget -> 200');
    is((json_body($r) // {})->{uri}, '/sleep/10', 'route timeout route: prefix stripped');
}

stop_all();
done_testing();
