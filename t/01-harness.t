# The test harness itself: what every other test file relies on.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use GwTest;

# Ports handed out in one run are distinct: two servers of one test asking
# one after the other must never get the same port (the kernel may hand the
# same ephemeral port to two binds in a row).
my %seen;
my $dups = 0;
for (1 .. 300) {
    my $p = free_port();
    $dups++ if $seen{$p}++;
}
is($dups, 0, 'free_port: 300 calls, 300 distinct ports');

my $f = tmpdir() . "/x.bin";
is(slurp_file($f), '', 'slurp_file: a missing file reads as empty');
spew_file($f, "a\r\n\0b");
is(slurp_file($f), "a\r\n\0b", 'spew_file then slurp_file: bytes kept');
ok(!-e "$f.new", 'spew_file leaves no temporary file');

done_testing();
