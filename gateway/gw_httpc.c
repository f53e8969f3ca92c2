/*
 * The asynchronous HTTP/1.1 client. One request is one heap object that
 * owns a timer (the deadline, and the hop back to the loop for errors and
 * cancels), a TCP handle, the serialized request and the collected
 * response. It is freed once the callback has run and every handle and
 * in-flight libuv request has reported back (`refs` reaches 0).
 *
 * DNS runs in a separately allocated request so that a timeout or a cancel
 * never waits for a slow resolver: the request detaches it, and the
 * resolver's callback frees it whenever it comes back.
 */
#include "gw_httpc.h"

#include <errno.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gw_tls_client.h"

#define MAX_ADDRS 8
#define MAX_HEADER_BYTES (64 * 1024)
#define MAX_HEADERS 256
#define RBUF_SIZE 16384

typedef struct {
    size_t noff, nlen, voff, vlen;
} hoff_t;

typedef struct {
    uv_getaddrinfo_t gai;
    gw_httpc_req_t *req; /* NULL once the request stopped waiting for it */
} resolve_t;

struct gw_httpc_req_s {
    uv_loop_t *loop;
    gw_httpc_cb cb;
    gw_httpc_body_cb on_body; /* a streamed request when set */
    void *arg;

    uv_timer_t timer;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    resolve_t *resolve;
    int refs;       /* open handles and libuv requests in flight */
    gw_tlsc_t *tls; /* https: the session over tcp */

    char *host; /* NUL-terminated, IPv6 without brackets */
    char port[8];
    struct sockaddr_storage addrs[MAX_ADDRS];
    size_t naddrs, next_addr;
    int connect_err; /* the last address's failure, for the message */

    char *out; /* request head and body */
    size_t out_len;

    llhttp_t parser;
    int status;
    char *hbuf; /* header bytes, addressed by offsets until the end */
    size_t hlen, hcap;
    hoff_t *hoffs;
    size_t nh, nhcap;
    char *body;
    size_t blen, bcap, max_body;

    int pending_err; /* an error waiting for the timer to deliver it */
    int user_err;    /* set by a parser callback that refused the response */
    int write_err;
    char errbuf[256];

    unsigned starting : 1;    /* inside gw_httpc_request(): never call back */
    unsigned done : 1;        /* the callback has fired */
    unsigned tcp_open : 1;    /* tcp initialised and not being closed */
    unsigned head_method : 1; /* a HEAD request: the response has no body */
    unsigned got_bytes : 1;
    unsigned complete : 1;
    unsigned hdr_done : 1; /* the last header is complete: a field starts a new one */
    unsigned cancelled : 1;
    unsigned tls_ready : 1; /* https: handshake done, the request sent */

    char rbuf[RBUF_SIZE];
};

static void
set_err(char *err, size_t errlen, const char *fmt, const char *arg)
{
    if (err == NULL || errlen == 0)
        return;
    snprintf(err, errlen, fmt, arg ? arg : "");
}

/* ---------------------------------------------------------------- parsing */

static int
is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int
is_token(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)s[i]))
            return 0;
    return 1;
}

typedef struct {
    const char *authority; /* host[:port] as written, for the Host header */
    size_t authority_len;
    const char *host;
    size_t host_len;
    unsigned port;
    const char *target; /* path and query, without a fragment; may be empty */
    size_t target_len;
    int https;
} url_t;

