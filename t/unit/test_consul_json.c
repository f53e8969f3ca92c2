/* The strict JSON reader the Consul watcher uses (gw_consul_json.c). */
#include <stdlib.h>
#include <string.h>

#include "gw_consul_json.h"
#include "tap.h"

static int
valid(const char *s)
{
    gw_cj_val_t root;
    char err[128];
    return gw_cj_check(s, strlen(s), &root, err, sizeof(err)) == 0;
}

static gw_cj_val_t
parse(const char *s)
{
    gw_cj_val_t root = {NULL, NULL};
    char err[128];
    if (gw_cj_check(s, strlen(s), &root, err, sizeof(err)) < 0)
        printf("# parse failed: %s\n", err);
    return root;
}

static void
test_check(void)
{
    static const char *const good[] = {
        "[]",
        "{}",
        " [ ] ",
        "0",
        "-0",
        "1.5e+10",
        "-12.25E-3",
        "\"\"",
        "true",
        "false",
        "null",
        "[1,\"a\",{\"b\":[null,true,false]}]",
        "\"\\u00e9\\ud83d\\ude00\\n\\/\"",
        "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"",
        "{\"a\":1,\"a\":2}",
        "\t\r\n[1]\n",
    };
    static const char *const bad[] = {
        "",
        "[",
        "[1,]",
        "{\"a\":1,}",
        "{a:1}",
        "01",
        "1.",
        ".5",
        "-",
        "1e",
        "+1",
        "[1 2]",
        "tru",
        "nul",
        "\"abc",
        "\"\\x\"",
        "\"\\u12g4\"",
        "\"a\x01\"",
        "\"\xff\"",
        "\"\xc0\xaf\"",
        "\"\xed\xa0\x80\"",
        "\"\xf4\x90\x80\x80\"",
        "[] []",
        "{\"a\"}",
        "{\"a\" 1}",
        "[1]x",
        "\"\xe2\x82\"",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        ok(valid(good[i]), "valid document %zu", i);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ok(!valid(bad[i]), "invalid document %zu", i);

    char deep[200];
    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    deep[128] = '\0';
    ok(valid(deep), "64 levels of nesting");
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    deep[130] = '\0';
    ok(!valid(deep), "65 levels refused");

    gw_cj_val_t root;
    char err[128];
    ok(gw_cj_check("[1,]", 4, &root, err, sizeof(err)) < 0 && strstr(err, "byte 3") != NULL,
       "the error names the offset: %s", err);
    ok(gw_cj_check("[1]\0", 4, &root, err, sizeof(err)) < 0, "a NUL after the value is refused");
}

static void
test_walk(void)
{
    gw_cj_val_t root = parse("[{\"ID\":\"a\",\"Port\":80,\"Tags\":[\"x\",\"y\"]},"
                             " {\"ID\" : \"b\" , \"Port\":8080, \"Tags\" : [ ] , "
                             "\"Nested\":{\"k\":[{\"z\":\"]}\"}]}}, 3]");
    gw_cj_iter_t it = gw_cj_iter(root);
    gw_cj_val_t e, v;
    int n = 0;
    int64_t port;

    is_int(gw_cj_type(root), GW_CJ_ARRAY, "root is an array");
    while (gw_cj_array_next(&it, &e)) {
        n++;
        if (n == 1) {
            ok(gw_cj_get(e, "ID", &v) && gw_cj_str_eq(v, "a"), "first ID");
            ok(gw_cj_get(e, "Port", &v) && gw_cj_int(v, &port) == 0 && port == 80, "first port");
            ok(gw_cj_get(e, "Tags", &v), "Tags");
            gw_cj_iter_t ti = gw_cj_iter(v);
            gw_cj_val_t t;
            int nt = 0;
            while (gw_cj_array_next(&ti, &t))
                nt++;
            is_int(nt, 2, "two tags");
        } else if (n == 2) {
            ok(gw_cj_get(e, "ID", &v) && gw_cj_str_eq(v, "b"), "second ID (spaces around)");
            ok(gw_cj_get(e, "Port", &v) && gw_cj_int(v, &port) == 0 && port == 8080, "port");
            ok(gw_cj_get(e, "Tags", &v) && gw_cj_type(v) == GW_CJ_ARRAY, "empty tags");
            gw_cj_iter_t ti = gw_cj_iter(v);
            gw_cj_val_t t;
            ok(!gw_cj_array_next(&ti, &t), "empty array walks nothing");
            ok(!gw_cj_get(e, "Missing", &v), "absent member");
        } else {
            is_int(gw_cj_type(e), GW_CJ_NUMBER, "a bare number after a bracket in a string");
        }
    }
    is_int(n, 3, "three elements");
    ok(!gw_cj_get(root, "ID", &v), "get on an array finds nothing");

    gw_cj_val_t o = parse("{\"a\":1,\"\\u0061\":2}");
    int64_t x = 0;
    ok(gw_cj_get(o, "a", &v) && gw_cj_int(v, &x) == 0 && x == 2,
       "repeated (escaped) name: the last counts");
}

static void
test_strings(void)
{
    gw_cj_val_t v = parse("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\te\\u00e9\\ud83d\\ude00\"");
    size_t n;
    char *s = gw_cj_str_dup(v, 100, &n);
    is_str(s, "a\"b\\c/d\b\f\n\r\te\xc3\xa9\xf0\x9f\x98\x80", "escapes decoded");
    is_int(n, strlen("a\"b\\c/d\b\f\n\r\te\xc3\xa9\xf0\x9f\x98\x80"), "length");
    free(s);

    s = gw_cj_str_dup(parse("\"\\ud800x\\udc00\""), 100, NULL);
    is_str(s, "\xef\xbf\xbdx\xef\xbf\xbd", "lone surrogates become U+FFFD");
    free(s);
    ok(gw_cj_str_dup(parse("\"a\\u0000b\""), 100, NULL) == NULL, "NUL refused");
    ok(gw_cj_str_dup(parse("\"abcdef\""), 5, NULL) == NULL, "over the limit refused");
    s = gw_cj_str_dup(parse("\"abcde\""), 5, NULL);
    is_str(s, "abcde", "at the limit");
    free(s);
    ok(gw_cj_str_dup(parse("12"), 5, NULL) == NULL, "a number is not a string");
    ok(gw_cj_str_eq(parse("\"Service\""), "Service"), "str_eq");
    ok(!gw_cj_str_eq(parse("\"Servic\""), "Service"), "str_eq shorter");
    ok(gw_cj_str_eq(parse("\"Serv\\u0069ce\""), "Service"), "str_eq with an escape");
}

static void
test_ints(void)
{
    int64_t x;
    ok(gw_cj_int(parse("0"), &x) == 0 && x == 0, "0");
    ok(gw_cj_int(parse("-42"), &x) == 0 && x == -42, "-42");
    ok(gw_cj_int(parse("9223372036854775807"), &x) == 0 && x == INT64_MAX, "int64 max");
    ok(gw_cj_int(parse("-9223372036854775808"), &x) == 0 && x == INT64_MIN, "int64 min");
    ok(gw_cj_int(parse("9223372036854775808"), &x) < 0, "past int64 refused");
    ok(gw_cj_int(parse("99999999999999999999999"), &x) < 0, "far past refused");
    ok(gw_cj_int(parse("1.0"), &x) < 0, "a fraction refused");
    ok(gw_cj_int(parse("1e3"), &x) < 0, "an exponent refused");
    ok(gw_cj_int(parse("\"1\""), &x) < 0, "a string refused");
    ok(gw_cj_int(parse("[1]"), &x) < 0, "an array refused");
}

int
main(void)
{
    test_check();
    test_walk();
    test_strings();
    test_ints();
    done_testing();
}
