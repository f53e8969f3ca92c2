/*
 * Downstream HTTP/1.1: one connection, one request at a time.
 *
 * llhttp runs in strict mode. It stops (HPE_PAUSED) at the end of a head
 * that announces a body, and at the end of every message, so the bytes of
 * a pipelined next request stay unparsed in the buffer until the current
 * response is out. Body bytes are parsed only while the upstream side
 * takes them; otherwise they wait in the buffer and reading stops.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "gw_http1.h"

#include "gw_edge.h"
#include "gw_log.h"
#include "gw_metrics.h"
#include "gw_request.h" /* cycle: a parsed head starts a request, answered through h1_ops */
#include "gw_tls.h"

static void process(gw_conn_t *c);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void timer_arm(gw_conn_t *c);
static void tls_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void tls_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void tls_pump(gw_conn_t *c);
static void conn_error(gw_conn_t *c, int status, const char *message);
static gw_request_t *new_request(gw_conn_t *c);
static void resume_body(gw_conn_t *c);

#define CONN(p) ((gw_conn_t *)((llhttp_t *)(p))->data)

/* ---- llhttp callbacks: record slices, never copy ---- */

static int
on_message_begin(llhttp_t *p)
{
    return 0;
}

static int
on_url(llhttp_t *p, const char *at, size_t len)
{
    gw_request_t *r = CONN(p)->req;
    if (r->url.data == NULL)
        r->url.data = at;
    r->url.len += len;
    return 0;
}

static int
on_method(llhttp_t *p, const char *at, size_t len)
{
    gw_request_t *r = CONN(p)->req;
    if (r->method.data == NULL)
        r->method.data = at;
    r->method.len += len;
    return 0;
}

static int
user_error(gw_conn_t *c, int status)
{
    c->user_status = status;
    return HPE_USER;
}

static int
on_header_field(llhttp_t *p, const char *at, size_t len)
{
    gw_request_t *r = CONN(p)->req;
    if (r->header_state != 1) {
        if (r->nheaders == GW_MAX_HEADERS)
            return user_error(CONN(p), 431);
        gw_header_t *h = &r->headers[r->nheaders++];
        h->name = (gw_str_t){at, 0};
        h->value = (gw_str_t){NULL, 0};
        r->header_state = 1;
    }
    r->headers[r->nheaders - 1].name.len += len;
    return 0;
}

static int
on_header_field_complete(llhttp_t *p)
{
    gw_request_t *r = CONN(p)->req;
    /* a line that starts with ':' has an empty name: llhttp lets it by */
    if (r->header_state != 1 || r->headers[r->nheaders - 1].name.len == 0)
        return user_error(CONN(p), 400);
    return 0;
}

static int
on_header_value_complete(llhttp_t *p)
{
    CONN(p)->req->header_state = 3;
    return 0;
}

static int
on_header_value(llhttp_t *p, const char *at, size_t len)
{
    gw_request_t *r = CONN(p)->req;
    if (r->header_state != 1 && r->header_state != 2)
        return user_error(CONN(p), 400); /* a value without a name */
    gw_header_t *h = &r->headers[r->nheaders - 1];
    if (r->header_state != 2) {
        h->value.data = at;
        r->header_state = 2;
    }
    h->value.len += len;
    return 0;
}

static int
on_headers_complete(llhttp_t *p)
{
    gw_request_t *r = CONN(p)->req;
    r->http_major = p->http_major;
    r->http_minor = p->http_minor;
    r->chunked = (p->flags & F_CHUNKED) != 0;
    r->content_length = (p->flags & F_CONTENT_LENGTH) ? (int64_t)p->content_length : -1;
    r->has_body = r->chunked || r->content_length > 0;
    /* Stop here only when a body follows; otherwise llhttp goes on to
     * on_message_complete, which stops. */
    return r->has_body ? HPE_PAUSED : 0;
}

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
    gw_conn_t *c = CONN(p);
    gw_request_t *r = c->req;
    if (c->dry_run) {
        c->dry_received += len;
        if (c->collect)
            gw_buf_append(c->collect, at, len);
        return c->dry_received > c->w->conf->max_body_size ? user_error(c, 413) : 0;
    }
    r->body_received += len;
    if (r->body_received > c->w->conf->max_body_size)
        return user_error(c, 413);
    if (!gw_request_on_body(r, at, len))
        c->body_paused = 1; /* stop feeding llhttp after this execute */
    return 0;
}

static int
on_chunk_header(llhttp_t *p)
{
    gw_conn_t *c = CONN(p);
    size_t seen = c->dry_run ? c->dry_received : c->req->body_received;
    c->ext_name_seen = 0;
    /* refuse a chunk that cannot fit before waiting for its bytes */
    if (p->content_length > c->w->conf->max_body_size - seen)
        return user_error(c, 413);
    return 0;
}

static int
on_chunk_ext_name(llhttp_t *p, const char *at, size_t len)
{
    if (len)
        CONN(p)->ext_name_seen = 1;
    return 0;
}

static int
on_chunk_ext_name_complete(llhttp_t *p)
{
    gw_conn_t *c = CONN(p);
    if (!c->ext_name_seen)
        return user_error(c, 400); /* ";=v": an extension without a name */
    c->ext_name_seen = 0;
    return 0;
}

static int
on_message_complete(llhttp_t *p)
{
    gw_conn_t *c = CONN(p);
    if (c->dry_run)
        c->dry_complete = 1;
    else
        c->req->body_done = 1;
    return HPE_PAUSED;
}

static const llhttp_settings_t request_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_method = on_method,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_chunk_header = on_chunk_header,
    .on_chunk_extension_name = on_chunk_ext_name,
    .on_chunk_extension_name_complete = on_chunk_ext_name_complete,
    .on_message_complete = on_message_complete,
};

/* ---- connection lifetime ---- */

static void
conn_state(gw_conn_t *c, int st)
{
    if (c->mstate == st)
        return;
    gw_metrics_conn(c->w->metrics, c->w->slot, c->mstate, -1);
    gw_metrics_conn(c->w->metrics, c->w->slot, st, 1);
    c->mstate = st;
}

static void
on_close(uv_handle_t *h)
{
    gw_conn_t *c = h->data;
    gw_worker_t *w = c->w;
    gw_wqueue_free(&c->out); /* write callbacks have all run by now */
    gw_tls_conn_free(c->tls);
    c->tls = NULL;
    gw_metrics_conn(w->metrics, w->slot, GW_CONN_ACTIVE, -1);
    gw_metrics_conn(w->metrics, w->slot, c->mstate, -1);
    free(c);
    gw_worker_conn_closed(w);
}

