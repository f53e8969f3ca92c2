package GwConsul;

# The Consul stand-in (t/lib/consul-mock.pl) and a discovery printer for
# the tests: start and stop them by PID, drive the stand-in's control API,
# read what the watcher reported. Perl core modules only.
#
# The printer is `gateway -d -c FILE` when the gateway has it, else
# build/unit/disc_driver -c FILE (the same JSON lines).

use strict;
use warnings;

use Exporter 'import';
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use File::Basename qw(dirname);
use Cwd qw(abs_path);
use Time::HiRes qw(time sleep);
use JSON::PP;
use GwTest ();

our @EXPORT = qw(
  start_consul stop_consul consul_ctl consul_requests
  disc_printer start_watch stop_watch watch_lines watch_lists last_nodes
  wait_nodes wait_line nodes_by_addr
);

my $LIBDIR = dirname(abs_path(__FILE__));
my $JSON   = JSON::PP->new->canonical;
my (@mocks, @watches);

# start_consul([port => P], [token => T], [limited_token => T],
#   [dcs => 'dc1,dc2'], [index => N]) -> {port, pid, log, dir}
sub start_consul {
    my (%o) = @_;
    my $c = { port => $o{port} // GwTest::free_port(), dir => GwTest::subdir('consul-') };
    $c->{log} = "$c->{dir}/requests.log";
    GwTest::spew_file($c->{log}, '');
    my @args = ($^X, "$LIBDIR/consul-mock.pl", '--port', $c->{port}, '--log', $c->{log});
    push @args, '--token', $o{token} if defined $o{token};
    push @args, '--limited-token', $o{limited_token} if defined $o{limited_token};
    push @args, '--dcs', $o{dcs} if defined $o{dcs};
    push @args, '--index', $o{index} if defined $o{index};
    $c->{pid} = GwTest::spawn(\@args, "$c->{dir}/stdout", "$c->{dir}/stderr");
    push @mocks, $c;
    my $ok = GwTest::wait_for(sub {
        return -1 if waitpid($c->{pid}, WNOHANG) == $c->{pid};
        GwTest::port_open($c->{port});
    }, 10);
    die "consul stand-in did not start: " . GwTest::slurp_file("$c->{dir}/stderr")
      unless $ok && $ok > 0;
    return $c;
}

sub stop_consul {
    my ($c) = @_;
    return if $c->{stopped}++;
    kill 'TERM', $c->{pid};
    return GwTest::reap($c->{pid}, 5 * GwTest::mult());
}

# consul_ctl($c, '/mock/register', {...}) -> the decoded answer (dies on
# anything but 200).
sub consul_ctl {
    my ($c, $path, $body) = @_;
    my $js = $JSON->encode($body // {});
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $c->{port},
        Proto => 'tcp', Timeout => 5) or die "consul_ctl: connect: $!";
    print $s "POST $path HTTP/1.1\r\nHost: x\r\nContent-Length: " . length($js)
      . "\r\nConnection: close\r\n\r\n$js";
    local $/;
    my $r = <$s> // '';
    close $s;
    my ($status, $rbody) = $r =~ m{^HTTP/1\.1 (\d+)[^\n]*\n.*?\r\n\r\n(.*)$}s
      or die "consul_ctl $path: no answer";
    die "consul_ctl $path: $status $rbody" unless $status == 200;
    return $JSON->decode($rbody);
}

# The health requests the stand-in received: {t, path, query, token}.
sub consul_requests {
    my ($c) = @_;
    my @r;
    for my $l (split /\n/, GwTest::slurp_file($c->{log})) {
        push @r, eval { $JSON->decode($l) } // { bad => $l } if length $l;
    }
    return @r;
}

# The command that prints discovery, without "-c FILE".
sub disc_printer {
    return [GwTest::gw_bin(), '-d'];
}

# start_watch(yaml => TEXT) -> {pid, out, err, dir}
sub start_watch {
    my (%o) = @_;
    my $w = { dir => GwTest::subdir('watch-') };
    $w->{conf} = "$w->{dir}/gateway.yaml";
    $w->{out}  = "$w->{dir}/stdout";
    $w->{err}  = "$w->{dir}/stderr";
    GwTest::spew_file($w->{conf}, $o{yaml});
    my $cmd = disc_printer() or die "no discovery printer built\n";
    $w->{pid} = GwTest::spawn([@$cmd, '-c', $w->{conf}], $w->{out}, $w->{err});
    push @watches, $w;
    return $w;
}

sub stop_watch {
    my ($w) = @_;
    return $w->{exit} if $w->{stopped}++;
    kill 'TERM', $w->{pid};
    $w->{exit} = GwTest::reap($w->{pid}, 10 * GwTest::mult());
    my $err = GwTest::slurp_file($w->{err});
    my @rep = $err =~ /^(.*(?:ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:).*)$/mg;
    Test::More::ok(!@rep, "discovery printer $w->{pid}: no sanitizer report")
      or Test::More::diag($err);
    return $w->{exit};
}

# Every line printed so far, decoded.
sub watch_lines {
    my ($w) = @_;
    my @r;
    for my $l (split /\n/, GwTest::slurp_file($w->{out})) {
        push @r, eval { $JSON->decode($l) } // { bad => $l } if length $l;
    }
    return @r;
}

# The node lists printed for SOURCE, oldest first.
sub watch_lists {
    my ($w, $source) = @_;
    return map { $_->{nodes} } grep { defined $_->{source} && $_->{source} eq $source }
      watch_lines($w);
}

sub last_nodes {
    my ($w, $source) = @_;
    my @l = watch_lists($w, $source);
    return @l ? $l[-1] : undef;
}

# Waits until the latest list of SOURCE satisfies COND (gets the nodes).
sub wait_nodes {
    my ($w, $source, $cond, $timeout) = @_;
    my $last;
    my $ok = GwTest::wait_for(sub {
        $last = last_nodes($w, $source);
        return defined $last && $cond->($last);
    }, $timeout // 5);
    return $ok ? $last : undef;
}

# Waits for a line after the first SKIP lines satisfying COND; returns it.
sub wait_line {
    my ($w, $skip, $cond, $timeout) = @_;
    my $found;
    GwTest::wait_for(sub {
        my @l = watch_lines($w);
        for my $i ($skip .. $#l) {
            return $found = $l[$i] if $cond->($l[$i]);
        }
        return 0;
    }, $timeout // 5);
    return $found;
}

sub nodes_by_addr {
    my ($nodes) = @_;
    return { map { $_->{addr} => $_ } @$nodes };
}

END {
    my $st = $?;
    for my $w (@watches) {
        next if $w->{stopped}++;
        kill 'TERM', $w->{pid};
        GwTest::reap($w->{pid}, 5 * GwTest::mult());
    }
    for my $c (@mocks) {
        next if $c->{stopped}++;
        kill 'TERM', $c->{pid};
        GwTest::reap($c->{pid}, 5 * GwTest::mult());
    }
    $? = $st;
}

1;
