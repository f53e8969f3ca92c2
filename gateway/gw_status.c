/*
 * The status listener. A connection reads, parses with llhttp, and after
 * each complete request pauses the parser and stops reading until the
 * response is written: at most one response per connection is in flight, so
 * a client that pipelines without reading cannot make the worker buffer
 * without bound. Bytes read past the paused request are kept and parsed
 * once the response is out.
 */
#include "gw_status.h"
#include "gw_metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define URL_MAX 256
#define READ_BUF 8192
#define LINGER_MS 2000

typedef struct status_conn_s status_conn_t;

struct status_conn_s {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    llhttp_t parser;
    gw_status_t *st;
    status_conn_t *prev, *next;

    char url[URL_MAX];
    size_t url_len;
    int url_too_long;
    size_t head_bytes;
    int error_status; /* set by a callback that rejects the request */

    char *out;     /* response being written */
    char *pending; /* bytes read past a paused request (READ_BUF) */
    size_t pending_len;

    int handles; /* open handles: tcp and timer */
    unsigned reading : 1, writing : 1, keep_alive : 1, closing : 1, lingering : 1;
};

struct gw_status_s {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listener_open;
    gw_metrics_t *metrics;
    gw_log_t *log;
    llhttp_settings_t settings;
    status_conn_t *conns;
    size_t nconns;
    int draining;
    int closing;
    void (*done)(void *arg);
    void *done_arg;
    char rbuf[READ_BUF];
};

static void close_conn(status_conn_t *c);
static void feed(status_conn_t *c, const char *data, size_t len);

static const char json_type[] = "application/json";

static void
maybe_done(gw_status_t *st)
{
    if (!st->closing || st->listener_open || st->nconns > 0)
        return;
    void (*done)(void *) = st->done;
    void *arg = st->done_arg;
    free(st);
    if (done != NULL)
        done(arg);
}

static void
on_conn_close(uv_handle_t *h)
{
    status_conn_t *c = h->data;
    gw_status_t *st = c->st;

    if (--c->handles > 0)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        st->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    st->nconns--;
    free(c->out);
    free(c->pending);
    free(c);
    maybe_done(st);
}

static void
close_conn(status_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
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
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    status_conn_t *c = h->data;

    /* One buffer per listener is enough: the loop hands it to exactly one
     * read callback, which consumes or copies it before returning. */
    *buf = uv_buf_init(c->st->rbuf, sizeof(c->st->rbuf));
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    status_conn_t *c = s->data;

    if (nread < 0) {
        close_conn(c);
        return;
    }
    if (nread == 0 || c->closing || c->lingering)
        return;
    feed(c, buf->base, (size_t)nread);
}

static void
start_reading(status_conn_t *c)
{
    if (c->reading || c->closing)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = 1;
    else
        close_conn(c);
}

static void
stop_reading(status_conn_t *c)
{
    if (!c->reading)
        return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
}

static void
on_shutdown(uv_shutdown_t *req, int status)
{
    status_conn_t *c = req->data;

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
    status_conn_t *c = req->data;

    free(c->out);
    c->out = NULL;
    c->writing = 0;
    if (c->closing)
        return;
    if (status < 0) {
        close_conn(c);
        return;
    }
    if (!c->keep_alive) {
        c->sreq.data = c;
        if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
            close_conn(c);
        return;
    }

    uv_timer_start(&c->timer, on_timeout, GW_STATUS_IDLE_MS, 0);
    llhttp_resume(&c->parser);
    if (c->pending_len > 0) {
        size_t n = c->pending_len;
        c->pending_len = 0;
        feed(c, c->pending, n);
    }
    if (!c->writing)
        start_reading(c);
}

static void
respond(status_conn_t *c, int status, const char *reason, const char *type, const char *body,
        size_t body_len, int head_only, const char *extra)
{
    gw_status_t *st = c->st;
    char head[512];
    int n;

    if (st->draining || st->closing)
        c->keep_alive = 0;
    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: "
                 "%s\r\n\r\n",
                 status, reason, type, body_len, extra != NULL ? extra : "",
                 c->keep_alive ? "keep-alive" : "close");
    if (head_only)
        body_len = 0;

    c->out = malloc((size_t)n + body_len);
    if (c->out == NULL) {
        gw_log_error(st->log, "status: out of memory for a response");
        close_conn(c);
        return;
    }
    memcpy(c->out, head, (size_t)n);
    if (body_len > 0)
        memcpy(c->out + n, body, body_len);

    uv_buf_t b = uv_buf_init(c->out, (unsigned)((size_t)n + body_len));
    c->wreq.data = c;
    stop_reading(c);
    /* The idle timer now bounds the write: a client that never reads its
     * response does not keep the connection. */
    uv_timer_start(&c->timer, on_timeout, GW_STATUS_IDLE_MS, 0);
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        free(c->out);
        c->out = NULL;
        close_conn(c);
        return;
    }
    c->writing = 1;
}