static int
parse_url(const char *url, url_t *u, char *err, size_t errlen)
{
    const char *p, *end, *a_end;

    memset(u, 0, sizeof(*u));
    if (strncasecmp(url, "https://", 8) == 0) {
        u->https = 1;
        p = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        p = url + 7;
    } else {
        set_err(err, errlen, "bad URL \"%.100s\": only http:// and https:// URLs are supported",
                url);
        return -1;
    }
    end = p + strlen(p);
    a_end = p + strcspn(p, "/?#");
    u->authority = p;
    u->authority_len = (size_t)(a_end - p);
    if (memchr(p, '@', u->authority_len) != NULL) {
        set_err(err, errlen, "bad URL \"%.100s\": user info is not supported", url);
        return -1;
    }

    const char *port_start = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', u->authority_len);
        if (rb == NULL || rb == p + 1) {
            set_err(err, errlen, "bad URL \"%.100s\": bad IPv6 address", url);
            return -1;
        }
        u->host = p + 1;
        u->host_len = (size_t)(rb - p - 1);
        for (size_t i = 0; i < u->host_len; i++) {
            char c = u->host[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                  c == ':' || c == '.')) {
                set_err(err, errlen, "bad URL \"%.100s\": bad IPv6 address", url);
                return -1;
            }
        }
        if (rb + 1 < a_end) {
            if (rb[1] != ':') {
                set_err(err, errlen, "bad URL \"%.100s\": bad host", url);
                return -1;
            }
            port_start = rb + 2;
        }
    } else {
        const char *colon = memchr(p, ':', u->authority_len);
        u->host = p;
        u->host_len = colon ? (size_t)(colon - p) : u->authority_len;
        if (colon)
            port_start = colon + 1;
        for (size_t i = 0; i < u->host_len; i++) {
            char c = u->host[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_')) {
                set_err(err, errlen, "bad URL \"%.100s\": bad host", url);
                return -1;
            }
        }
    }
    if (u->host_len == 0 || u->host_len > 253) {
        set_err(err, errlen, "bad URL \"%.100s\": bad host", url);
        return -1;
    }

    u->port = u->https ? 443 : 80;
    if (port_start != NULL) {
        unsigned v = 0;
        if (port_start == a_end || a_end - port_start > 5) {
            set_err(err, errlen, "bad URL \"%.100s\": bad port", url);
            return -1;
        }
        for (const char *q = port_start; q < a_end; q++) {
            if (*q < '0' || *q > '9') {
                set_err(err, errlen, "bad URL \"%.100s\": bad port", url);
                return -1;
            }
            v = v * 10 + (unsigned)(*q - '0');
        }
        if (v == 0 || v > 65535) {
            set_err(err, errlen, "bad URL \"%.100s\": bad port", url);
            return -1;
        }
        u->port = v;
    }

    const char *frag = strchr(a_end, '#');
    u->target = a_end;
    u->target_len = (size_t)((frag ? frag : end) - a_end);
    for (size_t i = 0; i < u->target_len; i++) {
        unsigned char c = (unsigned char)u->target[i];
        if (c <= 0x20 || c >= 0x7f) {
            set_err(err, errlen, "bad URL \"%.100s\": invalid character in path", url);
            return -1;
        }
    }
    return 0;
}

static int
header_value_ok(gw_str_t v)
{
    for (size_t i = 0; i < v.len; i++)
        if (v.data[i] == '\r' || v.data[i] == '\n' || v.data[i] == '\0')
            return 0;
    return 1;
}

/* ---------------------------------------------------------------- request bytes */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} sbuf_t;

