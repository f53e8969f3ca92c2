/*
 * The small HTTP/1.1 server. A connection reads, parses with llhttp, and
 * after each complete request pauses the parser and stops reading until
 * the response is written. Bytes read past the paused request are kept
 * (keep-alive only) and parsed once the response is out. A connection is
 * one allocation: the struct, then the user data, the URL and the
 * asked-for header values.
 */
#include "gw_minihttp.h"
#include "gw_http.h"

#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_BUF 8192
#define LINGER_MS 2000
#define HNAME_MAX 32
#define HEAD_MAX 1024

struct gw_minihttp_conn_s {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    llhttp_t parser;
    gw_minihttp_t *h;
    gw_minihttp_conn_t *prev, *next;
    char peer[INET6_ADDRSTRLEN];

    char *url; /* conf.url_max bytes */
    size_t url_len;
    int url_too_long;
    char hname[HNAME_MAX];
    size_t hname_len;
    int hname_over;
    int cur;                   /* header whose value comes, or -1 */
    gw_minihttp_hval_t *hvals; /* conf.nheaders, values after the URL */
    size_t head_bytes;
    gw_buf_t body;
    int error_status; /* set by a callback that rejects the request */

    void *udata;
    char *out;     /* response being written */
    char *pending; /* bytes read past a paused request (READ_BUF) */
    size_t pending_len;

    int handles; /* open handles: tcp and timer */
    unsigned reading : 1, writing : 1, keep_alive : 1, closing : 1, lingering : 1, answered : 1;
};

struct gw_minihttp_s {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listener_open;
    gw_minihttp_conf_t conf;
    gw_minihttp_ops_t ops;
    void *arg;
    llhttp_settings_t settings;
    gw_minihttp_conn_t *conns;
    size_t nconns;
    int draining;
    int closing;
    void (*done)(void *arg);
    void *done_arg;
    char rbuf[READ_BUF];
};

static void close_conn(gw_minihttp_conn_t *c);
static void feed(gw_minihttp_conn_t *c, const char *data, size_t len);

static void
maybe_done(gw_minihttp_t *h)
{
    if (!h->closing || h->listener_open || h->nconns > 0)
        return;
    void (*done)(void *) = h->done;
    void *arg = h->done_arg;
    free(h);
    if (done != NULL)
        done(arg);
}

static void
on_conn_close(uv_handle_t *hd)
{
    gw_minihttp_conn_t *c = hd->data;
    gw_minihttp_t *h = c->h;

    if (--c->handles > 0)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    h->nconns--;
    gw_buf_free(&c->body);
    free(c->out);
    free(c->pending);
    free(c);
    maybe_done(h);
}

static void
close_conn(gw_minihttp_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->h->ops.on_close != NULL)
        c->h->ops.on_close(c, c->h->arg);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_conn_close);
    uv_close((uv_handle_t *)&c->tcp, on_conn_close);
}

static void
on_timeout(uv_timer_t *t)
{
    close_conn(t->data);
}

static void
on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    gw_minihttp_conn_t *c = hd->data;

    /* One buffer per server is enough: the loop hands it to exactly one
     * read callback, which consumes or copies it before returning. */
    *buf = uv_buf_init(c->h->rbuf, sizeof(c->h->rbuf));
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    gw_minihttp_conn_t *c = s->data;

    if (nread < 0) {
        close_conn(c);
        return;
    }
    if (nread == 0 || c->closing || c->lingering || c->answered)
        return;
    feed(c, buf->base, (size_t)nread);
}

static void
start_reading(gw_minihttp_conn_t *c)
{
    if (c->reading || c->closing)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = 1;
    else
        close_conn(c);
}

static void
stop_reading(gw_minihttp_conn_t *c)
{
    if (!c->reading)
        return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
}

