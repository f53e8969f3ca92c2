package GwDns;

# The test DNS server (t/lib/dns-server.pl): start it on a free loopback
# port with a zone, change the zone while it runs, read which questions it
# got, stop it by PID. Perl core modules only.
#
#   my $dns = start_dns(zone => "web.test A 127.0.0.2 30\n");
#   set_zone($dns, "web.test A 127.0.0.3 30\n");
#   my @q = dns_queries($dns);       # ("web.test A udp", ...)
#   stop_dns($dns);                  # also done at exit

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use Cwd qw(abs_path);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use GwTest qw(free_port tmpdir mult slurp_file spew_file wait_for);

our @EXPORT = qw(start_dns set_zone dns_queries clear_dns_queries stop_dns);

my $LIBDIR = dirname(abs_path(__FILE__));
my @servers;
my $seq = 0;

sub start_dns {
    my (%o) = @_;
    my $d = { port => $o{port} // free_port() };
    $d->{dir} = tmpdir() . "/dns-" . ++$seq;
    mkdir $d->{dir} or die "mkdir $d->{dir}: $!";
    $d->{zone} = "$d->{dir}/zone";
    $d->{log} = "$d->{dir}/queries";
    spew_file($d->{zone}, $o{zone} // '');
    spew_file($d->{log}, '');
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$d->{dir}/stdout" or POSIX::_exit(126);
        open STDERR, '>', "$d->{dir}/stderr" or POSIX::_exit(126);
        exec $^X, "$LIBDIR/dns-server.pl", '--port', $d->{port}, '--zone', $d->{zone},
          '--log', $d->{log} or POSIX::_exit(127);
    }
    $d->{pid} = $pid;
    push @servers, $d;
    my $ok = wait_for(sub {
        return -1 if waitpid($pid, WNOHANG) == $pid;
        return slurp_file("$d->{dir}/stdout") =~ /^ready/ ? 1 : 0;
    }, 5);
    die "dns-server did not start: " . slurp_file("$d->{dir}/stderr") unless $ok && $ok > 0;
    return $d;
}

# Replaces the zone at once (spew_file renames: the server never reads
# half a file).
sub set_zone {
    my ($d, $text) = @_;
    spew_file($d->{zone}, $text);
}

sub dns_queries {
    my ($d) = @_;
    return split /\n/, slurp_file($d->{log});
}

sub clear_dns_queries {
    my ($d) = @_;
    spew_file($d->{log}, '');
}

sub stop_dns {
    my ($d) = @_;
    return if $d->{stopped}++;
    kill 'TERM', $d->{pid};
    my $deadline = time + 5 * mult();
    while (time < $deadline) {
        return if waitpid($d->{pid}, WNOHANG) == $d->{pid};
        sleep 0.02;
    }
    kill 'KILL', $d->{pid};
    waitpid($d->{pid}, 0);
}

END {
    my $st = $?;
    stop_dns($_) for @servers;
    $? = $st;
}

1;
