# Reading the gateway's /metrics in tests: scrape, parse the Prometheus
# text into series => value, sum by a label, check histograms, run
# promtool, and list the metric names a Grafana dashboard queries.
package GwMetrics;

use strict;
use warnings;
use Exporter 'import';
use File::Temp qw(tempfile);
use GwTest qw(http_request);

our @EXPORT = qw(scrape parse_metrics sum_by label_values histogram_problems
                 promtool_check metric_families dashboard_metrics);

# scrape($gw) -> the text of GET /metrics on the status listener ('' on error)
sub scrape {
    my ($gw) = @_;
    my $r = http_request($gw->{status_port}, 'GET', '/metrics');
    return ($r->{status} // 0) == 200 ? $r->{body} : '';
}

# parse_metrics($text) -> { 'name{labels}' => value } (labels as written)
sub parse_metrics {
    my ($text) = @_;
    my %p;
    for my $l (split /\n/, $text // '') {
        next if $l =~ /^#/ || $l !~ /\S/;
        my ($s, $v) = $l =~ /^(\S+?(?:\{.*\})?) (\S+)$/ or next;
        $p{$s} = $v;
    }
    return \%p;
}

# The labels of a series name as a hash ('a="x",b="y"' -> {a => 'x', b => 'y'}).
sub _labels {
    my ($series) = @_;
    my ($body) = $series =~ /\{(.*)\}$/ or return {};
    my %l;
    while ($body =~ /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g) {
        $l{$1} = $2;
    }
    return \%l;
}

sub _name { my ($s) = @_; $s =~ s/\{.*//; return $s }

# sum_by($p, $name, $label) -> { label value => sum of the series of $name }
sub sum_by {
    my ($p, $name, $label) = @_;
    my %s;
    for my $k (keys %$p) {
        next unless _name($k) eq $name;
        my $v = _labels($k)->{$label} // '';
        $s{$v} += $p->{$k};
    }
    return \%s;
}

# label_values($p, $label) -> { value => 1 } over every series
sub label_values {
    my ($p, $label) = @_;
    my %v;
    for my $k (keys %$p) {
        my $l = _labels($k);
        $v{ $l->{$label} } = 1 if exists $l->{$label};
    }
    return \%v;
}

# histogram_problems($p) -> list of complaints (empty when every histogram
# series has ascending le, cumulative counts, and +Inf equal to _count)
sub histogram_problems {
    my ($p) = @_;
    my (%series, @bad);
    for my $k (keys %$p) {
        my ($base) = _name($k) =~ /^(.*)_bucket$/ or next;
        my $l = _labels($k);
        my $le = delete $l->{le};
        my $id = $base . '{' . join(',', map { "$_=\"$l->{$_}\"" } sort keys %$l) . '}';
        $series{$id}{base} = $base;
        $series{$id}{labels} = join(',', map { "$_=\"$l->{$_}\"" } sort keys %$l);
        push @{ $series{$id}{b} }, [$le eq '+Inf' ? 9**9**9 : $le, $p->{$k}];
    }
    for my $id (sort keys %series) {
        my @b = sort { $a->[0] <=> $b->[0] } @{ $series{$id}{b} };
        for my $i (1 .. $#b) {
            push @bad, "$id: le=$b[$i][0] has $b[$i][1] < $b[$i-1][1]" if $b[$i][1] < $b[$i - 1][1];
        }
        push @bad, "$id: no +Inf bucket" unless $b[-1][0] == 9**9**9;
        my $count;
        for my $k (keys %$p) {
            next unless _name($k) eq "$series{$id}{base}_count";
            my $l = _labels($k);
            my $ls = join(',', map { "$_=\"$l->{$_}\"" } sort keys %$l);
            $count = $p->{$k} if $ls eq $series{$id}{labels};
        }
        push @bad, "$id: no _count" unless defined $count;
        push @bad, "$id: +Inf $b[-1][1] != _count $count" if defined $count && $count != $b[-1][1];
    }
    return @bad;
}

# promtool_check($text) -> (exit code, output) of `promtool check metrics`
sub promtool_check {
    my ($text) = @_;
    my ($fh, $file) = tempfile(UNLINK => 1);
    print $fh $text;
    close $fh;
    my $out = `promtool check metrics < '$file' 2>&1`;
    return ($? >> 8, $out);
}

# metric_families($text) -> names from the # TYPE lines
sub metric_families {
    my ($text) = @_;
    return $text =~ /^# TYPE (\S+) /mg;
}

# dashboard_metrics($decoded_json) -> metric family names in every "expr"
# (a histogram's _bucket, _sum and _count count as the histogram)
sub dashboard_metrics {
    my ($dash) = @_;
    my (%names, @todo);
    @todo = ($dash);
    while (@todo) {
        my $x = shift @todo;
        if (ref $x eq 'HASH') {
            for my $k (keys %$x) {
                if ($k eq 'expr' && !ref $x->{$k}) {
                    $names{$_} = 1 for $x->{$k} =~ /\b(gateway_[a-z_]+)/g;
                } else {
                    push @todo, $x->{$k};
                }
            }
        } elsif (ref $x eq 'ARRAY') {
            push @todo, @$x;
        }
    }
    my %fam;
    for my $n (keys %names) {
        my $base = $n;
        $base =~ s/_(bucket|sum|count)$// if $n =~ /_seconds_(bucket|sum|count)$/;
        $fam{$base} = 1;
    }
    return sort keys %fam;
}

1;
