package GwAdmin;

# A client for the gateway's admin API in tests: one request per
# connection (the API closes after each answer), the key in X-API-Key,
# optionally from another loopback source address (from => '127.0.0.2')
# so that the failed-key limiter can be tested without blocking the rest.
#
#   my $adm = GwAdmin->new(port => P, key => K);
#   my $r = $adm->get('/routes');                  # GwTest response hash
#   $r = $adm->get('/routes', key => undef);       # no key at all
#   $r = $adm->request('POST', '/reload', body => '{}', ctype => 'application/json');
#   my $raw = $adm->raw("GARBAGE\r\n\r\n");        # bytes until the close

use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);
use GwTest qw(build_request parse_responses mult);

sub new {
    my ($class, %o) = @_;
    return bless { port => $o{port}, key => $o{key} }, $class;
}

sub _exchange {
    my ($self, $bytes, %o) = @_;
    my $s = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1', PeerPort => $self->{port}, Proto => 'tcp',
        ($o{from} ? (LocalAddr => $o{from}) : ()), Timeout => 5)
      or return '';
    $s->autoflush(1);
    # a server that answers before the whole request is in may close on
    # the rest: the answer is still read
    local $SIG{PIPE} = 'IGNORE';
    syswrite($s, $bytes);
    my $buf = '';
    my $sel = IO::Select->new($s);
    my $until = time + 10 * mult();
    while (time < $until) {
        last unless $sel->can_read($until - time);
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
    }
    close $s;
    return $buf;
}

sub request {
    my ($self, $method, $path, %o) = @_;
    my @h = @{ $o{headers} // [] };
    my $key = exists $o{key} ? $o{key} : $self->{key};
    push @h, 'X-API-Key' => $key if defined $key;
    push @h, 'Content-Type' => $o{ctype} if defined $o{ctype};
    my $raw = $self->_exchange(build_request($method, $path, headers => \@h, body => $o{body}),
        from => $o{from});
    my ($r) = parse_responses($raw);
    return $r // { status => 0, headers => {}, body => '', raw => $raw };
}

sub get {
    my ($self, $path, %o) = @_;
    return $self->request('GET', $path, %o);
}

# The pid of the gateway worker that holds the server side of GwTest
# connection $c to $gw_port, from the kernel's socket table (ss -tnp).
sub conn_worker {
    my ($gw_port, $c) = @_;
    my $cport = $c->{sock}->sockport;
    my $out = `ss -tnpH state established '( sport = :$gw_port and dport = :$cport )' 2>/dev/null`;
    my ($pid) = $out =~ /pid=(\d+)/;
    return $pid;
}

sub raw {
    my ($self, $bytes, %o) = @_;
    return $self->_exchange($bytes, %o);
}

1;