static void
sb_add(sbuf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->len + n)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void
sb_adds(sbuf_t *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static int
build_request(gw_httpc_req_t *r, const gw_httpc_opts_t *o, const char *method, const url_t *u,
              char *err, size_t errlen)
{
    sbuf_t b = {0};
    int has_host = 0, has_ua = 0, with_cl = 0;
    char num[32];

    for (size_t i = 0; i < o->nheaders; i++) {
        gw_str_t n = o->headers[i].name, v = o->headers[i].value;
        if (n.data == NULL || !is_token(n.data, n.len)) {
            set_err(err, errlen, "bad request header name", NULL);
            return -1;
        }
        if ((v.data == NULL && v.len > 0) || !header_value_ok(v)) {
            char nm[64];
            snprintf(nm, sizeof(nm), "%.*s", (int)(n.len > 60 ? 60 : n.len), n.data);
            set_err(err, errlen, "bad value in request header \"%s\"", nm);
            return -1;
        }
        if (gw_str_caseeq(n, GW_STR("Content-Length")) ||
            gw_str_caseeq(n, GW_STR("Transfer-Encoding")) ||
            gw_str_caseeq(n, GW_STR("Connection"))) {
            char nm[64];
            snprintf(nm, sizeof(nm), "%.*s", (int)n.len, n.data);
            set_err(err, errlen, "request header \"%s\" is set by the client itself", nm);
            return -1;
        }
        has_host |= gw_str_caseeq(n, GW_STR("Host"));
        has_ua |= gw_str_caseeq(n, GW_STR("User-Agent"));
    }

    with_cl = o->body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
              strcmp(method, "PATCH") == 0;

    sb_adds(&b, method);
    sb_add(&b, " ", 1);
    if (u->target_len == 0 || u->target[0] != '/')
        sb_add(&b, "/", 1);
    sb_add(&b, u->target, u->target_len);
    sb_adds(&b, " HTTP/1.1\r\n");
    if (!has_host) {
        sb_adds(&b, "Host: ");
        sb_add(&b, u->authority, u->authority_len);
        sb_adds(&b, "\r\n");
    }
    if (!has_ua)
        sb_adds(&b, "User-Agent: gateway\r\n");
    sb_adds(&b, "Connection: close\r\n");
    if (with_cl) {
        snprintf(num, sizeof(num), "%zu", o->body ? o->body_len : 0);
        sb_adds(&b, "Content-Length: ");
        sb_adds(&b, num);
        sb_adds(&b, "\r\n");
    }
    for (size_t i = 0; i < o->nheaders; i++) {
        const gw_header_t *h = &o->headers[i];
        sb_add(&b, h->name.data, h->name.len);
        sb_add(&b, ": ", 2);
        if (h->value.len)
            sb_add(&b, h->value.data, h->value.len);
        sb_add(&b, "\r\n", 2);
    }
    sb_add(&b, "\r\n", 2);
    if (o->body && o->body_len)
        sb_add(&b, o->body, o->body_len);
    if (b.oom) {
        free(b.p);
        set_err(err, errlen, "out of memory", NULL);
        return -1;
    }
    if (b.len > UINT32_MAX) { /* what one uv_buf_t can carry */
        free(b.p);
        set_err(err, errlen, "request body too large", NULL);
        return -1;
    }
    r->out = b.p;
    r->out_len = b.len;
    return 0;
}

/* ---------------------------------------------------------------- life cycle */

static void
req_free(gw_httpc_req_t *r)
{
    gw_tlsc_free(r->tls);
    free(r->host);
    free(r->out);
    free(r->hbuf);
    free(r->hoffs);
    free(r->body);
    free(r);
}

static void
unref(gw_httpc_req_t *r)
{
    if (--r->refs == 0 && r->done)
        req_free(r);
}

static void
on_handle_closed(uv_handle_t *h)
{
    unref(h->data);
}

static void
deliver(gw_httpc_req_t *r, int err, const char *msg)
{
    gw_httpc_resp_t resp, *rp = NULL;
    gw_header_t *hs = NULL;

    if (err == 0) {
        if (r->nh > 0) {
            hs = malloc(r->nh * sizeof(*hs));
            if (hs == NULL) {
                err = GW_HTTPC_EINTERNAL;
                msg = "out of memory";
            }
        }
        if (r->body == NULL) {
            r->body = malloc(1);
            if (r->body == NULL) {
                err = GW_HTTPC_EINTERNAL;
                msg = "out of memory";
            }
        }
    }
    if (err == 0) {
        for (size_t i = 0; i < r->nh; i++) {
            hs[i].name = (gw_str_t){r->hbuf + r->hoffs[i].noff, r->hoffs[i].nlen};
            hs[i].value = (gw_str_t){r->hbuf + r->hoffs[i].voff, r->hoffs[i].vlen};
        }
        r->body[r->blen] = '\0';
        resp.status = r->status;
        resp.headers = hs;
        resp.nheaders = r->nh;
        resp.body = r->body;
        resp.body_len = r->blen;
        rp = &resp;
    }
    r->cb(r, err, err ? msg : NULL, rp, r->arg);
    free(hs);
}

/*
 * Ends the request: the callback fires now, then the handles close and the
 * last of them frees the request. Must run from a loop callback.
 */
static void
finish(gw_httpc_req_t *r, int err, const char *msg)
{
    if (r->done)
        return;
    r->done = 1;
    if (r->cancelled) {
        /* Whatever happened since the cancel, the owner asked to stop. */
        err = GW_HTTPC_ECANCELED;
        msg = "cancelled";
    }
    uv_timer_stop(&r->timer);
    if (r->resolve != NULL) {
        r->resolve->req = NULL;
        uv_cancel((uv_req_t *)&r->resolve->gai);
        r->resolve = NULL;
    }
    if (r->tcp_open)
        uv_read_stop((uv_stream_t *)&r->tcp);

    /* Holding a reference keeps the request alive through the callback. */
    r->refs++;
    deliver(r, err, msg);
    if (r->tcp_open) {
        r->tcp_open = 0;
        uv_close((uv_handle_t *)&r->tcp, on_handle_closed);
    }
    uv_close((uv_handle_t *)&r->timer, on_handle_closed);
    unref(r);
}

/* Reports an error; during gw_httpc_request() the timer carries it to the
 * loop, because the callback must never fire from inside the start call. */
static void on_timer(uv_timer_t *t);

static void
fail(gw_httpc_req_t *r, int err, const char *msg)
{
    if (!r->starting) {
        finish(r, err, msg);
        return;
    }
    if (r->pending_err == 0) {
        r->pending_err = err;
        if (msg != r->errbuf)
            snprintf(r->errbuf, sizeof(r->errbuf), "%s", msg);
        uv_timer_start(&r->timer, on_timer, 0, 0);
    }
}

static void
on_timer(uv_timer_t *t)
{
    gw_httpc_req_t *r = t->data;
    if (r->pending_err)
        finish(r, r->pending_err, r->errbuf);
    else
        finish(r, GW_HTTPC_ETIMEDOUT, "timeout");
}

/* ---------------------------------------------------------------- response */

static int
hbuf_add(gw_httpc_req_t *r, const char *at, size_t len)
{
    if (r->hlen + len > MAX_HEADER_BYTES) {
        r->user_err = GW_HTTPC_ETOOLARGE;
        snprintf(r->errbuf, sizeof(r->errbuf), "response headers too large");
        return -1;
    }
    if (r->hlen + len > r->hcap) {
        size_t cap = r->hcap ? r->hcap : 1024;
        while (cap < r->hlen + len)
            cap *= 2;
        char *p = realloc(r->hbuf, cap);
        if (p == NULL) {
            r->user_err = GW_HTTPC_EINTERNAL;
            snprintf(r->errbuf, sizeof(r->errbuf), "out of memory");
            return -1;
        }
        r->hbuf = p;
        r->hcap = cap;
    }
    memcpy(r->hbuf + r->hlen, at, len);
    r->hlen += len;
    return 0;
}

static int
on_message_begin(llhttp_t *p)
{
    gw_httpc_req_t *r = p->data;
    /* A 1xx response may come first: only the final one is kept. */
    r->hlen = 0;
    r->nh = 0;
    r->blen = 0;
    r->hdr_done = 0;
    return 0;
}

static int
on_header_field(llhttp_t *p, const char *at, size_t len)
{
    gw_httpc_req_t *r = p->data;
    if (r->nh == 0 || r->hdr_done) {
        if (r->nh == MAX_HEADERS) {
            r->user_err = GW_HTTPC_ETOOLARGE;
            snprintf(r->errbuf, sizeof(r->errbuf), "response headers too large");
            return -1;
        }
        if (r->nh == r->nhcap) {
            size_t cap = r->nhcap ? r->nhcap * 2 : 16;
            hoff_t *h = realloc(r->hoffs, cap * sizeof(*h));
            if (h == NULL) {
                r->user_err = GW_HTTPC_EINTERNAL;
                snprintf(r->errbuf, sizeof(r->errbuf), "out of memory");
                return -1;
            }
            r->hoffs = h;
            r->nhcap = cap;
        }
        r->hoffs[r->nh++] = (hoff_t){r->hlen, 0, r->hlen, 0};
        r->hdr_done = 0;
    }
    if (hbuf_add(r, at, len) != 0)
        return -1;
    r->hoffs[r->nh - 1].nlen += len;
    r->hoffs[r->nh - 1].voff = r->hlen;
    return 0;
}

static int
on_header_value(llhttp_t *p, const char *at, size_t len)
{
    gw_httpc_req_t *r = p->data;
    if (hbuf_add(r, at, len) != 0)
        return -1;
    r->hoffs[r->nh - 1].vlen += len;
    return 0;
}

/* Marks the end of a header even when its value is empty (no value bytes). */
static int
on_header_value_complete(llhttp_t *p)
{
    gw_httpc_req_t *r = p->data;
    r->hdr_done = 1;
    return 0;
}

static int
too_large(gw_httpc_req_t *r)
{
    r->user_err = GW_HTTPC_ETOOLARGE;
    snprintf(r->errbuf, sizeof(r->errbuf), "response too large");
    return -1;
}

static int
on_headers_complete(llhttp_t *p)
{
    gw_httpc_req_t *r = p->data;
    r->status = p->status_code;
    if (r->on_body && !(r->status >= 100 && r->status < 200))
        uv_timer_stop(&r->timer); /* the budget covered the wait for the head */
    if (r->head_method)
        return 1; /* no body follows, whatever the headers announce */
    if (r->on_body)
        return 0;
    /* Refuse a declared oversize body before reading any of it. */
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > r->max_body)
        return too_large(r);
    return 0;
}

