#!/usr/bin/perl
#
# dns-server.pl: a small authoritative DNS server for tests, over UDP and
# TCP on 127.0.0.1. Perl core modules only.
#
# Usage:
#   dns-server.pl --port P --zone FILE [--log FILE]
#
# The zone file is read again before every answer, so a test changes what
# the server says by rewriting it (write a new file, rename it over). Lines:
#   mode answer | drop | servfail | refused
#                         drop: read queries, never answer (a stalled server)
#   negttl N              empty answers and NXDOMAIN carry an SOA in the
#                         authority section with this minimum (default none)
#   additional on         SRV answers carry the A/AAAA records of their
#                         targets in the additional section
#   NAME A ADDR TTL
#   NAME AAAA ADDR TTL
#   NAME SRV PRIORITY WEIGHT PORT TARGET TTL
#   NAME CNAME TARGET TTL    (A/AAAA questions about NAME get the CNAME and
#                             the target's records)
#   # a comment
# Names compare without case and without a final dot. A name with no record
# of any type is NXDOMAIN; one with records of other types gets an empty
# NOERROR answer. A UDP answer over 512 bytes is sent truncated (TC), as a
# server without EDNS does, so the client asks again over TCP.
#
# --log F: one line per question received: "NAME TYPE udp|tcp".
# Prints "ready PORT" on stdout once both sockets listen. SIGTERM stops it.

use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Socket qw(inet_pton AF_INET6);

my %o;
while (@ARGV) {
    my $k = shift @ARGV;
    die "usage: $0 --port P --zone FILE [--log FILE]\n" unless $k =~ /^--(port|zone|log)$/;
    $o{$1} = shift @ARGV;
}
die "--port and --zone are required\n" unless $o{port} && $o{zone};

my %TYPE = (A => 1, NS => 2, CNAME => 5, SOA => 6, AAAA => 28, SRV => 33);
my %NAME = reverse %TYPE;

my $udp = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $o{port},
    Proto => 'udp') or die "udp bind: $!\n";
my $tcp = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $o{port},
    Proto => 'tcp', Listen => 16, ReuseAddr => 1) or die "tcp bind: $!\n";
$SIG{TERM} = sub { exit 0 };
$| = 1;
print "ready $o{port}\n";

sub norm {
    my ($n) = @_;
    $n = lc $n;
    $n =~ s/\.$//;
    return $n;
}

sub read_zone {
    my %z = (mode => 'answer', negttl => undef, additional => 0, rr => {});
    open my $fh, '<', $o{zone} or return \%z;
    while (my $l = <$fh>) {
        $l =~ s/#.*//;
        my @f = split ' ', $l;
        next unless @f;
        if ($f[0] eq 'mode') { $z{mode} = $f[1]; next }
        if ($f[0] eq 'negttl') { $z{negttl} = $f[1]; next }
        if ($f[0] eq 'additional') { $z{additional} = $f[1] eq 'on'; next }
        my ($name, $type, @rest) = @f;
        push @{ $z{rr}{ norm($name) } }, { type => uc $type, data => \@rest };
    }
    return \%z;
}

sub enc_name {
    my ($n) = @_;
    my $out = '';
    for my $label (grep { length } split /\./, $n) {
        $out .= chr(length $label) . $label;
    }
    return $out . "\0";
}

# Reads a (never compressed: we are the server) name from a query.
sub dec_name {
    my ($msg, $pos) = @_;
    my @labels;
    while (1) {
        return unless $pos < length $msg;
        my $len = ord substr($msg, $pos, 1);
        $pos++;
        last if $len == 0;
        return if $len > 63 || $pos + $len > length $msg;
        push @labels, substr($msg, $pos, $len);
        $pos += $len;
    }
    return (join('.', @labels), $pos);
}

sub rr_bytes {
    my ($name, $r) = @_;
    my @d = @{ $r->{data} };
    my ($type, $rdata, $ttl) = ($r->{type});
    if ($type eq 'A') {
        $rdata = pack 'C4', split /\./, $d[0];
        $ttl = $d[1];
    } elsif ($type eq 'AAAA') {
        $rdata = inet_pton(AF_INET6, $d[0]);
        $ttl = $d[1];
    } elsif ($type eq 'SRV') {
        $rdata = pack('nnn', @d[0 .. 2]) . enc_name(norm($d[3]));
        $ttl = $d[4];
    } elsif ($type eq 'CNAME') {
        $rdata = enc_name(norm($d[0]));
        $ttl = $d[1];
    } else {
        return '';
    }
    return enc_name($name) . pack('nnNn', $TYPE{$type}, 1, $ttl, length $rdata) . $rdata;
}

