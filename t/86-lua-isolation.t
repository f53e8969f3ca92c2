# One plugin must not take down the others: hostile plugins on their own
# routes try to change the standard library, the string metatable, the gw
# API and shared modules, or to exhaust gateway.lua_memory. Each gets a
# clear error (its request 500, logged); every other route of the same
# worker (workers: 1, so one VM) goes on answering 200.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time);
use GwTest;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my $pdir = plugin_dir();

# Uses what the vandal goes after, through globals, methods and modules.
plugin_file('t-victim', <<'LUA');
local plugin = { name = "t-victim", priority = 100 }
local cjson = require "cjson.safe"
function plugin.access(conf, ctx)
  local n = 0
  for k, v in pairs(string) do n = n + 1 end
  local tn = 0
  for k, v in pairs(table) do tn = tn + 1 end
  return gw.exit(200, {
    rep = string.rep("ab", 3),
    fmt = string.format("%d-%s", 7, "x"),
    method = ("%05.1f"):format(2.5),
    upper = ("abc"):upper(),
    concat = table.concat({ "a", "b", "c" }, ","),
    floor = math.floor(2.7),
    band = bit.band(6, 3),
    json = cjson.encode({ 1, 2 }),
    gwjson = gw.json.encode({ k = "v" }),
    header = gw.req.header("X-Probe") or "none",
    remote = gw.var.remote_addr,
    pairs_string = n,
    pairs_table = tn,
    rawget_rep = rawget(string, "rep") == string.rep,
    next_ok = next(string) ~= nil,
  })
end
return plugin
LUA

# ?do=NAME: one attack, not protected (its request should get 500);
# ?do=all: every attack inside pcall, the errors returned as JSON.
plugin_file('t-vandal', <<'LUA');
local plugin = { name = "t-vandal", priority = 100 }
local attacks = {
  rep = function() string.rep = nil end,
  concat = function() table.concat = nil end,
  format = function() string.format = function() return "evil" end end,
  floor = function() math.floor = nil end,
  bit = function() bit.band = nil end,
  meta_index = function() getmetatable("").__index = {} end,
  meta_rep = function() getmetatable("").__index.rep = nil end,
  meta_rawset = function() rawset(getmetatable(""), "__index", {}) end,
  rawset_string = function() rawset(string, "rep", function() return "evil" end) end,
  rawset_table = function() rawset(table, "concat", function() return "evil" end) end,
  setmetatable_string = function() setmetatable(string, nil) end,
  setmetatable_mt = function() setmetatable(getmetatable(""), nil) end,
  gw_req = function() rawset(gw.req, "header", function() return "evil" end) end,
  gw_json = function() rawset(gw.json, "encode", function() return "evil" end) end,
  gw_top = function() rawset(gw, "exit", function() end) end,
  gw_var_mt = function() getmetatable(gw.var).__index = function() return "evil" end end,
  gw_var_rawset = function() rawset(gw.var, "remote_addr", "6.6.6.6") end,
  cjson = function() require("cjson.safe").encode = function() return "evil" end end,
  cjson_raw = function() rawset(require("cjson"), "encode", function() return "evil" end) end,
}
function plugin.access(conf, ctx)
  local what = gw.req.query_arg("do")
  if what == "all" then
    local out = {}
    for name, f in pairs(attacks) do
      local ok, err = pcall(f)
      out[name] = ok and "ALLOWED" or tostring(err)
    end
    -- what a plugin may still change: its own globals
    local ok = pcall(function() myglobal = 1 end)
    out.own_global = ok and "allowed" or "refused"
    return gw.exit(200, out)
  end
  attacks[what]()
  return gw.exit(200, { survived = what })
end
return plugin
LUA

