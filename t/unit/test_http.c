/* Unit tests for the HTTP helpers and the write queue's buffers. */
#include <stdlib.h>

#include "gw_http.h"
#include "tap.h"

static gw_str_t
S(const char *s)
{
    return (gw_str_t){s, strlen(s)};
}

/* The byte-at-a-time definitions the word-at-a-time helpers must match. */
static int
ref_caseeq(const unsigned char *a, const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z')
            x += 32;
        if (y >= 'A' && y <= 'Z')
            y += 32;
        if (x != y)
            return 0;
    }
    return 1;
}

static int
ref_ctl(const unsigned char *a)
{
    for (int i = 0; i < 8; i++)
        if (a[i] < 0x20 || a[i] == 0x7f)
            return 1;
    return 0;
}

/* Every byte value in every position of a word, against the references. */
static void
ascii_words(void)
{
    int bad_lower = 0, bad_ctl = 0, bad_eq = 0, bad_lc = 0;
    unsigned char w[8];
    for (int pos = 0; pos < 8; pos++) {
        for (int v = 0; v < 256; v++) {
            memcpy(w, "aZ-0~_ k", 8);
            w[pos] = (unsigned char)v;
            uint64_t x, lx;
            memcpy(&x, w, 8);
            lx = gw_ascii_lower8(x);
            unsigned char lw[8];
            memcpy(lw, &lx, 8);
            for (int i = 0; i < 8; i++) {
                unsigned char want =
                    (w[i] >= 'A' && w[i] <= 'Z') ? (unsigned char)(w[i] + 32) : w[i];
                bad_lower += lw[i] != want;
            }
            bad_ctl += (gw_ctl8(x) != 0) != ref_ctl(w);
        }
    }
    /* equality over lengths 0-20 against strings differing in one byte,
     * in case only, or not at all */
    unsigned seed = 12345;
    for (int round = 0; round < 20000; round++) {
        unsigned char a[24], b[24];
        size_t n = (size_t)(round % 21);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            a[i] = (unsigned char)(seed >> 16);
            b[i] = a[i];
            if ((seed >> 8) & 1) { /* flip the case bit: equal if a letter */
                b[i] ^= 0x20;
            }
        }
        if (n && round % 3 == 0)
            b[round % n] = (unsigned char)(b[round % n] + 1 + round % 5);
        int got = gw_str_caseeq((gw_str_t){(const char *)a, n}, (gw_str_t){(const char *)b, n});
        bad_eq += got != ref_caseeq(a, b, n);
        unsigned char lc[24];
        for (size_t i = 0; i < n; i++)
            lc[i] = (b[i] >= 'A' && b[i] <= 'Z') ? (unsigned char)(b[i] + 32) : b[i];
        got = gw_str_caseeq_lc((gw_str_t){(const char *)a, n}, (gw_str_t){(const char *)lc, n});
        bad_lc += got != ref_caseeq(a, lc, n);
    }
    is_int(bad_lower, 0, "gw_ascii_lower8 lowers A-Z only, in every position");
    is_int(bad_ctl, 0, "gw_ctl8 finds bytes below 0x20 and 0x7f, in every position");
    is_int(bad_eq, 0, "gw_str_caseeq agrees with a byte-wise comparison (lengths 0-20)");
    is_int(bad_lc, 0, "gw_str_caseeq_lc agrees with it against lower-case literals");
    ok(gw_str_caseeq_lc(S("Content-Length"), S("content-length")), "Content-Length (literal)");
    ok(gw_str_caseeq_lc(S("KEEP-ALIVE"), S("keep-alive")), "KEEP-ALIVE (literal)");
    ok(!gw_str_caseeq_lc(S("keep\ralive"), S("keep-alive")), "CR is not a dash (literal)");
    ok(!gw_str_caseeq_lc(S("Host"), S("hosT")), "the literal must be lower case");
    ok(gw_str_caseeq(S("Content-Length"), S("content-length")), "Content-Length");
    ok(!gw_str_caseeq(S("content-lengti"), S("content-length")), "last byte differs");
    ok(!gw_str_caseeq(S("@"), S("`")), "@ is not the capital of `");
    ok(!gw_str_caseeq(S("^"), S("~")), "^ is not the capital of ~");
    ok(!gw_str_caseeq(S("Keep\ralive"), S("keep-alive")), "CR is not a dash");
}