static void
on_shutdown(uv_shutdown_t *req, int status)
{
    gw_minihttp_conn_t *c = req->data;

    if (status < 0 || c->closing) {
        close_conn(c);
        return;
    }
    /* Read and drop what the client still sends, so that closing does not
     * turn into a reset that could destroy the response in flight. */
    c->lingering = 1;
    uv_timer_start(&c->timer, on_timeout, LINGER_MS, 0);
    start_reading(c);
}

static void
on_write(uv_write_t *req, int status)
{
    gw_minihttp_conn_t *c = req->data;

    free(c->out);
    c->out = NULL;
    c->writing = 0;
    if (c->closing)
        return;
    if (status < 0) {
        close_conn(c);
        return;
    }
    /* the server started closing after this answer promised keep-alive:
     * the connection ends here instead of reading a next request */
    if (!c->keep_alive || c->h->closing) {
        c->sreq.data = c;
        if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
            close_conn(c);
        return;
    }

    c->answered = 0;
    uv_timer_start(&c->timer, on_timeout, c->h->conf.idle_ms, 0);
    llhttp_resume(&c->parser);
    if (c->pending_len > 0) {
        size_t n = c->pending_len;
        c->pending_len = 0;
        feed(c, c->pending, n);
    }
    if (!c->writing)
        start_reading(c);
}

static const char *
reason(int status)
{
    /* RFC 7231's name for 413, which these endpoints have always sent */
    return status == 413 ? "Payload Too Large" : gw_http_reason(status);
}

void
gw_minihttp_respond(gw_minihttp_conn_t *c, const gw_minihttp_resp_t *r)
{
    gw_minihttp_t *h = c->h;
    char head[HEAD_MAX], date[40] = "";
    size_t body_len = r->head_only ? 0 : r->body_len;

    if (c->answered || c->closing)
        return;
    c->answered = 1;
    if (h->draining || h->closing)
        c->keep_alive = 0;
    if (h->conf.date) {
        char d[32];
        gw_http_date((int64_t)time(NULL), d);
        snprintf(date, sizeof(date), "Date: %s\r\n", d);
    }
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\n%sContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: "
                     "%s\r\n\r\n",
                     r->status, reason(r->status), date, r->type, r->body_len,
                     r->extra != NULL ? r->extra : "", c->keep_alive ? "keep-alive" : "close");
    c->out = n > 0 && (size_t)n < sizeof(head) ? malloc((size_t)n + body_len) : NULL;
    if (c->out == NULL) {
        gw_log_error(h->conf.log, "%s: cannot build a response", h->conf.name);
        close_conn(c);
        return;
    }
    memcpy(c->out, head, (size_t)n);
    if (body_len > 0)
        memcpy(c->out + n, r->body, body_len);

    uv_buf_t b = uv_buf_init(c->out, (unsigned)((size_t)n + body_len));
    c->wreq.data = c;
    stop_reading(c);
    /* The idle timer now bounds the write: a client that never reads its
     * response does not keep the connection. */
    uv_timer_start(&c->timer, on_timeout, h->conf.idle_ms, 0);
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        free(c->out);
        c->out = NULL;
        close_conn(c);
        return;
    }
    c->writing = 1;
}

/* ---- parsing ---- */

static gw_minihttp_conn_t *
conn_of(llhttp_t *p)
{
    return (gw_minihttp_conn_t *)p->data;
}

static int
count_head(gw_minihttp_conn_t *c, size_t len)
{
    c->head_bytes += len;
    if (c->head_bytes > c->h->conf.max_head) {
        c->error_status = 431;
        return -1;
    }
    return 0;
}

/* Appends AT to BUF (LEN of MAX bytes used) when it fits, else sets OVER. */
static void
append_capped(char *buf, size_t *len, size_t max, int *over, const char *at, size_t n)
{
    if (*len + n > max) {
        *over = 1;
        return;
    }
    memcpy(buf + *len, at, n);
    *len += n;
}

