#!/usr/bin/perl
#
# echo-upstream.pl: a small HTTP/1.1 origin server for tests and the demo.
#
# Usage:
#   echo-upstream.pl --port P [--name NAME] [--log FILE] [--ready]
#                    [--fail-status N]
#
#   --port P    listen on 127.0.0.1:P (required; loopback only)
#   --name N    name this server reports (default "echo")
#   --log F     append one JSON line per request received (default: no log)
#   --ready     print "ready <port>" on stdout once listening; otherwise
#               nothing is ever printed on stdout
#   --fail-status N
#               answer every request with status N (as /status/N would),
#               whatever its target: a node that is up but failing
#
# One process per connection (fork); connections are kept alive as HTTP/1.1
# allows. Request bodies may use Content-Length or chunked framing; chunked
# bodies are de-chunked (trailers recorded but not echoed). SIGTERM stops the
# server and its connection processes.
#
# Log line (written before the answer, so a client that has its response can
# read the log):
#   {"name", "method", "uri", "version", "headers": [[name, value], ...] in
#    the order received, "body" (de-chunked), "raw_head" (request line and
#    header block as received), "chunked" (0|1), "trailers": [[n, v], ...],
#    "complete" (0 when the connection ended inside the body), "conn" (an id
#    of the connection), "seq" (1 for the first request on the connection),
#    "peer" ("ip:port" of the client)}
# A head it cannot parse is logged as {"name", "malformed": 1, "raw_head",
# "complete": 0, ...} and answered 400.
#
# Default answer: 200, Content-Type: application/json, X-Upstream: NAME,
# body {"name", "method", "uri", "headers": {lower-case name: value}, "body"}.
# Special request targets (prefix match on the target as received):
#   /status/NNN      status NNN with a small JSON body (none for 1xx/204/304)
#   /sleep/MS        wait MS milliseconds, then the default answer
#   /chunked         a chunked answer of three chunks: "chunk-one|",
#                    "chunk-two|", "chunk-three" (no Content-Length)
#   /big/N           N bytes of "x" with Content-Length
#   /close           the default answer with Connection: close, then close
#   /drop            close without answering
#   /bad/cl-te       an answer with both Content-Length and Transfer-Encoding
#   /bad/two-cl      an answer with two different Content-Length headers
#   /bad/status      a garbage status line
#   /slow-body/MS    head (Content-Length) at once, the body after MS ms
#   /nobody/204      204 No Content
#   /sink            the default answer, but "body" (logged and echoed) is
#                    "bytes=N md5=HEX" of the body received
# A HEAD request gets the head of the answer without its body.

use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use JSON::PP;
use Fcntl qw(O_WRONLY O_APPEND O_CREAT);
use Getopt::Long;
use Digest::MD5 qw(md5_hex);

my ($port, $name, $log, $ready, $fail_status) = (undef, 'echo', undef, 0, undef);
GetOptions('port=i' => \$port, 'name=s' => \$name, 'log=s' => \$log,
           'ready' => \$ready, 'fail-status=i' => \$fail_status)
  or die "usage: $0 --port P [--name NAME] [--log FILE] [--ready] [--fail-status N]\n";
die "echo-upstream: --fail-status must be 100..599\n"
  if defined $fail_status && ($fail_status < 100 || $fail_status > 599);
die "usage: $0 --port P [--name NAME] [--log FILE] [--ready]\n"
  unless defined $port;

# Bytes in, bytes out: escape everything above 0x7f so the log is plain
# ASCII and decodes back to the same octets.
my $JSON = JSON::PP->new->ascii->canonical;

my $IDLE_TIMEOUT = 120; # a connection process never outlives its client by much
my $MAX_HEAD     = 1024 * 1024;

my $listener = IO::Socket::INET->new(
    LocalAddr => '127.0.0.1',
    LocalPort => $port,
    Proto     => 'tcp',
    Listen    => 1024,
    ReuseAddr => 1,
) or die "echo-upstream: cannot listen on 127.0.0.1:$port: $!\n";

my %children;
my $parent_pid = $$;

$SIG{CHLD} = sub {
    while ((my $pid = waitpid(-1, WNOHANG)) > 0) {
        delete $children{$pid};
    }
};
my $stop = sub {
    if ($$ == $parent_pid) {
        kill 'TERM', keys %children if %children;
    }
    exit 0;
};
$SIG{TERM} = $stop;
$SIG{INT}  = $stop;
$SIG{PIPE} = 'IGNORE';

if ($ready) {
    $| = 1;
    print "ready ", $listener->sockport, "\n";
}

my $conn_no = 0;
while (1) {
    my $client = $listener->accept;
    unless ($client) {
        next if $!{EINTR} || $!{ECONNABORTED};
        die "echo-upstream: accept: $!\n";
    }
    $conn_no++;
    my $pid = fork;
    if (!defined $pid) {
        close $client;
        next;
    }
    if ($pid == 0) {
        $SIG{TERM} = 'DEFAULT';
        $SIG{INT}  = 'DEFAULT';
        $SIG{CHLD} = 'DEFAULT';
        close $listener;
        serve($client, "$parent_pid-$conn_no");
        exit 0;
    }
    $children{$pid} = 1;
    close $client;
}