/* gw_http_head_ows over a copy of in, fed from `from`; out gets the
 * bytes after, the return value how many llhttp may read. */
static size_t
head_ows(const char *in, size_t from, char *out)
{
    size_t n = strlen(in);
    memcpy(out, in, n + 1);
    return gw_http_head_ows(out, from, n);
}

static void
trailing_tabs(void)
{
    char b[256];
    const char *h = "POST / HTTP/1.1\r\nContent-Length:\t5\t \t\r\nX-A: a\tb\r\n\r\n";
    is_int(head_ows(h, 0, b), strlen(h), "whole head: all of it may be read");
    is_str(b, "POST / HTTP/1.1\r\nContent-Length:\t5   \r\nX-A: a\tb\r\n\r\n",
           "HTAB ending a field line becomes SP; leading and inner HTAB stay");
    h = "GET / HTTP/1.1\t\r\nHost: x\r\n\r\n";
    head_ows(h, 0, b);
    is_str(b, h, "the request line is left alone");
    h = "GET / HTTP/1.1\r\nX-A: a\r\n\tb\t\r\n\r\n";
    head_ows(h, 0, b);
    is_str(b, h, "an obs-fold line is left alone (it is refused later)");
    h = "GET / HTTP/1.1\r\nnocolon\t\r\n\r\n";
    head_ows(h, 0, b);
    is_str(b, h, "a line without a colon is left alone");
    h = "POST / HTTP/1.1\r\nContent-Length: 6\r\n\r\nab\t\r\nX: y\t\r\n";
    is_int(head_ows(h, 0, b), 38, "head with a body: all of the head may be read");
    is_str(b, h, "bytes after the empty line (a body) are left alone");
    h = "POST / HTTP/1.1\r\nA: b\t\r\n\r\nab\t\r\nX: y\t\r\n";
    is_int(head_ows(h, 0, b), 26, "a tab in the head: up to its end");
    is_str(b, "POST / HTTP/1.1\r\nA: b \r\n\r\nab\t\r\nX: y\t\r\n", "the head's tab only");
    h = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\t\r\n\r\nok";
    is_int(head_ows(h, 0, b), 25, "an interim head: up to its end");
    is_int(gw_http_head_ows(b, 25, strlen(h)), strlen(h) - 2, "then the final head");
    is_str(b, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2 \r\n\r\nok",
           "whose tab becomes SP");
    h = "POST / HTTP/1.1\r\nContent-Length: 5\t";
    is_int(head_ows(h, 0, b), strlen(h) - 1, "a trailing HTAB at the end waits for what follows");
    h = "POST / HTTP/1.1\r\nContent-Length: 5\t\r";
    is_int(head_ows(h, 0, b), strlen(h) - 2, "and so does one before a lone CR");
    h = "POST / HTTP/1.1\r\nContent-Length: 5\t\r\n";
    is_int(head_ows(h, strlen(h) - 3, b), strlen(h), "then it is read, from where llhttp was");
    is_str(b, "POST / HTTP/1.1\r\nContent-Length: 5 \r\n", "as SP");
    h = "GET / HTTP/1.1\r\nX-A: a\r\n";
    is_int(head_ows(h, 0, b), strlen(h), "no HTAB: everything");
    h = "GET / HTTP/1.1\r\nX-A: a\t\rb\r\n\r\n";
    head_ows(h, 0, b);
    is_str(b, h, "HTAB before a bare CR is left alone (refused later)");
    h = "HTTP/1.1 200 OK\r\nContent-Length: 2\t\r\n\r\nok";
    head_ows(h, 0, b);
    is_str(b, "HTTP/1.1 200 OK\r\nContent-Length: 2 \r\n\r\nok", "a response head too");
}

int
main(void)
{
    ascii_words();
    trailing_tabs();

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
    gw_buf_t e = {0};
    gw_http_error_body(&e, 401, "say \"no\"\\\n\x01 caf\xc3\xa9", S("r-1"));
    gw_buf_append(&e, "", 1);
    is_str(e.data,
           "{\"code\":401,\"message\":\"say \\\"no\\\"\\\\\\u000a\\u0001 caf\xc3\xa9\","
           "\"request_id\":\"r-1\"}",
           "error envelope: a plugin's message is JSON-escaped");
    gw_buf_free(&e);

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