static int
stream_body(gw_httpc_req_t *r, const char *at, size_t len)
{
    if (r->cancelled || r->on_body(r, r->status, at, len, r->arg) != 0) {
        r->cancelled = 1;
        r->user_err = GW_HTTPC_ECANCELED;
        snprintf(r->errbuf, sizeof(r->errbuf), "cancelled");
        return -1;
    }
    /* A cancel from inside ON_BODY: no further piece. */
    return r->cancelled ? -1 : 0;
}

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
    gw_httpc_req_t *r = p->data;
    if (r->on_body)
        return stream_body(r, at, len);
    if (len > r->max_body - r->blen)
        return too_large(r);
    if (r->blen + len + 1 > r->bcap) {
        size_t cap = r->bcap ? r->bcap : 4096;
        while (cap < r->blen + len + 1)
            cap *= 2;
        if (cap > r->max_body + 1)
            cap = r->max_body + 1;
        char *b = realloc(r->body, cap);
        if (b == NULL) {
            r->user_err = GW_HTTPC_EINTERNAL;
            snprintf(r->errbuf, sizeof(r->errbuf), "out of memory");
            return -1;
        }
        r->body = b;
        r->bcap = cap;
    }
    memcpy(r->body + r->blen, at, len);
    r->blen += len;
    return 0;
}

