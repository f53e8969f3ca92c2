/* HTTP helpers shared by both sides of the proxy. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "gw_http.h"
#include "gw_json.h"

const char *
gw_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

const unsigned char gw_http_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,  ['~'] = 1, ['0'] = 1,
    ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,  ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,  ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1,  ['N'] = 1, ['O'] = 1,
    ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,  ['V'] = 1, ['W'] = 1,
    ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,  ['d'] = 1, ['e'] = 1,
    ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1,  ['l'] = 1, ['m'] = 1,
    ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,  ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

int
gw_http_is_hop_by_hop(gw_str_t n)
{
    switch (n.len) {
    case 2:
        return gw_str_caseeq_lc(n, GW_STR("te"));
    case 7:
        return gw_str_caseeq_lc(n, GW_STR("trailer")) || gw_str_caseeq_lc(n, GW_STR("upgrade"));
    case 10:
        return gw_str_caseeq_lc(n, GW_STR("connection")) ||
               gw_str_caseeq_lc(n, GW_STR("keep-alive"));
    case 16:
        return gw_str_caseeq_lc(n, GW_STR("proxy-connection"));
    case 17:
        return gw_str_caseeq_lc(n, GW_STR("transfer-encoding"));
    case 19:
        return gw_str_caseeq_lc(n, GW_STR("proxy-authorization"));
    case 18:
        return gw_str_caseeq_lc(n, GW_STR("proxy-authenticate"));
    default:
        return 0;
    }
}

int
gw_http_owned_header(gw_str_t n)
{
    if (gw_str_caseeq_lc(n, GW_STR("content-type")))
        return GW_HDR_CTYPE;
    if (gw_http_is_hop_by_hop(n) || gw_str_caseeq_lc(n, GW_STR("content-length")) ||
        gw_str_caseeq_lc(n, GW_STR("date")) || gw_str_caseeq_lc(n, GW_STR("x-request-id")))
        return GW_HDR_OWN;
    return GW_HDR_PLUGIN;
}

/* The line around pos is a header field line: not the start line, not
 * obs-fold, a colon before pos. */
static int
in_field_line(const char *head, size_t pos)
{
    const char *lf = memrchr(head, '\n', pos);
    if (lf == NULL)
        return 0;
    const char *line = lf + 1;
    if (line[0] == ' ' || line[0] == '\t')
        return 0;
    return memchr(line, ':', (size_t)(head + pos - line)) != NULL;
}

size_t
gw_http_head_ows(char *head, size_t from, size_t len)
{
    const char *t = memchr(head + from, '\t', len - from);
    if (t == NULL)
        return len; /* nearly every head */
    /* bytes after the head's empty line (a body, a pipelined request, the
     * final head after an interim one) are not this call's to touch */
    size_t back = from < 3 ? from : 3;
    const char *e = memmem(head + from - back, len - from + back, "\r\n\r\n", 4);
    size_t end = e ? (size_t)(e - head) : len;
    if (e && end + 4 <= (size_t)(t - head))
        return end + 4;
    size_t i = (size_t)(t - head);
    while (i < end) {
        t = memchr(head + i, '\t', end - i);
        if (t == NULL)
            break;
        size_t tab = (size_t)(t - head), q = tab;
        while (q < len && (head[q] == ' ' || head[q] == '\t'))
            q++;
        if (q + 1 >= len)
            return tab; /* is the line ending next? wait and see */
        if (head[q] == '\r' && head[q + 1] == '\n' && in_field_line(head, tab)) {
            for (size_t k = tab; k < q; k++)
                head[k] = ' ';
        }
        i = q;
    }
    return e ? end + 4 : len;
}

int
gw_http_request_id_ok(gw_str_t id)
{
    if (id.len == 0 || id.len > 128)
        return 0;
    for (size_t i = 0; i < id.len; i++) {
        unsigned char c = (unsigned char)id.data[i];
        if (!(isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':'))
            return 0;
    }
    return 1;
}

void
gw_http_random_hex(uint64_t *rng, char *out, size_t nhex)
{
    size_t i = 0;
    while (i < nhex) {
        uint64_t r = gw_rng_next(rng);
        for (int half = 0; half < 2 && i < nhex; half++, r >>= 32) {
            /* eight nibbles to eight bytes, then to '0'-'9' / 'a'-'f'
             * without a branch or a table (the nibble order is of no
             * matter for random digits) */
            uint64_t x = r & 0xffffffffu;
            x = (x | (x << 16)) & 0x0000ffff0000ffffULL;
            x = (x | (x << 8)) & 0x00ff00ff00ff00ffULL;
            x = (x | (x << 4)) & 0x0f0f0f0f0f0f0f0fULL;
            uint64_t letters = ((x + 0x0606060606060606ULL) >> 4) & 0x0101010101010101ULL;
            x += 0x3030303030303030ULL + letters * 0x27;
            if (nhex - i >= 8) {
                memcpy(out + i, &x, 8); /* a fixed size: one store */
                i += 8;
            } else {
                for (; i < nhex; i++, x >>= 8)
                    out[i] = (char)(x & 0xff);
            }
        }
    }
    if (nhex && out[0] == '0')
        out[0] = '1'; /* never all zero */
}

static int
all_hex(const char *p, size_t n, int *nonzero)
{
    *nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
        if (c != '0')
            *nonzero = 1;
    }
    return 1;
}

int
gw_http_traceparent_ok(gw_str_t tp)
{
    int nz;
    if (tp.len < 55)
        return 0;
    const char *p = tp.data;
    if (p[2] != '-' || p[35] != '-' || p[52] != '-')
        return 0;
    if (!all_hex(p, 2, &nz) || (p[0] == 'f' && p[1] == 'f'))
        return 0;
    if (tp.len != 55 && (p[0] == '0' && p[1] == '0'))
        return 0;
    if (!all_hex(p + 3, 32, &nz) || !nz)
        return 0;
    if (!all_hex(p + 36, 16, &nz) || !nz)
        return 0;
    return all_hex(p + 53, 2, &nz);
}

void
gw_http_date(int64_t epoch_sec, char out[32])
{
    static const char *days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *mons[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)epoch_sec;
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, 32, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
             mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

void
gw_http_error_body(gw_buf_t *b, int status, const char *message, gw_str_t request_id)
{
    /* the message may be a plugin's (gw.exit_error), so it is escaped; the
     * id is validated or generated, so it needs no escaping */
    size_t mlen = strlen(message);
    gw_buf_appendf(b, "{\"code\":%d,\"message\":\"", status);
    gw_buf_reserve(b, 6 * mlen + request_id.len + 20);
    b->len += gw_json_escape(b->data + b->len, message, mlen);
    GW_BUF_PUT_LIT(b, "\",\"request_id\":\"");
    if (request_id.len)
        gw_buf_puts(b, request_id);
    GW_BUF_PUT_LIT(b, "\"}");
}

int
gw_http_has_token(gw_str_t v, gw_str_t token)
{
    size_t i = 0;
    while (i < v.len) {
        while (i < v.len && (v.data[i] == ' ' || v.data[i] == '\t' || v.data[i] == ','))
            i++;
        size_t s = i;
        while (i < v.len && v.data[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v.data[e - 1] == ' ' || v.data[e - 1] == '\t'))
            e--;
        if (gw_str_caseeq((gw_str_t){v.data + s, e - s}, token))
            return 1;
    }
    return 0;
}
