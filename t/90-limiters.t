# limit-period and limit-token against a real redis-server: the keys, values
# and TTLs are the ones go-zero's periodlimit and tokenlimit write, and a
# count started by another service running go-zero's scripts (written here
# from their published behaviour, run with EVAL) is shared with the gateway
# both ways. Also: the X-RateLimit headers and the 429, keys by consumer,
# header, route and var, policy local, no redis section, align, NOSCRIPT
# after SCRIPT FLUSH, config errors at -t, gw.redis from a plugin, /metrics.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use GwTest;
use GwRedisFixtures;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();
plan skip_all => 'redis-server not installed' unless have_redis();

# go-zero's scripts, as another service runs them: $GZ_PERIOD, $GZ_TOKEN
# (t/lib/GwRedisFixtures.pm).

my $rd = start_redis();

sub gz_period {
    my ($key, $quota, $window) = @_;
    return redis_cmd($rd, 'EVAL', $GZ_PERIOD, 1, $key, $quota, $window);
}

sub gz_token {
    my ($key, $rate, $burst, $now) = @_;
    return redis_cmd($rd, 'EVAL', $GZ_TOKEN, 2, "{$key}.tokens", "{$key}.ts", $rate, $burst,
        $now, 1);
}

# --- plugins of our own -------------------------------------------------------

my $pdir = tmpdir() . '/plugins';
mkdir $pdir or die "mkdir $pdir: $!";
{
    open my $fh, '>', "$pdir/t-redis.lua" or die $!;
    print $fh <<'LUA';
-- gw.redis from an operator's plugin: X-Op picks what to run, the answer is
-- a JSON report of what gw.redis returned.
local plugin = { name = "t-redis", priority = 100 }

local function show(v, err)
  if v == nil then return { is_nil = true, err = err } end
  if v == gw.null then return { is_null = true } end
  return { value = v, type = type(v) }
end

function plugin.access(conf, ctx)
  local op = gw.req.header("X-Op")
  local out = {}
  if op == "basic" then
    out.set = show(gw.redis("SET", "gwr:k", "v1"))
    out.get = show(gw.redis("GET", "gwr:k"))
    out.del = show(gw.redis("DEL", "gwr:n"))
    out.incr = show(gw.redis("INCR", "gwr:n"))
    out.incrby = show(gw.redis("INCRBY", "gwr:n", 41))
    out.bin = show(gw.redis("SET", "gwr:bin", "a\0b\r\nc"))
    out.strlen = show(gw.redis("STRLEN", "gwr:bin"))
  elseif op == "error" then
    out.wrongtype = show(gw.redis("INCR", "gwr:k"))
    out.unknown = show(gw.redis("NOSUCHCOMMAND", "x"))
  elseif op == "nil" then
    out.get = show(gw.redis("GET", "gwr:missing"))
  elseif op == "array" then
    gw.redis("DEL", "gwr:l")
    gw.redis("RPUSH", "gwr:l", "a", "b", "c")
    out.lrange = gw.redis("LRANGE", "gwr:l", 0, -1)
    out.mget = gw.redis("MGET", "gwr:k", "gwr:missing", "gwr:l2")
    out.mget_second_is_null = out.mget[2] == gw.null
    out.nested = gw.redis("EVAL", "return {1, 'two', {3, 'four'}}", 0)
    out.errinside = gw.redis("EVAL", "return {7, redis.error_reply('boom')}", 0)
    out.empty_len = #gw.redis("LRANGE", "gwr:none", 0, -1)
  elseif op == "types" then
    local ok1, e1 = pcall(gw.redis, "SET", "gwr:t", {})
    local ok2, e2 = pcall(gw.redis)
    local ok3, e3 = pcall(gw.redis, "SET", "gwr:t", true)
    local ok4, e4 = pcall(gw.redis, "SET", "gwr:t", nil)
    out.table = { ok = ok1, err = tostring(e1) }
    out.none = { ok = ok2, err = tostring(e2) }
    out.bool = { ok = ok3, err = tostring(e3) }
    out["nil"] = { ok = ok4, err = tostring(e4) }
  elseif op == "none" then
    out.ping = show(gw.redis("PING"))
  end
  return gw.exit(200, out)
end

-- a waiting call in another phase
function plugin.header_filter(conf, ctx)
  if gw.req.header("X-HF") then
    local n = gw.redis("INCR", "gwr:hf")
    gw.resp.set_header("X-HF-Count", tostring(n))
  end
end

return plugin
LUA
    close $fh;
}

