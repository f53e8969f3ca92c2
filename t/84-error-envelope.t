# One error envelope: every refusal of a built-in plugin (key-auth,
# jwt-auth, ip-restriction, a cors preflight, limit-period, limit-token) and
# of a plugin's gw.exit_error is {"code", "message", "request_id"} as
# application/json, request_id the X-Request-Id the client gets; it goes
# through the error phase (error-mapping, degradation) with kind "refused"
# ("limited" for 429); gw.exit_error's headers, its checks, and its use
# from the error phase. The limiters use policy local: no Redis needed.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use GwTest;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my $pdir = plugin_dir();

# The message that needs escaping: quote, backslash, newline, tab, a control
# byte and UTF-8.
my $odd = "say \"no\" \\ twice\nthen\ttab \x01 caf\xc3\xa9";

# X-Mode picks the way out; X-Phase: rewrite refuses there instead.
plugin_file('t-refuse', <<'LUA');
local plugin = { name = "t-refuse", priority = 100 }
local ODD = "say \"no\" \\ twice\nthen\ttab \1 caf\195\169"
local function refuse()
  local mode = gw.req.header("X-Mode") or "plain"
  if mode == "plain" then return gw.exit_error(400, "bad input") end
  if mode == "odd" then return gw.exit_error(422, ODD) end
  if mode == "long" then return gw.exit_error(403, string.rep("x", 5000)) end
  if mode == "headers" then
    return gw.exit_error(401, "sign in", { ["WWW-Authenticate"] = 'Bearer realm="api"',
                                           ["X-Extra"] = 1 })
  end
  if mode == "limited" then
    return gw.exit_error(429, "slow down", { ["Retry-After"] = 7 })
  end
  if mode == "then-exit" then
    gw.exit_error(403, "overridden")
    return gw.exit(200, { chosen = "exit" })
  end
  if mode == "bad-status" then return gw.exit_error(200, "fine?") end
  if mode == "bad-message" then return gw.exit_error(401, "") end
  if mode == "nul-message" then return gw.exit_error(401, "a\0b") end
  if mode == "bad-header" then return gw.exit_error(401, "x", { ["Content-Length"] = "0" }) end
  if mode == "bad-headers" then return gw.exit_error(401, "x", "Retry-After: 1") end
end
function plugin.rewrite(conf, ctx)
  if gw.req.header("X-Phase") == "rewrite" then return refuse() end
end
function plugin.access(conf, ctx)
  ctx.access_ran = true
  return refuse()
end
return plugin
LUA

# runs after t-refuse: it must not, once t-refuse refused
plugin_file('t-after', <<'LUA');
local plugin = { name = "t-after", priority = 50 }
function plugin.access(conf, ctx)
  gw.log("error", "t-after ran")
end
return plugin
LUA

# the error phase answers with the envelope (an upstream that is down)
plugin_file('t-err-refuse', <<'LUA');
local plugin = { name = "t-err-refuse", priority = 100 }
function plugin.error(conf, ctx, err)
  if err.kind == "upstream_error" then
    return gw.exit_error(503, "maintenance window", { ["Retry-After"] = 60 })
  end
end
return plugin
LUA

# gw.exit_error outside rewrite, access and error
plugin_file('t-hf-refuse', <<'LUA');
local plugin = { name = "t-hf-refuse", priority = 100 }
function plugin.header_filter(conf, ctx)
  return gw.exit_error(403, "too late")
end
return plugin
LUA

# gw.resp.add_header and the headers the gateway writes itself
plugin_file('t-add-header', <<'LUA');
local plugin = { name = "t-add-header", priority = 100 }
function plugin.access(conf, ctx)
  local out = {}
  for _, n in ipairs({ "Content-Length", "transfer-encoding", "Connection", "Content-Type",
                       "X-Request-Id", "Date", "X-Fine" }) do
    out[n] = pcall(gw.resp.add_header, n, "1")
  end
  return gw.exit(200, out)
end
return plugin
LUA

my $up     = start_upstream(name => 'a');
my $closed = free_port();

