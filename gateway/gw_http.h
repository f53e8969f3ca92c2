/*
 * HTTP helpers shared by the downstream and upstream sides: reason
 * phrases, header classification, request ids, traceparent, the cached
 * Date and the gateway's JSON error body. Pure functions, no I/O.
 */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include <stdint.h>

#include "gw_core.h"

const char *gw_http_reason(int status);

/* Hop-by-hop headers (RFC 9110 7.6.1 plus the usual legacy ones). */
/* 1 for the bytes of an RFC 9110 token (header names, methods). */
extern const unsigned char gw_http_tchar[256];

/* HTAB, SP and visible ASCII: what a plain field value or reason holds. */
static inline int
gw_http_plain_byte(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c < 0x7f);
}

/* The first byte from s on (before end) that is not plain, or end. Eight
 * bytes at a time while eight remain. */
static inline const unsigned char *
gw_http_plain_run(const unsigned char *s, const unsigned char *end)
{
    while (end - s >= 8) {
        uint64_t x;
        memcpy(&x, s, 8);
        if (gw_ctl8(x) | (x & 0x8080808080808080ULL))
            break;
        s += 8;
    }
    while (s < end && gw_http_plain_byte(*s))
        s++;
    return s;
}

/* The same for visible ASCII only (no SP, no HTAB): a request target. */
static inline const unsigned char *
gw_http_visible_run(const unsigned char *s, const unsigned char *end)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    while (end - s >= 8) {
        uint64_t x;
        memcpy(&x, s, 8);
        uint64_t sp = x ^ (0x20 * ones);
        if (gw_ctl8(x) | (x & highs) | ((sp - ones) & ~sp & highs))
            break;
        s += 8;
    }
    while (s<end && * s> 0x20 && *s < 0x7f)
        s++;
    return s;
}

/* One header line of the plain form at s, all before end: a token, ':',
 * optional whitespace, a plain value, CRLF. Returns the byte after the
 * CRLF with *name and *value set (leading whitespace skipped, trailing
 * kept: the callers differ on it), or NULL when the line is of another
 * form (the caller hands the head to llhttp then). */
static inline const unsigned char *
gw_http_plain_header(const unsigned char *s, const unsigned char *end, gw_str_t *name,
                     gw_str_t *value)
{
    const unsigned char *n = s;
    while (s < end && gw_http_tchar[*s])
        s++;
    if (s == n || s == end || *s != ':')
        return NULL;
    *name = (gw_str_t){(const char *)n, (size_t)(s - n)};
    for (s++; s < end && (*s == ' ' || *s == '\t'); s++)
        ;
    const unsigned char *v = s;
    s = gw_http_plain_run(s, end);
    if (end - s < 2 || s[0] != '\r' || s[1] != '\n')
        return NULL;
    *value = (gw_str_t){(const char *)v, (size_t)(s - v)};
    return s + 2;
}

/* A Connection value the short parsers take: 1 keep-alive, 0 close, -1
 * anything else (a list, other tokens: llhttp's to read). */
static inline int
gw_http_plain_connection(gw_str_t v)
{
    if (gw_str_caseeq_lc(v, GW_STR("keep-alive")))
        return 1;
    return gw_str_caseeq_lc(v, GW_STR("close")) ? 0 : -1;
}

int gw_http_is_hop_by_hop(gw_str_t name);

/* A header name on a response the gateway writes itself (its errors,
 * gw.exit, gw.exit_error): a plugin's to set (NONE); Content-Type, which
 * the gateway writes as the plugin chose it (CTYPE); or one only the
 * gateway writes (OWN: the framing, hop-by-hop fields, Date, X-Request-Id),
 * so that no such response ever carries one of them twice. */
enum { GW_HDR_PLUGIN = 0, GW_HDR_CTYPE, GW_HDR_OWN };
int gw_http_owned_header(gw_str_t name);

/*
 * RFC 9110 5.6.3 makes SP and HTAB equal in the whitespace around a field
 * value, but llhttp 8.1 refuses a head whose Content-Length or "chunked"
 * Transfer-Encoding is followed by HTAB (and reads "close<HTAB>" as another
 * Connection token). Before head bytes reach llhttp, HTAB in the
 * whitespace that ends a header field line becomes SP; the value itself
 * and every other byte stay as they are. head: the head's first byte; len
 * bytes of it are here; llhttp has read the first `from`. Returns how many
 * bytes (from head) llhttp may read now: up to the end of the head when it
 * holds a tab (what follows, such as the final head after an interim one,
 * gets a call of its own), less when a run of whitespace at the end of
 * what arrived waits for the byte after it. The start line, obs-fold
 * lines and the bytes after the head's empty line are never touched.
 */
size_t gw_http_head_ows(char *head, size_t from, size_t len);

/* A client-supplied X-Request-Id is kept when 1..128 chars of
 * [A-Za-z0-9._:-]; anything else is replaced. */
int gw_http_request_id_ok(gw_str_t id);

/* Writes 32 lower-case hex chars (16 random bytes, not all zero). */
void gw_http_random_hex(uint64_t *rng, char *out, size_t nhex);

/* W3C traceparent "00-<32 hex>-<16 hex>-<2 hex>"; rejects all-zero ids
 * and version ff. */
int gw_http_traceparent_ok(gw_str_t tp);

/* IMF-fixdate for the given epoch second into out (30 bytes incl. NUL). */
void gw_http_date(int64_t epoch_sec, char out[32]);

/* {"code":N,"message":"...","request_id":"..."} into b. */
void gw_http_error_body(gw_buf_t *b, int status, const char *message, gw_str_t request_id);

/* Case-insensitive search for a comma-separated token in a header value. */
int gw_http_has_token(gw_str_t value, gw_str_t token);

#endif