static void
on_timer_close(uv_handle_t *h)
{
    gw_conn_t *c = h->data;
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void
release_rbuf(gw_conn_t *c)
{
    if (c->rbuf) {
        gw_rbuf_put(&c->w->rbufs, c->rbuf);
        c->rbuf = NULL;
    }
    c->len = c->pos = c->head_start = 0;
}

void
gw_conn_close(gw_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->state = GW_CONN_S_CLOSING;
    if (c->tls && !c->failed && !gw_wqueue_pending(&c->out)) {
        /* close_notify, best effort: a client must not take the close for
         * a truncation attack; when bytes are still queued the response
         * was cut anyway */
        char alert[128];
        gw_tls_shutdown(c->tls);
        size_t n = gw_tls_take_out(c->tls, alert, sizeof(alert));
        uv_buf_t b = uv_buf_init(alert, (unsigned)n);
        if (n)
            uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    }
    if (c->req) {
        gw_request_end(c->req);
        c->req = NULL;
    }
    gw_list_remove(&c->link);
    c->w->nconns--;
    release_rbuf(c);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_close);
}

static void
on_accept_failed_close(uv_handle_t *h)
{
    free(h->data);
}

void
gw_http1_on_connection(uv_stream_t *server, int status)
{
    gw_listener_t *l = server->data;
    gw_worker_t *w = server->loop->data;
    if (status < 0) {
        gw_log(w->log, GW_LOG_WARN, "accept: %s", uv_strerror(status));
        return;
    }
    if (w->draining)
        return;
    if (w->nconns >= w->max_conns) {
        /* Not accepting makes libuv stop polling the listener: extra
         * clients wait in the kernel backlog until a connection closes. */
        l->paused = 1;
        return;
    }
    gw_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->w = w;
    uv_tcp_init(w->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_accept_failed_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_timer_init(w->loop, &c->timer);
    c->timer.data = c;
    gw_list_push(&w->conns, &c->link);
    w->nconns++;
    gw_metrics_conn(w->metrics, w->slot, GW_CONN_ACTIVE, 1);
    gw_metrics_conn(w->metrics, w->slot, GW_CONN_READING, 1);
    c->mstate = GW_CONN_READING;

    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&ss, c->remote_ip, sizeof(c->remote_ip));
        else
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->remote_ip, sizeof(c->remote_ip));
        c->remote_ip_len = (unsigned char)strlen(c->remote_ip);
    }
    if (l->tls && (c->tls = gw_tls_conn_new(w->tls, c->remote_ip)) == NULL) {
        gw_conn_close(c);
        return;
    }
    c->keepalive = 1;
    /* the first request (and before it the TLS handshake) must arrive
     * within client_header */
    c->head_deadline_ms = gw_worker_now_ms(w) + w->conf->client_header_timeout_ms;
    c->state = GW_CONN_S_HEAD;
    timer_arm(c);
    c->reading = 1;
    if (c->tls)
        uv_read_start((uv_stream_t *)&c->tcp, tls_on_alloc, tls_on_read);
    else
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- timers ---- */

static void
on_timer(uv_timer_t *t)
{
    gw_conn_t *c = t->data;
    if (c->closing)
        return;
    if (c->failed) {
        gw_conn_close(c);
        return;
    }
    if (!gw_deadline_fired(&c->dl, t, on_timer))
        return;
    if (c->out.busy) {
        gw_conn_close(c); /* a client that stopped reading its response */
        return;
    }
    switch (c->state) {
    case GW_CONN_S_IDLE:
        gw_conn_close(c);
        return;
    case GW_CONN_S_HEAD:
        if (c->req == NULL || c->len == c->head_start) {
            gw_conn_close(c); /* nothing of a request yet: just close */
            return;
        }
        conn_error(c, 408, "request timeout");
        return;
    case GW_CONN_S_BODY:
        if (c->req && !c->req->body_done && (c->buffering || !c->body_paused)) {
            if (c->resp_started)
                gw_conn_close(c);
            else
                conn_error(c, 408, "request timeout");
        }
        return;
    default:
        return;
    }
}

/* Closes from the next loop turn: a failed write can happen deep inside
 * the request's code, which must not see its request freed under it. */
static int
fail_later(gw_conn_t *c)
{
    if (!c->failed) {
        c->failed = 1;
        gw_deadline_now(&c->dl, &c->timer, on_timer);
    }
    return -1;
}

static void
timer_arm(gw_conn_t *c)
{
    const gw_conf_t *conf = c->w->conf;
    if (c->failed)
        return;
    uint64_t now = gw_worker_now_ms(c->w), ms;
    switch (c->state) {
    case GW_CONN_S_IDLE:
        ms = conf->keepalive_timeout_ms;
        break;
    case GW_CONN_S_HEAD:
        ms = c->head_deadline_ms > now ? c->head_deadline_ms - now : 1;
        break;
    case GW_CONN_S_BODY:
        if (c->req && !c->req->body_done && (c->buffering || !c->body_paused)) {
            ms = conf->client_body_timeout_ms;
            break;
        }
        gw_deadline_clear(&c->dl);
        return;
    default:
        gw_deadline_clear(&c->dl);
        return;
    }
    gw_deadline_set(&c->dl, &c->timer, on_timer, ms);
}

/* ---- reading ---- */

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    gw_conn_t *c = h->data;
    if (c->rbuf == NULL)
        c->rbuf = gw_rbuf_get(&c->w->rbufs);
    buf->base = c->rbuf->data + c->len;
    buf->len = c->rbuf->cap - c->len;
}