static int
on_message_complete(llhttp_t *p)
{
    gw_httpc_req_t *r = p->data;
    if (p->status_code >= 100 && p->status_code < 200 && p->status_code != 101)
        return 0;
    r->complete = 1;
    /* Stop here: whatever follows the response is not ours to parse. */
    return HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void
fail_parse(gw_httpc_req_t *r, llhttp_errno_t e)
{
    /* Whichever callback refused, its own reason is the better one. */
    if (r->user_err) {
        finish(r, r->user_err, r->errbuf);
        return;
    }
    if (e == HPE_PAUSED_UPGRADE) {
        finish(r, GW_HTTPC_EBADRESP, "invalid response: unexpected protocol upgrade");
        return;
    }
    snprintf(r->errbuf, sizeof(r->errbuf), "invalid response: %s",
             llhttp_get_error_reason(&r->parser) ? llhttp_get_error_reason(&r->parser)
                                                 : llhttp_errno_name(e));
    finish(r, GW_HTTPC_EBADRESP, r->errbuf);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    gw_httpc_req_t *r = h->data;
    buf->base = r->rbuf;
    buf->len = sizeof(r->rbuf);
}

static void
got_bytes(gw_httpc_req_t *r, const char *data, size_t n)
{
    r->got_bytes = 1;
    llhttp_errno_t e = llhttp_execute(&r->parser, data, n);
    if (e == HPE_PAUSED && r->complete)
        finish(r, 0, NULL);
    else if (e != HPE_OK)
        fail_parse(r, e);
}

/* The peer closed (UV_EOF), or the read failed. */
static void
got_end(gw_httpc_req_t *r, ssize_t nread)
{
    llhttp_errno_t e;
    if (nread == UV_EOF) {
        if (!r->got_bytes) {
            if (r->write_err)
                snprintf(r->errbuf, sizeof(r->errbuf),
                         "connection closed before the response (send failed: %s)",
                         uv_strerror(r->write_err));
            else
                snprintf(r->errbuf, sizeof(r->errbuf), "connection closed before the response");
            finish(r, GW_HTTPC_ERESET, r->errbuf);
            return;
        }
        /* A body delimited by the close ends here; anything else is cut. */
        e = llhttp_finish(&r->parser);
        if ((e == HPE_OK || e == HPE_PAUSED) && r->complete)
            finish(r, 0, NULL);
        else if (r->user_err)
            finish(r, r->user_err, r->errbuf);
        else
            finish(r, GW_HTTPC_ERESET, "connection closed in the middle of the response");
        return;
    }
    snprintf(r->errbuf, sizeof(r->errbuf), "connection %s while reading the response",
             nread == UV_ECONNRESET ? "reset by peer" : uv_strerror((int)nread));
    finish(r, GW_HTTPC_ERESET, r->errbuf);
}

static void on_tls_read(gw_httpc_req_t *r, ssize_t nread, const uv_buf_t *buf);

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    gw_httpc_req_t *r = s->data;
    if (r->done || nread == 0)
        return;
    if (r->tls)
        on_tls_read(r, nread, buf);
    else if (nread > 0)
        got_bytes(r, buf->base, (size_t)nread);
    else
        got_end(r, nread);
}

/* ---------------------------------------------------------------- https */

