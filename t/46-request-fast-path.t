# The common request head (GET/HEAD, HTTP/1.1, plain headers, no body) is
# read by a short parser of the gateway's own; everything else by llhttp.
# A head that arrives in two pieces always goes to llhttp, so each head
# below is sent both ways, whole and split, and the two must give the same
# answer (status, connection kept or closed) and the upstream the same
# request (method, target, headers but the generated ids).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use GwTest;

plan skip_all => 'gateway binary ' . gw_bin() . ' not built' unless -x gw_bin();

my $up = start_upstream(name => 'a');
my $gw = start_gateway(config => {
    upstreams => [{ name => 'a', nodes => ["127.0.0.1:$up->{port}"], retries => 0 }],
    routes    => [{ name => 'all', match => { path => '/*' }, upstream => 'a' }],
});

my $H = "Host: example.test\r\n";
my @many = map { "X-H$_: v$_\r\n" } 1 .. 127;
my %heads = (
    plain            => "GET /a HTTP/1.1\r\n$H\r\n",
    head             => "HEAD /a HTTP/1.1\r\n$H\r\n",
    query            => "GET /a/b?x=1&y=%20z HTTP/1.1\r\n$H\r\n",
    odd_target       => "GET /a\"<>{}|\\^`[]\@:;=,+\$&'()*!~-._?q=1#frag HTTP/1.1\r\n$H\r\n",
    many_headers     => "GET /m HTTP/1.1\r\n$H" . join('', @many) . "\r\n",
    too_many_headers => "GET /m HTTP/1.1\r\n$H" . join('', @many, "X-Last: v\r\n") . "\r\n",
    tchar_name       => "GET /t HTTP/1.1\r\n${H}X-A!#\$%&'*+.^_`|~: v\r\n\r\n",
    ows              => "GET /o HTTP/1.1\r\n${H}X-Pad:   v  w \t \r\nX-Tab:\tt\r\n\r\n",
    conn_close       => "GET /c HTTP/1.1\r\n${H}Connection: close\r\n\r\n",
    conn_keep_mixed  => "GET /k HTTP/1.1\r\n${H}Connection: Keep-Alive\r\n\r\n",
    conn_close_keep  => "GET /k HTTP/1.1\r\n${H}Connection: close\r\nConnection: keep-alive\r\n\r\n",
    conn_list        => "GET /k HTTP/1.1\r\n${H}Connection: keep-alive, X-Foo\r\nX-Foo: 1\r\n\r\n",
    lower_method     => "get /a HTTP/1.1\r\n$H\r\n",
    http10           => "GET /a HTTP/1.0\r\n$H\r\n",
    http10_keep      => "GET /a HTTP/1.0\r\n${H}Connection: keep-alive\r\n\r\n",
    space_colon      => "GET /a HTTP/1.1\r\n${H}X-Bad : v\r\n\r\n",
    bare_lf          => "GET /a HTTP/1.1\r\n${H}X-A: v\nX-B: w\r\n\r\n",
    obs_fold         => "GET /a HTTP/1.1\r\n${H}X-A: v\r\n  folded\r\n\r\n",
    empty_value      => "GET /e HTTP/1.1\r\n${H}X-Empty:\r\n\r\n",
    del_byte         => "GET /a HTTP/1.1\r\n${H}X-A: a\x7fb\r\n\r\n",
    high_byte        => "GET /h HTTP/1.1\r\n${H}X-A: caf\xc3\xa9\r\n\r\n",
    nul_byte         => "GET /a HTTP/1.1\r\n${H}X-A: a\x00b\r\n\r\n",
    cr_in_value      => "GET /a HTTP/1.1\r\n${H}X-A: a\rb\r\n\r\n",
    double_space     => "GET  /a HTTP/1.1\r\n$H\r\n",
    no_host          => "GET /a HTTP/1.1\r\n\r\n",
    two_hosts        => "GET /a HTTP/1.1\r\n${H}Host: other.test\r\n\r\n",
    bad_host         => "GET /a HTTP/1.1\r\nHost: a b\r\n\r\n",
    target_space     => "GET /a b HTTP/1.1\r\n$H\r\n",
    target_tab       => "GET /a\tb HTTP/1.1\r\n$H\r\n",
    target_high      => "GET /caf\xc3\xa9 HTTP/1.1\r\n$H\r\n",
    absolute_form    => "GET http://example.test/a HTTP/1.1\r\n$H\r\n",
    absolute_other   => "GET HTTP://Other.test:8080?x=1 HTTP/1.1\r\n$H\r\n",
    absolute_bad     => "GET http://u\@example.test/a HTTP/1.1\r\n$H\r\n",
    tab_host         => "GET /a HTTP/1.1\r\nHost:\texample.test\t\r\n\r\n",
    tab_conn_close   => "GET /c HTTP/1.1\r\n${H}Connection:\tclose\t\r\n\r\n",
    tab_cl           => "GET /l HTTP/1.1\r\n${H}Content-Length:\t3\t\r\n\r\nabc",
    get_with_cl0     => "GET /l HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n",
    get_with_body    => "GET /l HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nabc",
    get_chunked      => "GET /l HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    expect           => "GET /x HTTP/1.1\r\n${H}Expect: 100-continue\r\n\r\n",
    bad_expect       => "GET /x HTTP/1.1\r\n${H}Expect: nothing\r\n\r\n",
    upgrade          => "GET /u HTTP/1.1\r\n${H}Upgrade: websocket\r\n\r\n",
    proxy_connection => "GET /p HTTP/1.1\r\n${H}Proxy-Connection: close\r\n\r\n",
    dot_segments     => "GET /a/../b/./c HTTP/1.1\r\n$H\r\n",
    escape_root      => "GET /../a HTTP/1.1\r\n$H\r\n",
    pipelined        => "GET /p1 HTTP/1.1\r\n$H\r\nGET /p2 HTTP/1.1\r\n$H\r\n",
    pipelined_tabs   => "POST /p1 HTTP/1.1\r\n${H}Content-Length: 3\t\r\n\r\na\tb"
                        . "GET /p2 HTTP/1.1\r\n${H}X-A:\tv\t\r\n\r\n",
);