static void
read_stop(gw_conn_t *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void
read_start(gw_conn_t *c)
{
    if (c->reading || c->closing)
        return;
    c->reading = 1;
    if (c->tls == NULL) {
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, tls_on_alloc, tls_on_read);
    /* records read before the stop may hold a whole next request: no
     * socket event would announce it */
    if (gw_tls_has_input(c->tls))
        tls_pump(c);
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    gw_conn_t *c = s->data;
    if (nread < 0) {
        /* EOF or reset: a request in flight is abandoned, as a client that
         * half-closes cannot be told apart from one that went away */
        gw_conn_close(c);
        return;
    }
    if (nread == 0) {
        if (c->len == 0 && c->req == NULL)
            release_rbuf(c);
        return;
    }
    c->w->nreads++;
    gw_edge_after_read(&c->edge, s, nread, buf->len);
    c->len += (size_t)nread;
    if (c->state == GW_CONN_S_BODY && c->req && !c->req->body_done)
        timer_arm(c); /* client_body runs between reads */
    process(c);
}

/* ---- head checks the strict parser leaves to us ---- */

static gw_str_t
trim(gw_str_t v)
{
    while (v.len && (v.data[0] == ' ' || v.data[0] == '\t'))
        v.data++, v.len--;
    while (v.len && (v.data[v.len - 1] == ' ' || v.data[v.len - 1] == '\t'))
        v.len--;
    return v;
}

/* Control bytes other than tab; obs-text (0x80-0xff) is let through.
 * Eight bytes at a time: almost every value has no control byte at all. */
static int
bad_value_bytes(gw_str_t v)
{
    size_t i = 0;
    for (; i + 8 <= v.len; i += 8) {
        uint64_t x;
        memcpy(&x, v.data + i, 8);
        if (gw_ctl8(x))
            break;
    }
    for (; i < v.len; i++) {
        unsigned char ch = (unsigned char)v.data[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return 1;
    }
    return 0;
}

/* Host: a name, IPv4 or [IPv6] with an optional port, in the bytes those
 * can hold (underscores too, as some internal names have them). */
static const unsigned char host_byte[256] = {
    ['.'] = 1, ['-'] = 1, [':'] = 1, ['['] = 1, [']'] = 1, ['_'] = 1, ['0'] = 1, ['1'] = 1,
    ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
    ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
    ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1,
    ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
};

static int
host_ok(gw_str_t h)
{
    if (h.len == 0 || h.len > 255)
        return 0;
    unsigned ok = 1;
    for (size_t i = 0; i < h.len; i++)
        ok &= host_byte[(unsigned char)h.data[i]];
    return (int)ok;
}

/* host[:port] or [v6][:port], the port 1-5 digits up to 65535 */
static int
authority_ok(gw_str_t a)
{
    if (!host_ok(a))
        return 0;
    size_t hlen = a.len;
    if (a.data[0] == '[') {
        const char *rb = memchr(a.data, ']', a.len);
        if (rb == NULL || rb == a.data + 1)
            return 0;
        hlen = (size_t)(rb - a.data) + 1;
        if (hlen < a.len && a.data[hlen] != ':')
            return 0;
    } else {
        const char *colon = memchr(a.data, ':', a.len);
        if (colon)
            hlen = (size_t)(colon - a.data);
        if (hlen == 0 || memchr(a.data, '[', a.len) || memchr(a.data, ']', a.len))
            return 0;
    }
    if (hlen == a.len)
        return 1;
    gw_str_t port = {a.data + hlen + 1, a.len - hlen - 1};
    unsigned long v = 0;
    if (port.len == 0 || port.len > 5)
        return 0;
    for (size_t i = 0; i < port.len; i++) {
        if (port.data[i] < '0' || port.data[i] > '9')
            return 0;
        v = v * 10 + (unsigned long)(port.data[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

/* "http://" or "https://" in any case: its length, or 0 for another scheme;
 * -1 when the target does not start with a scheme at all. */
static int
target_scheme(gw_str_t u)
{
    size_t i = 0;
    while (i < u.len && (isalnum((unsigned char)u.data[i]) || u.data[i] == '+' ||
                         u.data[i] == '-' || u.data[i] == '.'))
        i++;
    if (i == 0 || !isalpha((unsigned char)u.data[0]) || u.len - i < 3 ||
        memcmp(u.data + i, "://", 3) != 0)
        return -1;
    gw_str_t scheme = {u.data, i};
    if (gw_str_caseeq_lc(scheme, GW_STR("http")) || gw_str_caseeq_lc(scheme, GW_STR("https")))
        return (int)i + 3;
    return 0;
}

/*
 * The request target (RFC 9112 3.2). Origin-form goes on as it is;
 * asterisk-form is for OPTIONS alone; authority-form is CONNECT's, and
 * CONNECT is not served. Absolute-form ("http://host:port/path?q", which a
 * server must take, 3.2.2) becomes the origin-form that goes upstream,
 * and its authority replaces Host: for routing, X-Forwarded-Host and the
 * Host the upstream gets. Returns 0, or 400/431 with *msg.
 */
static int
check_target(gw_request_t *r, gw_header_t *host, const char **msg)
{
    gw_str_t u = r->url;
    if (u.len && u.data[0] == '/')
        return 0; /* origin-form: every common request stops here */
    int options = gw_str_eq(r->method, GW_STR("OPTIONS"));
    *msg = "bad request target";
    if (u.len == 1 && u.data[0] == '*')
        return options ? 0 : 400;
    if (gw_str_eq(r->method, GW_STR("CONNECT")))
        return 400;
    int skip = target_scheme(u);
    if (skip < 0)
        return 400;
    if (skip == 0) {
        *msg = "unsupported URI scheme";
        return 400;
    }
    size_t a = (size_t)skip, e = a;
    while (e < u.len && u.data[e] != '/' && u.data[e] != '?' && u.data[e] != '#')
        e++;
    gw_str_t auth = {u.data + a, e - a}, rest = {u.data + e, u.len - e};
    if (memchr(auth.data, '@', auth.len)) {
        *msg = "userinfo in request target";
        return 400;
    }
    if (!authority_ok(auth)) {
        *msg = "bad authority in request target";
        return 400;
    }
    if (rest.len == 0) {
        /* an empty path is "/", or "*" for a server-wide OPTIONS (3.2.4) */
        r->url = options ? GW_STR("*") : GW_STR("/");
    } else if (rest.data[0] != '/') {
        /* "?q" needs a "/" before it: a copy from the authority's last
         * byte, which becomes that "/" */
        char *p = gw_request_strdup(r, rest.data - 1, rest.len + 1);
        p[0] = '/';
        r->url = (gw_str_t){p, rest.len + 1};
    } else {
        r->url = rest;
    }
    r->host_header = auth;
    if (host) {
        host->value = auth;
    } else {
        if (r->nheaders == GW_MAX_HEADERS) {
            *msg = "request header fields too large";
            return 431;
        }
        r->headers[r->nheaders++] = (gw_header_t){GW_STR("Host"), auth};
    }
    return 0;
}

/*
 * Returns 0 when the head is acceptable, else the status to answer with;
 * *msg gets the reason. Anything ambiguous about framing is a 400: a
 * request two parsers could read differently must never be forwarded.
 */
static int
check_head(gw_conn_t *c, gw_request_t *r, const char **msg)
{
    unsigned nhost = 0, ncl = 0, nte = 0;
    gw_header_t *host = NULL;
    *msg = "bad request";
    if (r->http_major != 1) {
        if (r->http_major == 0)
            return 400; /* HTTP/0.9 or no version at all */
        *msg = "http version not supported";
        return 505;
    }
    /* a bare LF ends a line for some parsers and not for others */
    const char *head = c->rbuf->data + c->head_start, *end = c->rbuf->data + c->pos;
    for (const char *lf = head; (lf = memchr(lf, '\n', (size_t)(end - lf))) != NULL; lf++)
        if (lf == head || lf[-1] != '\r')
            return 400;
    for (size_t i = 0; i < r->nheaders; i++) {
        gw_header_t *h = &r->headers[i];
        if (h->name.len == 0 || bad_value_bytes(h->value))
            return 400;
        h->value = trim(h->value);
        gw_str_t n = h->name;
        if (n.len == 4 && gw_str_caseeq_lc(n, GW_STR("host"))) {
            nhost++;
            host = h;
            r->host_header = h->value;
        } else if (n.len == 14 && gw_str_caseeq_lc(n, GW_STR("content-length"))) {
            ncl++;
        } else if (n.len == 17 && gw_str_caseeq_lc(n, GW_STR("transfer-encoding"))) {
            nte++;
            if (!gw_str_caseeq_lc(h->value, GW_STR("chunked")))
                return 400;
        } else if (n.len == 6 && gw_str_caseeq_lc(n, GW_STR("expect"))) {
            if (!gw_str_caseeq_lc(h->value, GW_STR("100-continue"))) {
                *msg = "expectation failed";
                return 417;
            }
            r->expect_continue = 1;
        }
    }
    if (nte > 1 || ncl > 1 || (nte && ncl))
        return 400;
    if (nte && r->http_minor == 0)
        return 400;
    if (nhost > 1 || (nhost == 0 && r->http_minor >= 1))
        return 400;
    if (nhost && !host_ok(r->host_header))
        return 400;
    int st = check_target(r, host, msg);
    if (st)
        return st;
    if (r->content_length > 0 && (uint64_t)r->content_length > c->w->conf->max_body_size) {
        *msg = "request body too large";
        return 413;
    }
    return 0;
}

/* ---- the parse loop ---- */

static void
start_request(gw_conn_t *c)
{
    gw_worker_t *w = c->w;
    if (c->requests > 0)
        c->head_deadline_ms = gw_worker_now_ms(w) + w->conf->client_header_timeout_ms;
    c->req = new_request(c);
    c->user_status = 0;
    conn_state(c, GW_CONN_READING);
    c->head_start = c->pos;
    llhttp_init(&c->parser, HTTP_REQUEST, &request_settings);
    c->parser.data = c;
    c->state = GW_CONN_S_HEAD;
    c->body_paused = 0;
    /* The header timer is armed only if the head does not arrive whole in
     * this read (parse_head): most heads do, and a timer op per request
     * is measurable. */
}

static int
parse_error_status(gw_conn_t *c, llhttp_errno_t err, const char **msg)
{
    *msg = "bad request";
    /* callbacks report through user_status; llhttp wraps their return
     * in an error code of its own (HPE_USER, HPE_CB_...) */
    if (c->user_status == 431) {
        *msg = "request header fields too large";
        return 431;
    }
    if (c->user_status == 413) {
        *msg = "request body too large";
        return 413;
    }
    if (err == HPE_INVALID_VERSION) {
        *msg = "http version not supported";
        return 505;
    }
    return 400;
}

static int
send_continue(gw_conn_t *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uv_buf_t b = uv_buf_init((char *)cont, sizeof(cont) - 1);
    c->req->expect_continue = 0;
    return gw_conn_write(c, &b, 1) >= 0;
}

/*
 * Nothing of a request goes upstream until its body is known to be well
 * framed, as far as the buffer can hold it: llhttp checks the buffered
 * bytes on a copy of the parser first. A body that is complete (most are)
 * is thus never half-sent; one larger than the buffer is streamed, and a
 * framing error later cuts the upstream connection mid-request.
 * Returns 1 when the request went on to its phases, 0 to wait.
 */
static int
buffer_body(gw_conn_t *c)
{
    const char *msg;
    llhttp_t p = c->body_parser;
    llhttp_resume(&p);
    c->dry_run = 1;
    c->dry_received = 0;
    c->dry_complete = 0;
    llhttp_errno_t err = llhttp_execute(&p, c->rbuf->data + c->pos, c->len - c->pos);
    c->dry_run = 0;
    if (err != HPE_OK && err != HPE_PAUSED) {
        int st = parse_error_status(c, err, &msg);
        conn_error(c, st, msg);
        return 0;
    }
    if (!c->dry_complete && c->len < c->rbuf->cap)
        return 0; /* wait for more of the body */
    c->buffering = 0;
    timer_arm(c);
    gw_request_on_head(c->req);
    return 1;
}

static int
read_body(gw_conn_t *c, gw_buf_t *out)
{
    out->len = 0;
    if (c == NULL || c->req == NULL || c->closing)
        return GW_ERROR;
    gw_request_t *r = c->req;
    if (!r->has_body)
        return GW_OK;
    if (r->body_received || c->state != GW_CONN_S_BODY)
        return GW_ERROR; /* already on its way upstream */
    llhttp_t p = c->body_parser;
    llhttp_resume(&p);
    c->dry_run = 1;
    c->dry_received = 0;
    c->dry_complete = 0;
    c->collect = out;
    llhttp_errno_t err = llhttp_execute(&p, c->rbuf->data + c->pos, c->len - c->pos);
    c->dry_run = 0;
    c->collect = NULL;
    if (err != HPE_OK && err != HPE_PAUSED)
        return GW_ERROR;
    return c->dry_complete ? GW_OK : GW_DECLINED;
}

/* ---- the common request head, without llhttp ----
 *
 * Most requests are "GET|HEAD /target HTTP/1.1" with plain headers and no
 * body. Those are read here, as strictly as llhttp reads them, at a
 * fraction of its cost. Anything else goes to llhttp from the head's first
 * byte, which also gives every error its usual answer: another method or
 * version, a head not whole in the buffer yet, a body or a header that
 * announces one (Content-Length, Transfer-Encoding), Expect, Upgrade,
 * Proxy-Connection, a Connection other than keep-alive or close, a bare LF,
 * obs-fold, an empty value, any byte outside visible ASCII, SP and HTAB, or
 * more headers than fit. Returns 1 with the head read (c->pos past it), 0
 * to let llhttp decide. */
static int
fast_request_head(gw_conn_t *c, gw_request_t *r, int *keepalive)
{
    const unsigned char *base = (const unsigned char *)c->rbuf->data;
    const unsigned char *s = base + c->pos, *end = base + c->len;
    size_t mlen;
    if (end - s >= 4 && memcmp(s, "GET ", 4) == 0)
        mlen = 3;
    else if (end - s >= 5 && memcmp(s, "HEAD ", 5) == 0)
        mlen = 4;
    else
        return 0;
    const unsigned char *method = s, *url = s + mlen + 1;
    s = gw_http_visible_run(url, end);
    if (s == url || url[0] != '/' || end - s < 11 || memcmp(s, " HTTP/1.1\r\n", 11) != 0)
        return 0;
    size_t ulen = (size_t)(s - url), nh = 0;
    int keep = 1;
    s += 11;
    for (;;) {
        if (end - s < 2)
            return 0;
        if (s[0] == '\r') {
            if (s[1] != '\n')
                return 0;
            s += 2;
            break;
        }
        gw_str_t n, v;
        if (nh == GW_MAX_HEADERS || (s = gw_http_plain_header(s, end, &n, &v)) == NULL)
            return 0;
        while (v.len && (v.data[v.len - 1] == ' ' || v.data[v.len - 1] == '\t'))
            v.len--;
        if (v.len == 0)
            return 0;
        size_t nlen = n.len;
        if ((nlen == 14 && gw_str_caseeq_lc(n, GW_STR("content-length"))) ||
            (nlen == 17 && gw_str_caseeq_lc(n, GW_STR("transfer-encoding"))) ||
            (nlen == 6 && gw_str_caseeq_lc(n, GW_STR("expect"))) ||
            (nlen == 7 && gw_str_caseeq_lc(n, GW_STR("upgrade"))) ||
            (nlen == 16 && gw_str_caseeq_lc(n, GW_STR("proxy-connection"))))
            return 0;
        if (nlen == 10 && gw_str_caseeq_lc(n, GW_STR("connection"))) {
            int k = gw_http_plain_connection(v);
            if (k < 0)
                return 0;
            keep &= k; /* a close anywhere wins, as in llhttp */
        }
        r->headers[nh++] = (gw_header_t){n, v};
    }
    r->method = (gw_str_t){(const char *)method, mlen};
    r->url = (gw_str_t){(const char *)url, ulen};
    r->nheaders = nh;
    r->http_major = 1;
    r->http_minor = 1;
    r->chunked = 0;
    r->content_length = -1;
    r->has_body = 0;
    r->body_done = 1;
    c->pos = (size_t)(s - base);
    *keepalive = keep;
    return 1;
}

/* The head through llhttp: 1 when it is whole (c->pos past it), 0 to wait
 * for bytes or after answering an error. */
static int
llhttp_head(gw_conn_t *c)
{
    char *base = c->rbuf->data;
    const char *msg;
    size_t lim = c->head_start + gw_http_head_ows(base + c->head_start, c->pos - c->head_start,
                                                  c->len - c->head_start);
    llhttp_errno_t err = llhttp_execute(&c->parser, base + c->pos, lim - c->pos);
    if (err == HPE_OK) {
        c->pos = lim;
        if (c->len - c->head_start > c->w->conf->max_header_size || c->len == c->rbuf->cap) {
            conn_error(c, 431, "request header fields too large");
            return 0;
        }
        timer_arm(c); /* client_header, from the first byte, not reset by later ones */
        return 0;
    }
    if (err != HPE_PAUSED) {
        int st = parse_error_status(c, err, &msg);
        conn_error(c, st, msg);
        return 0;
    }
    c->pos = (size_t)(llhttp_get_error_pos(&c->parser) - base);
    return 1;
}

/* Head state: returns 1 to continue the loop, 0 to wait for bytes. */
static int
parse_head(gw_conn_t *c)
{
    gw_request_t *r = c->req;
    const char *msg;
    int fast_keep = 0;
    int fast = c->pos == c->head_start && fast_request_head(c, r, &fast_keep);
    if (!fast && !llhttp_head(c))
        return 0;
    if (c->pos - c->head_start > c->w->conf->max_header_size) {
        conn_error(c, 431, "request header fields too large");
        return 0;
    }
    int st = check_head(c, r, &msg);
    if (st) {
        conn_error(c, st, msg);
        return 0;
    }
    if (fast) {
        r->idempotent = 1; /* GET or HEAD */
        c->keepalive = fast_keep && c->keepalive;
    } else {
        r->idempotent = llhttp_get_method(&c->parser) != HTTP_POST &&
                        llhttp_get_method(&c->parser) != HTTP_PATCH &&
                        llhttp_get_method(&c->parser) != HTTP_CONNECT;
        c->keepalive = llhttp_should_keep_alive(&c->parser) && c->keepalive;
    }
    c->state = GW_CONN_S_BODY;
    c->body_paused = 1;     /* until the upstream side asks for the body */
    c->head_start = c->pos; /* from here on: where the body starts */
    conn_state(c, GW_CONN_WRITING);
    if (r->has_body) {
        c->body_parser = c->parser;
        c->buffering = 1;
        if (r->expect_continue && c->pos == c->len && !send_continue(c))
            return 0;
        timer_arm(c);
        return buffer_body(c);
    }
    /* No body: whatever timer runs (keep-alive, header) may fire during
     * the request and is ignored then (on_timer); the next state arms its
     * own. */
    gw_request_on_head(r);
    return 1;
}

/* Drops body bytes llhttp consumed, keeping the head and what follows. */
static void
compact_body(gw_conn_t *c, size_t body_start)
{
    if (c->pos == body_start)
        return;
    size_t rest = c->len - c->pos;
    if (rest)
        memmove(c->rbuf->data + body_start, c->rbuf->data + c->pos, rest);
    c->len = body_start + rest;
    c->pos = body_start;
}

/* Body state: returns 1 to continue the loop, 0 to wait. */
static int
parse_body(gw_conn_t *c)
{
    gw_request_t *r = c->req;
    if (c->buffering)
        return buffer_body(c);
    if (r->body_done || c->body_paused || c->pos == c->len)
        return 0;
    size_t body_start = c->pos;
    const char *base = c->rbuf->data;
    llhttp_errno_t err = llhttp_execute(&c->parser, base + c->pos, c->len - c->pos);
    if (err == HPE_OK) {
        c->pos = c->len;
    } else if (err == HPE_PAUSED) {
        c->pos = (size_t)(llhttp_get_error_pos(&c->parser) - base);
    } else {
        const char *msg;
        int st = parse_error_status(c, err, &msg);
        conn_error(c, st, msg);
        return 0;
    }
    compact_body(c, body_start);
    if (r->body_done) {
        timer_arm(c);
        gw_request_on_body_done(r);
        return 0;
    }
    return !c->body_paused;
}

static void
process(gw_conn_t *c)
{
    if (c->in_parse)
        return;
    c->in_parse = 1;
    for (;;) {
        if (c->closing)
            break;
        if (c->state == GW_CONN_S_IDLE) {
            if (c->pos == c->len)
                break;
            start_request(c);
        }
        if (c->state == GW_CONN_S_HEAD) {
            if (c->req == NULL)
                start_request(c);
            if (c->pos == c->len || !parse_head(c))
                break;
            continue;
        }
        if (c->state == GW_CONN_S_BODY) {
            if (!parse_body(c))
                break;
            continue;
        }
        break;
    }
    c->in_parse = 0;
    if (c->closing)
        return;
    /* Back-pressure: stop reading when the buffer is full or the upstream
     * is behind; pipelined bytes wait for the current response. */
    if (c->rbuf && c->len == c->rbuf->cap)
        read_stop(c);
    else if (c->state == GW_CONN_S_BODY && c->body_paused && !c->buffering && c->req &&
             c->req->has_body)
        read_stop(c);
    else
        read_start(c);
    if (c->state == GW_CONN_S_IDLE && c->len == 0)
        release_rbuf(c);
}

static void
resume_body(gw_conn_t *c)
{
    if (c->closing || c->req == NULL)
        return;
    gw_request_t *r = c->req;
    if (r->expect_continue && r->body_received == 0 && !r->body_done && !c->resp_started &&
        !send_continue(c))
        return;
    if (!c->body_paused)
        return;
    c->body_paused = 0;
    if (r->body_done)
        return;
    if (c->parser.error == HPE_PAUSED)
        llhttp_resume(&c->parser);
    timer_arm(c);
    process(c);
}

/* ---- writing ---- */

static void
on_write(uv_write_t *wr, int status)
{
    gw_conn_t *c = wr->data;
    if (c->closing)
        return;
    if (status < 0) {
        gw_conn_close(c);
        return;
    }
    int rc = gw_wqueue_written(&c->out, (uv_stream_t *)&c->tcp, on_write);
    if (rc < 0) {
        gw_conn_close(c);
        return;
    }
    if (rc > 0)
        return;                             /* more went out; this callback comes again */
    if (c->close_after && c->req == NULL) { /* the request is over (logged) */
        gw_conn_close(c);
        return;
    }
    timer_arm(c);
    if (c->req)
        gw_request_on_client_drained(c->req);
}

/* ---- the TLS transport ----
 *
 * Ciphertext goes through c->out as plaintext does on a plain connection,
 * so back-pressure, the client_body bound on a stalled reader and
 * close_after work unchanged; plaintext lands in c->rbuf as read bytes do.
 */

/* Records waiting in the session to the socket: like gw_wqueue_write. */
static int
tls_flush(gw_conn_t *c)
{
    char buf[32768];
    size_t n;
    int rc = 1;
    c->out.req.data = c;
    while ((n = gw_tls_take_out(c->tls, buf, sizeof(buf))) > 0) {
        uv_buf_t b = uv_buf_init(buf, (unsigned)n);
        int r = gw_wqueue_write(&c->out, (uv_stream_t *)&c->tcp, &b, 1, on_write);
        if (r < 0)
            return r;
        if (r == 0)
            rc = 0;
    }
    return rc;
}

/* Small buffers are gathered into one record: a head and a short body
 * cost one encryption and one record header, not one each. */
static int
tls_write(gw_conn_t *c, const uv_buf_t *bufs, unsigned n)
{
    char rec[16384];
    size_t used = 0;
    for (unsigned i = 0; i < n; i++) {
        if (used + bufs[i].len > sizeof(rec) && used) {
            if (gw_tls_write(c->tls, rec, used) != GW_OK)
                return -1;
            used = 0;
        }
        if (bufs[i].len >= sizeof(rec)) {
            if (gw_tls_write(c->tls, bufs[i].base, bufs[i].len) != GW_OK)
                return -1;
            continue;
        }
        memcpy(rec + used, bufs[i].base, bufs[i].len);
        used += bufs[i].len;
    }
    if (used && gw_tls_write(c->tls, rec, used) != GW_OK)
        return -1;
    return tls_flush(c);
}

static void
tls_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    gw_conn_t *c = h->data;
    size_t len;
    buf->base = gw_tls_rx_buf(c->w->tls, &len);
    buf->len = len;
}

static void
tls_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    gw_conn_t *c = s->data;
    if (nread < 0) {
        gw_conn_close(c); /* as on_read: EOF or reset */
        return;
    }
    if (nread == 0)
        return;
    c->w->nreads++;
    if (gw_tls_feed(c->tls, buf->base, (size_t)nread) != GW_OK) {
        gw_conn_close(c);
        return;
    }
    tls_pump(c);
}

/* What nginx answers too: a client that spoke http:// to an https port
 * learns why, in plain text, instead of seeing a reset. */
static void
tls_refuse_plain(gw_conn_t *c)
{
#define PLAIN_BODY "{\"code\":400,\"message\":\"plain HTTP sent to an HTTPS port\"}"
    static const char resp[] = "HTTP/1.1 400 Bad Request\r\n"
                               "Content-Type: application/json\r\n"
                               "Content-Length: 57\r\n"
                               "Connection: close\r\n\r\n" PLAIN_BODY;
    _Static_assert(sizeof(PLAIN_BODY) - 1 == 57, "Content-Length");
#undef PLAIN_BODY
    uv_buf_t b = uv_buf_init((char *)resp, sizeof(resp) - 1);
    uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    gw_conn_close(c);
}

/* One turn of the session: the handshake, then plaintext into rbuf while
 * the connection reads. Returns 0 when there is nothing more to do now. */
static int
tls_step(gw_conn_t *c)
{
    if (!gw_tls_handshake_done(c->tls)) {
        int rc = gw_tls_handshake(c->tls);
        if (tls_flush(c) < 0 || rc == GW_ERROR) {
            gw_conn_close(c);
            return 0;
        }
        if (rc == GW_DECLINED) {
            tls_refuse_plain(c);
            return 0;
        }
        if (rc == GW_AGAIN)
            return 0;
    }
    while (c->reading && !c->closing) {
        if (c->rbuf == NULL)
            c->rbuf = gw_rbuf_get(&c->w->rbufs);
        if (c->len == c->rbuf->cap)
            return 0; /* process() stopped reading; read_start pumps again */
        ssize_t n = gw_tls_read(c->tls, c->rbuf->data + c->len, c->rbuf->cap - c->len);
        if (tls_flush(c) < 0) {
            gw_conn_close(c);
            return 0;
        }
        if (n == GW_AGAIN) {
            if (c->len == 0 && c->req == NULL)
                release_rbuf(c);
            return 0;
        }
        if (n < 0) {
            gw_conn_close(c); /* close_notify or a bad record */
            return 0;
        }
        c->len += (size_t)n;
        if (c->state == GW_CONN_S_BODY && c->req && !c->req->body_done)
            timer_arm(c);
        process(c);
    }
    return 0;
}

static void
tls_pump(gw_conn_t *c)
{
    if (c->tls_pumping) {
        c->tls_again = 1;
        return;
    }
    c->tls_pumping = 1;
    do {
        c->tls_again = 0;
        tls_step(c);
    } while (c->tls_again && !c->closing);
    c->tls_pumping = 0;
}

gw_str_t
gw_conn_tls_client_dn(const gw_conn_t *c)
{
    return c && c->tls ? gw_tls_client_dn(c->tls) : (gw_str_t){"", 0};
}

int
gw_conn_write(gw_conn_t *c, const uv_buf_t *bufs, unsigned n)
{
    if (c->closing || c->failed)
        return -1;
    int busy = c->out.busy;
    c->out.req.data = c;
    int rc = c->tls ? tls_write(c, bufs, n)
                    : gw_wqueue_write(&c->out, (uv_stream_t *)&c->tcp, bufs, n, on_write);
    if (rc < 0)
        return fail_later(c);
    if (rc == 0 && !busy) /* client_body also bounds a client that stalls its response */
        gw_deadline_set(&c->dl, &c->timer, on_timer, c->w->conf->client_body_timeout_ms);
    return rc;
}

/* ---- the response, as HTTP/1.1: the request's gw_conn_ops_t ---- */

static void
status_line(gw_buf_t *b, int status)
{
    const char *reason = gw_http_reason(status);
    size_t rl = strlen(reason);
    char *p;
    gw_buf_reserve(b, 16 + rl);
    p = b->data + b->len;
    memcpy(p, "HTTP/1.1 ", 9);
    p[9] = (char)('0' + status / 100 % 10);
    p[10] = (char)('0' + status / 10 % 10);
    p[11] = (char)('0' + status % 10);
    p[12] = ' ';
    memcpy(p + 13, reason, rl);
    memcpy(p + 13 + rl, "\r\n", 2);
    b->len += 15 + rl;
}

/* inline: once per header of every response */
static inline __attribute__((always_inline)) void
put_field(gw_buf_t *b, gw_str_t name, gw_str_t value)
{
    gw_buf_puts(b, name);
    GW_BUF_PUT_LIT(b, ": ");
    gw_buf_puts(b, value);
    GW_BUF_PUT_LIT(b, "\r\n");
}

static inline __attribute__((always_inline)) void
put_date(gw_buf_t *b, gw_worker_t *w)
{
    GW_BUF_PUT_LIT(b, "Date: ");
    gw_buf_put(b, gw_worker_date(w), 29);
    GW_BUF_PUT_LIT(b, "\r\n");
}

/*
 * The head into r->wire (kept with the pooled request object), to go out
 * with the first body bytes in one write. Fields the response carries
 * pass unless hop-by-hop, named by its Connection header, or written here
 * (X-Request-Id always; Content-Length when the gateway frames the body;
 * Date for a response of known length, which the gateway makes). Whether
 * the connection stays open is decided here too: not after a response
 * whose end is the close, nor while the request body is unread.
 */
static void
h1_send_head(gw_request_t *r, const gw_resp_head_t *h)
{
    gw_conn_t *c = r->conn;
    gw_buf_t *b = &r->wire;
    int client10 = r->http_minor == 0;
    int length = h->framing == GW_BODY_LENGTH, stream = h->framing == GW_BODY_STREAM;
    int has_date = length;
    gw_str_t conn_tokens = GW_NULL_STR;
    if (h->close || h->until_close || !r->body_done || c->w->draining || (client10 && stream))
        c->close_after = 1;
    /* HTTP/1.0 has no chunks: such a body is delimited by the close */
    c->rechunk = stream && !client10;
    c->head_only = r->method.len == 4 && gw_str_eq(r->method, GW_STR("HEAD"));
    size_t need = 256 + h->request_id.len;
    for (size_t i = 0; i < h->nheaders; i++) {
        gw_str_t n = h->headers[i].name;
        need += n.len + h->headers[i].value.len + 4;
        if (n.len == 10 && gw_str_caseeq_lc(n, GW_STR("connection")))
            conn_tokens = h->headers[i].value;
    }
    for (size_t i = 0; i < h->nextra; i++)
        need += h->extra[i].name.len + h->extra[i].value.len + 4;
    /* the usual values name no header: skip the per-header token search */
    if (gw_str_caseeq_lc(conn_tokens, GW_STR("keep-alive")) ||
        gw_str_caseeq_lc(conn_tokens, GW_STR("close")))
        conn_tokens = GW_NULL_STR;
    b->len = 0;
    gw_buf_reserve(b, need); /* one check; the puts below are unchecked */
    status_line(b, h->status);
    if (length)
        put_date(b, c->w);
    for (size_t i = 0; i < h->nheaders; i++) {
        gw_str_t n = h->headers[i].name;
        if (n.len == 0 || gw_http_is_hop_by_hop(n))
            continue;
        if (n.len == 12 && gw_str_caseeq_lc(n, GW_STR("x-request-id")))
            continue;
        if (n.len == 14 && (length || stream) && gw_str_caseeq_lc(n, GW_STR("content-length")))
            continue;
        if (n.len == 4 && gw_str_caseeq_lc(n, GW_STR("date"))) {
            if (length)
                continue;
            has_date = 1;
        }
        if (conn_tokens.len && gw_http_has_token(conn_tokens, n))
            continue;
        put_field(b, n, h->headers[i].value);
    }
    if (!has_date)
        put_date(b, c->w);
    if (length) {
        char num[24];
        GW_BUF_PUT_LIT(b, "Content-Length: ");
        gw_buf_put(b, num, gw_fmt_u64(num, (uint64_t)h->content_length));
        GW_BUF_PUT_LIT(b, "\r\n");
    }
    put_field(b, GW_STR("X-Request-Id"), h->request_id);
    for (size_t i = 0; i < h->nextra; i++)
        put_field(b, h->extra[i].name, h->extra[i].value);
    if (c->rechunk)
        GW_BUF_PUT_LIT(b, "Transfer-Encoding: chunked\r\n");
    if (c->close_after || !c->keepalive)
        GW_BUF_PUT_LIT(b, "Connection: close\r\n");
    else if (client10 && !length) /* the gateway's own answers never said keep-alive */
        GW_BUF_PUT_LIT(b, "Connection: keep-alive\r\n");
    GW_BUF_PUT_LIT(b, "\r\n");
    r->bytes_sent += b->len;
    c->resp_started = 1;
    c->head_pending = 1;
}

/* Body bytes (and the pending head), as a chunk when re-chunking; LAST
 * adds the terminating chunk. Returns gw_conn_write's answer. */
static int
h1_send_body(gw_request_t *r, const char *data, size_t len, int last)
{
    gw_conn_t *c = r->conn;
    uv_buf_t b[5];
    unsigned n = 0;
    char size[24];
    if (len == 0 && !c->head_pending && !c->rechunk)
        return 1; /* the end of a body the head frames */
    if (c->head_only)
        len = 0;
    if (c->head_pending) {
        c->head_pending = 0;
        /* a small body rides in the head's buffer: one plain send() */
        if (!c->rechunk && len > 0 && len <= 2048) {
            gw_buf_append(&r->wire, data, len);
            r->bytes_sent += len;
            len = 0;
        }
        b[n++] = uv_buf_init(r->wire.data, (unsigned)r->wire.len);
    }
    if (c->rechunk && len) {
        int k = snprintf(size, sizeof(size), "%zx\r\n", len);
        b[n++] = uv_buf_init(size, (unsigned)k);
    }
    if (len)
        b[n++] = uv_buf_init((char *)data, (unsigned)len);
    if (c->rechunk && len)
        b[n++] = uv_buf_init("\r\n", 2);
    if (c->rechunk && last)
        b[n++] = uv_buf_init("0\r\n\r\n", 5);
    r->bytes_sent += len;
    return n ? gw_conn_write(c, b, n) : 1;
}

static int
h1_unsend_head(gw_request_t *r)
{
    gw_conn_t *c = r->conn;
    if (!c->head_pending)
        return 0;
    c->head_pending = 0;
    c->resp_started = 0;
    r->bytes_sent -= r->wire.len;
    return 1;
}

static void
h1_abort(gw_request_t *r)
{
    gw_conn_close(r->conn);
}

static void finish_request(gw_conn_t *c);

static void
h1_finish(gw_request_t *r)
{
    gw_conn_t *c = r->conn;
    if (!c->closing && c->req == r)
        finish_request(c);
}

static void
h1_resume_body(gw_request_t *r)
{
    resume_body(r->conn);
}

static int
h1_read_body(gw_request_t *r, gw_buf_t *out)
{
    return read_body(r->conn, out);
}

static const gw_conn_ops_t h1_ops = {
    .send_head = h1_send_head,
    .send_body = h1_send_body,
    .unsend_head = h1_unsend_head,
    .abort = h1_abort,
    .finish = h1_finish,
    .resume_body = h1_resume_body,
    .read_body = h1_read_body,
};

static gw_request_t *
new_request(gw_conn_t *c)
{
    c->resp_started = c->head_pending = c->rechunk = c->head_only = 0;
    gw_request_t *r = gw_request_new(c->w, c, &h1_ops, (gw_str_t){c->remote_ip, c->remote_ip_len});
    if (r != NULL) {
        r->view.tls = gw_conn_is_tls(c);
        r->view.tls_client_dn = gw_conn_tls_client_dn(c);
    }
    return r;
}

/* ---- request end ---- */

static void
finish_request(gw_conn_t *c)
{
    gw_request_t *r = c->req;
    c->requests++;
    int keep = c->keepalive && !c->close_after && r->body_done && !c->w->draining;
    gw_request_end(r);
    c->req = NULL;
    if (!keep) {
        c->close_after = 1;
        if (!gw_wqueue_pending(&c->out))
            gw_conn_close(c);
        else
            read_stop(c);
        return;
    }
    /* next request: its bytes (if any) move to the buffer start */
    size_t rest = c->len - c->pos;
    if (rest && c->pos)
        memmove(c->rbuf->data, c->rbuf->data + c->pos, rest);
    c->len = rest;
    c->pos = c->head_start = 0;
    c->state = GW_CONN_S_IDLE;
    conn_state(c, GW_CONN_IDLE);
    gw_wqueue_trim(&c->out, 65536);
    if (c->tls == NULL) /* the TLS read path is not written for edge triggering */
        gw_edge_try(&c->edge, (uv_stream_t *)&c->tcp);
    if (rest == 0) {
        release_rbuf(c);
        if (c->tls && !gw_wqueue_pending(&c->out))
            gw_tls_idle(c->tls);
        timer_arm(c);
        read_start(c);
        return;
    }
    if (!c->in_parse)
        process(c);
}

/* An error found here (parse, limits, timeouts): the request answers it
 * (its error phase may), and the connection closes after it; a response
 * already on its way can only be cut. */
static void
conn_error(gw_conn_t *c, int status, const char *message)
{
    gw_request_t *r = c->req;
    if (c->closing)
        return;
    if (r == NULL)
        c->req = r = new_request(c);
    if (c->resp_started) {
        gw_conn_close(c);
        return;
    }
    c->close_after = 1;
    gw_request_fail(r, status, message);
}