typedef struct {
    uv_write_t w;
    gw_httpc_req_t *r;
    char data[];
} tls_out_t;

static void
on_tls_write(uv_write_t *w, int status)
{
    tls_out_t *o = w->data;
    gw_httpc_req_t *r = o->r;
    free(o);
    if (status < 0 && status != UV_ECANCELED)
        r->write_err = status;
    unref(r);
}

/* What the session has for the server, on its way: 0, or a libuv error. */
static int
tls_flush(gw_httpc_req_t *r)
{
    const char *p;
    size_t n = gw_tlsc_pending(r->tls, &p);
    if (n == 0)
        return 0;
    tls_out_t *o = malloc(sizeof(*o) + n);
    if (o == NULL)
        return UV_ENOMEM;
    memcpy(o->data, p, n);
    gw_tlsc_sent(r->tls);
    o->r = r;
    o->w.data = o;
    uv_buf_t b = uv_buf_init(o->data, (unsigned)n);
    int rc = uv_write(&o->w, (uv_stream_t *)&r->tcp, &b, 1, on_tls_write);
    if (rc < 0) {
        free(o);
        return rc;
    }
    r->refs++;
    return 0;
}

static void
tls_failed(gw_httpc_req_t *r, const char *why)
{
    snprintf(r->errbuf, sizeof(r->errbuf), "TLS handshake with %s:%s failed: %s", r->host, r->port,
             why);
    finish(r, GW_HTTPC_ECONNECT, r->errbuf);
}

/* 1: the handshake is done and the request on its way; 0: not yet, or
 * the request ended. */
static int
tls_step(gw_httpc_req_t *r)
{
    int rc = gw_tlsc_handshake(r->tls);
    int wr = tls_flush(r);
    if (rc == GW_ERROR) {
        tls_failed(r, gw_tlsc_error(r->tls));
        return 0;
    }
    if (wr < 0) {
        tls_failed(r, uv_strerror(wr));
        return 0;
    }
    if (rc == GW_AGAIN)
        return 0;
    r->tls_ready = 1;
    if (gw_tlsc_write(r->tls, r->out, r->out_len) != GW_OK || (wr = tls_flush(r)) < 0) {
        snprintf(r->errbuf, sizeof(r->errbuf), "send failed: %s",
                 wr < 0 ? uv_strerror(wr) : gw_tlsc_error(r->tls));
        finish(r, GW_HTTPC_ERESET, r->errbuf);
        return 0;
    }
    return 1;
}

static void
on_tls_read(gw_httpc_req_t *r, ssize_t nread, const uv_buf_t *buf)
{
    if (nread < 0) {
        if (r->tls_ready)
            got_end(r, nread);
        else
            tls_failed(r, nread == UV_EOF ? "the server closed the connection"
                                          : uv_strerror((int)nread));
        return;
    }
    if (gw_tlsc_feed(r->tls, buf->base, (size_t)nread) != GW_OK) {
        finish(r, GW_HTTPC_EINTERNAL, "out of memory");
        return;
    }
    if (!r->tls_ready && !tls_step(r))
        return;
    /* the ciphertext is in the session: the read buffer takes the plain text */
    while (!r->done) {
        ssize_t n = gw_tlsc_read(r->tls, r->rbuf, sizeof(r->rbuf));
        if (n > 0) {
            got_bytes(r, r->rbuf, (size_t)n);
            continue;
        }
        if (n == GW_TLSC_CLOSED) {
            got_end(r, UV_EOF);
        } else if (n < 0) {
            snprintf(r->errbuf, sizeof(r->errbuf), "TLS: %s", gw_tlsc_error(r->tls));
            finish(r, GW_HTTPC_ERESET, r->errbuf);
        } else if (tls_flush(r) < 0) {
            finish(r, GW_HTTPC_ERESET, "send failed");
        }
        return;
    }
}

/* ---------------------------------------------------------------- connect and send */

static void connect_next(gw_httpc_req_t *r);

static void
on_write(uv_write_t *w, int status)
{
    gw_httpc_req_t *r = w->data;
    /* A peer may answer and close before reading all of the request (a 413,
     * say): keep reading and report the send failure only if no answer comes. */
    if (status < 0 && status != UV_ECANCELED)
        r->write_err = status;
    unref(r);
}