# --- the gateway ----------------------------------------------------------------

my $up = start_upstream(name => 'a');

sub route {
    my ($name, $plugins) = @_;
    return { name => $name, match => { path => "/$name/*" }, upstream => 'a',
             strip_prefix => "/$name", plugins => $plugins };
}

sub pconf { return { 'limit-period' => { @_ } } }
sub tconf { return { 'limit-token' => { @_ } } }

# A time zone with a half-hour offset (POSIX TZ: UTC+5:30), so that align
# shows the offset is applied.
my $TZ_OFFSET = 5 * 3600 + 1800;
my $gw;
{
    local $ENV{TZ} = 'IST-5:30';
    $gw = start_gateway(config => {
        gateway   => { plugin_paths => [$pdir] },
        redis     => { addr => "127.0.0.1:$rd->{port}", timeout => '500ms' },
        upstreams => [{ name => 'a', nodes => ["127.0.0.1:$up->{port}"] }],
        consumers => [{ name => 'alice', 'key-auth' => { key => 'alice-key' } },
                      { name => 'bob', 'key-auth' => { key => 'bob-key' } }],
        routes    => [
            route('p', pconf(period => 30, quota => 5, key => 'header:X-User')),
            route('pip', pconf(period => 30, quota => 3)),
            route('t', tconf(rate => 1, burst => 5, key => 'header:X-User')),
            route('tslow', tconf(rate => 0.01, burst => 5, key => 'header:X-User')),
            route('tsmall', tconf(rate => 10, burst => 2, key => 'header:X-User')),
            route('flush', { %{ pconf(period => 60, quota => 100, key => 'header:X-User') },
                             %{ tconf(rate => 0.01, burst => 100, key => 'header:X-User') } }),
            route('cons', { 'key-auth' => {}, %{ pconf(period => 60, quota => 2, key => 'consumer') } }),
            route('hdr', pconf(period => 60, quota => 2, key => 'header:X-User')),
            route('byroute', pconf(period => 60, quota => 3, key => 'route')),
            route('byvar', pconf(period => 60, quota => 3, key => 'var:remote_addr')),
            route('sms', pconf(period => 60, quota => 2, key => 'header:X-User', prefix => 'sms:')),
            route('loc', pconf(period => 60, quota => 2, policy => 'local')),
            route('loct', tconf(rate => 0.01, burst => 2, policy => 'local')),
            route('quiet', pconf(period => 60, quota => 1, show_headers => JSON::PP::false)),
            route('deg', { %{ pconf(period => 60, quota => 1) },
                           degradation => { on => ['limited'], status => 200,
                                            json => { status => 'QUEUED' } } }),
            route('hour', pconf(period => 3600, quota => 10, align => JSON::PP::true)),
            route('day', pconf(period => 86400, quota => 10, align => JSON::PP::true)),
            route('rp', { 't-redis' => {} }),
        ],
    });
}
ok(wait_for(sub { gateway_log($gw) =~ /redis 127\.0\.0\.1:$rd->{port}: connected/ }, 5),
   'the worker connected to redis') or diag gateway_log($gw);

sub req {
    my ($path, @h) = @_;
    return http_request($gw->{port}, 'GET', $path, headers => \@h);
}

sub hdr { my ($r, $n) = @_; return $r->{headers}{ lc $n } }

sub metrics {
    my ($g) = @_;
    return http_request($g->{status_port}, 'GET', '/metrics')->{body} // '';
}

# The value of one series (name with its labels as written), 0 when absent.
sub metric {
    my ($g, $series) = @_;
    my $body = metrics($g);
    return $body =~ /^\Q$series\E (\S+)$/m ? $1 + 0 : 0;
}

