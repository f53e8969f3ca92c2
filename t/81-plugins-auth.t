# The auth plugins through the real gateway: key-auth, jwt-auth (HS256,
# RS256, ES256 and the usual forgeries) and ip-restriction. Every refusal is
# checked for its status, its JSON body and that nothing reached the upstream.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(hmac_sha256 hmac_sha384);
use MIME::Base64 qw(encode_base64);
use JSON::PP;
use GwTest;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();
my $have_openssl = system('openssl version >/dev/null 2>&1') == 0;

my $dir  = tmpdir();
my $pdir = "$dir/plugins";
mkdir $pdir or die "mkdir $pdir: $!";
my $JSON = JSON::PP->new->canonical;

# a plugin that shows the consumer to the upstream
spew_file("$pdir/t-whoami.lua", <<'LUA');
local plugin = { name = "t-whoami", priority = 100 }
function plugin.access(conf, ctx)
  gw.req.set_header("X-Consumer", gw.var.consumer or "-")
  if ctx.jwt_claims then gw.req.set_header("X-Claim-Sub", tostring(ctx.jwt_claims.sub)) end
end
return plugin
LUA

# --- tokens ----------------------------------------------------------------

sub b64url {
    my ($s) = @_;
    return encode_base64($s, '') =~ tr{+/}{-_}r =~ s/=+$//r;
}

sub jwt_parts {
    my ($header, $claims) = @_;
    return b64url(ref $header ? $JSON->encode($header) : $header) . '.'
      . b64url(ref $claims ? $JSON->encode($claims) : $claims);
}