#define RESPOND_JSON(c, code, reason, body, head_only, extra)                                      \
    respond((c), (code), (reason), json_type, (body), sizeof(body) - 1, (head_only), (extra))

static void
respond_error(status_conn_t *c, int code)
{
    c->keep_alive = 0;
    if (code == 431)
        RESPOND_JSON(c, 431, "Request Header Fields Too Large",
                     "{\"code\":431,\"message\":\"request header fields too large\"}", 0, NULL);
    else
        RESPOND_JSON(c, 400, "Bad Request", "{\"code\":400,\"message\":\"bad request\"}", 0, NULL);
}

static void
serve(status_conn_t *c)
{
    gw_status_t *st = c->st;
    uint8_t method = llhttp_get_method(&c->parser);
    int head_only = method == HTTP_HEAD;
    size_t plen = 0;

    c->keep_alive = llhttp_should_keep_alive(&c->parser) != 0;
    if (method != HTTP_GET && method != HTTP_HEAD) {
        RESPOND_JSON(c, 405, "Method Not Allowed",
                     "{\"code\":405,\"message\":\"method not allowed\"}", 0,
                     "Allow: GET, HEAD\r\n");
        return;
    }
    while (plen < c->url_len && c->url[plen] != '?')
        plen++;
#define PATH_IS(lit) (!c->url_too_long && plen == sizeof(lit) - 1 && memcmp(c->url, lit, plen) == 0)

    if (PATH_IS("/health")) {
        RESPOND_JSON(c, 200, "OK", "{\"status\":\"ok\"}", head_only, NULL);
    } else if (PATH_IS("/ready")) {
        if (st->draining)
            RESPOND_JSON(c, 503, "Service Unavailable", "{\"status\":\"draining\"}", head_only,
                         NULL);
        else
            RESPOND_JSON(c, 200, "OK", "{\"status\":\"ready\"}", head_only, NULL);
    } else if (PATH_IS("/metrics")) {
        char *text = NULL;
        size_t len = st->metrics != NULL ? gw_metrics_render(st->metrics, &text) : 0;
        if (text == NULL) {
            RESPOND_JSON(c, 503, "Service Unavailable",
                         "{\"code\":503,\"message\":\"metrics unavailable\"}", head_only, NULL);
            return;
        }
        respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text, len, head_only,
                NULL);
        free(text);
    } else {
        RESPOND_JSON(c, 404, "Not Found", "{\"code\":404,\"message\":\"not found\"}", head_only,
                     NULL);
    }
#undef PATH_IS
}

static status_conn_t *
conn_of(llhttp_t *p)
{
    return (status_conn_t *)p->data;
}

static int
count_head(status_conn_t *c, size_t len)
{
    c->head_bytes += len;
    if (c->head_bytes > GW_STATUS_MAX_HEAD) {
        c->error_status = 431;
        return -1;
    }
    return 0;
}

static int
on_message_begin(llhttp_t *p)
{
    status_conn_t *c = conn_of(p);
    c->url_len = 0;
    c->url_too_long = 0;
    c->head_bytes = 0;
    c->error_status = 0;
    return 0;
}

static int
on_url(llhttp_t *p, const char *at, size_t len)
{
    status_conn_t *c = conn_of(p);

    if (c->url_len + len > sizeof(c->url))
        c->url_too_long = 1;
    else {
        memcpy(c->url + c->url_len, at, len);
        c->url_len += len;
    }
    return count_head(c, len);
}

static int
on_header_data(llhttp_t *p, const char *at, size_t len)
{
    /* Plus 2 per span for ": " or CRLF, so that many tiny headers count too. */
    return count_head(conn_of(p), len + 2);
}

static int
on_message_complete(llhttp_t *p)
{
    serve(conn_of(p));
    return HPE_PAUSED;
}