sub route {
    my ($name, $plugins, %o) = @_;
    return { name => $name, match => { path => "/$name/*" }, upstream => $o{upstream} // 'a',
             plugins => $plugins };
}

my $sign_in = { code => 10401, message => 'please sign in', http_status => 200 };

my $gw = start_gateway(config => {
    gateway   => { plugin_paths => [$pdir] },
    upstreams => [
        { name => 'a', nodes => ["127.0.0.1:$up->{port}"] },
        { name => 'down', nodes => ["127.0.0.1:$closed"], retries => 0 },
    ],
    consumers => [{ name => 'alice', 'key-auth' => { key => 'alice-key' },
                    'jwt-auth' => { key => 'alice', secret => 'alice-secret' } }],
    routes => [
        route('key', { 'key-auth' => {} }),
        route('jwt', { 'jwt-auth' => {} }),
        route('ip', { 'ip-restriction' => { deny => ['127.0.0.0/8'] } }),
        route('ip-msg', { 'ip-restriction' => { deny => ['127.0.0.0/8'], status => 451,
                                                message => 'not "here"' } }),
        route('cors', { cors => { allow_origins => ['https://app.example.com'] }, 'key-auth' => {} }),
        route('lp', { 'limit-period' => { period => 60, quota => 1, policy => 'local' } }),
        route('lt', { 'limit-token' => { rate => 0.01, burst => 1, policy => 'local' } }),
        route('key-em', { 'key-auth' => {}, 'error-mapping' => { statuses => { '401' => $sign_in } } }),
        route('key-em-kind', { 'key-auth' => {},
                               'error-mapping' => { kinds => { refused => { code => 10001 } } } }),
        route('ip-em', { 'ip-restriction' => { deny => ['127.0.0.0/8'] },
                         'error-mapping' => { default => { code => 99, message => 'nope' } } }),
        route('key-deg', { 'key-auth' => {}, degradation => { on => ['refused'], status => 200,
                                                              json => { guest => JSON::PP::true } } }),
        route('u', { 't-refuse' => {}, 't-after' => {} }),
        route('u-em', { 't-refuse' => {}, 'error-mapping' => {
            kinds => { refused => { code => 40000 },
                       limited => { code => 42900, message => 'busy', http_status => 200 } } } }),
        route('err', { 't-err-refuse' => {} }, upstream => 'down'),
        route('hf', { 't-hf-refuse' => {} }),
        route('add', { 't-add-header' => {} }),
    ],
});

sub req {
    my ($method, $path, @h) = @_;
    clear_upstream_log($up);
    return http_request($gw->{port}, $method, $path, headers => \@h);
}

sub ups { scalar(my @r = upstream_requests($up)) }

# --- the built-in plugins ------------------------------------------------------------

