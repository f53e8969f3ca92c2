/* Canary split: FNV-1a vectors, key extraction, rule order, subsets. */
#include <stdlib.h>
#include <string.h>

#include "gw_config.h"
#include "gw_core.h"
#include "gw_split.h"

#include "tap.h"

#define H(n, v)                                                                                    \
    {                                                                                              \
        GW_STR(n), GW_STR(v)                                                                       \
    }

static uint32_t
fnv_str(const char *s)
{
    return gw_fnv1a32(s, strlen(s));
}

static gw_keyspec_t
spec(gw_key_kind_t kind, char *name)
{
    return (gw_keyspec_t){kind, name, name ? strlen(name) : 0};
}

static int
extract(gw_key_kind_t kind, char *name, const gw_req_view_t *req, const char *want)
{
    gw_keyspec_t s = spec(kind, name);
    gw_str_t out = {"junk", 4};
    int found = gw_keyspec_extract(&s, req, &out);

    if (want == NULL)
        return found == 0 && out.len == 0;
    return found == 1 && gw_str_eq(out, (gw_str_t){want, strlen(want)});
}

static void
test_fnv(void)
{
    is_int(gw_fnv1a32("", 0), 0x811c9dc5u, "fnv1a32(\"\") = 0x811c9dc5");
    is_int(gw_fnv1a32(NULL, 0), 0x811c9dc5u, "fnv1a32(NULL, 0) = offset basis");
    is_int(fnv_str("a"), 0xe40c292cu, "fnv1a32(\"a\") = 0xe40c292c");
    is_int(fnv_str("foobar"), 0xbf9cf968u, "fnv1a32(\"foobar\") = 0xbf9cf968");
    /* Buckets as Go's fnv.New32a().Sum32() % 100 gives them. */
    is_int(fnv_str("user-1"), 0xf5537974u, "fnv1a32(user-1)");
    is_int(fnv_str("user-1") % 100, 0, "user-1 -> bucket 0");
    is_int(fnv_str("user-2") % 100, 57, "user-2 -> bucket 57");
    is_int(fnv_str("alice") % 100, 79, "alice -> bucket 79");
    is_int(fnv_str("bob") % 100, 44, "bob -> bucket 44");
    is_int(fnv_str("12345") % 100, 24, "12345 -> bucket 24");
    is_int(fnv_str("42") % 100, 11, "42 -> bucket 11");
}

