/* Unit tests for the HTTP helpers and the write queue's buffers. */
#include <stdlib.h>

#include "gw_http.h"
#include "tap.h"

static gw_str_t
S(const char *s)
{
    return (gw_str_t){s, strlen(s)};
}

int
main(void)
{
    /* request ids */
    ok(gw_http_request_id_ok(S("abc-123_x.y:z")), "sane request id kept");
    ok(!gw_http_request_id_ok(S("")), "empty request id replaced");
    ok(!gw_http_request_id_ok(S("a b")), "request id with a space replaced");
    ok(!gw_http_request_id_ok(S("a\"b")), "request id with a quote replaced");
    char longid[130];
    memset(longid, 'a', 129);
    longid[129] = 0;
    ok(!gw_http_request_id_ok(S(longid)), "129-char request id replaced");
    longid[128] = 0;
    ok(gw_http_request_id_ok(S(longid)), "128-char request id kept");

    /* traceparent */
    ok(gw_http_traceparent_ok(S("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")),
       "valid traceparent");
    ok(!gw_http_traceparent_ok(S("00-00000000000000000000000000000000-00f067aa0ba902b7-01")),
       "all-zero trace id refused");
    ok(!gw_http_traceparent_ok(S("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01")),
       "all-zero parent id refused");
    ok(!gw_http_traceparent_ok(S("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")),
       "version ff refused");
    ok(!gw_http_traceparent_ok(S("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01")),
       "upper-case hex refused");
    ok(!gw_http_traceparent_ok(S("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")),
       "version 00 with extra fields refused");
    ok(gw_http_traceparent_ok(S("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")),
       "a later version may carry more");
    ok(!gw_http_traceparent_ok(S("00-4bf92f3577b34da6a3ce929d0e0e4736")), "short refused");

    /* random ids */
    uint64_t rng = 42;
    char hex[33] = {0};
    gw_http_random_hex(&rng, hex, 32);
    int allhex = 1;
    for (int i = 0; i < 32; i++)
        allhex &= (hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f');
    ok(allhex && hex[0] != '0', "random hex: 32 lower-case hex chars, not starting with 0");
    char hex2[33] = {0};
    gw_http_random_hex(&rng, hex2, 32);
    ok(strcmp(hex, hex2) != 0, "random hex: two draws differ");

    /* tokens */
    ok(gw_http_has_token(S("keep-alive, X-Foo"), S("x-foo")), "token found, case-insensitive");
    ok(gw_http_has_token(S(" ,\tclose ,"), S("close")), "token with OWS and empty items");
    ok(!gw_http_has_token(S("x-foobar"), S("x-foo")), "prefix is not a token");
    ok(!gw_http_has_token(S(""), S("x")), "empty list");

    /* hop-by-hop */
    ok(gw_http_is_hop_by_hop(S("Connection")), "Connection is hop-by-hop");
    ok(gw_http_is_hop_by_hop(S("transfer-encoding")), "Transfer-Encoding is hop-by-hop");
    ok(gw_http_is_hop_by_hop(S("TE")), "TE is hop-by-hop");
    ok(!gw_http_is_hop_by_hop(S("Content-Length")), "Content-Length is not");
    ok(!gw_http_is_hop_by_hop(S("Tf")), "Tf is not");

    /* case-insensitive compare: letters only fold */
    ok(gw_str_caseeq(S("X-Request-ID"), S("x-request-id")), "caseeq folds letters");
    ok(!gw_str_caseeq(S("a@"), S("a`")), "caseeq does not fold @ and `");
    ok(!gw_str_caseeq(S("ab"), S("abc")), "caseeq length");

    /* date */
    char date[32];
    gw_http_date(0, date);
    is_str(date, "Thu, 01 Jan 1970 00:00:00 GMT", "IMF-fixdate of the epoch");
    gw_http_date(1795500000, date);
    is_str(date, "Tue, 24 Nov 2026 06:00:00 GMT", "IMF-fixdate of a 2026 date");

    /* error body */
    gw_buf_t b = {0};
    gw_http_error_body(&b, 404, "no route matched", S("abc"));
    gw_buf_append(&b, "", 1);
    is_str(b.data, "{\"code\":404,\"message\":\"no route matched\",\"request_id\":\"abc\"}",
           "JSON error envelope");
    gw_buf_free(&b);

    /* buffers */
    gw_buf_t g = {0};
    for (int i = 0; i < 1000; i++)
        gw_buf_appendf(&g, "%d,", i);
    ok(g.len > 3000 && memcmp(g.data, "0,1,2,", 6) == 0, "buffer grows across appends");
    gw_buf_free(&g);
    ok(g.data == NULL && g.len == 0, "buffer freed");

    is_str(gw_http_reason(431), "Request Header Fields Too Large", "reason phrase");
    is_str(gw_http_reason(799), "Unknown", "unknown reason phrase");
    done_testing();
}