static int
on_message_begin(llhttp_t *p)
{
    gw_minihttp_conn_t *c = conn_of(p);

    c->url_len = 0;
    c->url_too_long = 0;
    c->hname_len = 0;
    c->hname_over = 0;
    c->cur = -1;
    c->head_bytes = 0;
    c->error_status = 0;
    c->body.len = 0;
    for (size_t i = 0; i < c->h->conf.nheaders; i++) {
        c->hvals[i].len = 0;
        c->hvals[i].count = 0;
        c->hvals[i].over = 0;
    }
    return 0;
}

static int
on_url(llhttp_t *p, const char *at, size_t len)
{
    gw_minihttp_conn_t *c = conn_of(p);

    append_capped(c->url, &c->url_len, c->h->conf.url_max, &c->url_too_long, at, len);
    return count_head(c, len);
}

static int
on_hfield(llhttp_t *p, const char *at, size_t len)
{
    gw_minihttp_conn_t *c = conn_of(p);

    if (c->h->conf.nheaders > 0)
        append_capped(c->hname, &c->hname_len, sizeof(c->hname), &c->hname_over, at, len);
    /* Plus 2 per span for ": " or CRLF, so that many tiny headers count too. */
    return count_head(c, len + 2);
}

static int
on_hfield_done(llhttp_t *p)
{
    gw_minihttp_conn_t *c = conn_of(p);
    const gw_minihttp_conf_t *conf = &c->h->conf;

    c->cur = -1;
    for (size_t i = 0; i < conf->nheaders && !c->hname_over; i++) {
        if (strlen(conf->headers[i].name) == c->hname_len &&
            strncasecmp(c->hname, conf->headers[i].name, c->hname_len) == 0) {
            c->cur = (int)i;
            c->hvals[i].count++;
            c->hvals[i].len = 0;
            break;
        }
    }
    c->hname_len = 0;
    c->hname_over = 0;
    return 0;
}

static int
on_hvalue(llhttp_t *p, const char *at, size_t len)
{
    gw_minihttp_conn_t *c = conn_of(p);

    if (c->cur >= 0) {
        gw_minihttp_hval_t *v = &c->hvals[c->cur];
        /* the value's storage is the connection's own (conn_new) */
        append_capped((char *)v->value, &v->len, c->h->conf.headers[c->cur].max, &v->over, at, len);
    }
    return count_head(c, len + 2);
}

static int
on_headers_done(llhttp_t *p)
{
    gw_minihttp_conn_t *c = conn_of(p);
    size_t max = c->h->conf.max_body;

    if (max > 0 && p->flags & F_CONTENT_LENGTH && p->content_length > max) {
        c->error_status = 413;
        return -1;
    }
    return 0;
}

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
    gw_minihttp_conn_t *c = conn_of(p);
    size_t max = c->h->conf.max_body;

    if (max == 0)
        return 0;
    if (c->body.len + len > max) {
        c->error_status = 413;
        return -1;
    }
    gw_buf_append(&c->body, at, len);
    return 0;
}

static int
on_message_complete(llhttp_t *p)
{
    gw_minihttp_conn_t *c = conn_of(p);
    gw_minihttp_t *h = c->h;
    gw_minihttp_req_t req = {
        .method = llhttp_get_method(p),
        .url = c->url,
        .url_len = c->url_len,
        .url_too_long = c->url_too_long,
        .headers = c->hvals,
        .body = c->body.len > 0 ? c->body.data : NULL,
        .body_len = c->body.len,
    };

    c->keep_alive = h->conf.keep_alive && llhttp_should_keep_alive(p) != 0;
    h->ops.on_request(c, &req, h->arg);
    /* keep-alive answers come during the call: nothing more is read until
     * one does */
    if (c->keep_alive && !c->answered)
        stop_reading(c);
    return HPE_PAUSED;
}