sub hs256 {
    my ($claims, $secret, %o) = @_;
    my $in = jwt_parts($o{header} // { alg => 'HS256', typ => 'JWT' }, $claims);
    return "$in." . b64url(hmac_sha256($in, $secret));
}

# Signs $in with an openssl private key; raw signature bytes (DER for EC).
sub openssl_sign {
    my ($key, $in) = @_;
    spew_file("$dir/in.txt", $in);
    system('openssl', 'dgst', '-sha256', '-sign', $key, '-out', "$dir/sig.bin", "$dir/in.txt") == 0
      or die "openssl dgst failed";
    return slurp_file("$dir/sig.bin");
}

# DER ECDSA-Sig-Value -> raw r||s, 32 bytes each
sub der_to_raw {
    my ($der) = @_;
    my @b = unpack 'C*', $der;
    my $i = 0;
    die "not a SEQUENCE" unless $b[$i++] == 0x30;
    my $len = $b[$i++];
    $i += ($len & 0x7f) if $len & 0x80;
    my @out;
    for (1 .. 2) {
        die "not an INTEGER" unless $b[$i++] == 0x02;
        my $n = $b[$i++];
        my $v = pack 'C*', @b[$i .. $i + $n - 1];
        $i += $n;
        $v =~ s/^\x00+//;
        push @out, ("\x00" x (32 - length $v)) . $v;
    }
    return join '', @out;
}

sub rs256 {
    my ($claims, $key, %o) = @_;
    my $in = jwt_parts($o{header} // { alg => 'RS256', typ => 'JWT' }, $claims);
    return "$in." . b64url(openssl_sign($key, $in));
}

sub es256 {
    my ($claims, $key) = @_;
    my $in = jwt_parts({ alg => 'ES256', typ => 'JWT' }, $claims);
    return "$in." . b64url(der_to_raw(openssl_sign($key, $in)));
}

my (%pem, %key);
if ($have_openssl) {
    for my $k (['rsa', 'RSA', 'rsa_keygen_bits:2048'], ['rsa2', 'RSA', 'rsa_keygen_bits:2048'],
               ['ec', 'EC', 'ec_paramgen_curve:P-256']) {
        my ($n, $alg, $opt) = @$k;
        system("openssl genpkey -algorithm $alg -pkeyopt $opt -out $dir/$n.key 2>/dev/null") == 0
          or die "openssl genpkey $n";
        system("openssl pkey -in $dir/$n.key -pubout -out $dir/$n.pub 2>/dev/null") == 0
          or die "openssl pkey $n";
        $key{$n} = "$dir/$n.key";
        $pem{$n} = slurp_file("$dir/$n.pub");
    }
}

# --- gateway -------------------------------------------------------------------

my $up  = start_upstream(name => 'a');
my $up2 = start_upstream(name => 'b');

sub route {
    my ($name, $plugins, %o) = @_;
    return { name => $name, match => { path => "/$name/*" }, upstream => 'a',
             plugins => $plugins, %o };
}

my @consumers = (
    { name => 'alice', 'key-auth' => { key => 'alice-key' },
      'jwt-auth' => { key => 'alice', secret => 'alice-secret' } },
    { name => 'bob', 'key-auth' => { key => 'bob-key' } },
);
push @consumers,
    { name => 'rsa-user', 'jwt-auth' => { key => 'rsa', algorithm => 'RS256', public_key => $pem{rsa} } },
    { name => 'ec-user', 'jwt-auth' => { key => 'ec', algorithm => 'ES256', public_key => $pem{ec} } }
  if $have_openssl;

my $gw = start_gateway(config => {
    gateway   => { plugin_paths => [$pdir] },
    upstreams => [
        { name => 'a', nodes => ["127.0.0.1:$up->{port}"] },
        { name => 'b', nodes => ["127.0.0.1:$up2->{port}"] },
    ],
    consumers => \@consumers,
    routes    => [
        route('key', { 'key-auth' => {}, 't-whoami' => {} }),
        route('key-keep', { 'key-auth' => { header => 'X-Key', hide_credentials => JSON::PP::false } }),
        route('key-query', { 'key-auth' => { query => 'api_key' } }),
        route('key-split', { 'key-auth' => {} },
              split => [{ when => { user_hash => { key => 'consumer', percent => 100 } },
                          upstream => 'b' }]),
        route('jwt', { 'jwt-auth' => {}, 't-whoami' => {} }),
        route('jwt-hide', { 'jwt-auth' => { hide_credentials => JSON::PP::true } }),
        route('jwt-cookie', { 'jwt-auth' => { cookie => 'jwt', hide_credentials => JSON::PP::true } }),
        route('jwt-query', { 'jwt-auth' => { query => 'token' } }),
        route('ip-allow', { 'ip-restriction' => { allow => ['127.0.0.0/8', '::1'] } }),
        route('ip-allow-other', { 'ip-restriction' => { allow => ['10.0.0.0/8', '192.168.1.1', '127.0.0.2/32'] } }),
        route('ip-deny', { 'ip-restriction' => { deny => ['127.0.0.1/32'] } }),
        route('ip-deny-other', { 'ip-restriction' => { deny => ['10.0.0.0/8', '127.0.0.0/31'] } }),
        route('ip-deny-none', { 'ip-restriction' => { deny => ['10.0.0.0/8', '127.0.0.2/31', '::1'] } }),
        route('ip-both', { 'ip-restriction' => { allow => ['127.0.0.0/8'], deny => ['127.0.0.0/24'] } }),
        route('ip-status', { 'ip-restriction' => { deny => ['0.0.0.0/0'], status => 451, message => 'not here' } }),
    ],
});

sub ups_count { my @r = upstream_requests($_[0]); scalar @r }

sub up_header {
    my ($req, $name) = @_;
    return undef unless $req;
    my @v = map { $_->[1] } grep { lc $_->[0] eq lc $name } @{ $req->{headers} };
    return @v ? $v[0] : undef;
}

sub last_up { my @r = upstream_requests($_[0]); $r[-1] }

# A refused request: the gateway's error envelope with the message, nothing
# upstream.
sub refused {
    my ($path, $headers, $status, $message, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    clear_upstream_log($_) for $up, $up2;
    my $r = http_request($gw->{port}, 'GET', $path, headers => $headers);
    error_envelope_is($r, $status, $message, $name);
    is(ups_count($up) + ups_count($up2), 0, "$name: nothing reached the upstream");
}

sub passes {
    my ($path, $headers, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    clear_upstream_log($_) for $up, $up2;
    my $r = http_request($gw->{port}, 'GET', $path, headers => $headers);
    is($r->{status}, 200, "$name: 200") or diag($r->{body});
    return $r;
}

# --- key-auth --------------------------------------------------------------------

refused('/key/1', [], 401, 'missing API key', 'key-auth: no key');
refused('/key/1', ['X-API-Key' => ''], 401, 'missing API key', 'key-auth: empty key');
refused('/key/1', ['X-API-Key' => 'alice-kex'], 401, 'invalid API key', 'key-auth: wrong key');
refused('/key/1', ['X-API-Key' => 'alice-key-and-more'], 401, 'invalid API key', 'key-auth: longer key');
refused('/key/1', ['X-API-Key' => 'alice'], 401, 'invalid API key', 'key-auth: jwt key is no API key');
refused('/key-query/1?api_key=nope', [], 401, 'invalid API key', 'key-auth: wrong query key');

my $r = passes('/key/1', ['X-API-Key' => 'alice-key'], 'key-auth: good key');
my $seen = last_up($up);
is(up_header($seen, 'X-API-Key'), undef, 'key-auth: hide_credentials (default): X-API-Key not sent upstream');
is(up_header($seen, 'X-Consumer'), 'alice', 'key-auth: gw.var.consumer visible to a later plugin');

passes('/key/1', ['X-API-Key' => 'bob-key'], 'key-auth: second consumer');
is(up_header(last_up($up), 'X-Consumer'), 'bob', 'key-auth: consumer bob');

passes('/key-keep/1', ['X-Key' => 'alice-key'], 'key-auth: header X-Key, hide_credentials false');
is(up_header(last_up($up), 'X-Key'), 'alice-key', 'key-auth: hide_credentials false: key sent upstream');
refused('/key-keep/1', ['X-API-Key' => 'alice-key'], 401, 'missing API key',
    'key-auth: key in the default header when another is configured');

passes('/key-query/1?api_key=bob-key', [], 'key-auth: key from the query');

$r = passes('/key-split/1', ['X-API-Key' => 'alice-key'], 'key-auth + split on consumer');
is($r->{headers}{'x-upstream'}, 'b', 'split user_hash key consumer: the consumer picked upstream b');
is(ups_count($up), 0, 'split on consumer: nothing reached a');
is(up_header(last_up($up2), 'X-API-Key'), undef, 'split on consumer: key hidden from b');

# --- jwt-auth ----------------------------------------------------------------------

my $now = time;
my $good = { key => 'alice', sub => 'u-1', exp => $now + 600 };

refused('/jwt/1', [], 401, 'missing token', 'jwt: no token');
refused('/jwt/1', ['Authorization' => 'Basic YWxpY2U6eA=='], 401, 'invalid token', 'jwt: Basic scheme');
refused('/jwt/1', ['Authorization' => 'Bearer ' . hs256($good, 'wrong-secret')], 401, 'invalid token',
    'jwt: wrong signature');
refused('/jwt/1', ['Authorization' => 'Bearer ' . hs256({ %$good, exp => $now - 10 }, 'alice-secret')],
    401, 'token expired', 'jwt: expired');
refused('/jwt/1', ['Authorization' => 'Bearer ' . hs256({ %$good, nbf => $now + 600 }, 'alice-secret')],
    401, 'token not yet valid', 'jwt: nbf in the future');
refused('/jwt/1', ['Authorization' => 'Bearer ' . hs256({ %$good, key => 'mallory' }, 'alice-secret')],
    401, 'invalid token', 'jwt: unknown key claim');
refused('/jwt/1', ['Authorization' => 'Bearer ' . hs256({ sub => 'x' }, 'alice-secret')],
    401, 'invalid token', 'jwt: no key claim');

for my $none (qw(none None NONE nOnE)) {
    my $in = jwt_parts({ alg => $none, typ => 'JWT' }, $good);
    refused('/jwt/1', ['Authorization' => "Bearer $in."], 401, 'invalid token',
        "jwt: alg $none, empty signature");
    refused('/jwt/1', ['Authorization' => "Bearer $in." . b64url(hmac_sha256($in, 'alice-secret'))],
        401, 'invalid token', "jwt: alg $none, with an HMAC signature");
}
refused('/jwt/1', ['Authorization' => 'Bearer ' . hs256($good, 'alice-secret',
        header => { alg => 'HS384', typ => 'JWT' })], 401, 'invalid token',
    'jwt: alg HS384 header with an HS256 signature for an HS256 consumer');
{
    my $in = jwt_parts({ alg => 'HS384', typ => 'JWT' }, $good);
    refused('/jwt/1', ['Authorization' => "Bearer $in." . b64url(hmac_sha384($in, 'alice-secret'))],
        401, 'invalid token', 'jwt: a valid HS384 token for an HS256 consumer');
}

my $tok = hs256($good, 'alice-secret');
my ($h64, $p64, $s64) = split /\./, $tok;
refused('/jwt/1', ['Authorization' => "Bearer $h64.$p64"], 401, 'invalid token', 'jwt: two parts');
refused('/jwt/1', ['Authorization' => "Bearer $h64.$p64.$s64.$s64"], 401, 'invalid token', 'jwt: four parts');
refused('/jwt/1', ['Authorization' => "Bearer $h64"], 401, 'invalid token', 'jwt: one part');
refused('/jwt/1', ['Authorization' => "Bearer *$h64.$p64.$s64"], 401, 'invalid token',
    'jwt: malformed base64 in the header part');
refused('/jwt/1', ['Authorization' => "Bearer $h64.$p64!!.$s64"], 401, 'invalid token',
    'jwt: malformed base64 in the payload part');
refused('/jwt/1', ['Authorization' => "Bearer $h64.$p64.${s64}="], 401, 'invalid token',
    'jwt: padded signature');
refused('/jwt/1', ['Authorization' => "Bearer $h64.$p64.x"], 401, 'invalid token',
    'jwt: signature of impossible length');
refused('/jwt/1', ['Authorization' => 'Bearer ' . jwt_parts({ alg => 'HS256' }, 'not json') . '.'
        . b64url(hmac_sha256(jwt_parts({ alg => 'HS256' }, 'not json'), 'alice-secret'))],
    401, 'invalid token', 'jwt: payload not JSON (signed)');
refused('/jwt/1', ['Authorization' => "Bearer $h64." . b64url($JSON->encode({ %$good, sub => 'admin' })) . ".$s64"],
    401, 'invalid token', 'jwt: payload changed after signing');

$r = passes('/jwt/1', ['Authorization' => "Bearer $tok"], 'jwt HS256: good token');
$seen = last_up($up);
is(up_header($seen, 'X-Consumer'), 'alice', 'jwt HS256: consumer set');
is(up_header($seen, 'X-Claim-Sub'), 'u-1', 'jwt HS256: claims in ctx.jwt_claims');
is(up_header($seen, 'Authorization'), "Bearer $tok", 'jwt: hide_credentials false: token sent upstream');
passes('/jwt/1', ['Authorization' => "bearer $tok"], 'jwt HS256: scheme is case-insensitive');
passes('/jwt-hide/1', ['Authorization' => "Bearer $tok"], 'jwt hide_credentials');
is(up_header(last_up($up), 'Authorization'), undef, 'jwt hide_credentials: Authorization not sent upstream');
passes('/jwt-cookie/1', ['Cookie' => "a=1; jwt=$tok; b=2"], 'jwt from a cookie');
is(up_header(last_up($up), 'Cookie'), 'a=1; b=2', 'jwt cookie, hide_credentials: only that cookie removed');
passes('/jwt-cookie/1', ['Cookie' => "jwt=$tok"], 'jwt from the only cookie');
is(up_header(last_up($up), 'Cookie'), undef, 'jwt cookie, hide_credentials: empty Cookie header dropped');
refused('/jwt-cookie/1', ['Cookie' => 'jwt=' . hs256($good, 'nope')], 401, 'invalid token', 'jwt cookie: bad token');
passes("/jwt-query/1?token=$tok", [], 'jwt from the query');
refused('/jwt-query/1?token=x.y.z', [], 401, 'invalid token', 'jwt query: bad token');
passes('/jwt/1', ['Authorization' => 'Bearer ' . hs256({ key => 'alice' }, 'alice-secret')],
    'jwt HS256: no exp is accepted by default');

SKIP: {
    skip 'no openssl command', 1 unless $have_openssl;
    my $rs = { key => 'rsa', sub => 'r-1', exp => $now + 600 };
    my $rt = rs256($rs, $key{rsa});
    passes('/jwt/1', ['Authorization' => "Bearer $rt"], 'jwt RS256: valid token');
    is(up_header(last_up($up), 'X-Consumer'), 'rsa-user', 'jwt RS256: consumer');
    refused('/jwt/1', ['Authorization' => 'Bearer ' . rs256($rs, $key{rsa2})], 401, 'invalid token',
        'jwt RS256: signed by another key');
    refused('/jwt/1', ['Authorization' => 'Bearer ' . rs256({ %$rs, exp => $now - 5 }, $key{rsa})],
        401, 'token expired', 'jwt RS256: expired');
    my ($rh, $rp, $rsig) = split /\./, $rt;
    refused('/jwt/1', ['Authorization' => "Bearer $rh." . b64url($JSON->encode({ %$rs, sub => 'admin' })) . ".$rsig"],
        401, 'invalid token', 'jwt RS256: payload changed after signing');
    # the classic confusion: HS256 with the public key text as the secret
    refused('/jwt/1', ['Authorization' => 'Bearer ' . hs256($rs, $pem{rsa})], 401, 'invalid token',
        'jwt: HS256 token signed with the RS256 consumer\'s PEM');
    refused('/jwt/1', ['Authorization' => 'Bearer ' . hs256($rs, $pem{rsa} =~ s/\n$//r)], 401,
        'invalid token', 'jwt: HS256 with the PEM (no final newline)');
    my $rin = jwt_parts({ alg => 'none' }, $rs);
    refused('/jwt/1', ['Authorization' => "Bearer $rin."], 401, 'invalid token', 'jwt RS256 consumer: alg none');

    my $es = { key => 'ec', sub => 'e-1', exp => $now + 600 };
    my $et = es256($es, $key{ec});
    passes('/jwt/1', ['Authorization' => "Bearer $et"], 'jwt ES256: valid token (raw r||s)');
    is(up_header(last_up($up), 'X-Consumer'), 'ec-user', 'jwt ES256: consumer');
    my ($eh, $ep, $esig) = split /\./, $et;
    refused('/jwt/1', ['Authorization' => "Bearer $eh.$ep." . b64url(openssl_sign($key{ec}, "$eh.$ep"))],
        401, 'invalid token', 'jwt ES256: DER signature instead of raw r||s');
    refused('/jwt/1', ['Authorization' => "Bearer $eh." . b64url($JSON->encode({ %$es, sub => 'admin' })) . ".$esig"],
        401, 'invalid token', 'jwt ES256: payload changed after signing');
    refused('/jwt/1', ['Authorization' => 'Bearer ' . hs256($es, $pem{ec})], 401, 'invalid token',
        'jwt: HS256 token signed with the ES256 consumer\'s PEM');
    refused('/jwt/1', ['Authorization' => 'Bearer ' . rs256($es, $key{rsa},
            header => { alg => 'RS256', typ => 'JWT' })], 401, 'invalid token',
        'jwt: RS256 token for the ES256 consumer');
}

# --- ip-restriction (the client is 127.0.0.1) --------------------------------------

passes('/ip-allow/1', [], 'ip allow 127.0.0.0/8');
refused('/ip-allow-other/1', [], 403, 'forbidden', 'ip allow list without the client');
refused('/ip-deny/1', [], 403, 'forbidden', 'ip deny 127.0.0.1/32');
passes('/ip-deny-none/1', [], 'ip deny list without the client (127.0.0.2/31, 10/8, ::1)');
refused('/ip-deny-other/1', [], 403, 'forbidden', 'ip deny 127.0.0.0/31 holds 127.0.0.1');
refused('/ip-both/1', [], 403, 'forbidden', 'ip deny is checked before allow');
refused('/ip-status/1', [], 451, 'not here', 'ip custom status and message');
refused('/ip-allow-other/1', ['X-Forwarded-For' => '10.1.2.3', 'X-Real-IP' => '10.1.2.3'], 403,
    'forbidden', 'ip: X-Forwarded-For from the client is not trusted');

my ($code, $out) = check_config(config => {
    upstreams => [{ name => 'a', nodes => ['127.0.0.1:9'] }],
    routes => [{ name => 'r', match => { path => '/*' }, upstream => 'a',
                 plugins => { 'ip-restriction' => { allow => ['127.0.0.1/33'] } } }],
});
is($code, 1, 'ip-restriction: bad CIDR fails -t');
like($out, qr/routes\[0\]\.plugins\.ip-restriction: allow\[1\]: not an IP address or CIDR block: 127\.0\.0\.1\/33/,
    'ip-restriction: bad CIDR named with its path');

($code, $out) = check_config(config => {
    upstreams => [{ name => 'a', nodes => ['127.0.0.1:9'] }],
    consumers => [{ name => 'x', 'jwt-auth' => { key => 'x', algorithm => 'RS256', secret => 's' } }],
    routes => [{ name => 'r', match => { path => '/*' }, upstream => 'a',
                 plugins => { 'jwt-auth' => {} } }],
});
is($code, 1, 'jwt-auth: RS256 consumer with a secret fails -t');
like($out, qr/consumers\[0\]\.jwt-auth: /, 'jwt-auth: consumer error named with its path');

my @died = gateway_log($gw) =~ /(master: worker \d+ .*(?:killed by signal|exited with status).*)/g;
is(scalar(@died), 0, 'no worker died during the run') or diag(join "\n", @died);
is(stop_gateway($gw), 0, 'SIGTERM: exit 0');
stop_all();
done_testing();