static void
feed(status_conn_t *c, const char *data, size_t len)
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
    if (c->closing || c->writing)
        return;
    respond_error(c, c->error_status ? c->error_status : 400);
}

static void
on_connection(uv_stream_t *server, int status)
{
    gw_status_t *st = server->data;
    status_conn_t *c;

    if (status < 0) {
        gw_log_warn(st->log, "status: accept: %s", uv_strerror(status));
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        gw_log_error(st->log, "status: out of memory for a connection");
        return;
    }
    c->st = st;
    c->tcp.data = c;
    c->timer.data = c;
    if (uv_tcp_init(st->loop, &c->tcp) != 0) {
        free(c);
        return;
    }
    uv_timer_init(st->loop, &c->timer);
    c->handles = 2;
    c->next = st->conns;
    if (st->conns != NULL)
        st->conns->prev = c;
    st->conns = c;
    st->nconns++;

    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        close_conn(c);
        return;
    }
    /* Accepted and closed at once: an unaccepted connection would keep the
     * listener readable and the loop spinning. */
    if (st->nconns > GW_STATUS_MAX_CONNS || st->closing) {
        close_conn(c);
        return;
    }
    llhttp_init(&c->parser, HTTP_REQUEST, &st->settings);
    c->parser.data = c;
    uv_timer_start(&c->timer, on_timeout, GW_STATUS_IDLE_MS, 0);
    start_reading(c);
}

static void
on_listener_close(uv_handle_t *h)
{
    gw_status_t *st = h->data;
    st->listener_open = 0;
    maybe_done(st);
}

static void
on_failed_start_close(uv_handle_t *h)
{
    free(h->data);
}

gw_status_t *
gw_status_start(uv_loop_t *loop, int listen_fd, gw_metrics_t *metrics, gw_log_t *log, char *err,
                size_t errlen)
{
    gw_status_t *st;
    int v = 0, fd, rc;
    socklen_t vl = sizeof(v);

    if (loop == NULL) {
        snprintf(err, errlen, "status listener: no loop");
        return NULL;
    }
    if (getsockopt(listen_fd, SOL_SOCKET, SO_TYPE, &v, &vl) != 0 || v != SOCK_STREAM) {
        snprintf(err, errlen, "status listener: descriptor %d is not a stream socket", listen_fd);
        return NULL;
    }
    vl = sizeof(v);
    if (getsockopt(listen_fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl) != 0 || !v) {
        snprintf(err, errlen, "status listener: socket %d is not listening", listen_fd);
        return NULL;
    }
    st = calloc(1, sizeof(*st));
    if (st == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    fd = fcntl(listen_fd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) {
        snprintf(err, errlen, "status listener: dup: %s", strerror(errno));
        free(st);
        return NULL;
    }
    st->loop = loop;
    st->metrics = metrics;
    st->log = log;
    llhttp_settings_init(&st->settings);
    st->settings.on_message_begin = on_message_begin;
    st->settings.on_url = on_url;
    st->settings.on_header_field = on_header_data;
    st->settings.on_header_value = on_header_data;
    st->settings.on_message_complete = on_message_complete;

    uv_tcp_init(loop, &st->listener);
    st->listener.data = st;
    rc = uv_tcp_open(&st->listener, fd);
    if (rc != 0) {
        close(fd);
        goto failed;
    }
    /* From here the handle owns fd. */
    rc = uv_listen((uv_stream_t *)&st->listener, 511, on_connection);
    if (rc != 0)
        goto failed;
    st->listener_open = 1;
    return st;

failed:
    snprintf(err, errlen, "status listener: %s", uv_strerror(rc));
    uv_close((uv_handle_t *)&st->listener, on_failed_start_close);
    return NULL;
}

void
gw_status_set_draining(gw_status_t *st, int draining)
{
    if (st != NULL)
        st->draining = draining != 0;
}

size_t
gw_status_nconns(const gw_status_t *st)
{
    return st != NULL ? st->nconns : 0;
}

void
gw_status_close(gw_status_t *st, void (*done)(void *arg), void *arg)
{
    if (st == NULL || st->closing)
        return;
    st->closing = 1;
    st->done = done;
    st->done_arg = arg;
    for (status_conn_t *c = st->conns; c != NULL; c = c->next)
        close_conn(c);
    uv_close((uv_handle_t *)&st->listener, on_listener_close);
}