# What the client sees and the upstream gets for one head, sent whole or
# split after its first 5 bytes.
sub exchange {
    my ($bytes, $split, $wait) = @_;
    clear_upstream_log($up);
    my $c = gw_connect($gw->{port});
    if ($split) {
        $c->write(substr($bytes, 0, 5));
        sleep 0.05;
        $c->write(substr($bytes, 5));
    } else {
        $c->write($bytes);
    }
    my $want = () = $bytes =~ m{ HTTP/1\.\d\r?\n}g; # requests in the bytes
    my @st;
    while (@st < $want) {
        my $r = $c->read_response(timeout => $wait // 2, head => ($bytes =~ /^HEAD/ ? 1 : 0))
          or last;
        push @st, $r->{status};
        last if $c->{eof};
    }
    my $closed = $c->wait_closed(0.15);
    $c->close;
    my @got = map {
        my $q = $_;
        my @h = grep { $_->[0] !~ /^(x-request-id|traceparent)$/i } @{ $q->{headers} // [] };
        join("\n", $q->{method} // '', $q->{uri} // '', map({ "$_->[0]: $_->[1]" } @h),
             'body=' . ($q->{body} // ''));
    } upstream_requests($up);
    return { status => join(',', @st), closed => $closed, upstream => \@got };
}

for my $name (sort keys %heads) {
    my $whole = exchange($heads{$name}, 0);
    my $split = exchange($heads{$name}, 1);
    is_deeply($whole, $split, "$name: same answer and upstream request whole and split")
      or diag explain { whole => $whole, split => $split };
}

# mutated heads (fixed seed): one byte replaced, inserted or removed, by
# the bytes that matter to a parser; whole and split must still agree
{
    srand(4646);
    my @base = ($heads{plain}, $heads{ows}, $heads{conn_close}, $heads{query});
    my @bytes = ("\r", "\n", ' ', "\t", ':', "\0", "\x7f", "\x80", 'A', '/', '?', '#', ',');
    my ($same, $n, $first_diff) = (0, $ENV{GW_T46_MUTATIONS} // 60, '');
    for my $i (1 .. $n) {
        my $h = $base[$i % @base];
        my $at = int(rand(length $h));
        my $b = $bytes[int(rand(@bytes))];
        if ($i % 3 == 0)    { substr($h, $at, 0, $b) }  # insert
        elsif ($i % 3 == 1) { substr($h, $at, 1, '') }  # remove
        else                { substr($h, $at, 1, $b) }  # replace
        my ($w, $sp) = (exchange($h, 0, 0.5), exchange($h, 1, 0.5));
        my $key = sub { join "\x1e", $_[0]{status}, $_[0]{closed}, @{ $_[0]{upstream} } };
        if ($key->($w) eq $key->($sp)) { $same++ }
        else { $first_diff ||= explain({ head => $h, whole => $w, split => $sp }) }
    }
    is($same, $n, "$n mutated heads: the same outcome whole and split") or diag $first_diff;
}

# the answers themselves, for the heads the short parser takes
is(exchange($heads{plain}, 0)->{status}, '200', 'plain GET: 200');
is(exchange($heads{head}, 0)->{status}, '200', 'HEAD: 200');
is(exchange($heads{pipelined}, 0)->{status}, '200,200', 'two pipelined GETs: both answered');
my $cc = exchange($heads{conn_close}, 0);
is($cc->{status}, '200', 'Connection: close: 200');
ok($cc->{closed}, 'Connection: close: the connection is closed after the answer');
ok(!exchange($heads{conn_keep_mixed}, 0)->{closed}, 'Connection: Keep-Alive: kept open');
my $ows = exchange($heads{ows}, 0);
like($ows->{upstream}[0] // '', qr/^X-Pad: v  w$/m, 'surrounding whitespace trimmed, inner kept');
like($ows->{upstream}[0] // '', qr/^X-Tab: t$/m, 'a leading tab is whitespace too');
is(exchange($heads{too_many_headers}, 0)->{status}, '431', '129 headers: 431');
my $abs = exchange($heads{absolute_form}, 0);
is($abs->{status}, '200', 'absolute-form: 200');
like($abs->{upstream}[0] // '', qr{^GET\n/a\n}, 'absolute-form: origin-form upstream');
my $abs2 = exchange($heads{absolute_other}, 0);
like($abs2->{upstream}[0] // '', qr{^GET\n/\?x=1\n}, 'absolute-form, empty path: /?x=1 upstream');
like($abs2->{upstream}[0] // '', qr{^Host: Other\.test:8080$}m, 'absolute-form: its authority is the Host');
is(exchange($heads{absolute_bad}, 0)->{status}, '400', 'absolute-form with userinfo: 400');
ok(exchange($heads{tab_conn_close}, 0)->{closed}, 'Connection:<HTAB>close<HTAB>: closed');
my $pt = exchange($heads{pipelined_tabs}, 0);
is($pt->{status}, '200,200', 'pipelined heads with HTAB: both answered');
like($pt->{upstream}[0] // '', qr/body=a\tb$/, 'pipelined heads with HTAB: a body HTAB stays');
like($pt->{upstream}[1] // '', qr/^X-A: v$/m, 'pipelined heads with HTAB: the next head read too');
like(exchange($heads{tab_cl}, 0)->{upstream}[0] // '', qr/body=abc$/, 'Content-Length:<HTAB>3<HTAB>: body');
is(exchange($heads{lower_method}, 0)->{status}, '400', 'lower-case method: 400');
is(exchange($heads{space_colon}, 0)->{status}, '400', 'space before the colon: 400');

stop_all();
done_testing();
