package GwEtcd;

# etcd for the discovery tests: a real etcd server on free loopback ports,
# etcdctl for admin steps, the registration program t/reg (etcd's own Go
# client, registering the way go-zero and go-micro services do), a TCP
# proxy to break streams, and the discovery printer whose JSON lines the
# tests read. Every process is stopped by PID.

use strict;
use warnings;

use Exporter 'import';
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use File::Basename qw(dirname);
use Cwd qw(abs_path);
use Time::HiRes qw(time sleep);
use JSON::PP;
use GwTest;

our @EXPORT = qw(
  have_etcd start_etcd stop_etcd restart_etcd etcdctl
  reg_bin start_reg stop_reg
  start_proxy stop_proxy
  start_disc stop_disc disc_lines disc_last disc_wait disc_log
);

my $LIBDIR = dirname(abs_path(__FILE__));
my $ROOT   = abs_path("$LIBDIR/../..");
my $JSON   = JSON::PP->new->utf8->canonical;

my (@etcds, @regs, @proxies, @discs);

sub have_etcd {
    for my $b (qw(etcd etcdctl)) {
        return 0 unless grep { -x "$_/$b" } split /:/, $ENV{PATH};
    }
    return 1;
}

sub _http_get {
    my ($port, $path, $tls) = @_;
    require IO::Socket::SSL if $tls;
    my $s = $tls ? IO::Socket::SSL->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                       SSL_verify_mode => 0, Timeout => 1)
                 : IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                       Proto => 'tcp', Timeout => 1);
    return '' unless $s;
    print $s "GET $path HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    local $/;
    my $r = <$s> // '';
    close $s;
    return $r;
}

sub _spawn_etcd {
    my ($e) = @_;
    my $c = ($e->{tls} ? 'https' : 'http') . "://127.0.0.1:$e->{port}";
    my $p = "http://127.0.0.1:$e->{peer_port}";
    my @args = ('etcd', '--name', 'gw', '--data-dir', "$e->{dir}/data",
        '--listen-client-urls', $c, '--advertise-client-urls', $c,
        '--listen-peer-urls', $p, '--initial-advertise-peer-urls', $p,
        '--initial-cluster', "gw=$p", '--auto-compaction-retention', '0',
        '--logger', 'zap', '--log-level', 'warn',
        $e->{tls} ? ('--cert-file', $e->{tls}{cert}, '--key-file', $e->{tls}{key}) : ());
    $e->{pid} = GwTest::spawn(\@args, "$e->{dir}/stdout", "$e->{dir}/stderr");
    $e->{stopped} = 0;
    my $ok = wait_for(sub {
        return -1 if waitpid($e->{pid}, WNOHANG) == $e->{pid};
        return _http_get($e->{port}, '/health', $e->{tls}) =~ /"health":\s*"true"/;
    }, 20);
    die "etcd did not start on $e->{port}:\n" . slurp_file("$e->{dir}/stderr")
      unless $ok && $ok > 0;
}

# start_etcd([tls => {cert, key, ca}]) -> {port, peer_port, dir, pid, url}
# With tls, clients speak https (the peer port stays plain); etcdctl is
# given ca.
sub start_etcd {
    my (%o) = @_;
    my $e = { port => free_port(), peer_port => free_port(), dir => GwTest::subdir('etcd-'),
              tls => $o{tls} };
    $e->{url} = ($o{tls} ? 'https' : 'http') . "://127.0.0.1:$e->{port}";
    push @etcds, $e;
    _spawn_etcd($e);
    return $e;
}

