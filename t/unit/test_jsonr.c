/* The strict JSON reader: what it accepts, what it refuses, walking. */
#include <stdlib.h>
#include <string.h>

#include "gw_jsonr.h"
#include "tap.h"

static int
parses(const char *text, size_t max_toks)
{
    gw_jsonr_t j;
    char err[128];
    int rc = gw_jsonr_parse(&j, text, strlen(text), max_toks, err, sizeof(err));
    gw_jsonr_free(&j);
    return rc == 0;
}

static void
test_accepts(void)
{
    static const char *const good[] = {
        "{}",
        "[]",
        " \t\r\n{ } \n",
        "0",
        "-0",
        "-12.5e+3",
        "1E9",
        "1.5e+10",
        "-12.25E-3",
        "0.001",
        "true",
        "false",
        "null",
        "\"\"",
        "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"",
        "\"\\u00e9\\u20ac\\ud83d\\ude00\"",
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
        "[1,[2,[3,{\"a\":[]}]],\"x\"]",
        "[null,true,false,{\"b\":[null,true,false]}]",
        "{\"a\":1,\"a\":2}",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        ok(parses(good[i], 1000), "accepts good[%zu]", i);
}

static void
test_refuses(void)
{
    static const char *const bad[] = {
        "",
        " ",
        "{",
        "[1,]",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{\"a\"}",
        "{a:1}",
        "{'a':1}",
        "[1 2]",
        "01",
        "-",
        "1.",
        ".5",
        "1e",
        "+1",
        "0x10",
        "NaN",
        "Infinity",
        "tru",
        "nul",
        "\"abc",
        "\"a\tb\"",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\u12g4\"",
        "\"a\x01\"",
        "\"\\ud800\"",
        "\"\\ude00\"",
        "\"\\ud800\\u0041\"",
        "\"\xc3\"",
        "\"\xe2\x82\"",
        "\"\xc0\xaf\"",
        "\"\xed\xa0\x80\"",
        "\"\xf4\x90\x80\x80\"",
        "\"\xff\"",
        "{} {}",
        "[] x",
        "// comment\n{}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ok(!parses(bad[i], 1000), "refuses bad[%zu]", i);

    char nul[] = "[1,\0]";
    gw_jsonr_t j;
    ok(gw_jsonr_parse(&j, nul, 5, 100, NULL, 0) != 0, "refuses a NUL byte in the text");
    gw_jsonr_free(&j);
    ok(gw_jsonr_parse(&j, "[1]\0", 4, 100, NULL, 0) != 0, "refuses a NUL after the value");
    gw_jsonr_free(&j);
}

static void
test_bounds(void)
{
    char deep[200], err[128];
    gw_jsonr_t j;
    size_t n = 0;

    for (int i = 0; i < GW_JSONR_MAX_DEPTH; i++)
        deep[n++] = '[';
    for (int i = 0; i < GW_JSONR_MAX_DEPTH; i++)
        deep[n++] = ']';
    deep[n] = '\0';
    ok(parses(deep, 1000), "depth %d accepted", GW_JSONR_MAX_DEPTH);
    memmove(deep + 1, deep, n + 1);
    deep[0] = '[';
    strcat(deep, "]");
    ok(gw_jsonr_parse(&j, deep, strlen(deep), 1000, err, sizeof(err)) != 0 &&
           strstr(err, "nested too deep") != NULL,
       "one deeper refused: %s", err);
    gw_jsonr_free(&j);

    ok(parses("[1,2,3]", 4), "4 tokens fit a limit of 4");
    ok(gw_jsonr_parse(&j, "[1,2,3,4]", 9, 4, err, sizeof(err)) != 0 &&
           strstr(err, "too many values") != NULL,
       "5 tokens over a limit of 4: %s", err);
    gw_jsonr_free(&j);
    ok(gw_jsonr_parse(&j, "[1,x]", 5, 100, err, sizeof(err)) != 0 && strstr(err, "byte 3"),
       "the error names the offset: %s", err);
    gw_jsonr_free(&j);
}

static void
test_walk(void)
{
    const char *text = "{\"header\":{\"revision\":\"42\"},\"kvs\":[{\"key\":\"YQ==\",\"n\":-7},"
                       "{\"key\":\"Yg==\"}],\"count\":\"2\",\"e\\u0073c\":\"x\\u0041\\n\","
                       "\"big\":\"9223372036854775807\",\"over\":\"9223372036854775808\","
                       "\"f\":1.5,\"z\":\"007\",\"nul\":\"a\\u0000b\",\"d\":1,\"d\":2}";
    gw_jsonr_t j;
    char err[128], buf[64];
    int64_t v = 0;

    is_int(gw_jsonr_parse(&j, text, strlen(text), 1000, err, sizeof(err)), 0, "parses (%s)", err);
    is_int(gw_jsonr_type(&j, 0), GW_JSONR_OBJECT, "root is an object");
    int h = gw_jsonr_get(&j, 0, "header");
    ok(gw_jsonr_int(&j, gw_jsonr_get(&j, h, "revision"), &v) == 0 && v == 42,
       "header.revision from a string");
    is_int(gw_jsonr_get(&j, 0, "missing"), -1, "absent member");
    is_int(gw_jsonr_get(&j, h, "kvs"), -1, "members are not searched in nested objects");
    int kvs = gw_jsonr_get(&j, 0, "kvs");
    is_int(gw_jsonr_type(&j, kvs), GW_JSONR_ARRAY, "kvs is an array");
    int n = 0;
    char keys[16] = "";
    for (int e = gw_jsonr_first(&j, kvs); e >= 0; e = gw_jsonr_next(&j, kvs, e)) {
        n++;
        if (gw_jsonr_str(&j, gw_jsonr_get(&j, e, "key"), buf, sizeof(buf)) > 0)
            strcat(keys, buf);
    }
    is_int(n, 2, "two elements walked");
    is_str(keys, "YQ==Yg==", "their keys in order");
    int e0 = gw_jsonr_first(&j, kvs);
    ok(gw_jsonr_int(&j, gw_jsonr_get(&j, e0, "n"), &v) == 0 && v == -7, "a negative number");
    is_int(gw_jsonr_first(&j, gw_jsonr_get(&j, 0, "count")), -1, "a string has no members");

    int esc = gw_jsonr_get(&j, 0, "esc");
    ok(esc >= 0, "a key written with an escape matches");
    is_int(gw_jsonr_str(&j, esc, buf, sizeof(buf)), 3, "decoded length");
    is_str(buf, "xA\n", "decoded value");
    is_int(gw_jsonr_str(&j, esc, buf, 3), -1, "does not fit in 3 bytes");
    ok(gw_jsonr_str_eq(&j, esc, "xA\n"), "str_eq on an escaped string");
    ok(!gw_jsonr_str_eq(&j, esc, "xA"), "str_eq: a prefix is not equal");

    ok(gw_jsonr_int(&j, gw_jsonr_get(&j, 0, "big"), &v) == 0 && v == INT64_MAX, "int64 max");
    ok(gw_jsonr_int(&j, gw_jsonr_get(&j, 0, "over"), &v) != 0, "past int64 refused");
    ok(gw_jsonr_int(&j, gw_jsonr_get(&j, 0, "f"), &v) != 0, "a fraction is not an integer");
    ok(gw_jsonr_int(&j, gw_jsonr_get(&j, 0, "z"), &v) != 0, "\"007\" is not an integer");
    ok(gw_jsonr_int(&j, gw_jsonr_get(&j, 0, "header"), &v) != 0, "an object is not an integer");
    ok(gw_jsonr_strdup(&j, gw_jsonr_get(&j, 0, "nul"), NULL) == NULL,
       "a string holding U+0000 is refused as a C string");
    ok(gw_jsonr_int(&j, gw_jsonr_get(&j, 0, "d"), &v) == 0 && v == 2, "a repeated key: the last");

    size_t len = 0;
    char *s = gw_jsonr_strdup(&j, gw_jsonr_get(&j, 0, "count"), &len);
    ok(s && len == 1 && strcmp(s, "2") == 0, "strdup");
    free(s);
    gw_jsonr_free(&j);

    const char *u = "[\"\\u00e9\\ud83d\\ude00\"]";
    is_int(gw_jsonr_parse(&j, u, strlen(u), 10, NULL, 0), 0, "unicode escapes parse");
    gw_jsonr_str(&j, 1, buf, sizeof(buf));
    is_str(buf, "\xc3\xa9\xf0\x9f\x98\x80", "escapes decode to UTF-8 (surrogate pair joined)");
    gw_jsonr_free(&j);
}

/* Siblings found past nested containers and strings holding brackets. */
static void
test_nested_walk(void)
{
    const char *text = "[{\"ID\":\"a\",\"Tags\":[\"x\",\"y\"]}, {\"ID\" : \"b\" , \"Tags\" : [ ] , "
                       "\"Nested\":{\"k\":[{\"z\":\"]}\"}]}}, 3, {\"a\":1,\"\\u0061\":2}]";
    gw_jsonr_t j;
    int64_t v = 0;

    is_int(gw_jsonr_parse(&j, text, strlen(text), 100, NULL, 0), 0, "parses");
    int e[5], n = 0;
    for (int t = gw_jsonr_first(&j, 0); t >= 0 && n < 5; t = gw_jsonr_next(&j, 0, t))
        e[n++] = t;
    is_int(n, 4, "four elements");
    ok(gw_jsonr_str_eq(&j, gw_jsonr_get(&j, e[1], "ID"), "b"), "second ID (spaces around)");
    int tags = gw_jsonr_get(&j, e[1], "Tags");
    ok(gw_jsonr_type(&j, tags) == GW_JSONR_ARRAY && gw_jsonr_first(&j, tags) == -1,
       "an empty array has no first element");
    is_int(gw_jsonr_type(&j, e[2]), GW_JSONR_NUMBER, "a number after a \"]}\" string");
    ok(gw_jsonr_int(&j, gw_jsonr_get(&j, e[3], "a"), &v) == 0 && v == 2,
       "a key repeated with an escape: the last counts");
    is_int(gw_jsonr_get(&j, 0, "ID"), -1, "get on an array finds nothing");
    is_int(gw_jsonr_next(&j, 1000, e[0]), -1, "a parent out of range has no members");
    gw_jsonr_free(&j);
}

/* Short escapes, and integers at and past the edges. */
static void
test_scalars(void)
{
    const char *text = "[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\te\",\"Service\",12,"
                       "-9223372036854775808,99999999999999999999999,1e3,-0]";
    gw_jsonr_t j;
    size_t len = 0;
    int64_t v = 1;

    is_int(gw_jsonr_parse(&j, text, strlen(text), 10, NULL, 0), 0, "parses");
    char *s = gw_jsonr_strdup(&j, 1, &len);
    is_str(s, "a\"b\\c/d\b\f\n\r\te", "every short escape decoded");
    is_int(len, 13, "its length");
    free(s);
    ok(!gw_jsonr_str_eq(&j, 2, "Servic") && !gw_jsonr_str_eq(&j, 2, "Services"),
       "str_eq: shorter or longer is not equal");
    ok(gw_jsonr_strdup(&j, 3, NULL) == NULL, "a number is not a string");
    ok(gw_jsonr_int(&j, 4, &v) == 0 && v == INT64_MIN, "int64 min");
    ok(gw_jsonr_int(&j, 5, &v) != 0, "far past int64 refused");
    ok(gw_jsonr_int(&j, 6, &v) != 0, "an exponent is not an integer");
    ok(gw_jsonr_int(&j, 7, &v) == 0 && v == 0, "-0 is 0");
    gw_jsonr_free(&j);
}

int
main(void)
{
    test_accepts();
    test_refuses();
    test_bounds();
    test_walk();
    test_nested_walk();
    test_scalars();
    done_testing();
}