static void
test_extract(void)
{
    gw_header_t headers[] = {
        H("Host", "api.example.com"),
        H("X-User-Id", "u-17"),
        H("x-user-id", "second"),
        H("X-Empty", ""),
        H("Cookie", "theme=dark; sid=\"abc123\" ;  uid = 77"),
        H("cookie", "late=yes; empty="),
    };
    gw_header_t vars[] = {H("user", "carol"), H("blank", "")};
    gw_req_view_t req = {
        .headers = headers,
        .nheaders = GW_ARRAY_LEN(headers),
        .query = GW_STR("a=1&user=dave&flag&b=%20x&empty="),
        .remote_ip = GW_STR("10.0.0.7"),
        .consumer = GW_STR("alice"),
        .vars = vars,
        .nvars = GW_ARRAY_LEN(vars),
    };
    gw_req_view_t bare = {0};

    ok(extract(GW_KEY_HEADER, "X-User-Id", &req, "u-17"), "header: first occurrence");
    ok(extract(GW_KEY_HEADER, "X-USER-ID", &req, "u-17"), "header: name case-insensitive");
    ok(extract(GW_KEY_HEADER, "X-Empty", &req, NULL), "header: empty value is absent");
    ok(extract(GW_KEY_HEADER, "X-None", &req, NULL), "header: missing");
    ok(extract(GW_KEY_HEADER, NULL, &req, NULL), "header: no name");
    ok(extract(GW_KEY_COOKIE, "theme", &req, "dark"), "cookie: first pair");
    ok(extract(GW_KEY_COOKIE, "sid", &req, "abc123"), "cookie: quotes stripped");
    ok(extract(GW_KEY_COOKIE, "uid", &req, "77"), "cookie: spaces around = trimmed");
    ok(extract(GW_KEY_COOKIE, "late", &req, "yes"), "cookie: second Cookie header");
    ok(extract(GW_KEY_COOKIE, "empty", &req, NULL), "cookie: empty value is absent");
    ok(extract(GW_KEY_COOKIE, "THEME", &req, NULL), "cookie: names are case-sensitive");
    ok(extract(GW_KEY_COOKIE, "dark", &req, NULL), "cookie: a value is not a name");
    ok(extract(GW_KEY_QUERY, "user", &req, "dave"), "query: value");
    ok(extract(GW_KEY_QUERY, "b", &req, "%20x"), "query: raw, not decoded");
    ok(extract(GW_KEY_QUERY, "flag", &req, NULL), "query: no '=' is empty");
    ok(extract(GW_KEY_QUERY, "empty", &req, NULL), "query: empty value is absent");
    ok(extract(GW_KEY_QUERY, "us", &req, NULL), "query: no prefix match");
    ok(extract(GW_KEY_IP, NULL, &req, "10.0.0.7"), "ip");
    ok(extract(GW_KEY_CONSUMER, NULL, &req, "alice"), "consumer");
    ok(extract(GW_KEY_VAR, "user", &req, "carol"), "var");
    ok(extract(GW_KEY_VAR, "blank", &req, NULL), "var: empty is absent");
    ok(extract(GW_KEY_VAR, "other", &req, NULL), "var: missing");
    ok(extract(GW_KEY_NONE, NULL, &req, NULL), "kind none");

    ok(extract(GW_KEY_HEADER, "X-User-Id", &bare, NULL), "empty request: header");
    ok(extract(GW_KEY_COOKIE, "sid", &bare, NULL), "empty request: cookie");
    ok(extract(GW_KEY_QUERY, "user", &bare, NULL), "empty request: query");
    ok(extract(GW_KEY_IP, NULL, &bare, NULL), "empty request: ip");
    ok(extract(GW_KEY_CONSUMER, NULL, &bare, NULL), "empty request: consumer");
    ok(extract(GW_KEY_VAR, "user", &bare, NULL), "empty request: var");

    gw_keyspec_t s = spec(GW_KEY_IP, NULL);
    gw_str_t out;
    is_int(gw_keyspec_extract(NULL, &req, &out), 0, "NULL spec");
    is_int(gw_keyspec_extract(&s, NULL, &out), 0, "NULL request");
    is_int(gw_keyspec_extract(&s, &req, NULL), 0, "NULL out");
}

static gw_split_rule_t
header_rule(char *name, char *value)
{
    return (gw_split_rule_t){
        .kind = GW_SPLIT_HEADER,
        .header_name = name,
        .header_name_len = strlen(name),
        .header_value = value,
        .header_value_len = value ? strlen(value) : 0,
    };
}

static gw_split_rule_t
hash_rule(gw_key_kind_t kind, char *name, int percent)
{
    return (gw_split_rule_t){
        .kind = GW_SPLIT_USER_HASH, .key = spec(kind, name), .percent = percent};
}

static gw_split_rule_t
weight_rule(int percent)
{
    return (gw_split_rule_t){.kind = GW_SPLIT_WEIGHT, .percent = percent};
}

static int
choose1(gw_split_rule_t rule, const gw_req_view_t *req, uint32_t rand100)
{
    gw_route_conf_t route = {.split = &rule, .nsplit = 1};
    return gw_split_choose(&route, req, rand100);
}

static gw_req_view_t
req_with(gw_header_t *h, size_t n)
{
    return (gw_req_view_t){.headers = h, .nheaders = n};
}

