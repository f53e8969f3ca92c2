# The Lua plugin runtime through the real gateway: config checks of plugin
# configs, the phases (rewrite/access, header_filter, body_filter, log,
# error), gw.exit, errors raised by plugins, waiting calls (gw.sleep,
# gw.http.request) that let other requests run, the sandbox, and plugin order.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Select;
use Time::HiRes qw(time sleep);
use GwTest;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

# --- custom plugins ----------------------------------------------------------

my $pdir = plugin_dir();

plugin_file('t-setter', <<'LUA');
local plugin = { name = "t-setter", priority = 100,
  schema = { type = "object", properties = { tier = { type = "string", default = "gold" } } } }
function plugin.access(conf, ctx)
  gw.req.set_header("X-From-Plugin", "yes")
  gw.req.clear_header("X-Drop-Me")
  gw.var.tier = conf.tier
  gw.req.set_header("X-Var-Route", gw.var.route)
  gw.req.set_header("X-Var-Remote", gw.var.remote_addr)
  gw.req.set_header("X-Var-Rid", gw.var.request_id)
  gw.req.set_header("X-Var-Tier", gw.var.tier)
  local q = gw.req.query()
  gw.req.set_header("X-Req-Info", table.concat({ gw.req.method(), gw.req.path(), gw.req.uri(),
    tostring(q.a), tostring(gw.req.query_arg("b")), tostring(gw.req.header("x-lower")),
    tostring(gw.req.headers()["x-lower"]) }, "|"))
  local np = gw.req.header("X-Set-Path")
  if np then gw.req.set_path(np) end
end
return plugin
LUA