static void
on_connect(uv_connect_t *c, int status)
{
    gw_httpc_req_t *r = c->data;
    int rc;

    if (r->done || status == UV_ECANCELED) {
        unref(r);
        return;
    }
    if (status < 0) {
        r->connect_err = status;
        unref(r);
        connect_next(r);
        return;
    }
    unref(r);
    /* A stream may stay silent for hours: probes tell a quiet peer from a
     * vanished one (best effort; a failure only loses that). */
    if (r->on_body)
        (void)uv_tcp_keepalive(&r->tcp, 1, 30);
    if (r->tls) {
        /* the request goes once the handshake is done (tls_step) */
        rc = uv_read_start((uv_stream_t *)&r->tcp, on_alloc, on_read);
        if (rc < 0)
            tls_failed(r, uv_strerror(rc));
        else
            tls_step(r); /* the first flight */
        return;
    }
    uv_buf_t b = uv_buf_init(r->out, (unsigned)r->out_len);
    rc = uv_write(&r->wreq, (uv_stream_t *)&r->tcp, &b, 1, on_write);
    if (rc < 0) {
        snprintf(r->errbuf, sizeof(r->errbuf), "send failed: %s", uv_strerror(rc));
        finish(r, GW_HTTPC_ERESET, r->errbuf);
        return;
    }
    r->refs++;
    rc = uv_read_start((uv_stream_t *)&r->tcp, on_alloc, on_read);
    if (rc < 0) {
        snprintf(r->errbuf, sizeof(r->errbuf), "read failed: %s", uv_strerror(rc));
        finish(r, GW_HTTPC_ERESET, r->errbuf);
    }
}

static void
on_retry_closed(uv_handle_t *h)
{
    gw_httpc_req_t *r = h->data;
    if (r->done) {
        unref(r);
        return;
    }
    r->refs--; /* cannot reach 0: the timer is still open */
    connect_next(r);
}

/* Connects to the next resolved address; after a failed attempt the handle
 * is closed first, since a libuv TCP handle connects only once. */
static void
connect_next(gw_httpc_req_t *r)
{
    int rc;

    if (r->tcp_open) {
        r->tcp_open = 0;
        uv_close((uv_handle_t *)&r->tcp, on_retry_closed);
        return;
    }
    while (r->next_addr < r->naddrs) {
        struct sockaddr *sa = (struct sockaddr *)&r->addrs[r->next_addr++];
        rc = uv_tcp_init(r->loop, &r->tcp);
        if (rc < 0) {
            r->connect_err = rc;
            break;
        }
        r->tcp.data = r;
        r->tcp_open = 1;
        r->refs++;
        rc = uv_tcp_connect(&r->creq, &r->tcp, sa, on_connect);
        if (rc == 0) {
            r->refs++;
            return;
        }
        r->connect_err = rc;
        r->tcp_open = 0;
        uv_close((uv_handle_t *)&r->tcp, on_retry_closed);
        return;
    }
    snprintf(r->errbuf, sizeof(r->errbuf), "connect to %s:%s failed: %s", r->host, r->port,
             uv_strerror(r->connect_err ? r->connect_err : UV_EADDRNOTAVAIL));
    fail(r, GW_HTTPC_ECONNECT, r->errbuf);
}

static void
on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    resolve_t *rs = g->data;
    gw_httpc_req_t *r = rs->req;

    free(rs);
    if (r == NULL) { /* the request ended while the resolver ran */
        if (res)
            uv_freeaddrinfo(res);
        return;
    }
    r->resolve = NULL;
    if (status < 0) {
        if (res)
            uv_freeaddrinfo(res);
        snprintf(r->errbuf, sizeof(r->errbuf), "cannot resolve \"%s\": %s", r->host,
                 uv_strerror(status));
        finish(r, GW_HTTPC_EDNS, r->errbuf);
        return;
    }
    for (struct addrinfo *ai = res; ai && r->naddrs < MAX_ADDRS; ai = ai->ai_next) {
        if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
            ai->ai_addrlen <= sizeof(r->addrs[0]))
            memcpy(&r->addrs[r->naddrs++], ai->ai_addr, ai->ai_addrlen);
    }
    uv_freeaddrinfo(res);
    if (r->naddrs == 0) {
        snprintf(r->errbuf, sizeof(r->errbuf), "cannot resolve \"%s\": no address", r->host);
        finish(r, GW_HTTPC_EDNS, r->errbuf);
        return;
    }
    connect_next(r);
}

/* Numeric hosts skip the resolver: health checks against IP nodes should
 * not queue behind slow lookups in libuv's small thread pool. */
