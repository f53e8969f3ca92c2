#!/usr/bin/perl
#
# consul-mock.pl: a stand-in for Consul's HTTP API, for the tests. It is
# not Consul: it answers the one read the gateway makes, the way Consul's
# documentation describes it, plus a control API the tests drive.
#
# Usage:
#   consul-mock.pl --port P [--log FILE] [--index N] [--token T]
#                  [--limited-token T] [--dcs dc1,dc2]
#
#   --port P     listen on 127.0.0.1:P (loopback only)
#   --log F      append one JSON line per health request received:
#                {"t": seconds, "path", "query": {..}, "token"}
#   --index N    the first raft index (default 10)
#   --token T    ACLs on: requests must carry X-Consul-Token T (or ?token=)
#   --limited-token T
#                a token that exists but may read nothing: answers are
#                empty, with X-Consul-Results-Filtered-By-ACLs: true
#   --dcs LIST   the datacenters it knows (default "dc1", the first is local)
#
# Consul's side:
#   GET /v1/health/service/NAME[?passing][&dc=][&index=N&wait=D][&token=]
#     200 with the JSON array [{Node, Service, Checks}] and X-Consul-Index.
#     With index > 0 the request is held until the service's index passes
#     N or the wait (default 5m, at most 10m, plus up to wait/16) runs out.
#     `passing` (any value but "false"/"0") keeps entries whose checks all
#     pass. An unknown dc: 500 "No path to datacenter". A missing or unknown
#     token with ACLs on: 403 "ACL not found".
#
# Control side (JSON bodies, answers {"index": N}):
#   POST /mock/register     {"ID","Service","Address","Port","Tags","Meta",
#                            "Weights","Node","NodeAddress","Datacenter",
#                            "Status" (default "passing")}
#   POST /mock/deregister   {"ID","Datacenter"}
#   POST /mock/check        {"ID","Status","Datacenter"}: the service check
#   POST /mock/index        {"Index"}: every index becomes Index (lower
#                            means "going backwards"); held queries answer
#   POST /mock/mode         {"Mode": "normal" | "garbage" | "huge" | "stall"
#                            | "error500" | "noindex" | "instant"}
#                            garbage: 200 with a body that is not JSON;
#                            huge: 200 with 17 MiB of valid JSON; stall:
#                            never answers; error500: 500; noindex: normal
#                            answers without X-Consul-Index; instant: normal
#                            answers but never holds a query (a misbehaving
#                            server), index unchanged
#   GET  /mock/state        the instances, for debugging
#
# One process, one select loop; every answer closes its connection (the
# gateway's client sends Connection: close). SIGTERM stops it.

use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);
use JSON::PP;
use Getopt::Long;

my ($port, $logf, $token, $limited);
my $index = 10;
my $dcs   = 'dc1';
GetOptions('port=i' => \$port, 'log=s' => \$logf, 'index=i' => \$index,
    'token=s' => \$token, 'limited-token=s' => \$limited, 'dcs=s' => \$dcs)
  or die "bad options\n";
die "--port required\n" unless $port;
my @dcs = split /,/, $dcs;
my %known_dc = map { $_ => 1 } @dcs;

my $JSON = JSON::PP->new->canonical;
my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
    Proto => 'tcp', Listen => 128, ReuseAddr => 1) or die "listen: $!\n";
$listen->blocking(0);
$SIG{TERM} = sub { exit 0 };
$SIG{PIPE} = 'IGNORE';

my %inst;      # "dc\0id" -> instance
my %svc_index; # "dc\0service" -> index of its last change
my $mode = 'normal';
my %conns;     # fileno -> {sock, buf}
my @held;      # {sock, dc, service, passing, index, deadline}
my @stalled;

my $sel = IO::Select->new($listen);

sub log_req {
    my ($path, $q, $tok) = @_;
    return unless defined $logf;
    open my $fh, '>>', $logf or return;
    syswrite $fh, $JSON->encode({t => time, path => $path, query => $q,
        token => $tok}) . "\n";
    close $fh;
}