static void
feed(gw_minihttp_conn_t *c, const char *data, size_t len)
{
    llhttp_errno_t e = llhttp_execute(&c->parser, data, len);

    if (e == HPE_OK)
        return;
    if (e == HPE_PAUSED) {
        if (c->closing)
            return;
        const char *pos = llhttp_get_error_pos(&c->parser);
        size_t rest =
            pos != NULL && pos >= data && pos <= data + len ? (size_t)(data + len - pos) : 0;
        if (rest > 0 && c->keep_alive) {
            if (c->pending == NULL)
                c->pending = malloc(READ_BUF);
            if (c->pending == NULL) {
                close_conn(c);
                return;
            }
            /* data may already point into pending */
            memmove(c->pending, pos, rest);
            c->pending_len = rest;
        }
        return;
    }
    if (c->closing || c->answered)
        return;
    c->keep_alive = 0;
    c->h->ops.on_error(c, c->error_status ? c->error_status : 400, c->h->arg);
    if (!c->answered)
        close_conn(c);
}

/* ---- listener ---- */

static gw_minihttp_conn_t *
conn_new(gw_minihttp_t *h)
{
    const gw_minihttp_conf_t *conf = &h->conf;
    size_t align = alignof(max_align_t);
    size_t base = (sizeof(gw_minihttp_conn_t) + align - 1) / align * align;
    size_t udata = (conf->conn_data + align - 1) / align * align;
    size_t hvals = conf->nheaders * sizeof(gw_minihttp_hval_t);
    size_t size = base + udata + hvals + conf->url_max;

    for (size_t i = 0; i < conf->nheaders; i++)
        size += conf->headers[i].max;
    char *mem = calloc(1, size);
    if (mem == NULL)
        return NULL;
    gw_minihttp_conn_t *c = (gw_minihttp_conn_t *)mem;
    c->udata = mem + base;
    c->hvals = (gw_minihttp_hval_t *)(mem + base + udata);
    c->url = mem + base + udata + hvals;
    char *v = c->url + conf->url_max;
    for (size_t i = 0; i < conf->nheaders; i++) {
        c->hvals[i].value = v;
        v += conf->headers[i].max;
    }
    c->cur = -1;
    snprintf(c->peer, sizeof(c->peer), "unknown");
    return c;
}

static void
read_peer(gw_minihttp_conn_t *c)
{
    struct sockaddr_storage ss;
    int sl = sizeof(ss);

    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) != 0)
        return;
    if (ss.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof(c->peer));
    else if (ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof(c->peer));
}

static void
on_connection(uv_stream_t *server, int status)
{
    gw_minihttp_t *h = server->data;
    gw_minihttp_conn_t *c;

    if (status < 0) {
        gw_log_warn(h->conf.log, "%s: accept: %s", h->conf.name, uv_strerror(status));
        return;
    }
    c = conn_new(h);
    if (c == NULL) {
        gw_log_error(h->conf.log, "%s: out of memory for a connection", h->conf.name);
        return;
    }
    c->h = h;
    c->tcp.data = c;
    c->timer.data = c;
    if (uv_tcp_init(h->loop, &c->tcp) != 0) {
        free(c);
        return;
    }
    uv_timer_init(h->loop, &c->timer);
    c->handles = 2;
    c->next = h->conns;
    if (h->conns != NULL)
        h->conns->prev = c;
    h->conns = c;
    h->nconns++;

    /* Accepted and closed at once: an unaccepted connection would keep the
     * listener readable and the loop spinning. */
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || h->nconns > h->conf.max_conns ||
        h->closing) {
        close_conn(c);
        return;
    }
    if (h->conf.peer)
        read_peer(c);
    llhttp_init(&c->parser, HTTP_REQUEST, &h->settings);
    c->parser.data = c;
    uv_timer_start(&c->timer, on_timeout, h->conf.idle_ms, 0);
    start_reading(c);
}