static void
start(gw_httpc_req_t *r)
{
    struct sockaddr_in *s4 = (struct sockaddr_in *)&r->addrs[0];
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&r->addrs[0];
    int port = atoi(r->port), rc;

    if (uv_ip4_addr(r->host, port, s4) == 0 || uv_ip6_addr(r->host, port, s6) == 0) {
        r->naddrs = 1;
        connect_next(r);
        return;
    }
    resolve_t *rs = malloc(sizeof(*rs));
    if (rs == NULL) {
        fail(r, GW_HTTPC_EINTERNAL, "out of memory");
        return;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    rs->req = r;
    rs->gai.data = rs;
    rc = uv_getaddrinfo(r->loop, &rs->gai, on_resolved, r->host, r->port, &hints);
    if (rc < 0) {
        free(rs);
        snprintf(r->errbuf, sizeof(r->errbuf), "cannot resolve \"%s\": %s", r->host,
                 uv_strerror(rc));
        fail(r, GW_HTTPC_EDNS, r->errbuf);
        return;
    }
    r->resolve = rs;
}

/* ---------------------------------------------------------------- public */

gw_httpc_req_t *
gw_httpc_request(uv_loop_t *loop, const gw_httpc_opts_t *opts, gw_httpc_cb cb, void *arg, char *err,
                 size_t errlen)
{
    gw_httpc_req_t *r;
    url_t u;
    const char *method;

    if (err && errlen)
        err[0] = '\0';
    if (loop == NULL || opts == NULL || cb == NULL) {
        set_err(err, errlen, "missing loop, options or callback", NULL);
        return NULL;
    }
    if (opts->url == NULL || opts->url[0] == '\0') {
        set_err(err, errlen, "missing URL", NULL);
        return NULL;
    }
    method = opts->method ? opts->method : "GET";
    if (!is_token(method, strlen(method)) || strlen(method) > 32) {
        set_err(err, errlen, "bad method \"%.40s\"", method);
        return NULL;
    }
    if (opts->body == NULL && opts->body_len > 0) {
        set_err(err, errlen, "body_len given without a body", NULL);
        return NULL;
    }
    if (opts->headers == NULL && opts->nheaders > 0) {
        set_err(err, errlen, "nheaders given without headers", NULL);
        return NULL;
    }
    if (parse_url(opts->url, &u, err, errlen) != 0)
        return NULL;
    if (u.https && opts->tls == NULL) {
        set_err(err, errlen, "https needs TLS settings (none were given for \"%.100s\")",
                opts->url);
        return NULL;
    }

    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        set_err(err, errlen, "out of memory", NULL);
        return NULL;
    }
    r->host = strndup(u.host, u.host_len);
    if (r->host == NULL) {
        set_err(err, errlen, "out of memory", NULL);
        req_free(r);
        return NULL;
    }
    if (build_request(r, opts, method, &u, err, errlen) != 0) {
        req_free(r);
        return NULL;
    }
    if (u.https && (r->tls = gw_tlsc_new(opts->tls, opts->tls_name ? opts->tls_name : r->host,
                                         NULL)) == NULL) {
        set_err(err, errlen, "out of memory", NULL);
        req_free(r);
        return NULL;
    }
    snprintf(r->port, sizeof(r->port), "%u", u.port);
    r->loop = loop;
    r->cb = cb;
    r->on_body = opts->on_body;
    r->arg = arg;
    r->head_method = strcmp(method, "HEAD") == 0;
    r->max_body = opts->max_body ? opts->max_body : GW_HTTPC_DEFAULT_MAX_BODY;
    llhttp_init(&r->parser, HTTP_RESPONSE, &parser_settings);
    r->parser.data = r;
    r->creq.data = r;
    r->wreq.data = r;

    if (uv_timer_init(loop, &r->timer) != 0) {
        set_err(err, errlen, "cannot start a timer", NULL);
        req_free(r);
        return NULL;
    }
    r->timer.data = r;
    r->refs = 1;
    uv_timer_start(&r->timer, on_timer,
                   opts->timeout_ms ? opts->timeout_ms : GW_HTTPC_DEFAULT_TIMEOUT_MS, 0);
    r->starting = 1;
    start(r);
    r->starting = 0;
    return r;
}

void
gw_httpc_cancel(gw_httpc_req_t *req)
{
    if (req == NULL || req->done)
        return;
    /* Through the timer, so the callback never runs inside this call. */
    req->cancelled = 1;
    req->pending_err = GW_HTTPC_ECANCELED;
    uv_timer_start(&req->timer, on_timer, 0, 0);
}