# Memory: ?do=bomb is the issue's 2^30 bomb; grow fills memory in 1 MiB
# steps; half allocates 2^25 bytes (fits) then two more copies (do not);
# caught catches the error and answers.
plugin_file('t-hog', <<'LUA');
local plugin = { name = "t-hog", priority = 100 }
function plugin.access(conf, ctx)
  local what = gw.req.query_arg("do")
  if what == "bomb" then
    local s = string.rep("x", 2^30); local t = { s, s .. "y" }
  elseif what == "half" then
    local s = string.rep("x", 2^25); local t = { s, s .. "y", s .. "z" }
  elseif what == "grow" then
    local t = {}
    for i = 1, 100000 do t[i] = string.rep("y", 2^20 - 64) .. i end
  elseif what == "table" then
    local t = {}
    for i = 1, 2^28 do t[i] = i end
  elseif what == "caught" then
    local ok, err = pcall(string.rep, "x", 2^30)
    return gw.exit(200, { ok = ok, err = tostring(err) })
  end
  return gw.exit(200, { survived = what })
end
return plugin
LUA

# Waits while another request of the worker blows up, then goes on.
plugin_file('t-sleeper', <<'LUA');
local plugin = { name = "t-sleeper", priority = 100 }
function plugin.access(conf, ctx)
  local before = string.rep("s", 1000)
  gw.sleep(tonumber(gw.req.header("X-Sleep")) or 0.5)
  return gw.exit(200, { len = #(before .. string.rep("t", 1000)) })
end
return plugin
LUA

# The same bomb in the phases that run outside the request's coroutine.
plugin_file('t-hog-phases', <<'LUA');
local plugin = { name = "t-hog-phases", priority = 100 }
local function bomb(phase)
  if gw.req.header("X-Bomb") == phase then
    local s = string.rep("x", 2^25); local t = { s, s .. "y", s .. "z" }
  end
end
function plugin.header_filter(conf, ctx) bomb("header_filter") end
function plugin.body_filter(conf, ctx, chunk, eof) bomb("body_filter") return chunk end
function plugin.log(conf, ctx) bomb("log") end
function plugin.error(conf, ctx, err) bomb("error") end
return plugin
LUA

my $up = start_upstream(name => 'a');
my $closed = free_port();

sub route {
    my ($name, $path, $plugins) = @_;
    return { name => $name, match => { path => $path }, upstream => 'a',
             ($plugins ? (plugins => $plugins) : ()) };
}

my $gw = start_gateway(config => {
    gateway   => { plugin_paths => [$pdir], lua_memory => '64m' },
    upstreams => [{ name => 'a', nodes => ["127.0.0.1:$up->{port}"] },
                  { name => 'down', nodes => ["127.0.0.1:$closed"] }],
    routes    => [
        route('victim', '/victim/*', { 't-victim' => {} }),
        route('vandal', '/vandal/*', { 't-vandal' => {} }),
        route('hog', '/hog/*', { 't-hog' => {} }),
        route('keyauth', '/keyauth/*', { 'key-auth' => {} }),
        route('plain', '/plain/*'),
        route('sleeper', '/sleeper/*', { 't-sleeper' => {} }),
        route('phases', '/phases/*', { 't-hog-phases' => {} }),
        { name => 'phases-down', match => { path => '/phases-down/*' }, upstream => 'down',
          plugins => { 't-hog-phases' => {} } },
    ],
    consumers => [{ name => 'alice', 'key-auth' => { key => 'k-alice' } }],
});

my %want = (rep => 'ababab', fmt => '7-x', method => '002.5', upper => 'ABC',
            concat => 'a,b,c', floor => 2, band => 2, json => '[1,2]',
            gwjson => '{"k":"v"}', header => 'p', remote => '127.0.0.1', rawget_rep => JSON::PP::true,
            next_ok => JSON::PP::true);

# The victim route and a built-in plugin's route answer as they should.
sub others_fine {
    my ($after) = @_;
    my $t0 = time;
    my $r = http_request($gw->{port}, 'GET', '/victim/1', headers => ['X-Probe' => 'p'],
                         timeout => 3);
    my $took = time - $t0;
    is($r->{status}, 200, "after $after: another plugin's route answers 200")
        or diag($r->{body});
    ok($took < 2 * mult(), "after $after: promptly") or diag("took ${took}s");
    my $j = json_body($r) // {};
    for my $k (sort keys %want) {
        is($j->{$k}, $want{$k}, "after $after: $k intact") or diag($r->{body});
    }
    ok(($j->{pairs_string} // 0) >= 10, "after $after: pairs(string) lists the library");
    ok(($j->{pairs_table} // 0) >= 4, "after $after: pairs(table) lists the library");
    $r = http_request($gw->{port}, 'GET', '/keyauth/1', headers => ['X-API-Key' => 'k-alice']);
    is($r->{status}, 200, "after $after: key-auth route answers 200");
    $r = http_request($gw->{port}, 'GET', '/keyauth/1');
    is($r->{status}, 401, "after $after: key-auth still refuses a missing key");
}

others_fine('start');

# Every attack at once, each inside pcall: each is refused with a message
# that names what is read-only.
my $r = http_request($gw->{port}, 'GET', '/vandal/1?do=all');
is($r->{status}, 200, 'attacks in pcall: the vandal itself goes on');
my $res = json_body($r) // {};
my %names = (rep => qr/string\.rep is read-only/, concat => qr/table\.concat is read-only/,
             format => qr/string\.format is read-only/, floor => qr/math\.floor is read-only/,
             bit => qr/bit\.band is read-only/,
             meta_index => qr/string metatable.*read-only/,
             meta_rep => qr/string\.rep is read-only/,
             meta_rawset => qr/rawset: .*read-only/, rawset_string => qr/rawset: string is read-only/,
             rawset_table => qr/rawset: table is read-only/,
             setmetatable_string => qr/protected metatable/,
             setmetatable_mt => qr/protected metatable/,
             gw_req => qr/rawset: gw\.req is read-only/, gw_json => qr/rawset: gw\.json is read-only/,
             gw_top => qr/rawset: gw is read-only/, gw_var_mt => qr/attempt to index/,
             gw_var_rawset => qr/rawset: gw\.var is read-only/,
             cjson => qr/cjson\.safe\.encode is read-only/,
             cjson_raw => qr/rawset: cjson is read-only/);
for my $k (sort keys %names) {
    like($res->{$k} // 'missing', $names{$k}, "attack $k in pcall: refused with a clear error");
    unlike($res->{$k} // '', qr/ALLOWED/, "attack $k: not allowed");
}
is($res->{own_global}, 'allowed', 'a plugin still has globals of its own');
others_fine('attacks in pcall');

# Each attack unprotected: its request gets 500 and the log names the
# plugin and what it tried.
for my $k (sort keys %names) {
    $r = http_request($gw->{port}, 'GET', "/vandal/1?do=$k");
    gw_error_ok($r, 500, "attack $k");
    unlike($r->{body}, qr/read-only|metatable|vandal/, "attack $k: no detail in the answer");
}
my $log = gateway_log($gw);
like($log, qr/plugin t-vandal failed in access: .*string\.rep is read-only/,
     'the log names the plugin and the refused write');
like($log, qr/plugin t-vandal failed in access: .*string metatable.*read-only/,
     'the log names the string metatable');
others_fine('attacks');

# Memory: the allocation that would pass gateway.lua_memory fails at once
# ("not enough memory"), the request gets 500 promptly, the worker goes on.
for my $what (qw(bomb half grow table)) {
    my $t0 = time;
    $r = http_request($gw->{port}, 'GET', "/hog/1?do=$what", timeout => 10);
    my $took = time - $t0;
    gw_error_ok($r, 500, "memory $what");
    ok($took < 3 * mult(), "memory $what: answered within seconds") or diag("took ${took}s");
    others_fine("memory $what");
}
like(gateway_log($gw), qr/plugin t-hog failed in access: .*not enough memory/,
     'memory: the log says not enough memory');
# a request waiting in gw.sleep while another one runs out of memory
my $c = gw_connect($gw->{port});
$c->write(build_request('GET', '/sleeper/1', headers => ['X-Sleep' => 0.5 * mult()]));
$r = http_request($gw->{port}, 'GET', '/hog/1?do=grow', timeout => 10);
is($r->{status}, 500, 'memory grow beside a waiting request: 500');
my $sr = $c->read_response(timeout => 5);
is($sr && $sr->{status}, 200, 'the waiting request finishes: 200');
is((json_body($sr // {}) // {})->{len}, 2000, 'the waiting request: its work is intact');
$c->close;

# header_filter and error fail their request with 500; body_filter and
# log come after the head went out: the request is cut short or only logged
for my $phase (qw(header_filter body_filter log error)) {
    my $t0 = time;
    my $path = $phase eq 'error' ? '/phases-down/1' : '/phases/1';
    $r = http_request($gw->{port}, 'GET', $path, headers => ['X-Bomb' => $phase], timeout => 10);
    my $took = time - $t0;
    if ($phase eq 'header_filter') {
        gw_error_ok($r, 500, "memory in $phase");
    } elsif ($phase eq 'log') {
        is($r->{status}, 200, "memory in $phase: the response was already sent");
    } elsif ($phase eq 'error') {
        is($r->{status}, 502, "memory in $phase: the gateway's own answer stays");
    }
    ok($took < 3 * mult(), "memory in $phase: no wait") or diag("took ${took}s");
    others_fine("memory in $phase");
}
like(gateway_log($gw), qr/plugin t-hog-phases failed in header_filter: .*not enough memory/,
     'memory in header_filter: logged');
like(gateway_log($gw), qr/plugin t-hog-phases failed in log: .*not enough memory/,
     'memory in log: logged');
$r = http_request($gw->{port}, 'GET', '/hog/1?do=caught');
is($r->{status}, 200, 'memory error caught by the plugin: 200');
my $cj = json_body($r) // {};
ok(!$cj->{ok} && ($cj->{err} // '') =~ /not enough memory/, 'pcall(string.rep, 2^30): not enough memory')
    or diag($r->{body});
# repeated bombs do not wear the worker down
for my $i (1 .. 5) {
    $r = http_request($gw->{port}, 'GET', '/hog/1?do=half', timeout => 10);
    is($r->{status}, 500, "memory half, round $i: 500");
}
others_fine('repeated memory errors');
$r = http_request($gw->{port}, 'GET', '/plain/1');
is($r->{status}, 200, 'a route without plugins: 200');

my @died = gateway_log($gw) =~ /(master: worker \d+ .*(?:killed by signal|exited with status).*)/g;
is(scalar(@died), 0, 'no worker died') or diag(join "\n", @died);
is(stop_gateway($gw), 0, 'SIGTERM exit 0');

# The bomb under the default lua_memory (512m): refused at once, no 1 GiB
# string is ever made.
my $gw2 = start_gateway(config => {
    gateway   => { plugin_paths => [$pdir] },
    upstreams => [{ name => 'a', nodes => ["127.0.0.1:$up->{port}"] }],
    routes    => [route('victim', '/victim/*', { 't-victim' => {} }),
                  route('hog', '/hog/*', { 't-hog' => {} })],
});
my $t0 = time;
$r = http_request($gw2->{port}, 'GET', '/hog/1?do=bomb', timeout => 10);
my $took = time - $t0;
gw_error_ok($r, 500, 'default lua_memory: the 2^30 bomb');
ok($took < 2 * mult(), 'default lua_memory: answered at once') or diag("took ${took}s");
$r = http_request($gw2->{port}, 'GET', '/victim/1', headers => ['X-Probe' => 'p']);
is($r->{status}, 200, 'default lua_memory: the next request on the worker: 200');
like(gateway_log($gw2), qr/plugin t-hog failed in access: not enough memory/,
     'default lua_memory: logged');
is(stop_gateway($gw2), 0, 'gateway 2: SIGTERM exit 0');
stop_all();
done_testing();