static void
test_rules(void)
{
    gw_header_t canary[] = {H("X-Canary", "true"), H("X-User-Id", "user-1")};
    gw_header_t canary_no[] = {H("x-canary", "false"), H("X-User-Id", "alice")};
    gw_header_t none[] = {H("Accept", "*/*")};
    gw_req_view_t r_yes = req_with(canary, 2), r_no = req_with(canary_no, 2),
                  r_none = req_with(none, 1);

    /* header rule */
    is_int(choose1(header_rule("X-Canary", "true"), &r_yes, 99), 0, "header equal matches");
    is_int(choose1(header_rule("x-canary", "true"), &r_yes, 99), 0,
           "header name is case-insensitive");
    is_int(choose1(header_rule("X-Canary", "TRUE"), &r_yes, 99), -1, "header value is exact");
    is_int(choose1(header_rule("X-Canary", "true"), &r_no, 99), -1, "other value: no match");
    is_int(choose1(header_rule("X-Canary", NULL), &r_no, 99), 0, "no value: presence is enough");
    is_int(choose1(header_rule("X-Canary", NULL), &r_none, 99), -1, "absent header: no match");

    /* user_hash: user-1 is in bucket 0, alice in 79 */
    is_int(choose1(hash_rule(GW_KEY_HEADER, "X-User-Id", 1), &r_yes, 99), 0, "bucket 0 < 1");
    is_int(choose1(hash_rule(GW_KEY_HEADER, "X-User-Id", 79), &r_no, 0), -1, "bucket 79 !< 79");
    is_int(choose1(hash_rule(GW_KEY_HEADER, "X-User-Id", 80), &r_no, 99), 0, "bucket 79 < 80");
    is_int(choose1(hash_rule(GW_KEY_HEADER, "X-User-Id", 0), &r_yes, 0), -1,
           "percent 0 never, even bucket 0");
    is_int(choose1(hash_rule(GW_KEY_HEADER, "X-User-Id", 100), &r_no, 99), 0, "percent 100 always");
    is_int(choose1(hash_rule(GW_KEY_HEADER, "X-User-Id", 100), &r_none, 0), -1,
           "missing key never matches, even at 100");
    is_int(choose1(hash_rule(GW_KEY_HEADER, "X-User-Id", 100), &r_none, 0), -1,
           "rand100 does not matter for user_hash");

    /* weight */
    is_int(choose1(weight_rule(5), &r_none, 4), 0, "weight 5: rand 4 matches");
    is_int(choose1(weight_rule(5), &r_none, 5), -1, "weight 5: rand 5 does not");
    is_int(choose1(weight_rule(0), &r_none, 0), -1, "weight 0 never");
    is_int(choose1(weight_rule(100), &r_none, 99), 0, "weight 100 always");
    int hits = 0;
    for (uint32_t r = 0; r < 100; r++)
        hits += choose1(weight_rule(30), &r_none, r) == 0;
    is_int(hits, 30, "weight 30 takes 30 of the 100 draws");

    /* order: the first match wins */
    gw_split_rule_t rules[] = {
        header_rule("X-Canary", "true"),
        hash_rule(GW_KEY_HEADER, "X-User-Id", 80),
        weight_rule(50),
    };
    gw_route_conf_t route = {.split = rules, .nsplit = GW_ARRAY_LEN(rules)};
    is_int(gw_split_choose(&route, &r_yes, 0), 0, "header rule first, though all match");
    is_int(gw_split_choose(&route, &r_no, 0), 1, "then user_hash");
    is_int(gw_split_choose(&route, &r_none, 10), 2, "then weight");
    is_int(gw_split_choose(&route, &r_none, 60), -1, "none: the route's upstream");

    gw_route_conf_t empty = {0};
    is_int(gw_split_choose(&empty, &r_yes, 0), -1, "no rules");
    is_int(gw_split_choose(NULL, &r_yes, 0), -1, "NULL route");
    is_int(gw_split_choose(&route, NULL, 0), -1, "NULL request");

    /* user_hash over other key kinds */
    gw_req_view_t rc = {.consumer = GW_STR("user-1"), .query = GW_STR("uid=user-2")};
    is_int(choose1(hash_rule(GW_KEY_CONSUMER, NULL, 1), &rc, 99), 0, "consumer key");
    is_int(choose1(hash_rule(GW_KEY_QUERY, "uid", 57), &rc, 0), -1, "query key, bucket 57");
    is_int(choose1(hash_rule(GW_KEY_QUERY, "uid", 58), &rc, 0), 0, "query key, bucket 57 < 58");
}