plugin_file('t-params', <<'LUA');
local plugin = { name = "t-params", priority = 100 }
function plugin.access(conf, ctx)
  local list = {}
  for k, v in pairs(gw.req.params()) do list[#list + 1] = k .. "=" .. v end
  table.sort(list)
  gw.req.set_header("X-Params", "[" .. table.concat(list, ",") .. "]")
  gw.req.set_header("X-Param-Id", tostring(gw.req.param("id")))
  gw.req.set_header("X-Param-Nope", tostring(gw.req.param("nope")))
  local ok, err = pcall(gw.req.param, 42)
  gw.req.set_header("X-Param-Bad", ok and "accepted" or tostring(err):match("name must be a string") or err)
  local np = gw.req.header("X-Set-Path")
  if np then gw.req.set_path(np) end
end
return plugin
LUA

plugin_file('t-exit', <<'LUA');
local plugin = { name = "t-exit", priority = 100,
  schema = { type = "object", properties = { mode = { type = "string", enum = { "json", "text" } } },
             required = { "mode" } } }
function plugin.access(conf, ctx)
  if conf.mode == "json" then
    return gw.exit(201, { ok = true, list = { 1, 2, 3 }, path = gw.req.path() },
                   { ["X-Exit"] = "json", ["Cache-Control"] = "no-store" })
  end
  -- headers the gateway writes itself are its own: never twice
  return gw.exit(418, "short and stout", { ["X-Exit"] = "text", ["X-Request-Id"] = "mine",
                                           ["Date"] = "yesterday", ["Connection"] = "close" })
end
return plugin
LUA

plugin_file('t-boom', <<'LUA');
local plugin = { name = "t-boom", priority = 100 }
local function deep(n)
  if n == 0 then error("kaboom secret-detail") end
  return deep(n - 1) + 1
end
function plugin.access(conf, ctx)
  if gw.req.header("X-Boom") then deep(3) end
end
return plugin
LUA

plugin_file('t-sleep', <<'LUA');
local plugin = { name = "t-sleep", priority = 100,
  schema = { type = "object", properties = { seconds = { type = "number", default = 0.5 } } } }
function plugin.access(conf, ctx)
  local s = tonumber(gw.req.header("X-Sleep") or "") or conf.seconds
  local t0 = gw.now()
  gw.sleep(s)
  gw.req.set_header("X-Slept", string.format("%.3f", gw.now() - t0))
end
return plugin
LUA

plugin_file('t-http', <<'LUA');
local plugin = { name = "t-http", priority = 100,
  schema = { type = "object", properties = { url = { type = "string" },
    timeout = { type = "number", default = 2 } }, required = { "url" } } }
function plugin.access(conf, ctx)
  local res, err = gw.http.request{ method = "POST", url = conf.url .. "/from-lua?x=1",
    headers = { ["X-Side"] = "call" }, body = "side-body", timeout = conf.timeout }
  if not res then
    return gw.exit(200, { handled = true, err = tostring(err) })
  end
  local ok, echoed = pcall(gw.json.decode, res.body)
  return gw.exit(200, { status = res.status, upstream = res.headers["x-upstream"],
                        echoed_uri = ok and echoed and echoed.uri or nil,
                        echoed_body = ok and echoed and echoed.body or nil,
                        echoed_method = ok and echoed and echoed.method or nil })
end
return plugin
LUA

plugin_file('t-sandbox', <<'LUA');
local plugin = { name = "t-sandbox", priority = 100 }
function plugin.access(conf, ctx)
  local r = {}
  r.os = os == nil
  r.io = io == nil
  r.debug = debug == nil
  r.ffi = ffi == nil
  r.package = package == nil
  r.jit = jit == nil
  r.dofile = dofile == nil
  r.loadfile = loadfile == nil
  r.getfenv = getfenv == nil
  r.setfenv = setfenv == nil
  r.string_dump = string.dump == nil
  r.G_os = _G.os == nil
  local f, err = load("\27LJ\2\0\0\0\0\0")
  r.binary_refused = f == nil
  local ok1 = pcall(require, "os")
  r.require_os_refused = not ok1
  local ok2 = pcall(require, "ffi")
  r.require_ffi_refused = not ok2
  local ok3 = pcall(require, "io")
  r.require_io_refused = not ok3
  local ok4, cj = pcall(require, "cjson")
  r.require_cjson_ok = ok4 and type(cj) == "table"
  local g = load("return 1 + 1")
  r.text_load_ok = g ~= nil and g() == 2
  local h = load("return os")
  r.text_load_sandboxed = h ~= nil and h() == nil
  -- the API is read-only: no plugin can replace what another relies on
  r.gw_readonly = not pcall(function() gw.exit = nil end)
  r.gw_req_readonly = not pcall(function() gw.req.header = function() return "x" end end)
  r.gw_json_readonly = not pcall(function() gw.json.encode = nil end)
  r.gw_api_intact = type(gw.req.header) == "function" and type(gw.exit) == "function"
  r.gw_ctx_works = gw.ctx == ctx
  gw.var.sandbox_var = "v"
  r.gw_var_writable = gw.var.sandbox_var == "v"
  return gw.exit(200, r)
end
return plugin
LUA

plugin_file('t-resp-in-access', <<'LUA');
local plugin = { name = "t-resp-in-access", priority = 100 }
function plugin.access(conf, ctx)
  gw.resp.set_header("X-Nope", "1")
end
return plugin
LUA

# Order: each plugin appends its name in access (sent upstream as X-Order)
# and in header_filter (returned as X-HF-Order).
for my $o (['t-order-g', 10], ['t-order-hi', 900], ['t-order-lo', 100], ['t-order-mid', 500]) {
    my ($n, $p) = @$o;
    plugin_file($n, <<"LUA");
local plugin = { name = "$n", priority = $p }
function plugin.access(conf, ctx)
  ctx.order = (ctx.order and ctx.order .. "," or "") .. "$n"
  gw.req.set_header("X-Order", ctx.order)
end
function plugin.header_filter(conf, ctx)
  ctx.hf = (ctx.hf and ctx.hf .. "," or "") .. "$n"
  gw.resp.set_header("X-HF-Order", ctx.hf)
end
return plugin
LUA
}

plugin_file('t-hf', <<'LUA');
local plugin = { name = "t-hf", priority = 100,
  schema = { type = "object", properties = { value = { type = "string", default = "hf" } } } }
function plugin.header_filter(conf, ctx)
  gw.resp.set_header("X-HF", conf.value .. ":" .. tostring(gw.resp.status()))
  gw.resp.set_header("X-Upstream", nil)
end
return plugin
LUA

plugin_file('t-upper', <<'LUA');
local plugin = { name = "t-upper", priority = 100 }
function plugin.body_filter(conf, ctx, chunk, eof)
  if chunk then return chunk:upper() end
end
return plugin
LUA

plugin_file('t-log', <<'LUA');
local plugin = { name = "t-log", priority = 100 }
function plugin.log(conf, ctx)
  gw.log("info", "t-log line route=" .. tostring(gw.var.route), " status=" .. tostring(gw.resp.status()))
end
return plugin
LUA

plugin_file('t-err', <<'LUA');
local plugin = { name = "t-err", priority = 100,
  schema = { type = "object", properties = {
    kind = { type = "string", default = "upstream_error" } } } }
function plugin.error(conf, ctx, err)
  if err.kind == conf.kind then
    return 200, { replaced = true, kind = err.kind, was = err.status }, { ["X-Replaced"] = "1" }
  end
end
return plugin
LUA

plugin_file('t-phase-boom', <<'LUA');
local plugin = { name = "t-phase-boom", priority = 100 }
function plugin.access(conf, ctx) ctx.where = gw.req.header("X-Where") end
function plugin.header_filter(conf, ctx)
  if ctx.where == "header_filter" then error("boom in header_filter") end
end
function plugin.body_filter(conf, ctx, chunk, eof)
  if ctx.where == "body_filter" then error("boom in body_filter") end
end
function plugin.log(conf, ctx)
  if ctx.where == "log" then error("boom in log") end
end
return plugin
LUA

plugin_file('t-body', <<'LUA');
local plugin = { name = "t-body", priority = 100 }
function plugin.access(conf, ctx)
  local b, err = gw.req.body()
  gw.req.set_header("X-Body-Seen", b and tostring(#b) or ("nil: " .. tostring(err)))
  if gw.req.header("X-Echo") then
    return gw.exit(200, { body = b, err = err })
  end
end
return plugin
LUA

plugin_file('t-hf-wait', <<'LUA');
local plugin = { name = "t-hf-wait", priority = 100 }
function plugin.header_filter(conf, ctx)
  local t0 = gw.now()
  gw.sleep(0.2)
  gw.resp.set_header("X-HF-Waited", string.format("%.3f", gw.now() - t0))
end
return plugin
LUA

plugin_file('t-syntax', "local plugin = { name = \"t-syntax\", priority = 1\nfunction plugin.access() end\nreturn plugin\n");

# --- gateway -t ----------------------------------------------------------------

sub check_plugins {
    my ($plugins, %o) = @_;
    return check_config(config => {
        gateway   => { plugin_paths => [$pdir] },
        upstreams => [{ name => 'a', nodes => ['127.0.0.1:9'] }],
        routes    => [{ name => 'r', match => { path => '/*' }, upstream => 'a',
                        plugins => $plugins }],
        %o,
    });
}

{
    my ($code, $out) = check_plugins({ 'key-auth' => { header => 5 } });
    is($code, 1, '-t: schema error exits 1');
    like($out, qr/routes\[0\]\.plugins\.key-auth\.header: expected string, got number/,
        '-t: schema error names the YAML path and the types');

    ($code, $out) = check_plugins({ 'no-such-plugin' => {} });
    is($code, 1, '-t: unknown plugin exits 1');
    like($out, qr/routes\[0\]\.plugins\.no-such-plugin: unknown plugin "no-such-plugin"/,
        '-t: unknown plugin named with its path');

    ($code, $out) = check_plugins({ 't-syntax' => {} });
    is($code, 1, '-t: plugin with a syntax error exits 1');
    like($out, qr/routes\[0\]\.plugins\.t-syntax: .*t-syntax\.lua:2:/,
        '-t: syntax error names the plugin, its file and line');

    ($code, $out) = check_plugins({ 't-exit' => {} });
    is($code, 1, '-t: missing required key exits 1');
    like($out, qr/routes\[0\]\.plugins\.t-exit/, '-t: missing required key names the path');

    ($code, $out) = check_plugins({}, plugins => { 't-exit' => { mode => 'other' } });
    is($code, 1, '-t: bad enum in a global plugin exits 1');
    like($out, qr/plugins\.t-exit\.mode/, '-t: global plugin error names plugins.t-exit.mode');

    ($code, $out) = check_plugins({ 't-exit' => { mode => 'json' }, 't-sleep' => { seconds => 1 } });
    is($code, 0, '-t: valid custom plugin configs pass') or diag($out);
}

# --- one gateway, many routes ----------------------------------------------

my $up  = start_upstream(name => 'a');
my $up2 = start_upstream(name => 'b');
my $closed = free_port();

sub route {
    my ($name, $path, $plugins, %o) = @_;
    return { name => $name, match => { path => $path }, upstream => $o{upstream} // 'a',
             ($plugins ? (plugins => $plugins) : ()), %{ $o{extra} // {} } };
}

my $gw = start_gateway(config => {
    gateway   => { plugin_paths => [$pdir] },
    upstreams => [
        { name => 'a', nodes => ["127.0.0.1:$up->{port}"], keepalive => { size => 256 } },
        { name => 'b', nodes => ["127.0.0.1:$up2->{port}"] },
        { name => 'down', nodes => ["127.0.0.1:$closed"] },
    ],
    routes => [
        route('plain', '/plain/*'),
        route('setter', '/setter/*', { 't-setter' => {} }, extra => {
            split => [{ when => { user_hash => { key => 'var:tier', percent => 100 } },
                        upstream => 'b' }] }),
        route('params', '/params/users/:id/:tab', { 't-params' => {} },
              extra => { upstream_path => '/v1/{tab}/{id}' }),
        route('params-none', '/params/plain', { 't-params' => {} }),
        route('exit-json', '/exit-json/*', { 't-exit' => { mode => 'json' } }),
        route('exit-text', '/exit-text/*', { 't-exit' => { mode => 'text' } }),
        route('boom', '/boom/*', { 't-boom' => {} }),
        route('sleep', '/sleep/*', { 't-sleep' => { seconds => 0.5 * mult() } }),
        route('http', '/http/*', { 't-http' => { url => "http://127.0.0.1:$up2->{port}" } }),
        route('http-closed', '/http-closed/*', { 't-http' => { url => "http://127.0.0.1:$closed" } }),
        route('http-refused', '/http-refused/*', { 't-http' => { url => "ftp://127.0.0.1:$closed" } }),
        route('http-slow', '/http-slow/*', { 't-http' => { url => "http://127.0.0.1:$up2->{port}/sleep/2000",
                                                        timeout => 0.3 } }),
        route('http-gone', '/http-gone/*', { 't-http' => { url => "http://127.0.0.1:$up2->{port}/sleep/600" } }),
        route('phase-boom', '/phase-boom/*', { 't-phase-boom' => {} }),
        route('body', '/body/*', { 't-body' => {} }),
        route('hf-wait', '/hf-wait/*', { 't-hf-wait' => {} }),
        route('sandbox', '/sandbox/*', { 't-sandbox' => {} }),
        route('resp-in-access', '/resp-in-access/*', { 't-resp-in-access' => {} }),
        route('order', '/order/*', { 't-order-lo' => {}, 't-order-hi' => {}, 't-order-mid' => {} }),
        route('hf', '/hf/*', { 't-hf' => { value => 'set' } }),
        route('upper', '/upper/*', { 't-upper' => {} }),
        route('upper-chunked', '/chunked', { 't-upper' => {} }),
        route('log', '/log/*', { 't-log' => {} }),
        route('err', '/err/*', { 't-err' => {} }, upstream => 'down'),
        route('err-none', '/err-none/*', undef, upstream => 'down'),
    ],
});

sub last_up {
    my ($u) = @_;
    my @r = upstream_requests($u);
    return $r[-1];
}

sub up_header {
    my ($req, $name) = @_;
    return undef unless $req;
    my @v = map { $_->[1] } grep { lc $_->[0] eq lc $name } @{ $req->{headers} };
    return @v ? $v[0] : undef;
}

sub no_worker_died {
    my ($g, $name) = @_;
    my @died = gateway_log($g) =~ /(master: worker \d+ .*(?:killed by signal|exited with status).*)/g;
    is(scalar(@died), 0, "$name: no worker died during the run") or diag(join "\n", @died);
}

sub count_up { scalar(my @r = upstream_requests($_[0])) }

# routes without plugins
my $r = http_request($gw->{port}, 'GET', '/plain/x');
is($r->{status}, 200, 'route without plugins: 200');
is($r->{headers}{'x-upstream'}, 'a', 'route without plugins: answered by a');

# a plugin sets a request header and a var; the var picks the split rule
clear_upstream_log($up);
clear_upstream_log($up2);
$r = http_request($gw->{port}, 'GET', '/setter/1', headers => ['X-Drop-Me' => 'gone']);
is($r->{status}, 200, 'setter: 200');
is($r->{headers}{'x-upstream'}, 'b', 'setter: var:tier set in access routes by the split rule to b');
my $seen = last_up($up2);
is(up_header($seen, 'X-From-Plugin'), 'yes', 'setter: upstream got the header set in access');
is(up_header($seen, 'X-Drop-Me'), undef, 'setter: upstream did not get the cleared header');
is(count_up($up), 0, 'setter: nothing reached a');
is(up_header($seen, 'X-Var-Route'), 'setter', 'gw.var.route');
is(up_header($seen, 'X-Var-Remote'), '127.0.0.1', 'gw.var.remote_addr');
is(up_header($seen, 'X-Var-Rid'), up_header($seen, 'X-Request-Id'), 'gw.var.request_id = X-Request-Id sent upstream');
is(up_header($seen, 'X-Var-Tier'), 'gold', 'gw.var.NAME reads back what was set');

clear_upstream_log($up2);
$r = http_request($gw->{port}, 'GET', '/setter/p%41th?a=x%20y&a=2&b', headers => ['X-Lower' => 'v']);
is($r->{status}, 200, 'gw.req getters: 200');
is(up_header(last_up($up2), 'X-Req-Info'), 'GET|/setter/pAth|/setter/p%41th?a=x%20y&a=2&b|x y||v|v',
    'gw.req: method, normalised path, raw uri, query (first value wins, unescaped), empty arg, header (any case)');
$r = http_request($gw->{port}, 'GET', '/setter/old?k=v', headers => ['X-Set-Path' => '/new/place']);
is($r->{status}, 200, 'gw.req.set_path: 200');
is(last_up($up2)->{uri}, '/new/place?k=v', 'gw.req.set_path: the upstream got the new path, query kept');

# gw.req.param / gw.req.params: the route's :params as in the request path
clear_upstream_log($up);
$r = http_request($gw->{port}, 'GET', '/params/users/a%20b/posts?x=1');
is($r->{status}, 200, 'gw.req.param: 200');
$seen = last_up($up);
is(up_header($seen, 'X-Param-Id'), 'a%20b', 'gw.req.param("id"): the value as in the path, still encoded');
is(up_header($seen, 'X-Param-Nope'), 'nil', 'gw.req.param: nil for a name the route does not capture');
is(up_header($seen, 'X-Params'), '[id=a%20b,tab=posts]', 'gw.req.params(): every :param by name');
is(up_header($seen, 'X-Param-Bad'), 'name must be a string', 'gw.req.param(42): an error');
is($seen->{uri}, '/v1/posts/a%20b?x=1', 'upstream_path with a plugin on the route: the template, query kept');
$r = http_request($gw->{port}, 'GET', '/params/users/7/posts?x=1', headers => ['X-Set-Path' => '/mine']);
is(last_up($up)->{uri}, '/mine?x=1', 'gw.req.set_path wins over the route\'s upstream_path');
is(up_header(last_up($up), 'X-Param-Id'), '7', 'gw.req.param after another request: this request\'s value');
$r = http_request($gw->{port}, 'GET', '/params/plain');
is($r->{status}, 200, 'gw.req.param on a route without params: 200');
$seen = last_up($up);
is(up_header($seen, 'X-Param-Id'), 'nil', 'gw.req.param: nil on a route without params');
is(up_header($seen, 'X-Params'), '[]', 'gw.req.params(): empty on a route without params');

# gw.exit with a table body and headers
clear_upstream_log($up);
$r = http_request($gw->{port}, 'GET', '/exit-json/p?q=1');
is($r->{status}, 201, 'exit json: status');
like($r->{headers}{'content-type'} // '', qr{^application/json}, 'exit json: content type');
is_deeply(json_body($r), { ok => JSON::PP::true, list => [1, 2, 3], path => '/exit-json/p' },
    'exit json: body is the table as JSON');
is($r->{headers}{'x-exit'}, 'json', 'exit json: extra header');
is($r->{headers}{'cache-control'}, 'no-store', 'exit json: second extra header');
ok($r->{headers}{'x-request-id'}, 'exit json: X-Request-Id still sent');
is(count_up($up), 0, 'exit json: nothing upstream');

$r = http_request($gw->{port}, 'GET', '/exit-text/p');
is($r->{status}, 418, 'exit text: status');
is($r->{body}, 'short and stout', 'exit text: body');
like($r->{headers}{'content-type'} // '', qr{^text/plain}, 'exit text: text content type');
is($r->{headers}{'x-exit'}, 'text', 'exit text: header');
my %seen;
$seen{ lc $_->[0] }++ for @{ $r->{header_list} };
is(join(',', map { "$_=" . ($seen{$_} // 0) } qw(date x-request-id connection)), 'date=1,x-request-id=1,connection=0',
    'exit text: Date and X-Request-Id once (the gateway\'s), no Connection from the plugin');
isnt($r->{headers}{'x-request-id'}, 'mine', 'exit text: the X-Request-Id is the gateway\'s');
is(count_up($up), 0, 'exit text: nothing upstream');

# a plugin raising an error: 500 JSON, the traceback in the log only
{
    my $c = gw_connect($gw->{port});
    my $r1 = $c->request('GET', '/boom/1', headers => ['X-Boom' => '1']);
    gw_error_ok($r1, 500, 'plugin error');
    unlike($r1->{body}, qr/kaboom|secret-detail|traceback|t-boom/i,
        'plugin error: nothing of the error in the response');
    is(count_up($up), 0, 'plugin error: nothing upstream');
    my $log = '';
    wait_for(sub { ($log = gateway_log($gw)) =~ /kaboom/ }, 3);
    like($log, qr/t-boom.*kaboom secret-detail/, 'plugin error: message and plugin name logged');
    like($log, qr/traceback/, 'plugin error: traceback logged');
    like($log, qr/t-boom\.lua:\d+/, 'plugin error: traceback names the plugin file and line');
    # the same connection (same worker) still serves
    my $r2 = $c->request('GET', '/boom/2');
    is($r2 && $r2->{status}, 200, 'plugin error: next request on the same connection works');
    $c->close;
    $r = http_request($gw->{port}, 'GET', '/plain/after-boom');
    is($r->{status}, 200, 'plugin error: next request on a new connection works');
}

# gw.resp.set_header in access: an error, 500, a clear log line
clear_upstream_log($up);
$r = http_request($gw->{port}, 'GET', '/resp-in-access/1');
gw_error_ok($r, 500, 'resp.set_header in access');
is(count_up($up), 0, 'resp.set_header in access: nothing upstream');
wait_for(sub { gateway_log($gw) =~ /gw\.resp\.set_header cannot be called in the access phase/ }, 3);
like(gateway_log($gw), qr/t-resp-in-access.*gw\.resp\.set_header cannot be called in the access phase/,
    'resp.set_header in access: the log says which call and which phase');

# the sandbox
$r = http_request($gw->{port}, 'GET', '/sandbox/1');
is($r->{status}, 200, 'sandbox: 200');
my $sb = json_body($r) // {};
for my $k (qw(os io debug ffi package jit dofile loadfile getfenv setfenv string_dump G_os
              binary_refused require_os_refused require_ffi_refused require_io_refused
              require_cjson_ok text_load_ok text_load_sandboxed gw_readonly gw_req_readonly
              gw_json_readonly gw_api_intact gw_ctx_works gw_var_writable)) {
    ok($sb->{$k}, "sandbox: $k") or diag("sandbox answer: $r->{body}");
}

# gw.http.request to a second upstream, its answer used in gw.exit
clear_upstream_log($up);
clear_upstream_log($up2);
$r = http_request($gw->{port}, 'GET', '/http/1');
is($r->{status}, 200, 'http.request: 200');
my $hj = json_body($r) // {};
is($hj->{status}, 200, 'http.request: res.status');
is($hj->{upstream}, 'b', 'http.request: res.headers (lower-case names)');
is($hj->{echoed_uri}, '/from-lua?x=1', 'http.request: uri reached b');
is($hj->{echoed_method}, 'POST', 'http.request: method');
is($hj->{echoed_body}, 'side-body', 'http.request: body');
is(up_header(last_up($up2), 'X-Side'), 'call', 'http.request: header reached b');
is(count_up($up), 0, 'http.request: nothing reached a');

$r = http_request($gw->{port}, 'GET', '/http-closed/1');
is($r->{status}, 200, 'http.request to a closed port: the plugin handled nil, err');
my $hc = json_body($r) // {};
ok($hc->{handled} && length($hc->{err} // ''), 'http.request to a closed port: err is a message')
    or diag($r->{body});

# refused before anything is sent: the client's reason comes back as err
$r = http_request($gw->{port}, 'GET', '/http-refused/1');
is($r->{status}, 200, 'http.request refused at once: the plugin handled nil, err');
like((json_body($r) // {})->{err} // '', qr/only http:\/\/ and https:\/\/ URLs are supported/,
     'http.request refused at once: err is the reason') or diag($r->{body});

# gw.req.body in access
$r = http_request($gw->{port}, 'POST', '/body/1', body => 'hello body', headers => ['X-Echo' => 1]);
is($r->{status}, 200, 'gw.req.body: 200');
is((json_body($r) // {})->{body}, 'hello body', 'gw.req.body: the Content-Length body');
$r = http_request($gw->{port}, 'POST', '/body/2', headers => ['X-Echo' => 1, 'Transfer-Encoding' => 'chunked'],
    body => "5\r\nhello\r\n6\r\n chunk\r\n0\r\n\r\n");
is((json_body($r) // {})->{body}, 'hello chunk', 'gw.req.body: a chunked body, de-chunked');
clear_upstream_log($up);
$r = http_request($gw->{port}, 'POST', '/body/3', body => 'to upstream');
is($r->{status}, 200, 'gw.req.body then proxy: 200');
is(last_up($up)->{body}, 'to upstream', 'gw.req.body then proxy: the upstream still gets the body');
is(up_header(last_up($up), 'X-Body-Seen'), '11', 'gw.req.body then proxy: the plugin saw it');
clear_upstream_log($up);
my $big = 'b' x (100 * 1024);
$r = http_request($gw->{port}, 'POST', '/body/4', body => $big);
is($r->{status}, 200, 'gw.req.body, large body: 200');
like(up_header(last_up($up), 'X-Body-Seen') // '', qr/^nil: .*larger than the read buffer/,
    'gw.req.body, large body: nil, err');
is(length(last_up($up)->{body} // ''), length $big, 'gw.req.body, large body: streamed upstream whole');

# header_filter may wait
$r = http_request($gw->{port}, 'GET', '/hf-wait/1');
is($r->{status}, 200, 'header_filter with gw.sleep: 200');
ok(($r->{headers}{'x-hf-waited'} // 0) >= 0.19, 'header_filter with gw.sleep: header set after the wait');
is((json_body($r) // {})->{uri}, '/hf-wait/1', 'header_filter with gw.sleep: body intact');

# gw.http.request with a timeout: nil, err
$r = http_request($gw->{port}, 'GET', '/http-slow/1');
is($r->{status}, 200, 'http.request timeout: the plugin handled nil, err');
my $ht = json_body($r) // {};
ok($ht->{handled} && ($ht->{err} // '') =~ /time/i, 'http.request timeout: err says timeout')
    or diag($r->{body});

# errors in the later phases
$r = http_request($gw->{port}, 'GET', '/phase-boom/1', headers => ['X-Where' => 'header_filter']);
gw_error_ok($r, 500, 'error in header_filter');
unlike($r->{body}, qr/boom/, 'error in header_filter: not in the response');
like(gateway_log($gw), qr/t-phase-boom failed in header_filter: .*boom in header_filter.*traceback/,
    'error in header_filter: logged with a traceback');
{
    my $c = gw_connect($gw->{port});
    $c->write(build_request('GET', '/phase-boom/2', headers => ['X-Where' => 'body_filter']));
    ok($c->wait_closed(3), 'error in body_filter: the connection is closed');
    my ($x) = parse_responses($c->{buf});
    ok(!$x || !$x->{complete} || $x->{status} != 200,
        'error in body_filter: no complete 200 pretends the body was sent');
    $c->close;
    like(gateway_log($gw), qr/t-phase-boom failed in body_filter: .*boom in body_filter/,
        'error in body_filter: logged');
}
$r = http_request($gw->{port}, 'GET', '/phase-boom/3', headers => ['X-Where' => 'log']);
is($r->{status}, 200, 'error in log: the response is not affected');
ok(wait_for(sub { gateway_log($gw) =~ /t-phase-boom failed in log: .*boom in log/ }, 3),
    'error in log: logged');
$r = http_request($gw->{port}, 'GET', '/phase-boom/4');
is($r->{status}, 200, 'after the phase errors: the worker serves');

# gw.sleep(0.5) in access while 100 other requests complete meanwhile
sub run_concurrent {
    my (@reqs) = @_; # [path, headers]
    my @c;
    for my $q (@reqs) {
        my $c = gw_connect($gw->{port});
        $c->write(build_request('GET', $q->[0], headers => $q->[1] // []));
        push @c, { c => $c, q => $q };
    }
    return @c;
}

sub collect {
    my ($conns, $timeout) = @_;
    my $deadline = time + $timeout * mult();
    my $sel = IO::Select->new(map { $_->{c}{sock} } @$conns);
    my %by = map { fileno($_->{c}{sock}) => $_ } @$conns;
    my $left = @$conns;
    while ($left && time < $deadline) {
        for my $s ($sel->can_read(0.05)) {
            my $e = $by{ fileno $s };
            $e->{c}->poll(0);
            my $resp = GwTest::parse_one(\$e->{c}{buf}, $e->{c}{eof});
            if ($resp) {
                $e->{r} = $resp;
                $e->{t} = time;
                $sel->remove($s);
                $left--;
            }
            elsif ($e->{c}{eof}) {
                $e->{r} = { status => 0 };
                $e->{t} = time;
                $sel->remove($s);
                $left--;
            }
        }
    }
    $_->{c}->close for @$conns;
}

{
    my @others = ((map { ["/plain/o$_"] } 1 .. 50),
                  (map { ["/sleep/s$_", ['X-Sleep' => '0']] } 1 .. 50));
    # warm the upstream connection pool so the others need no new connections
    my @warm = run_concurrent(@others);
    collect(\@warm, 10);
    my $t0 = time;
    my ($sleeper) = run_concurrent(['/sleep/long']);
    sleep 0.02;
    my @c = run_concurrent(@others);
    collect([$sleeper, @c], 15);
    my $ok_all = grep { $_->{r}{status} == 200 } @c;
    is($ok_all, 100, 'sleep: the 100 other requests succeed');
    is($sleeper->{r}{status}, 200, 'sleep: the sleeping request succeeds');
    my ($last_other) = sort { $b <=> $a } map { $_->{t} // 0 } @c;
    ok(defined $sleeper->{t} && $sleeper->{t} > $last_other,
        'sleep: every other request finished before the sleeping one')
      or diag(sprintf "sleeper at %.3f, last other at %.3f", ($sleeper->{t} // 0) - $t0, $last_other - $t0);
    ok(($sleeper->{t} // 0) - $t0 >= 0.45 * mult(), 'sleep: the sleeping request took its 0.5 s');
    my $slept = json_body($sleeper->{r});
    my $hv = $slept ? $slept->{headers}{'x-slept'} : undef;
    ok(defined $hv && $hv >= 0.45 * mult(), 'sleep: gw.now() moved by the sleep (X-Slept upstream)')
      or diag("X-Slept: " . ($hv // 'none'));
}

# a client that disconnects while its request sleeps in Lua
{
    clear_upstream_log($up);
    my $log_before = length gateway_log($gw);
    my $c = gw_connect($gw->{port});
    $c->write(build_request('GET', '/sleep/gone'));
    sleep 0.1;
    $c->close;
    sleep 0.7 * mult();
    for my $i (1 .. 3) {
        my $x = http_request($gw->{port}, 'GET', "/sleep/after$i", headers => ['X-Sleep' => '0.01']);
        is($x->{status}, 200, "disconnect while sleeping: request $i after it works");
    }
    $r = http_request($gw->{port}, 'GET', '/plain/after-disconnect');
    is($r->{status}, 200, 'disconnect while sleeping: plain route works');
    # a second one that leaves during a gw.http.request-free sleep, then the
    # connection is reused by nobody: the worker stays up
    ok(kill(0, $gw->{pid}), 'disconnect while sleeping: the gateway lives');
    unlike(substr(gateway_log($gw), $log_before),
        qr/AddressSanitizer|runtime error:|worker .* (died|exited|killed)/i,
        'disconnect while sleeping: no sanitizer report, no worker death');
}

# a client that disconnects while its plugin waits for gw.http.request
{
    my $log_before = length gateway_log($gw);
    my $c = gw_connect($gw->{port});
    $c->write(build_request('GET', '/http-gone/1'));
    sleep 0.1;
    $c->close;
    sleep 0.9 * mult();
    $r = http_request($gw->{port}, 'GET', '/http/after-gone');
    is($r->{status}, 200, 'disconnect during http.request: next gw.http.request works');
    is((json_body($r) // {})->{status}, 200, 'disconnect during http.request: its result is right');
    unlike(substr(gateway_log($gw), $log_before),
        qr/AddressSanitizer|runtime error:|worker .* (died|exited|killed)/i,
        'disconnect during http.request: no sanitizer report, no worker death');
}

# gw.exit keeps the connection alive
{
    my $c = gw_connect($gw->{port});
    my $a = $c->request('GET', '/exit-json/k1');
    my $b = $c->request('GET', '/exit-text/k2');
    my $d = $c->request('GET', '/plain/k3');
    is($a && $a->{status}, 201, 'keep-alive: gw.exit answer 1');
    is($b && $b->{status}, 418, 'keep-alive: gw.exit answer 2 on the same connection');
    is($d && $d->{status}, 200, 'keep-alive: a proxied request after them');
    $c->close;
}

# priorities within a route
$r = http_request($gw->{port}, 'GET', '/order/1');
is($r->{status}, 200, 'order: 200');
is(up_header(last_up($up), 'X-Order'), 't-order-hi,t-order-mid,t-order-lo',
    'order: access runs by priority, higher first');
is($r->{headers}{'x-hf-order'}, 't-order-hi,t-order-mid,t-order-lo',
    'order: header_filter runs by priority too');

# header_filter
$r = http_request($gw->{port}, 'GET', '/hf/1');
is($r->{status}, 200, 'header_filter: 200');
is($r->{headers}{'x-hf'}, 'set:200', 'header_filter: response header set (sees the status)');
ok(!exists $r->{headers}{'x-upstream'}, 'header_filter: response header removed');
is((json_body($r) // {})->{uri}, '/hf/1', 'header_filter: body untouched');

# body_filter
$r = http_request($gw->{port}, 'GET', '/upper/abc');
is($r->{status}, 200, 'body_filter: 200');
my $plain = http_request($gw->{port}, 'GET', '/plain/abc');
like($r->{body}, qr/"URI":"\/UPPER\/ABC"/, 'body_filter: body upper-cased');
is(length($r->{body}), length($plain->{body}), 'body_filter: whole body (same length as unfiltered)');
like($r->{headers}{'transfer-encoding'} // '', qr/chunked/i, 'body_filter: Transfer-Encoding chunked');
ok(!exists $r->{headers}{'content-length'}, 'body_filter: no Content-Length');
$r = http_request($gw->{port}, 'GET', '/chunked');
is($r->{body}, 'CHUNK-ONE|CHUNK-TWO|CHUNK-THREE', 'body_filter: chunked upstream body upper-cased');

# log phase
$r = http_request($gw->{port}, 'GET', '/log/1');
is($r->{status}, 200, 'log phase: 200');
ok(wait_for(sub { gateway_log($gw) =~ /t-log line route=log status=200/ }, 3),
    'log phase: gw.log("info", ...) line in the error log');

# error phase replaces a gateway-made 502
$r = http_request($gw->{port}, 'GET', '/err/1');
is($r->{status}, 200, 'error phase: 502 replaced by 200');
like($r->{headers}{'content-type'} // '', qr{^application/json}, 'error phase: JSON');
is_deeply(json_body($r), { replaced => JSON::PP::true, kind => 'upstream_error', was => 502 },
    'error phase: body from the plugin, err.kind and err.status');
is($r->{headers}{'x-replaced'}, '1', 'error phase: headers from the plugin');
$r = http_request($gw->{port}, 'GET', '/err-none/1');
gw_error_ok($r, 502, 'no error plugin: plain 502');

no_worker_died($gw, 'gateway 1');
is(stop_gateway($gw), 0, 'gateway 1: SIGTERM exit 0');

# --- global plugins before route plugins ------------------------------------

my $gw2 = start_gateway(config => {
    gateway   => { plugin_paths => [$pdir] },
    upstreams => [{ name => 'a', nodes => ["127.0.0.1:$up->{port}"] },
                  { name => 'down', nodes => ["127.0.0.1:$closed"] }],
    plugins   => { 't-order-g' => {}, 't-err' => { kind => 'not_found' } },
    routes    => [
        route('order', '/order/*', { 't-order-lo' => {}, 't-order-hi' => {} }),
        route('bare', '/bare/*'),
        route('exit-json', '/exit-json/*', { 't-exit' => { mode => 'json' } }),
        route('down', '/down/*', undef, upstream => 'down'),
    ],
});
$r = http_request($gw2->{port}, 'GET', '/order/1');
is($r->{status}, 200, 'global order: 200');
is(up_header(last_up($up), 'X-Order'), 't-order-g,t-order-hi,t-order-lo',
    'global order: the global plugin (priority 10) runs before route plugins (900, 100)');
is($r->{headers}{'x-hf-order'}, 't-order-g,t-order-hi,t-order-lo',
    'global order: header_filter too');
$r = http_request($gw2->{port}, 'GET', '/bare/1');
is($r->{status}, 200, 'global on a route with no plugins of its own: 200');
is(up_header(last_up($up), 'X-Order'), 't-order-g', 'global on a bare route: it ran');
$r = http_request($gw2->{port}, 'GET', '/none/1');
is($r->{status}, 200, 'global, no route: the global error plugin replaced the 404');
is_deeply(json_body($r), { replaced => JSON::PP::true, kind => 'not_found', was => 404 },
    'global, no route: err.kind not_found, err.status 404');
# header_filter runs on responses the gateway makes too (docs/plugins/writing.md)
$r = http_request($gw2->{port}, 'GET', '/exit-json/1');
is($r->{status}, 201, 'gw.exit with a global header_filter: 201');
is($r->{headers}{'x-hf-order'}, 't-order-g', 'header_filter runs on a gw.exit response');
$r = http_request($gw2->{port}, 'GET', '/down/1');
gw_error_ok($r, 502, 'gateway-made 502 with a global header_filter');
is($r->{headers}{'x-hf-order'}, 't-order-g', 'header_filter runs on a gateway-made error');

no_worker_died($gw2, 'gateway 2');
is(stop_gateway($gw2), 0, 'gateway 2: SIGTERM exit 0');

# --- gateway.lua_memory: an allocation past it fails, the worker lives ------

plugin_file('t-hog', <<'LUA');
-- keeps what it allocates: ?mb=N adds N MiB to a module-level list (in
-- 64 KiB strings); ?big=N allocates N MiB for the time of the request
local plugin = { name = "t-hog", priority = 100 }
local kept = {}
function plugin.access(conf, ctx)
  local big = tonumber((gw.req.query_arg("big")))
  if big then local s = string.rep("x", big * 1024 * 1024) end
  local n = (tonumber((gw.req.query_arg("mb"))) or 0) * 16
  for i = 1, n do kept[#kept + 1] = string.rep(string.char(65 + #kept % 26), 65536 - 64) .. #kept end
  return gw.exit(200, { kept = #kept })
end
return plugin
LUA
my $gw3 = start_gateway(config => {
    gateway   => { plugin_paths => [$pdir], lua_memory => '32m' },
    upstreams => [{ name => 'a', nodes => ["127.0.0.1:$up->{port}"] }],
    routes    => [route('hog', '/hog/*', { 't-hog' => {} }), route('plain', '/plain/*')],
});
$r = http_request($gw3->{port}, 'GET', '/hog/1?mb=8');
is($r->{status}, 200, 'lua_memory: under the limit, 200');
my $t0 = time;
$r = http_request($gw3->{port}, 'GET', '/hog/1?big=40', timeout => 5);
gw_error_ok($r, 500, 'lua_memory: the request whose allocation would cross it');
ok(time - $t0 < 3 * mult(), 'lua_memory: that 500 comes at once');
like(gateway_log($gw3), qr/plugin t-hog failed in access: not enough memory/,
    'lua_memory: the refused allocation is logged');
$r = http_request($gw3->{port}, 'GET', '/hog/1');
is($r->{status}, 200, 'lua_memory: the next Lua request is served');
# what the plugin keeps fills the VM: once a full collection leaves less
# than a sixteenth free, Lua requests get 500 without running
my $refused;
for my $i (1 .. 60) {
    $r = http_request($gw3->{port}, 'GET', '/hog/1?mb=1');
    last if ($refused = gateway_log($gw3) =~ /lua memory near gateway\.lua_memory \(\d+ of 32 MiB after a full collection\): request \S+ refused/);
}
ok($refused, 'lua_memory: nearly full after a full collection: refused, logged');
gw_error_ok($r, 500, 'lua_memory: nearly full');
$r = http_request($gw3->{port}, 'GET', '/plain/1');
is($r->{status}, 200, 'lua_memory: a route without plugins is served');
no_worker_died($gw3, 'gateway 3');
my ($code, $out) = check_config(config => {
    gateway => { lua_memory => '1m' },
    upstreams => [{ name => 'a', nodes => ['127.0.0.1:1'] }],
    routes => [{ name => 'r', match => { path => '/*' }, upstream => 'a' }],
});
is($code, 1, 'lua_memory under 16m: config error');
like($out, qr/gateway\.lua_memory: must be at least 16m/, 'lua_memory: the error names the key');
# A plugin that holds the worker (a busy loop, 600 ms of wall time) before
# the first connection to the node: the connect timeout (200 ms) counts from
# when the connection is opened, not from the loop's clock of before the
# loop, so the request gets the node's answer, not a connect timeout.
plugin_file('t-busy', <<'LUA');
local plugin = { name = "t-busy", priority = 100, schema = { type = "object" } }
function plugin.access(conf, ctx)
  local t0 = gw.now()
  while gw.now() - t0 < 0.6 do end
end
return plugin
LUA
{
    my $bup = start_upstream(name => 'busy-node');
    my $gwb = start_gateway(config => {
        gateway   => { plugin_paths => [$pdir] },
        upstreams => [{ name => 'b', nodes => ["127.0.0.1:$bup->{port}"],
                        timeouts => { connect => '200ms' } }],
        routes    => [{ name => 'busy', match => { path => '/busy/*' }, upstream => 'b',
                        plugins => { 't-busy' => {} } }],
    });
    my $rb = http_request($gwb->{port}, 'GET', '/busy/1', timeout => 10);
    is($rb->{status}, 200, 'a plugin held the worker 600 ms: the new connection is not timed out at once');
    is(($rb->{headers}{'x-upstream'} // ''), 'busy-node', 'and the answer is the node\'s');
    unlike(gateway_log($gwb), qr/connect.*timed out|timed out.*connect/i, 'no connect timeout logged');
}

stop_all();
done_testing();