# --- one connection ------------------------------------------------------

sub serve {
    my ($sock, $conn_id) = @_;
    binmode $sock;
    my $peer = $sock->peerhost . ':' . $sock->peerport;
    my $sel  = IO::Select->new($sock);
    my $buf  = '';
    my $eof  = 0;
    my $seq  = 0;

    # Reads more bytes into $buf; false on EOF, error or idle timeout.
    my $fill = sub {
        return 0 if $eof;
        return 0 unless $sel->can_read($IDLE_TIMEOUT);
        my $n = sysread($sock, $buf, 65536, length $buf);
        if (!$n) { $eof = 1; return 0 }
        return 1;
    };

    while (1) {
        my $end;
        while (($end = index($buf, "\r\n\r\n")) < 0) {
            return if length($buf) > $MAX_HEAD;
            return unless $fill->();
        }
        my $raw_head = substr($buf, 0, $end + 4, '');
        my @lines = split /\r\n/, substr($raw_head, 0, $end);
        my $reqline = shift @lines // '';
        my ($method, $uri, $version) =
          $reqline =~ m{^(\S+) (\S+) (HTTP/\d\.\d)$}
          or return malformed($sock, $raw_head, $conn_id, $peer);

        my @headers;
        for my $l (@lines) {
            my ($n, $v) = $l =~ /^([!#\$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/
              or return malformed($sock, $raw_head, $conn_id, $peer);
            push @headers, [$n, $v];
        }
        my %h;
        for (@headers) {
            my $k = lc $_->[0];
            $h{$k} = exists $h{$k} ? "$h{$k}, $_->[1]" : $_->[1];
        }

        my ($body, $chunked, $complete, @trailers) = ('', 0, 1);
        if (defined $h{'transfer-encoding'}
            && $h{'transfer-encoding'} =~ /chunked\s*$/i) {
            $chunked = 1;
            CHUNK: while (1) {
                my $e;
                while (($e = index($buf, "\r\n")) < 0) {
                    $complete = 0, last CHUNK unless $fill->();
                }
                my $line = substr($buf, 0, $e + 2, '');
                my ($size) = $line =~ /^([0-9a-fA-F]+)/
                  or return bad_request($sock);
                $size = hex $size;
                if ($size == 0) {
                    # trailers up to an empty line
                    while (1) {
                        while (($e = index($buf, "\r\n")) < 0) {
                            $complete = 0, last CHUNK unless $fill->();
                        }
                        my $t = substr($buf, 0, $e + 2, '');
                        last CHUNK if $t eq "\r\n";
                        push @trailers, [$1, $2]
                          if $t =~ /^([^:\s]+):[ \t]*(.*?)[ \t]*\r\n$/;
                    }
                }
                while (length($buf) < $size + 2) {
                    $complete = 0, last CHUNK unless $fill->();
                }
                $body .= substr($buf, 0, $size, '');
                substr($buf, 0, 2, '') eq "\r\n" or return bad_request($sock);
            }
        }
        elsif (defined $h{'content-length'}) {
            my ($len) = $h{'content-length'} =~ /^(\d+)$/
              or return bad_request($sock);
            while (length($buf) < $len) {
                $complete = 0, last unless $fill->();
            }
            $body = substr($buf, 0, $len, '');
        }
        $seq++;
        # Megabytes are counted, not logged or echoed: JSON::PP takes
        # seconds over them.
        $body = sprintf('bytes=%d md5=%s', length $body, md5_hex($body))
          if $uri =~ m{^/sink};

        write_log({
            name     => $name,
            method   => $method,
            uri      => $uri,
            version  => $version,
            headers  => \@headers,
            body     => $body,
            raw_head => $raw_head,
            chunked  => $chunked,
            trailers => \@trailers,
            complete => $complete,
            conn     => $conn_id,
            seq      => $seq,
            peer     => $peer,
        });
        return unless $complete;

        my $keep = $version eq 'HTTP/1.1'
          ? !(($h{connection} // '') =~ /\bclose\b/i)
          : (($h{connection} // '') =~ /\bkeep-alive\b/i);
        my $head_only = $method eq 'HEAD';

        my $echo = {
            name    => $name,
            method  => $method,
            uri     => $uri,
            headers => \%h,
            body    => $body,
        };
        $keep = answer($sock, $uri, $echo, $keep, $head_only, $version);
        return unless $keep;
    }
}

sub write_log {
    my ($rec) = @_;
    return unless defined $log;
    # One write per line on an O_APPEND descriptor: lines from concurrent
    # connection processes never interleave.
    sysopen(my $fh, $log, O_WRONLY | O_APPEND | O_CREAT, 0644) or return;
    binmode $fh;
    syswrite($fh, $JSON->encode($rec) . "\n");
    close $fh;
}

# A head this server cannot parse is still logged (with "malformed": 1), so
# a test can see that it reached the upstream at all.
sub malformed {
    my ($sock, $raw_head, $conn_id, $peer) = @_;
    write_log({ name => $name, malformed => 1, raw_head => $raw_head,
                complete => 0, conn => $conn_id, peer => $peer });
    return bad_request($sock);
}

sub bad_request {
    my ($sock) = @_;
    send_all($sock, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
        . "Connection: close\r\n\r\n");
    return;
}

sub send_all {
    my ($sock, $data) = @_;
    while (length $data) {
        my $n = syswrite($sock, $data);
        return 0 unless defined $n && $n > 0;
        substr($data, 0, $n, '');
    }
    return 1;
}

sub head {
    my ($status, $reason, $keep, @h) = @_;
    my $s = "HTTP/1.1 $status $reason\r\nX-Upstream: $name\r\n";
    while (@h) {
        my ($k, $v) = splice @h, 0, 2;
        $s .= "$k: $v\r\n";
    }
    $s .= "Connection: close\r\n" unless $keep;
    return "$s\r\n";
}

my %REASON = (
    100 => 'Continue', 200 => 'OK', 201 => 'Created', 204 => 'No Content',
    301 => 'Moved Permanently', 302 => 'Found', 304 => 'Not Modified',
    400 => 'Bad Request', 401 => 'Unauthorized', 403 => 'Forbidden',
    404 => 'Not Found', 429 => 'Too Many Requests',
    500 => 'Internal Server Error', 502 => 'Bad Gateway',
    503 => 'Service Unavailable', 504 => 'Gateway Timeout',
);

# Returns whether the connection stays open.
sub answer {
    my ($sock, $uri, $echo, $keep, $head_only, $version) = @_;

    $uri = "/status/$fail_status" if defined $fail_status;
    if ($uri =~ m{^/drop}) {
        return 0;
    }
    if ($uri =~ m{^/sleep/(\d+)}) {
        sleep($1 / 1000);
    }
    if ($uri =~ m{^/status/(\d{3})}) {
        my $st = $1;
        my $reason = $REASON{$st} // 'Status';
        if ($st < 200 || $st == 204 || $st == 304) {
            send_all($sock, head($st, $reason, $keep));
            return $keep;
        }
        my $b = $JSON->encode({ name => $name, status => 0 + $st });
        send_all($sock, head($st, $reason, $keep,
            'Content-Type' => 'application/json',
            'Content-Length' => length $b) . ($head_only ? '' : $b));
        return $keep;
    }
    if ($uri =~ m{^/nobody/204}) {
        send_all($sock, head(204, 'No Content', $keep));
        return $keep;
    }
    if ($uri =~ m{^/chunked}) {
        my @c = ('chunk-one|', 'chunk-two|', 'chunk-three');
        my $h = head(200, 'OK', $keep, 'Content-Type' => 'text/plain',
            'Transfer-Encoding' => 'chunked');
        if ($head_only) {
            send_all($sock, $h);
            return $keep;
        }
        send_all($sock, $h) or return 0;
        for (@c) {
            send_all($sock, sprintf("%x\r\n%s\r\n", length, $_)) or return 0;
            sleep(0.01);
        }
        send_all($sock, "0\r\n\r\n");
        return $keep;
    }
    if ($uri =~ m{^/big/(\d+)}) {
        my $n = $1;
        send_all($sock, head(200, 'OK', $keep, 'Content-Type' => 'text/plain',
            'Content-Length' => $n)) or return 0;
        return $keep if $head_only;
        my $block = 'x' x 65536;
        while ($n > 0) {
            my $k = $n < 65536 ? $n : 65536;
            send_all($sock, substr($block, 0, $k)) or return 0;
            $n -= $k;
        }
        return $keep;
    }
    if ($uri =~ m{^/bad/cl-te}) {
        send_all($sock, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
            . "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
        return 0;
    }
    if ($uri =~ m{^/bad/two-cl}) {
        send_all($sock, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
            . "Content-Length: 6\r\n\r\nhello!");
        return 0;
    }
    if ($uri =~ m{^/bad/status}) {
        send_all($sock, "HTTP/1.1 abc garbage\r\nContent-Length: 2\r\n\r\nok");
        return 0;
    }
    if ($uri =~ m{^/slow-body/(\d+)}) {
        my $ms = $1;
        my $b = $JSON->encode($echo);
        send_all($sock, head(200, 'OK', $keep, 'Content-Type' => 'application/json',
            'Content-Length' => length $b)) or return 0;
        return $keep if $head_only;
        sleep($ms / 1000);
        send_all($sock, $b) or return 0;
        return $keep;
    }

    my $close = $uri =~ m{^/close};
    $keep = 0 if $close;
    my $b = $JSON->encode($echo);
    send_all($sock, head(200, 'OK', $keep, 'Content-Type' => 'application/json',
        'Content-Length' => length $b) . ($head_only ? '' : $b)) or return 0;
    return $keep;
}