static void
on_listener_close(uv_handle_t *hd)
{
    gw_minihttp_t *h = hd->data;
    h->listener_open = 0;
    maybe_done(h);
}

static void
on_failed_start_close(uv_handle_t *hd)
{
    free(hd->data);
}

gw_minihttp_t *
gw_minihttp_start(uv_loop_t *loop, int listen_fd, const gw_minihttp_conf_t *conf,
                  const gw_minihttp_ops_t *ops, void *arg, char *err, size_t errlen)
{
    gw_minihttp_t *h;
    int v = 0, fd, rc;
    socklen_t vl = sizeof(v);

    if (loop == NULL) {
        snprintf(err, errlen, "no loop");
        return NULL;
    }
    if (getsockopt(listen_fd, SOL_SOCKET, SO_TYPE, &v, &vl) != 0 || v != SOCK_STREAM) {
        snprintf(err, errlen, "descriptor %d is not a stream socket", listen_fd);
        return NULL;
    }
    vl = sizeof(v);
    if (getsockopt(listen_fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl) != 0 || !v) {
        snprintf(err, errlen, "descriptor %d is not a listening socket", listen_fd);
        return NULL;
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    fd = fcntl(listen_fd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) {
        snprintf(err, errlen, "dup: %s", strerror(errno));
        free(h);
        return NULL;
    }
    h->loop = loop;
    h->conf = *conf;
    h->ops = *ops;
    h->arg = arg;
    llhttp_settings_init(&h->settings);
    h->settings.on_message_begin = on_message_begin;
    h->settings.on_url = on_url;
    h->settings.on_header_field = on_hfield;
    h->settings.on_header_field_complete = on_hfield_done;
    h->settings.on_header_value = on_hvalue;
    h->settings.on_headers_complete = on_headers_done;
    h->settings.on_body = on_body;
    h->settings.on_message_complete = on_message_complete;

    uv_tcp_init(loop, &h->listener);
    h->listener.data = h;
    rc = uv_tcp_open(&h->listener, fd);
    if (rc != 0) {
        close(fd);
        goto failed;
    }
    /* From here the handle owns fd. */
    rc = uv_listen((uv_stream_t *)&h->listener, conf->backlog, on_connection);
    if (rc != 0)
        goto failed;
    h->listener_open = 1;
    return h;

failed:
    snprintf(err, errlen, "%s", uv_strerror(rc));
    uv_close((uv_handle_t *)&h->listener, on_failed_start_close);
    return NULL;
}

void
gw_minihttp_set_draining(gw_minihttp_t *h, int draining)
{
    if (h != NULL)
        h->draining = draining != 0;
}

void
gw_minihttp_stop_accepting(gw_minihttp_t *h)
{
    if (h == NULL || !h->listener_open || uv_is_closing((uv_handle_t *)&h->listener))
        return;
    uv_close((uv_handle_t *)&h->listener, on_listener_close);
}

size_t
gw_minihttp_nconns(const gw_minihttp_t *h)
{
    return h != NULL ? h->nconns : 0;
}

void
gw_minihttp_close(gw_minihttp_t *h, int keep_answered, void (*done)(void *arg), void *arg)
{
    if (h == NULL || h->closing)
        return;
    h->closing = 1;
    h->done = done;
    h->done_arg = arg;
    for (gw_minihttp_conn_t *c = h->conns; c != NULL; c = c->next)
        if (!keep_answered || !c->answered)
            close_conn(c);
    gw_minihttp_stop_accepting(h);
    maybe_done(h);
}

void
gw_minihttp_conn_timeout(gw_minihttp_conn_t *c, uint64_t ms)
{
    if (!c->closing)
        uv_timer_start(&c->timer, on_timeout, ms, 0);
}

const char *
gw_minihttp_conn_peer(const gw_minihttp_conn_t *c)
{
    return c->peer;
}

void *
gw_minihttp_conn_data(gw_minihttp_conn_t *c)
{
    return c->udata;
}