my $r = req('GET', '/key/x');
error_envelope_is($r, 401, 'missing API key', 'key-auth, no key');
is(ups(), 0, 'key-auth, no key: nothing upstream');
$r = req('GET', '/key/x', 'X-API-Key' => 'nope');
error_envelope_is($r, 401, 'invalid API key', 'key-auth, wrong key');
$r = req('GET', '/key/x', 'X-Request-Id' => 'client-id-42');
error_envelope_is($r, 401, 'missing API key', 'key-auth, client X-Request-Id');
is((json_body($r) // {})->{request_id}, 'client-id-42', 'key-auth: request_id is the client\'s id');
$r = req('GET', '/key/x', 'X-API-Key' => 'alice-key');
is($r->{status}, 200, 'key-auth, good key: 200');

$r = req('HEAD', '/key/x');
is($r->{status}, 401, 'key-auth, HEAD: 401');
is($r->{body}, '', 'key-auth, HEAD: no body');

$r = req('GET', '/jwt/x');
error_envelope_is($r, 401, 'missing token', 'jwt-auth, no token');
$r = req('GET', '/jwt/x', Authorization => 'Bearer a.b.c');
error_envelope_is($r, 401, 'invalid token', 'jwt-auth, bad token');

$r = req('GET', '/ip/x');
error_envelope_is($r, 403, 'forbidden', 'ip-restriction');
is(ups(), 0, 'ip-restriction: nothing upstream');
$r = req('GET', '/ip-msg/x');
error_envelope_is($r, 451, 'not "here"', 'ip-restriction, its status and a message with quotes');

$r = req('OPTIONS', '/cors/x', Origin => 'https://evil.example', 'Access-Control-Request-Method' => 'GET');
error_envelope_is($r, 403, 'CORS origin not allowed', 'cors preflight from a foreign origin');
ok(!exists $r->{headers}{'access-control-allow-origin'}, 'cors refusal: no allow-origin');
$r = req('GET', '/cors/x', Origin => 'https://app.example.com');
error_envelope_is($r, 401, 'missing API key', 'cors + key-auth, no key');
is($r->{headers}{'access-control-allow-origin'}, 'https://app.example.com',
   'cors + key-auth: header_filter still runs on the envelope');

$r = req('GET', '/lp/x');
is($r->{status}, 200, 'limit-period: the first passes');
$r = req('GET', '/lp/x');
error_envelope_is($r, 429, 'too many requests', 'limit-period, over quota');
ok(($r->{headers}{'retry-after'} // 0) >= 1, 'limit-period: Retry-After');
is($r->{headers}{'x-ratelimit-limit'}, 1, 'limit-period: X-RateLimit-Limit');

$r = req('GET', '/lt/x');
is($r->{status}, 200, 'limit-token: the first passes');
$r = req('GET', '/lt/x');
error_envelope_is($r, 429, 'too many requests', 'limit-token, no token left');
ok(($r->{headers}{'retry-after'} // 0) >= 1, 'limit-token: Retry-After');

# --- error-mapping and degradation see the refusals ---------------------------------------

sub mapped {
    my ($r, $status, $code, $message, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    is($r->{status}, $status, "$name: status $status");
    like($r->{headers}{'content-type'} // '', qr{^application/json}, "$name: JSON");
    is_deeply(json_body($r), { code => $code, message => $message,
                               request_id => $r->{headers}{'x-request-id'} // '' },
              "$name: the business body, request_id = X-Request-Id");
}

$r = req('GET', '/key-em/x');
mapped($r, 200, 10401, 'please sign in', 'error-mapping rewrites key-auth\'s 401 (by status)');
is(ups(), 0, 'error-mapping on key-auth: nothing upstream');
$r = req('GET', '/key-em/x', 'X-API-Key' => 'alice-key');
is($r->{status}, 200, 'error-mapping + key-auth, good key: proxied');
is((json_body($r) // {})->{uri}, '/key-em/x', 'error-mapping + key-auth, good key: the upstream\'s body');

$r = req('GET', '/key-em-kind/x', 'X-API-Key' => 'bad');
mapped($r, 401, 10001, 'invalid API key', 'error-mapping kinds.refused: the plugin\'s message kept');

$r = req('GET', '/ip-em/x');
mapped($r, 403, 99, 'nope', 'error-mapping default rule on ip-restriction\'s 403');

$r = req('GET', '/key-deg/x');
is($r->{status}, 200, 'degradation on refused: 200');
is_deeply(json_body($r), { guest => JSON::PP::true }, 'degradation on refused: the fallback');

# --- gw.exit_error from a plugin of the operator's -------------------------------------------

$r = req('GET', '/u/x');
error_envelope_is($r, 400, 'bad input', 'gw.exit_error in access');
is(ups(), 0, 'gw.exit_error: nothing upstream');
$r = req('GET', '/u/x', 'X-Phase' => 'rewrite');
error_envelope_is($r, 400, 'bad input', 'gw.exit_error in rewrite');
ok(gateway_log($gw) !~ /t-after ran/, 'gw.exit_error ends the chain: the next plugin never ran');

$r = req('GET', '/u/x', 'X-Mode' => 'odd');
error_envelope_is($r, 422, $odd, 'gw.exit_error, a message that needs escaping');
like($r->{body}, qr/\\"no\\" \\\\ twice\\u000athen\\u0009tab \\u0001 caf\xc3\xa9/,
     'gw.exit_error: quote, backslash, newline, tab and control bytes escaped; UTF-8 kept');

$r = req('GET', '/u/x', 'X-Mode' => 'long');
error_envelope_is($r, 403, 'x' x 5000, 'gw.exit_error, a 5000-byte message (not cut)');

$r = req('GET', '/u/x', 'X-Mode' => 'headers');
error_envelope_is($r, 401, 'sign in', 'gw.exit_error with headers');
is($r->{headers}{'www-authenticate'}, 'Bearer realm="api"', 'gw.exit_error: WWW-Authenticate sent');
is($r->{headers}{'x-extra'}, '1', 'gw.exit_error: a number value sent as text');

$r = req('GET', '/u/x', 'X-Mode' => 'then-exit');
is($r->{status}, 200, 'gw.exit after gw.exit_error: the last call wins');
is_deeply(json_body($r), { chosen => 'exit' }, 'gw.exit after gw.exit_error: its body');

for my $bad (qw(bad-status bad-message nul-message bad-header bad-headers)) {
    $r = req('GET', '/u/x', 'X-Mode' => $bad);
    error_envelope_is($r, 500, 'internal error', "gw.exit_error, $bad: the plugin fails");
}
like(gateway_log($gw), qr/gw\.exit_error: status must be an integer 400\.\.599/,
     'gw.exit_error, bad status: the reason is logged');
like(gateway_log($gw), qr/gw\.exit_error: message must be a non-empty string/,
     'gw.exit_error, bad message: the reason is logged');
like(gateway_log($gw), qr/gw\.exit_error: invalid header Content-Length/,
     'gw.exit_error, a header the gateway sets: the reason is logged');

$r = req('GET', '/u-em/x');
mapped($r, 400, 40000, 'bad input', 'error-mapping kinds.refused on gw.exit_error');
$r = req('GET', '/u-em/x', 'X-Mode' => 'limited');
mapped($r, 200, 42900, 'busy', 'gw.exit_error 429 is of kind limited');
is($r->{headers}{'retry-after'}, '7', 'gw.exit_error headers stay on the mapped answer');
$r = req('GET', '/u/x', 'X-Mode' => 'limited');
error_envelope_is($r, 429, 'slow down', 'gw.exit_error 429 without error-mapping');
is($r->{headers}{'retry-after'}, '7', 'gw.exit_error 429: Retry-After');

$r = req('GET', '/err/x');
error_envelope_is($r, 503, 'maintenance window', 'gw.exit_error from the error phase');
is($r->{headers}{'retry-after'}, '60', 'gw.exit_error from the error phase: its header');

$r = req('GET', '/hf/x');
error_envelope_is($r, 500, 'internal error', 'gw.exit_error in header_filter: the plugin fails');
like(gateway_log($gw), qr/gw\.exit_error cannot be called in the header_filter phase/,
     'gw.exit_error in header_filter: the reason is logged');

$r = req('GET', '/add/x');
is_deeply(json_body($r), { 'Content-Length' => JSON::PP::false, 'transfer-encoding' => JSON::PP::false,
    Connection => JSON::PP::false, 'Content-Type' => JSON::PP::false, 'X-Request-Id' => JSON::PP::false,
    Date => JSON::PP::false, 'X-Fine' => JSON::PP::true },
    'gw.resp.add_header refuses the headers the gateway writes itself');
is($r->{headers}{'x-fine'}, '1', 'gw.resp.add_header: another header is added');
is(scalar(grep { lc $_->[0] eq 'content-length' } @{ $r->{header_list} // [] }), 1,
   'gw.resp.add_header: one Content-Length');

my @died = gateway_log($gw) =~ /(master: worker \d+ .*(?:killed by signal|exited with status).*)/g;
is(scalar(@died), 0, 'no worker died') or diag(join "\n", @died);
is(stop_gateway($gw), 0, 'SIGTERM: exit 0');
stop_all();
done_testing();