/* Two routes built separately from copies of the text decide alike for every user. */
static void
test_stability(void)
{
    int same = 1, in = 0;

    for (int pass = 0; pass < 1000; pass++) {
        char id[32], name1[] = "X-User-Id", name2[] = "x-user-id";
        gw_split_rule_t r1 = hash_rule(GW_KEY_HEADER, name1, 10);
        gw_split_rule_t r2 = hash_rule(GW_KEY_HEADER, name2, 10);
        gw_route_conf_t a = {.split = &r1, .nsplit = 1}, b = {.split = &r2, .nsplit = 1};
        int len = snprintf(id, sizeof(id), "user-%d", pass);
        char *copy = malloc((size_t)len);
        memcpy(copy, id, (size_t)len);
        gw_header_t h1[] = {{GW_STR("X-User-Id"), {id, (size_t)len}}};
        gw_header_t h2[] = {{GW_STR("Accept"), GW_STR("*/*")},
                            {GW_STR("X-USER-ID"), {copy, (size_t)len}}};
        gw_req_view_t q1 = req_with(h1, 1), q2 = req_with(h2, 2);

        int da = gw_split_choose(&a, &q1, (uint32_t)pass % 100);
        int db = gw_split_choose(&b, &q2, 99 - (uint32_t)pass % 100);
        same &= da == db;
        same &= da == ((fnv_str(id) % 100 < 10) ? 0 : -1);
        in += da == 0;
        free(copy);
    }
    ok(same, "user_hash decisions equal across separately built rules and requests");
    ok(in > 60 && in < 140, "10%% user_hash takes about 100 of 1000 users (%d)", in);
}

static void
test_subset(void)
{
    gw_kv_t meta[] = {{"version", "v2"}, {"zone", "a"}};
    gw_node_conf_t node = {.addr = "127.0.0.1:9002", .meta = meta, .nmeta = 2};
    gw_node_conf_t plain = {.addr = "127.0.0.1:9001"};
    gw_kv_t v2[] = {{"version", "v2"}};
    gw_kv_t v1[] = {{"version", "v1"}};
    gw_kv_t both[] = {{"zone", "a"}, {"version", "v2"}};
    gw_kv_t miss[] = {{"version", "v2"}, {"zone", "b"}};
    gw_kv_t bad[] = {{NULL, "v2"}};

    ok(gw_subset_match(&node, v2, 1), "version v2 matches");
    ok(!gw_subset_match(&node, v1, 1), "version v1 does not");
    ok(gw_subset_match(&node, both, 2), "all pairs present, any order");
    ok(!gw_subset_match(&node, miss, 2), "one pair missing: no match");
    ok(gw_subset_match(&node, NULL, 0), "empty subset matches");
    ok(gw_subset_match(&plain, NULL, 0), "empty subset matches a node without meta");
    ok(!gw_subset_match(&plain, v2, 1), "node without meta does not match a subset");
    ok(!gw_subset_match(NULL, v2, 1), "NULL node");
    ok(!gw_subset_match(&node, bad, 1), "broken subset entry");
}

int
main(void)
{
    test_fnv();
    test_extract();
    test_rules();
    test_stability();
    test_subset();
    done_testing();
}
