# The Lua unit tests: every t/lua/*_test.lua runs under `luajit` from the
# repo root, and its TAP becomes one subtest here. A script that dies, exits
# non-zero, or prints fewer tests than its plan fails its subtest.
#
# LUAJIT picks the interpreter (default: `luajit` from PATH). LUA_CPATH is
# left as it is, so the system cjson is found.

use strict;
use warnings;
use FindBin;
use File::Spec;
use TAP::Parser;
use Test::More;

my $root = File::Spec->rel2abs("$FindBin::Bin/..");
chdir $root or die "chdir $root: $!";

sub find_luajit {
    return $ENV{LUAJIT} if $ENV{LUAJIT};
    for my $dir (File::Spec->path) {
        my $p = File::Spec->catfile($dir, 'luajit');
        return $p if -f $p && -x _;
    }
    return;
}

my $luajit = find_luajit();
plan skip_all => 'luajit not installed (apt-get install luajit)'
    unless $luajit && -x $luajit;

my @scripts = sort glob 't/lua/*_test.lua';
plan skip_all => 'no t/lua/*_test.lua' unless @scripts;

$ENV{LUA_PATH} = 'lua/?.lua;plugins/?.lua;t/lua/?.lua;;';

for my $script (@scripts) {
    subtest $script => sub {
        my $parser = TAP::Parser->new({
            exec  => [$luajit, $script],
            merge => 1,    # Lua errors and tracebacks show up as diagnostics
        });
        my ($tests, $last_failed) = (0, 0);
        while (my $r = $parser->next) {
            if ($r->is_test) {
                $tests++;
                my $name = $r->description;
                $name =~ s/^-\s*//;
                if ($r->has_skip) {
                    pass("$name # skipped: " . ($r->explanation // ''));
                } elsif ($r->has_todo) {
                    TODO: {
                        local $TODO = $r->explanation // '';
                        ok($r->is_actual_ok, $name);
                    }
                } else {
                    ok($r->is_ok, $name);
                }
                $last_failed = !$r->is_ok;
            } elsif ($r->is_comment) {
                my $c = $r->comment;
                # a failure's details go where prove shows them
                if ($last_failed) {
                    diag($c);
                } else {
                    note($c);
                }
            } elsif ($r->is_unknown) {
                diag($r->as_string) if length $r->as_string;
            }
        }
        my @errors = $parser->parse_errors;
        ok(!@errors, 'TAP well formed') or diag(join "\n", @errors);
        ok($tests > 0, 'ran some tests');
        is($parser->exit, 0, 'exit status 0');
    };
}

done_testing();
