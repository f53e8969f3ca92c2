package GwRedisFixtures;

# What the Redis test files and modules share: go-zero's two limiter
# scripts (written from their published behaviour, run with EVAL by a test
# playing another service), `-t` on a config whose only variable part is
# its redis section, and the wait for a spawned redis-server to answer.

use strict;
use warnings;

use Exporter 'import';
use POSIX qw(:sys_wait_h);
use GwTest;

our @EXPORT = qw($GZ_PERIOD $GZ_TOKEN check_redis_yaml redis_wait_up);

# periodlimit: ARGV quota, window; 1 Allowed, 2 HitQuota, 0 OverQuota.
our $GZ_PERIOD = <<'LUA';
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local current = redis.call("INCRBY", KEYS[1], 1)
if current == 1 then
    redis.call("EXPIRE", KEYS[1], window)
end
if current < limit then
    return 1
elseif current == limit then
    return 2
end
return 0
LUA

# tokenlimit: KEYS {k}.tokens {k}.ts; ARGV rate, capacity, now, requested.
# Returns true (integer 1: allowed) or false (nil: denied).
our $GZ_TOKEN = <<'LUA';
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local requested = tonumber(ARGV[4])
local ttl = math.floor(capacity / rate * 2)
local tokens = tonumber(redis.call("GET", KEYS[1]))
if tokens == nil then tokens = capacity end
local last = tonumber(redis.call("GET", KEYS[2]))
if last == nil then last = 0 end
local filled = math.min(capacity, tokens + math.max(0, now - last) * rate)
local allowed = filled >= requested
if allowed then filled = filled - requested end
redis.call("SETEX", KEYS[1], ttl, filled)
redis.call("SETEX", KEYS[2], ttl, now)
return allowed
LUA

my $base = <<'EOF';
gateway:
  listen: ["127.0.0.1:%d"]
upstreams:
  - {name: a, nodes: ["127.0.0.1:1"]}
routes:
  - {match: {path: /}, upstream: a}
EOF

# check_redis_yaml(PREFIX, REDIS_YAML): check_config on a one-route config
# ending in REDIS_YAML, written to tmpdir()/PREFIX-<port>.yaml.
sub check_redis_yaml {
    my ($prefix, $redis) = @_;
    my $file = tmpdir() . "/$prefix-" . free_port() . ".yaml";
    spew_file($file, sprintf($base, free_port()) . $redis);
    return check_config(file => $file);
}

# redis_wait_up(NODE, WHAT): until the redis-server spawned as NODE->{pid}
# answers PING with PONG; dies naming WHAT, with its output, when it exits
# or does not answer in time.
sub redis_wait_up {
    my ($n, $what) = @_;
    my $ok = wait_for(sub {
        return -1 if waitpid($n->{pid}, WNOHANG) == $n->{pid};
        my $r = eval { redis_cmd($n, 'PING') };
        return defined $r && $r eq 'PONG';
    }, 10);
    die "$what did not start on $n->{port}: " . slurp_file("$n->{dir}/stdout")
      unless $ok && $ok > 0;
}

1;