sub respond {
    my ($sock, $status, $body, @hdr) = @_;
    my %reason = (200 => 'OK', 400 => 'Bad Request', 403 => 'Forbidden',
        404 => 'Not Found', 500 => 'Internal Server Error');
    my $head = "HTTP/1.1 $status " . ($reason{$status} // 'X') . "\r\n";
    while (my ($k, $v) = splice @hdr, 0, 2) {
        $head .= "$k: $v\r\n";
    }
    $head .= "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n";
    $sel->remove($sock);
    delete $conns{fileno $sock};
    $sock->blocking(1);
    my $data = $head . $body;
    my $off = 0;
    while ($off < length $data) {
        my $n = syswrite($sock, $data, 1 << 20, $off);
        last unless $n;
        $off += $n;
    }
    close $sock;
}

sub url_decode {
    my ($s) = @_;
    $s =~ tr/+/ /;
    $s =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
    return $s;
}

sub parse_wait {
    my ($w) = @_;
    return 300 unless defined $w && length $w;
    return $1 / 1000 if $w =~ /^(\d+)ms$/;
    return $1 if $w =~ /^(\d+)s$/;
    return $1 * 60 if $w =~ /^(\d+)m$/;
    return 300;
}

sub service_index {
    my ($dc, $name) = @_;
    return $svc_index{"$dc\0$name"} // $index;
}

sub bump {
    my ($dc, $name) = @_;
    $index++;
    $svc_index{"$dc\0$name"} = $index;
}

sub entries {
    my ($dc, $name, $passing) = @_;
    my @out;
    for my $k (sort keys %inst) {
        my $i = $inst{$k};
        next unless $i->{dc} eq $dc && $i->{Service} eq $name;
        next if $passing && $i->{Status} ne 'passing';
        push @out, {
            Node => {ID => "node-$i->{Node}", Node => $i->{Node},
                Address => $i->{NodeAddress}, Datacenter => $dc,
                TaggedAddresses => {lan => $i->{NodeAddress}}, Meta => {},
                CreateIndex => 5, ModifyIndex => 5},
            Service => {ID => $i->{ID}, Service => $name, Tags => $i->{Tags},
                Address => $i->{Address}, Meta => $i->{Meta}, Port => $i->{Port},
                Weights => $i->{Weights}, EnableTagOverride => JSON::PP::false,
                CreateIndex => $i->{index}, ModifyIndex => $i->{index}},
            Checks => [
                {Node => $i->{Node}, CheckID => 'serfHealth',
                 Name => 'Serf Health Status', Status => 'passing',
                 ServiceID => '', ServiceName => ''},
                {Node => $i->{Node}, CheckID => "service:$i->{ID}",
                 Name => "Service '$name' check", Status => $i->{Status},
                 ServiceID => $i->{ID}, ServiceName => $name},
            ],
        };
    }
    return \@out;
}

sub answer_health {
    my ($h) = @_;
    my $sock = $h->{sock};
    if ($mode eq 'garbage') {
        return respond($sock, 200, '[{"Node": {"Address": "10.0.0.1"}, "Service": ',
            'Content-Type' => 'application/json', 'X-Consul-Index' => $index + 1000);
    }
    if ($mode eq 'huge') {
        my $body = '[' . join(',', ('"' . ('x' x 1022) . '"') x (17 * 1024)) . ']';
        return respond($sock, 200, $body, 'Content-Type' => 'application/json',
            'X-Consul-Index' => $index);
    }
    if ($mode eq 'error500') {
        return respond($sock, 500, "rpc error: simulated failure",
            'Content-Type' => 'text/plain');
    }
    my $list = $h->{filtered} ? [] : entries($h->{dc}, $h->{service}, $h->{passing});
    my @hdr = ('Content-Type' => 'application/json', 'X-Consul-Knownleader' => 'true',
        'X-Consul-Lastcontact' => 0);
    push @hdr, 'X-Consul-Index' => service_index($h->{dc}, $h->{service})
      unless $mode eq 'noindex';
    push @hdr, 'X-Consul-Results-Filtered-By-ACLs' => 'true' if $h->{filtered};
    respond($sock, 200, $JSON->encode($list), @hdr);
}

sub health {
    my ($sock, $name, $q, $hdrs) = @_;
    my $tok = $hdrs->{'x-consul-token'} // $q->{token};
    log_req("/v1/health/service/$name", $q, $tok);
    my $dc = $q->{dc} // $dcs[0];
    return respond($sock, 500, "No path to datacenter") unless $known_dc{$dc};
    my $filtered = 0;
    if (defined $token) {
        if (defined $limited && defined $tok && $tok eq $limited) {
            $filtered = 1;
        } elsif (!defined $tok || $tok ne $token) {
            return respond($sock, 403, "ACL not found");
        }
    }
    if ($mode eq 'stall') {
        push @stalled, $sock;
        $sel->remove($sock);
        delete $conns{fileno $sock};
        return;
    }
    my $p = $q->{passing};
    my $h = {sock => $sock, dc => $dc, service => $name, filtered => $filtered,
        passing => defined $p && $p ne 'false' && $p ne '0',
        index => $q->{index} // 0};
    if ($h->{index} =~ /^\d+$/ && $h->{index} > 0 && $mode ne 'instant'
        && service_index($dc, $name) <= $h->{index}) {
        my $wait = parse_wait($q->{wait});
        $wait = 600 if $wait > 600;
        $h->{deadline} = time + $wait + rand($wait / 16);
        $sel->remove($sock);
        delete $conns{fileno $sock};
        push @held, $h;
        return;
    }
    answer_health($h);
}

# Answers the held queries whose service moved past their index (or whose
# index is now ahead: the index went backwards), or whose wait ran out.
sub wake {
    my ($all) = @_;
    my @keep;
    for my $h (@held) {
        my $si = service_index($h->{dc}, $h->{service});
        if ($all || $si > $h->{index} || time >= $h->{deadline}) {
            answer_health($h);
        } else {
            push @keep, $h;
        }
    }
    @held = @keep;
}

sub control {
    my ($sock, $method, $path, $body) = @_;
    my $in = length $body ? eval { $JSON->decode($body) } : {};
    return respond($sock, 400, "bad json: $@") unless ref $in eq 'HASH';
    my $dc = $in->{Datacenter} // $dcs[0];
    if ($path eq '/mock/register') {
        my $i = {
            dc          => $dc,
            ID          => $in->{ID} // "$in->{Service}-" . (scalar(keys %inst) + 1),
            Service     => $in->{Service},
            Address     => $in->{Address} // '',
            Port        => $in->{Port} // 0,
            Tags        => $in->{Tags} // [],
            Meta        => $in->{Meta} // {},
            Weights     => $in->{Weights} // {Passing => 1, Warning => 1},
            Node        => $in->{Node} // 'node1',
            NodeAddress => $in->{NodeAddress} // '127.0.0.1',
            Status      => $in->{Status} // 'passing',
        };
        bump($dc, $i->{Service});
        $i->{index} = $index;
        $inst{"$dc\0$i->{ID}"} = $i;
    } elsif ($path eq '/mock/deregister') {
        my $i = delete $inst{"$dc\0" . ($in->{ID} // '')}
          or return respond($sock, 404, "no such instance");
        bump($dc, $i->{Service});
    } elsif ($path eq '/mock/check') {
        my $i = $inst{"$dc\0" . ($in->{ID} // '')}
          or return respond($sock, 404, "no such instance");
        $i->{Status} = $in->{Status};
        bump($dc, $i->{Service});
    } elsif ($path eq '/mock/index') {
        $index = $in->{Index};
        $svc_index{$_} = $index for keys %svc_index;
        wake(1);
    } elsif ($path eq '/mock/mode') {
        $mode = $in->{Mode};
        if ($mode eq 'normal') {
            close $_ for @stalled;
            @stalled = ();
        }
    } elsif ($path eq '/mock/state') {
        return respond($sock, 200, $JSON->encode({index => $index,
            instances => [map { $inst{$_} } sort keys %inst]}));
    } else {
        return respond($sock, 404, "no such control");
    }
    respond($sock, 200, $JSON->encode({index => $index}));
    wake(0);
}

sub handle {
    my ($c) = @_;
    my $i = index($c->{buf}, "\r\n\r\n");
    return if $i < 0;
    my $head = substr($c->{buf}, 0, $i);
    my ($line, @lines) = split /\r\n/, $head;
    my %h;
    for (@lines) {
        $h{lc $1} = $2 if /^([^:]+):\s*(.*?)\s*$/;
    }
    my $len = $h{'content-length'} // 0;
    return if length($c->{buf}) < $i + 4 + $len;
    my $body = substr($c->{buf}, $i + 4, $len);
    my ($method, $target) = $line =~ /^(\S+) (\S+) HTTP\/1\.[01]$/
      or return respond($c->{sock}, 400, "bad request line");
    my ($path, $qs) = split /\?/, $target, 2;
    my %q;
    for (split /&/, $qs // '') {
        my ($k, $v) = split /=/, $_, 2;
        $q{url_decode($k)} = defined $v ? url_decode($v) : '';
    }
    if ($method eq 'GET' && $path =~ m{^/v1/health/service/([^/]+)$}) {
        return health($c->{sock}, url_decode($1), \%q, \%h);
    }
    if ($path =~ m{^/mock/}) {
        return control($c->{sock}, $method, $path, $body);
    }
    respond($c->{sock}, 404, "not found");
}

while (1) {
    my $timeout = 0.05;
    for my $h (@held) {
        my $d = $h->{deadline} - time;
        $timeout = $d if $d < $timeout;
    }
    $timeout = 0 if $timeout < 0;
    my @ready = $sel->can_read($timeout);
    for my $s (@ready) {
        if ($s == $listen) {
            while (my $c = $listen->accept) {
                $c->blocking(0);
                $conns{fileno $c} = {sock => $c, buf => ''};
                $sel->add($c);
            }
            next;
        }
        my $c = $conns{fileno $s} or next;
        my $n = sysread($s, $c->{buf}, 65536, length $c->{buf});
        if (!$n) {
            next if !defined $n && $!{EAGAIN};
            $sel->remove($s);
            delete $conns{fileno $s};
            close $s;
            next;
        }
        handle($c);
    }
    wake(0);
}