sub answer {
    my ($q, $proto) = @_;
    return unless length $q >= 12;
    my ($id, $flags, $qd) = unpack 'nnn', $q;
    return if $flags & 0x8000 || $qd != 1;
    my ($qname, $pos) = dec_name($q, 12);
    return unless defined $qname && $pos + 4 <= length $q;
    my ($qtype, $qclass) = unpack 'nn', substr($q, $pos, 4);
    my $question = substr($q, 12, $pos + 4 - 12);
    $qname = norm($qname);
    if ($o{log} && open my $lf, '>>', $o{log}) {
        print $lf "$qname " . ($NAME{$qtype} // $qtype) . " $proto\n";
        close $lf;
    }
    my $z = read_zone();
    return if $z->{mode} eq 'drop';
    my $rcode = $z->{mode} eq 'servfail' ? 2 : $z->{mode} eq 'refused' ? 5 : 0;
    my (@an, @ns, @ar);
    if ($rcode == 0) {
        my $name = $qname;
        my $recs = $z->{rr}{$name};
        if (!$recs) {
            $rcode = 3;
        } else {
            for (1 .. 8) { # follow CNAMEs
                my ($c) = grep { $_->{type} eq 'CNAME' } @{ $z->{rr}{$name} || [] };
                last unless $c && $qtype != $TYPE{CNAME};
                push @an, rr_bytes($name, $c);
                $name = norm($c->{data}[0]);
            }
            for my $r (@{ $z->{rr}{$name} || [] }) {
                next unless ($TYPE{ $r->{type} } // 0) == $qtype;
                push @an, rr_bytes($name, $r);
                next unless $r->{type} eq 'SRV' && $z->{additional};
                my $t = norm($r->{data}[3]);
                for my $a (@{ $z->{rr}{$t} || [] }) {
                    push @ar, rr_bytes($t, $a) if $a->{type} =~ /^(A|AAAA)$/;
                }
            }
        }
        if (!@an && defined $z->{negttl}) {
            my $soa = enc_name('ns.test') . enc_name('admin.test')
              . pack('NNNNN', 1, 3600, 600, 86400, $z->{negttl});
            push @ns, enc_name('test') . pack('nnNn', 6, 1, 3600, length $soa) . $soa;
        }
    }
    my $rflags = 0x8000 | 0x0400 | ($flags & 0x0100) | $rcode;
    my $msg = pack('nnnnnn', $id, $rflags, 1, scalar @an, scalar @ns, scalar @ar)
      . $question . join('', @an, @ns, @ar);
    if ($proto eq 'udp' && length $msg > 512) {
        $msg = pack('nnnnnn', $id, $rflags | 0x0200, 1, 0, 0, 0) . $question;
    }
    return $msg;
}

my $sel = IO::Select->new($udp, $tcp);
my %buf;
while (1) {
    for my $s ($sel->can_read) {
        if ($s == $udp) {
            my $peer = $udp->recv(my $q, 65535);
            next unless defined $peer;
            my $a = answer($q, 'udp');
            send($udp, $a, 0, $peer) if defined $a;
        } elsif ($s == $tcp) {
            my $c = $tcp->accept or next;
            $sel->add($c);
            $buf{$c} = '';
        } else {
            my $n = sysread($s, my $chunk, 65536);
            if (!$n) {
                $sel->remove($s);
                delete $buf{$s};
                close $s;
                next;
            }
            $buf{$s} .= $chunk;
            while (length $buf{$s} >= 2) {
                my $len = unpack 'n', $buf{$s};
                last if length $buf{$s} < 2 + $len;
                my $q = substr($buf{$s}, 2, $len);
                substr($buf{$s}, 0, 2 + $len) = '';
                my $a = answer($q, 'tcp');
                syswrite($s, pack('n', length $a) . $a) if defined $a;
            }
        }
    }
}