sub ttl_ok {
    my ($key, $want, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $t = redis_cmd($rd, 'TTL', $key);
    ok(defined $t && $t <= $want && $t >= $want - 1, "$name: TTL of $key is $want (got "
       . ($t // 'undef') . ")");
}

# Sleeps, if needed, so that what follows starts early in a second.
sub early_in_second {
    my $f = time - int(time);
    sleep(1.02 - $f) if $f > 0.3;
    return int(time);
}

my %rejected; # 429s the gateway gave, by route

# --- limit-period: the keys go-zero writes ----------------------------------------

{
    my @codes;
    for my $i (1 .. 7) {
        my $r = req('/p/x', 'X-User' => 'twin-a');
        push @codes, $r->{status};
        is(hdr($r, 'X-RateLimit-Limit'), 5, "period request $i: X-RateLimit-Limit");
        is(hdr($r, 'X-RateLimit-Remaining'), $i < 5 ? 5 - $i : 0, "period request $i: Remaining");
        my $reset = hdr($r, 'X-RateLimit-Reset') // -1;
        ok($reset >= 29 && $reset <= 30, "period request $i: Reset is the TTL ($reset)");
        if ($i > 5) {
            $rejected{p}++;
            error_envelope_is($r, 429, 'too many requests', "period request $i");
            is(hdr($r, 'Retry-After'), $reset, "period request $i: Retry-After = Reset");
        }
        else {
            ok(!defined hdr($r, 'Retry-After'), "period request $i: no Retry-After");
        }
    }
    is("@codes", '200 200 200 200 200 429 429',
       'period quota 5: four Allowed, the fifth HitQuota still admitted, then OverQuota');
    my @gz = map { gz_period('limit:period:p:twin-b', 5, 30) } 1 .. 7;
    is("@gz", '1 1 1 1 2 0 0', "go-zero's script on a twin key: 1 1 1 1 2 0 0");
    is(redis_cmd($rd, 'GET', 'limit:period:p:twin-a'), 7, 'period key: the count is 7 (rejections count too)');
    is(redis_cmd($rd, 'GET', 'limit:period:p:twin-a'), redis_cmd($rd, 'GET', 'limit:period:p:twin-b'),
       'period key: the same value as go-zero writes');
    is(redis_cmd($rd, 'TYPE', 'limit:period:p:twin-a'), 'string', 'period key: a string');
    ttl_ok('limit:period:p:twin-a', 30, 'period');
    ttl_ok('limit:period:p:twin-b', 30, 'period twin');
    my @keys = sort @{ redis_cmd($rd, 'KEYS', 'limit:period:p:*') };
    is("@keys", 'limit:period:p:twin-a limit:period:p:twin-b', 'period: one key per client, no other');
}

{
    # go-zero's service starts the count, the gateway honours it
    my @gz = map { gz_period('limit:period:p:shared1', 5, 30) } 1 .. 4;
    is("@gz", '1 1 1 1', 'another service took quota - 1');
    redis_cmd($rd, 'EXPIRE', 'limit:period:p:shared1', 25); # its window, already running
    my $r = req('/p/x', 'X-User' => 'shared1');
    is($r->{status}, 200, 'shared count: the gateway admits exactly one more (HitQuota)');
    is(hdr($r, 'X-RateLimit-Remaining'), 0, 'shared count: Remaining 0');
    my $reset = hdr($r, 'X-RateLimit-Reset') // -1;
    ok($reset >= 24 && $reset <= 25, "shared count: Reset is the other service's window ($reset)");
    $r = req('/p/x', 'X-User' => 'shared1');
    is($r->{status}, 429, 'shared count: then 429');
    $rejected{p}++;
    is(gz_period('limit:period:p:shared1', 5, 30), 0, "shared count: go-zero's script sees OverQuota");
    ttl_ok('limit:period:p:shared1', 25, 'shared count: the expiry was never reset');

    # the gateway starts, go-zero's service continues
    is(req('/p/x', 'X-User' => 'shared2')->{status}, 200, 'gateway first: 1') for 1 .. 3;
    @gz = map { gz_period('limit:period:p:shared2', 5, 30) } 1 .. 3;
    is("@gz", '1 2 0', "gateway first: go-zero's script continues the count (4 Allowed, 5 HitQuota, 6 Over)");
    ttl_ok('limit:period:p:shared2', 30, 'gateway first');
}

{
    # default key ip and the default prefix limit:period:<route>:
    my @s = map { req('/pip/x')->{status} } 1 .. 4;
    is("@s", '200 200 200 429', 'key ip: quota 3');
    $rejected{pip}++;
    is(redis_cmd($rd, 'GET', 'limit:period:pip:127.0.0.1'), 4, 'key ip: limit:period:pip:127.0.0.1');
}

# --- limit-token: the keys go-zero writes ---------------------------------------

{
    # rate 1, burst 5: TTL floor(2 x 5 / 1) = 10; three takes within one second
    my ($done, $n) = (0, 0);
    while (!$done && $n++ < 4) {
        my $sec = early_in_second();
        my @s = map { req('/t/x', 'X-User' => "tw$n-a")->{status} } 1 .. 3;
        next unless int(time) == $sec;
        $done = 1;
        is("@s", '200 200 200', 'token: three taken');
        my $base = "{limit:token:t:tw$n-a}";
        is(redis_cmd($rd, 'GET', "$base.tokens"), 2, 'token: {key}.tokens = 2 left');
        is(redis_cmd($rd, 'GET', "$base.ts"), $sec, 'token: {key}.ts = the unix second');
        ttl_ok("$base.tokens", 10, 'token');
        ttl_ok("$base.ts", 10, 'token');
        my @gz = map { gz_token("limit:token:t:tw$n-b", 1, 5, $sec) } 1 .. 3;
        is("@gz", '1 1 1', "go-zero's token script on a twin key: three allowed");
        for my $suffix ('tokens', 'ts') {
            is(redis_cmd($rd, 'GET', "$base.$suffix"),
               redis_cmd($rd, 'GET', "{limit:token:t:tw$n-b}.$suffix"),
               "token: .$suffix has the value go-zero writes");
            is(redis_cmd($rd, 'TYPE', "$base.$suffix"), 'string', "token: .$suffix is a string");
        }
        my @keys = sort @{ redis_cmd($rd, 'KEYS', "*tw$n-a*") };
        is("@keys", "$base.tokens $base.ts", 'token: exactly the two keys');
    }
    ok($done, 'token: three requests fitted in one second');
}

{
    # rate 0.01, burst 5: TTL 1000, no refill to speak of
    my $r;
    is(($r = req('/tslow/x', 'X-User' => 'g1'))->{status}, 200, "token, gateway first: $_") for 1 .. 3;
    is(hdr($r, 'X-RateLimit-Limit'), 5, 'token: X-RateLimit-Limit is the burst');
    is(hdr($r, 'X-RateLimit-Remaining'), 2, 'token: X-RateLimit-Remaining is what is left');
    ttl_ok('{limit:token:tslow:g1}.tokens', 1000, 'token rate 0.01');
    my $ts = redis_cmd($rd, 'GET', '{limit:token:tslow:g1}.ts');
    my @gz = map { gz_token('limit:token:tslow:g1', 0.01, 5, $ts) // 'nil' } 1 .. 3;
    is("@gz", '1 1 nil', "gateway first: go-zero's script takes the 2 left, then is denied");
    $r = req('/tslow/x', 'X-User' => 'g1');
    is($r->{status}, 429, 'gateway first: and the gateway is refused too');
    $rejected{tslow}++;
    is(hdr($r, 'X-RateLimit-Remaining'), 0, 'token 429: Remaining 0');
    ok((hdr($r, 'Retry-After') // 0) >= 1, 'token 429: Retry-After');
    error_envelope_is($r, 429, 'too many requests', 'token 429');

    my $now = int(time);
    @gz = map { gz_token('limit:token:tslow:c1', 0.01, 5, $now) // 'nil' } 1 .. 4;
    is("@gz", '1 1 1 1', 'another service took 4 of 5 tokens');
    my @s = map { req('/tslow/x', 'X-User' => 'c1')->{status} } 1 .. 2;
    is("@s", '200 429', 'service first: the gateway admits exactly the one left');
    $rejected{tslow}++;
    is(gz_token('limit:token:tslow:c1', 0.01, 5, int(time)), undef,
       "service first: go-zero's script is denied afterwards");
    my $ts2 = redis_cmd($rd, "GET", "{limit:token:tslow:c1}.ts");
    ok($ts2 >= $now && $ts2 <= time, 'service first: .ts is a unix second');
}

{
    # burst / rate < 0.5: go-zero's TTL would be 0, which SETEX refuses
    like(gz_token('limit:token:tsmall:gz', 10, 2, int(time)), qr/^ERR:.*expire/i,
         "rate 10 burst 2: go-zero's own script fails (TTL 0)");
    my ($done, $n) = (0, 0);
    while (!$done && $n++ < 4) {
        my $sec = early_in_second();
        my @s = map { req('/tsmall/x', 'X-User' => "s$n")->{status} } 1 .. 3;
        my $pttl = redis_cmd($rd, 'PTTL', "{limit:token:tsmall:s$n}.tokens");
        my $ttl2 = redis_cmd($rd, 'PTTL', "{limit:token:tsmall:s$n}.ts");
        next unless int(time) == $sec;
        $done = 1;
        is("@s", '200 200 429', 'rate 10 burst 2: the gateway works: 2 then 429');
        $rejected{tsmall}++;
        ok($pttl > 0 && $pttl <= 1000, "rate 10 burst 2: .tokens TTL is 1 s (PTTL $pttl)");
        ok($ttl2 > 0 && $ttl2 <= 1000, "rate 10 burst 2: .ts TTL is 1 s (PTTL $ttl2)");
        sleep 1.1;
        is(req('/tsmall/x', 'X-User' => "s$n")->{status}, 200, 'rate 10 burst 2: a second later, allowed');
    }
    ok($done, 'rate 10 burst 2: three requests fitted in one second');
}

# --- NOSCRIPT -----------------------------------------------------------------------

{
    my (@s, @count, @tokens);
    for my $i (1 .. 5) {
        is(redis_cmd($rd, 'SCRIPT', 'FLUSH'), 'OK', "SCRIPT FLUSH $i");
        my $r = req('/flush/x', 'X-User' => 'nf');
        push @s, $r->{status};
        push @count, redis_cmd($rd, 'GET', 'limit:period:flush:nf') // 'nil';
        # whole tokens: a second boundary crossed meanwhile refills 0.01
        my $t = redis_cmd($rd, 'GET', '{limit:token:flush:nf}.tokens');
        push @tokens, defined $t ? int($t) : 'nil';
    }
    is("@s", '200 200 200 200 200', 'SCRIPT FLUSH before each request: never a 5xx');
    is("@count", '1 2 3 4 5', 'SCRIPT FLUSH: the period count goes on in Redis');
    is("@tokens", '99 98 97 96 95', 'SCRIPT FLUSH: the token bucket goes on in Redis');
    my $ex = redis_cmd($rd, 'SCRIPT', 'EXISTS', '0' x 40);
    is_deeply($ex, [0], 'SCRIPT EXISTS answers');
}

# --- keys by consumer, header, route, var; prefix -------------------------------------

{
    my @s = map { req('/cons/x', 'X-API-Key' => 'alice-key')->{status} } 1 .. 3;
    is("@s", '200 200 429', 'key consumer: alice quota 2');
    $rejected{cons}++;
    is(req('/cons/x', 'X-API-Key' => 'bob-key')->{status}, 200, 'key consumer: bob counted apart');
    is(redis_cmd($rd, 'GET', 'limit:period:cons:alice'), 3, 'key consumer: limit:period:cons:alice');
    is(redis_cmd($rd, 'GET', 'limit:period:cons:bob'), 1, 'key consumer: limit:period:cons:bob');
    is(req('/cons/x')->{status}, 401, 'key consumer: key-auth runs first');
    is(redis_cmd($rd, 'GET', 'limit:period:cons:127.0.0.1'), undef, 'key consumer: a 401 is not counted');

    @s = map { req('/hdr/x', 'X-User' => 'u1')->{status} } 1 .. 3;
    is("@s", '200 200 429', 'key header:X-User: u1 quota 2');
    $rejected{hdr}++;
    @s = map { req('/hdr/x', 'X-User' => 'u2')->{status} } 1 .. 2;
    is("@s", '200 200', 'key header:X-User: u2 counted apart');
    @s = map { req('/hdr/x')->{status} } 1 .. 3;
    is("@s", '200 200 429', 'key header:X-User: without the header, counted by client IP');
    $rejected{hdr}++;
    is(redis_cmd($rd, 'GET', 'limit:period:hdr:u1'), 3, 'key header: limit:period:hdr:u1');
    is(redis_cmd($rd, 'GET', 'limit:period:hdr:u2'), 2, 'key header: limit:period:hdr:u2');
    is(redis_cmd($rd, 'GET', 'limit:period:hdr:127.0.0.1'), 3, 'key header: no header -> limit:period:hdr:127.0.0.1');

    my $c = gw_connect($gw->{port});
    $c->write(join '', map { GwTest::build_request('GET', '/hdr/x', headers => ['X-User' => 'pipe']) } 1 .. 3);
    @s = map { my $r = $c->read_response; $r ? $r->{status} : 0 } 1 .. 3;
    $c->close;
    is("@s", '200 200 429', 'pipelined requests on one connection: answered in order');
    $rejected{hdr}++;

    @s = map { req('/byroute/x', 'X-User' => "r$_")->{status} } 1 .. 4;
    is("@s", '200 200 200 429', 'key route: one count for every client');
    $rejected{byroute}++;
    is(redis_cmd($rd, 'GET', 'limit:period:byroute:byroute'), 4, 'key route: limit:period:byroute:byroute');

    @s = map { req('/byvar/x')->{status} } 1 .. 2;
    is("@s", '200 200', 'key var:remote_addr');
    is(redis_cmd($rd, 'GET', 'limit:period:byvar:127.0.0.1'), 2, 'key var: limit:period:byvar:127.0.0.1');

    @s = map { req('/sms/x', 'X-User' => '13800000000')->{status} } 1 .. 3;
    is("@s", '200 200 429', 'prefix sms:');
    $rejected{sms}++;
    is(redis_cmd($rd, 'GET', 'sms:13800000000'), 3, 'prefix: the key is prefix .. key, no separator');
    is(gz_period('sms:13800000000', 2, 60), 0, "prefix: go-zero's script with the same prefix shares it");
}

# --- policy local -------------------------------------------------------------------

{
    my @r = map { req('/loc/x') } 1 .. 3;
    is(join(' ', map { $_->{status} } @r), '200 200 429', 'policy local: quota 2 (one worker: all of it)');
    $rejected{loc}++;
    is(join(' ', map { hdr($_, 'X-RateLimit-Remaining') // '-' } @r), '1 0 0', 'policy local: Remaining');
    my $reset = hdr($r[2], 'X-RateLimit-Reset') // -1;
    ok($reset >= 59 && $reset <= 60, "policy local: Reset ($reset)");
    is(hdr($r[2], 'Retry-After'), $reset, 'policy local: Retry-After');
    @r = map { req('/loct/x') } 1 .. 3;
    is(join(' ', map { $_->{status} } @r), '200 200 429', 'policy local, token: burst 2');
    $rejected{loct}++;
    is_deeply(redis_cmd($rd, 'KEYS', '*loc*'), [], 'policy local: no Redis key written');
}

# --- headers off, degradation -------------------------------------------------------

{
    my $r = req('/quiet/x');
    is($r->{status}, 200, 'show_headers false: 200');
    ok(!(grep { /^x-ratelimit/ } keys %{ $r->{headers} }), 'show_headers false: no X-RateLimit headers');
    $r = req('/quiet/x');
    $rejected{quiet}++;
    gw_error_ok($r, 429, 'show_headers false, refused');
    ok(!(grep { /^x-ratelimit/ } keys %{ $r->{headers} }), 'show_headers false: none on the 429 either');

    clear_upstream_log($up);
    $r = req('/deg/x');
    is($r->{status}, 200, 'degradation on limited: first request proxied');
    $r = req('/deg/x');
    $rejected{deg}++;
    is($r->{status}, 200, 'degradation on limited: the 429 is replaced');
    is((json_body($r) // {})->{status}, 'QUEUED', 'degradation on limited: its JSON');
    is(scalar(upstream_requests($up)), 1, 'degradation on limited: the refused one did not go upstream');
}

# --- align ---------------------------------------------------------------------------

for my $c (['hour', 3600], ['day', 86400]) {
    my ($name, $period) = @$c;
    my $before = time;
    req("/$name/x");
    my $after = time;
    my $ttl = redis_cmd($rd, 'TTL', "limit:period:$name:127.0.0.1");
    # period - ((now + local offset) mod period), for now anywhere in [before, after]
    my $lo = $period - ((int($after) + $TZ_OFFSET) % $period);
    my $hi = $period - ((int($before) + $TZ_OFFSET) % $period);
    ok($ttl >= $lo - 1 && $ttl <= $hi, "align, period $period, TZ +05:30: TTL $ttl, want $lo..$hi");
    my $r = req("/$name/x");
    my $reset = hdr($r, 'X-RateLimit-Reset') // -1;
    ok(abs($reset - $ttl) <= 1, "align, period $period: X-RateLimit-Reset $reset");
}

# --- gw.redis -------------------------------------------------------------------------

{
    my $j = json_body(req('/rp/x', 'X-Op' => 'basic')) // {};
    is_deeply($j->{set}, { value => 'OK', type => 'string' }, 'gw.redis SET: "OK"');
    is_deeply($j->{get}, { value => 'v1', type => 'string' }, 'gw.redis GET: the value');
    is_deeply($j->{incr}, { value => 1, type => 'number' }, 'gw.redis INCR: a number');
    is_deeply($j->{incrby}, { value => 42, type => 'number' }, 'gw.redis INCRBY with a number argument');
    is_deeply($j->{strlen}, { value => 6, type => 'number' }, 'gw.redis: binary-safe arguments');
    is(redis_cmd($rd, 'GET', 'gwr:bin'), "a\0b\r\nc", 'gw.redis: the bytes reached Redis');
    is(redis_cmd($rd, 'GET', 'gwr:n'), 42, 'gw.redis: INCRBY reached Redis');

    $j = json_body(req('/rp/x', 'X-Op' => 'error')) // {};
    ok($j->{wrongtype}{is_nil}, 'gw.redis error reply: nil');
    like($j->{wrongtype}{err} // '', qr/not an integer/, 'gw.redis error reply: the error text');
    ok($j->{unknown}{is_nil}, 'gw.redis unknown command: nil');
    like($j->{unknown}{err} // '', qr/unknown command/i, 'gw.redis unknown command: err');

    $j = json_body(req('/rp/x', 'X-Op' => 'nil')) // {};
    ok($j->{get}{is_null}, 'gw.redis nil reply: gw.null');

    $j = json_body(req('/rp/x', 'X-Op' => 'array')) // {};
    is_deeply($j->{lrange}, ['a', 'b', 'c'], 'gw.redis array reply');
    is_deeply($j->{mget}, ['v1', undef, undef], 'gw.redis array with nils (JSON null)');
    ok($j->{mget_second_is_null}, 'gw.redis: a nil in an array is gw.null');
    is_deeply($j->{nested}, [1, 'two', [3, 'four']], 'gw.redis nested arrays');
    is_deeply($j->{errinside}, [7, JSON::PP::false], 'gw.redis: an error inside an array is false');
    is($j->{empty_len}, 0, 'gw.redis empty array');

    $j = json_body(req('/rp/x', 'X-Op' => 'types')) // {};
    for my $k (qw(table bool nil)) {
        ok(!$j->{$k}{ok}, "gw.redis with a $k argument: raises");
        like($j->{$k}{err} // '', qr/argument \d must be a string or a number/, "gw.redis $k argument: message");
    }
    ok(!$j->{none}{ok}, 'gw.redis with no arguments: raises');
    like($j->{none}{err} // '', qr/command name/, 'gw.redis with no arguments: message');

    my $r = req('/rp/x', 'X-Op' => 'none', 'X-HF' => 1);
    is($r->{status}, 200, 'gw.redis in access and header_filter');
    is(hdr($r, 'X-HF-Count'), 1, 'gw.redis in header_filter: the INCR answer');
    is((json_body($r) // {})->{ping}{value}, 'PONG', 'gw.redis PING: status reply as a string');
}

# --- /metrics --------------------------------------------------------------------------

{
    for my $route (sort keys %rejected) {
        my $plugin = $route =~ /^(t|tslow|tsmall|loct)$/ ? 'limit-token' : 'limit-period';
        is(metric($gw, qq{gateway_limiter_rejections_total{route="$route",plugin="$plugin"}}),
           $rejected{$route}, "metrics: $rejected{$route} rejection(s) on $route/$plugin");
    }
    is(metric($gw, 'gateway_redis_up'), 1, 'metrics: gateway_redis_up 1');
    is(metric($gw, 'gateway_redis_state_changes_total{state="down"}'), 0, 'metrics: no change to down');
    my $fb = 0;
    $fb += $1 while metrics($gw) =~ /^gateway_limiter_fallbacks_total\{[^}]*\} (\d+)$/mg;
    is($fb, 0, 'metrics: no fallback while Redis answers');
}

# --- no redis section: every limiter is local ------------------------------------------

{
    my $g = start_gateway(config => {
        gateway   => { plugin_paths => [$pdir] },
        upstreams => [{ name => 'a', nodes => ["127.0.0.1:$up->{port}"] }],
        routes    => [route('p', pconf(period => 60, quota => 2)),
                      route('t', tconf(rate => 0.01, burst => 1, key => 'header:X-User')),
                      route('rp', { 't-redis' => {} })],
    });
    my @s = map { http_request($g->{port}, 'GET', '/p/x')->{status} } 1 .. 3;
    is("@s", '200 200 429', 'no redis section: limit-period counts locally');
    @s = map { http_request($g->{port}, 'GET', '/t/x', headers => ['X-User' => 'nr'])->{status} } 1 .. 2;
    is("@s", '200 429', 'no redis section: limit-token counts locally');
    my $j = json_body(http_request($g->{port}, 'GET', '/rp/x', headers => ['X-Op' => 'none'])) // {};
    ok($j->{ping}{is_nil}, 'no redis section: gw.redis returns nil');
    is($j->{ping}{err}, 'no redis configured', 'no redis section: gw.redis says why');
    is(metric($g, 'gateway_limiter_fallbacks_total{route="p",plugin="limit-period"}'), 0,
       'no redis section: local answers are not fallbacks');
    is_deeply(redis_cmd($rd, 'KEYS', 'limit:period:p:127*'), [], 'no redis section: nothing in Redis');
    is(stop_gateway($g), 0, 'no redis section: clean exit');
}

# --- config errors at -t --------------------------------------------------------------

{
    my @bad = (
        [pconf(period => 1), qr/^routes\[1\]\.plugins\.limit-period: .*quota/m, 'missing quota'],
        [pconf(period => 0, quota => 1), qr/^routes\[1\]\.plugins\.limit-period\.period: /m, 'period 0'],
        [pconf(period => 1, quota => 1, key => 'cookie:x'), qr/^routes\[1\]\.plugins\.limit-period: .*cookie:x/m,
         'key cookie:x'],
        [pconf(period => 1, quota => 1, policy => 'foo'), qr/^routes\[1\]\.plugins\.limit-period\.policy: /m,
         'policy foo'],
        [pconf(period => 1, quota => 1, on_redis_error => 'x'),
         qr/^routes\[1\]\.plugins\.limit-period\.on_redis_error: /m, 'on_redis_error x'],
        [tconf(rate => 0, burst => 1), qr/^routes\[1\]\.plugins\.limit-token\.rate: /m, 'rate 0'],
        [tconf(rate => 1, burst => 0), qr/^routes\[1\]\.plugins\.limit-token\.burst: /m, 'burst 0'],
        [tconf(rate => 1, burst => 1, key => 'header:'), qr/^routes\[1\]\.plugins\.limit-token: .*header:/m,
         'key header: without a name'],
        [pconf(period => 1, quota => 1, colour => 'red'), qr/^routes\[1\]\.plugins\.limit-period.*colour/m,
         'unknown key'],
    );
    for my $case (@bad) {
        my ($pl, $re, $name) = @$case;
        my ($code, $out) = check_config(config => {
            upstreams => [{ name => 'a', nodes => ['127.0.0.1:1'] }],
            routes => [{ name => 'r0', match => { path => '/' }, upstream => 'a' },
                       { name => 'r1', match => { path => '/x' }, upstream => 'a', plugins => $pl }],
        });
        is($code, 1, "-t, $name: exit 1");
        like($out, $re, "-t, $name: names the YAML path") or diag $out;
    }
    my ($code, $out) = check_config(config => {
        redis => { addr => '127.0.0.1:1', timeout => '100ms' },
        upstreams => [{ name => 'a', nodes => ['127.0.0.1:1'] }],
        routes => [{ name => 'r1', match => { path => '/x' }, upstream => 'a',
                     plugins => { %{ pconf(period => 1, quota => 1, key => 'var:tier', align => JSON::PP::true) },
                                  %{ tconf(rate => 0.5, burst => 3, key => 'consumer', policy => 'local',
                                        on_redis_error => 'deny') } } }],
    });
    is($code, 0, '-t: a good limiter config passes (Redis need not be up)') or diag $out;
}

stop_all();
done_testing();