# stop_etcd($e, signal => 'KILL'): by PID; the data directory stays.
sub stop_etcd {
    my ($e, %o) = @_;
    return if $e->{stopped}++;
    kill($o{signal} // 'TERM', $e->{pid});
    return GwTest::reap($e->{pid}, 10 * mult());
}

# The same member again: same ports, same data directory.
sub restart_etcd {
    my ($e) = @_;
    stop_etcd($e);
    _spawn_etcd($e);
}

# etcdctl($e, [user => 'root:pw',] @args) -> (exit code, output)
sub etcdctl {
    my ($e, @args) = @_;
    my @auth;
    if (@args && $args[0] eq 'user' && ref $args[1] eq 'SCALAR') {
        push @auth, '--user', ${ $args[1] };
        splice @args, 0, 2;
    }
    my $stdin;
    if (@args && ref $args[-1] eq 'SCALAR') {
        $stdin = ${ pop @args };
    }
    my $dir = GwTest::tmpdir();
    my $in  = "$dir/etcdctl.in";
    spew_file($in, $stdin // '');
    local $ENV{ETCDCTL_API} = 3;
    my @cmd = ('etcdctl', '--endpoints', $e->{url}, '--dial-timeout', '5s', @auth,
        $e->{tls} ? ('--cacert', $e->{tls}{ca}) : (), @args);
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', $in;
        open STDERR, '>&', \*STDOUT;
        exec @cmd or POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($? >> 8, $out);
}

# --- the registration program ------------------------------------------------

# build/reg, built from t/reg/main.go against Debian's etcd client sources
# (offline, GOPATH mode) when missing or older than its source. Returns the
# path, or undef and the reason.
sub reg_bin {
    my $src = "$ROOT/t/reg/main.go";
    my $bin = "$ROOT/build/reg";
    return ($bin) if -x $bin && (stat $bin)[9] >= (stat $src)[9];
    return (undef, 'go not installed (make deps)') unless grep { -x "$_/go" } split /:/, $ENV{PATH};
    return (undef, 'etcd client sources missing (golang-etcd-server-dev)')
      unless -d '/usr/share/gocode/src/go.etcd.io/etcd/clientv3';
    my $gopath = GwTest::subdir('gopath-');
    mkdir "$ROOT/build";
    local $ENV{GO111MODULE} = 'off';
    local $ENV{GOPATH}      = "$gopath:/usr/share/gocode";
    local $ENV{GOCACHE}     = "$ROOT/build/go-cache";
    my $out = `cd $ROOT && go build -o $bin.new ./t/reg 2>&1`;
    return (undef, "go build failed:\n$out") if $? != 0;
    rename "$bin.new", $bin or return (undef, "rename: $!");
    return ($bin);
}

# start_reg($e, mode => 'go-zero', key => K, addr => H:P, [ttl, user, password])
# start_reg($e, mode => 'go-micro', service => S, node => ID, addr => H:P,
#           [version, meta => 'k=v,k=v', prefix])
#   -> {pid, key, lease}, once the key is in etcd.
sub start_reg {
    my ($e, %o) = @_;
    my ($bin, $why) = reg_bin();
    die "$why\n" unless $bin;
    my $r = { dir => GwTest::subdir('reg-') };
    my @args = ($bin, '-endpoints', $o{endpoints} // $e->{url});
    for my $k (qw(mode key service node addr version meta prefix ttl user password)) {
        push @args, "-$k", $o{$k} if defined $o{$k};
    }
    $r->{pid} = GwTest::spawn(\@args, "$r->{dir}/stdout", "$r->{dir}/stderr");
    push @regs, $r;
    my $ok = wait_for(sub {
        return -1 if waitpid($r->{pid}, WNOHANG) == $r->{pid};
        return slurp_file("$r->{dir}/stdout") =~ /^registered (\S+) (\d+)$/m;
    }, 15);
    die "reg did not register:\n" . slurp_file("$r->{dir}/stderr") unless $ok && $ok > 0;
    slurp_file("$r->{dir}/stdout") =~ /^registered (\S+) (\d+)$/m;
    ($r->{key}, $r->{lease}) = ($1, $2);
    return $r;
}

# stop_reg($r, signal => 'KILL'): TERM revokes the lease, KILL leaves it
# to expire.
sub stop_reg {
    my ($r, %o) = @_;
    return if $r->{stopped}++;
    kill($o{signal} // 'TERM', $r->{pid});
    return GwTest::reap($r->{pid}, 10 * mult());
}

# --- proxy -------------------------------------------------------------------

# start_proxy($target_port, [port => P]) -> {port, pid}
sub start_proxy {
    my ($target, %o) = @_;
    my $p = { port => $o{port} // free_port(), dir => GwTest::subdir('proxy-') };
    $p->{pid} = GwTest::spawn([$^X, "$LIBDIR/tcp-proxy.pl", $p->{port}, $target],
        "$p->{dir}/stdout", "$p->{dir}/stderr");
    push @proxies, $p;
    wait_for(sub { GwTest::port_open($p->{port}) }, 5) or die "proxy did not start\n";
    return $p;
}

sub stop_proxy {
    my ($p) = @_;
    return if $p->{stopped}++;
    kill 'KILL', $p->{pid};
    return GwTest::reap($p->{pid}, 5 * mult());
}

# --- the discovery printer ---------------------------------------------------

# The program that runs the watchers of a config in the foreground and
# prints one JSON line per report.
sub _disc_cmd {
    my ($conf) = @_;
    return [GwTest::gw_bin(), '-d', '-c', $conf];
}

# start_disc($yaml) -> {pid, out, err}
sub start_disc {
    my ($yaml) = @_;
    my $d = { dir => GwTest::subdir('disc-') };
    $d->{conf} = "$d->{dir}/gateway.yaml";
    $d->{out}  = "$d->{dir}/stdout";
    $d->{err}  = "$d->{dir}/stderr";
    spew_file($d->{conf}, $yaml);
    $d->{pid} = GwTest::spawn(_disc_cmd($d->{conf}), $d->{out}, $d->{err});
    push @discs, $d;
    return $d;
}

# Stops it by PID; a sanitizer report in its stderr fails a test.
sub stop_disc {
    my ($d) = @_;
    return $d->{exit} if $d->{stopped}++;
    kill 'TERM', $d->{pid};
    $d->{exit} = GwTest::reap($d->{pid}, 10 * mult());
    my @rep = slurp_file($d->{err}) =~
      /^(.*(?:ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:).*)$/mg;
    Test::More::ok(!@rep, 'discovery printer: no sanitizer report') or Test::More::diag(@rep);
    return $d->{exit};
}

# Every complete JSON line printed so far, decoded.
sub disc_lines {
    my ($d) = @_;
    my @l;
    for my $line (split /\n/, slurp_file($d->{out})) {
        my $v = eval { $JSON->decode($line) };
        push @l, $v if ref $v eq 'HASH';
    }
    return @l;
}

sub disc_log {
    my ($d) = @_;
    return slurp_file($d->{err});
}

# The last list printed for SOURCE (its nodes array), or undef.
sub disc_last {
    my ($d, $source) = @_;
    my $last;
    for my $l (disc_lines($d)) {
        $last = $l->{nodes} if defined $l->{source} && $l->{source} eq $source;
    }
    return $last;
}

# Waits until COND(nodes of the last list for SOURCE) holds; returns the
# nodes then (undef on timeout).
sub disc_wait {
    my ($d, $source, $cond, $timeout) = @_;
    my $got;
    wait_for(sub {
        my $n = disc_last($d, $source);
        return 0 unless $n && $cond->($n);
        $got = $n;
        return 1;
    }, $timeout // 10);
    return $got;
}

END {
    my $st = $?;
    for my $d (@discs) { next if $d->{stopped}++; kill 'TERM', $d->{pid}; GwTest::reap($d->{pid}, 5 * mult()); }
    for my $r (@regs) { next if $r->{stopped}++; kill 'TERM', $r->{pid}; GwTest::reap($r->{pid}, 5 * mult()); }
    for my $p (@proxies) { next if $p->{stopped}++; kill 'KILL', $p->{pid}; GwTest::reap($p->{pid}, 5 * mult()); }
    for my $e (@etcds) { next if $e->{stopped}++; kill 'TERM', $e->{pid}; GwTest::reap($e->{pid}, 10 * mult()); }
    $? = $st;
}

1;
