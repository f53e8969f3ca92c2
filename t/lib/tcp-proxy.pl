#!/usr/bin/perl
# tcp-proxy.pl LISTEN_PORT TARGET_PORT: relays every connection to
# 127.0.0.1:LISTEN_PORT to 127.0.0.1:TARGET_PORT, both ways, in one
# process (select loop). Killing it drops every connection at once: a
# test's way to break a client's streams while the server stays up.
use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;

my ($lport, $tport) = @ARGV;
my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $lport, Listen => 64,
    ReuseAddr => 1, Proto => 'tcp') or die "listen $lport: $!\n";
my $sel = IO::Select->new($l);
my %peer;
$SIG{TERM} = sub { exit 0 };

sub drop {
    my ($s) = @_;
    my $p = delete $peer{$s};
    for my $h ($s, $p) {
        next unless $h;
        delete $peer{$h};
        $sel->remove($h);
        close $h;
    }
}

while (1) {
    for my $s ($sel->can_read) {
        if ($s == $l) {
            my $c = $l->accept or next;
            my $t = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tport,
                Proto => 'tcp');
            unless ($t) { close $c; next; }
            $peer{$c} = $t;
            $peer{$t} = $c;
            $sel->add($c, $t);
            next;
        }
        my $n = sysread($s, my $buf, 65536);
        if (!$n) { drop($s); next; }
        my $p = $peer{$s} or next;
        my $off = 0;
        while ($off < $n) {
            my $w = syswrite($p, $buf, $n - $off, $off);
            if (!defined $w) { drop($s); last; }
            $off += $w;
        }
    }
}
