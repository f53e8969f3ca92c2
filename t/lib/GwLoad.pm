# Bounded HTTP load for the reload and upgrade tests: keep-alive clients
# (a new connection only after a Connection: close) and connect-per-request
# clients, each a forked process with a deadline, counting 2xx answers,
# other statuses and socket errors (a refused or reset connection, a close
# or a timeout without an answer). No dependency beyond Perl core.
#
#   my $load = start_load(port => P, paths => ['/a', '/b'], secs => 30,
#                         keepalive => 2, churn => 2);
#   my $res = finish_load($load);
#   # {requests, ok, non2xx => N, errors => N, samples => [first problems],
#   #  headers => {value of header H => count} when track => 'H'}
package GwLoad;

use strict;
use warnings;
use Exporter 'import';
use IO::Socket::INET;
use IO::Select;
use POSIX ();
use Time::HiRes qw(time sleep);
use GwTest;

our @EXPORT = qw(start_load finish_load);

# One request on $$sock (connected when undef); returns (status, close?,
# header value) or (0, 1, error text).
sub one {
    my ($port, $sockref, $path, $track) = @_;
    if (!$$sockref) {
        $$sockref = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
            Proto => 'tcp', Timeout => 5 * GwTest::mult())
          or return (0, 1, "connect: $!");
        binmode $$sockref;
    }
    my $s = $$sockref;
    my $req = "GET $path HTTP/1.1\r\nHost: localhost\r\n\r\n";
    my $n = syswrite($s, $req);
    return (0, 1, "write: $!") unless defined $n && $n == length $req;
    my $buf = '';
    my $sel = IO::Select->new($s);
    my $deadline = time + 10 * GwTest::mult();
    while (1) {
        my $r = GwTest::parse_one(\$buf, 0);
        if ($r) {
            my $close = ($r->{headers}{connection} // '') =~ /close/i;
            return ($r->{status}, $close, $track ? $r->{headers}{ lc $track } : undef);
        }
        my $left = $deadline - time;
        return (0, 1, 'timeout') if $left <= 0;
        next unless $sel->can_read($left);
        my $got = sysread($s, $buf, 65536, length $buf);
        return (0, 1, length $buf ? 'close in the response' : "closed without an answer ("
              . ($got // $!) . ')') unless $got;
    }
}

sub client {
    my ($o, $keepalive, $out) = @_;
    my %st = (requests => 0, ok => 0, non2xx => 0, errors => 0, samples => [], headers => {});
    my $end = time + $o->{secs};
    my $sock;
    my $i = 0;
    while (time < $end) {
        my $path = $o->{paths}[ $i++ % @{ $o->{paths} } ];
        my ($status, $close, $extra) = one($o->{port}, \$sock, $path, $o->{track});
        $st{requests}++;
        if ($status == 0) {
            $st{errors}++;
            push @{ $st{samples} }, "$path: $extra" if @{ $st{samples} } < 5;
        }
        elsif ($status >= 200 && $status < 300) {
            $st{ok}++;
            $st{headers}{ $extra // '' }++ if $o->{track};
        }
        else {
            $st{non2xx}++;
            push @{ $st{samples} }, "$path: status $status" if @{ $st{samples} } < 5;
        }
        if ($close || !$keepalive) {
            close $sock if $sock;
            $sock = undef;
        }
        sleep $o->{pause} if $o->{pause};
    }
    open my $fh, '>', $out or POSIX::_exit(1);
    print $fh "$_ $st{$_}\n" for qw(requests ok non2xx errors);
    print $fh "sample $_\n" for @{ $st{samples} };
    print $fh "header $_ $st{headers}{$_}\n" for keys %{ $st{headers} };
    close $fh;
    POSIX::_exit(0);
}

sub start_load {
    my (%o) = @_;
    $o{secs} //= 5;
    $o{pause} //= 0.002;
    my @kids;
    my $dir = GwTest::tmpdir();
    for my $kind ((1) x ($o{keepalive} // 2), (0) x ($o{churn} // 2)) {
        my $out = "$dir/load-" . int(rand 1e9);
        my $pid = fork // die "fork: $!";
        client(\%o, $kind, $out) if $pid == 0;
        push @kids, { pid => $pid, out => $out };
    }
    return { kids => \@kids, secs => $o{secs} };
}

sub finish_load {
    my ($load) = @_;
    my %t = (requests => 0, ok => 0, non2xx => 0, errors => 0, samples => [], headers => {});
    for my $k (@{ $load->{kids} }) {
        GwTest::reap($k->{pid}, $load->{secs} + 30 * GwTest::mult());
        for (split /\n/, GwTest::slurp_file($k->{out})) {
            if (/^(requests|ok|non2xx|errors) (\d+)$/) { $t{$1} += $2 }
            elsif (/^sample (.*)$/) { push @{ $t{samples} }, $1 }
            elsif (/^header (\S*) (\d+)$/) { $t{headers}{$1} += $2 }
        }
    }
    return \%t;
}

1;
