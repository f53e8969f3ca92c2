/*
 * The HTTP client against a small libuv server in this file, listening on
 * 127.0.0.1 on a port the kernel picks. Each case runs its own loop until
 * every handle is closed, and checks that uv_loop_close() succeeds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "gw_httpc.h"
#include "tap.h"

/* ---------------------------------------------------------------- test server */

enum {
    M_CL,        /* Content-Length body and a few headers */
    M_CHUNKED,   /* chunked body */
    M_CLOSE,     /* body delimited by the close */
    M_ECHO,      /* body = the raw request received */
    M_404,       /* a 404 with a body */
    M_SILENT,    /* reads, never answers */
    M_GARBAGE,   /* not HTTP */
    M_BIG_CL,    /* declares 2000 bytes */
    M_BIG_CHUNK, /* 3 x 600 bytes, chunked */
    M_LARGE_OK,  /* 300 KB in Content-Length */
    M_HEAD,      /* announces a body, sends none, keeps the connection open */
    M_CONTINUE,  /* a 100 Continue, then the real answer */
    M_TRUNC,     /* announces 100 bytes, sends 10, closes */
    M_EMPTYHDR,  /* a header with an empty value */
    M_STREAM,    /* a chunked body in three pieces, 200 ms apart */
};

#define MAX_CONNS 8

typedef struct server_s server_t;

typedef struct {
    uv_tcp_t tcp;
    uv_write_t w;
    server_t *srv;
    char *in;
    size_t len, cap;
    char *out;
    int answered, open;
} sconn_t;

struct server_s {
    uv_tcp_t listener;
    int mode;
    int port;
    int accepted;
    int listening;
    sconn_t *conns[MAX_CONNS];
    uv_timer_t stimer; /* M_STREAM: paces the pieces */
    sconn_t *streaming;
    int piece;
};

static void
on_sconn_closed(uv_handle_t *h)
{
    sconn_t *c = h->data;
    free(c->in);
    free(c->out);
    free(c);
}

static void
sconn_close(sconn_t *c)
{
    if (!c->open)
        return;
    c->open = 0;
    if (c->srv->streaming == c)
        c->srv->streaming = NULL;
    for (int i = 0; i < MAX_CONNS; i++)
        if (c->srv->conns[i] == c)
            c->srv->conns[i] = NULL;
    uv_close((uv_handle_t *)&c->tcp, on_sconn_closed);
}

static void
server_stop(server_t *s)
{
    if (s->listening) {
        s->listening = 0;
        uv_close((uv_handle_t *)&s->listener, NULL);
        if (s->mode == M_STREAM)
            uv_close((uv_handle_t *)&s->stimer, NULL);
    }
    for (int i = 0; i < MAX_CONNS; i++)
        if (s->conns[i])
            sconn_close(s->conns[i]);
}

static void
on_swrite(uv_write_t *w, int status)
{
    sconn_t *c = w->data;
    if (c->srv->mode != M_HEAD && c->srv->mode != M_STREAM)
        sconn_close(c);
}

/* The stream's pieces: a head, then each body piece as its own chunk. */
static const char *const stream_pieces[] = {
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\na\n\r\n",
    "3\r\nbc\n\r\n",
    "0\r\n\r\n",
};

static void
on_stream_timer(uv_timer_t *t)
{
    server_t *s = t->data;
    sconn_t *c = s->streaming;
    if (c == NULL || !c->open)
        return;
    const char *p = stream_pieces[s->piece++];
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)strlen(p));
    c->w.data = c;
    uv_write(&c->w, (uv_stream_t *)&c->tcp, &b, 1, on_swrite);
    if (s->piece < (int)GW_ARRAY_LEN(stream_pieces))
        uv_timer_start(&s->stimer, on_stream_timer, 200, 0);
}

static void
send_out(sconn_t *c, char *out, size_t len)
{
    c->out = out;
    uv_buf_t b = uv_buf_init(out, (unsigned)len);
    c->w.data = c;
    uv_write(&c->w, (uv_stream_t *)&c->tcp, &b, 1, on_swrite);
}

static char *
fill(const char *head, size_t n, char ch, size_t *len)
{
    size_t hl = strlen(head);
    char *p = malloc(hl + n);
    memcpy(p, head, hl);
    memset(p + hl, ch, n);
    *len = hl + n;
    return p;
}

static void
answer(sconn_t *c)
{
    const char *txt = NULL;
    char *out;
    size_t len;

    switch (c->srv->mode) {
    case M_CL:
        txt = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-One: 1\r\nX-Two: two\r\n"
              "X-One: again\r\n\r\nhello";
        break;
    case M_CHUNKED:
        txt = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        break;
    case M_CLOSE:
        txt = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close";
        break;
    case M_404:
        txt = "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found";
        break;
    case M_SILENT:
        return;
    case M_STREAM:
        c->srv->streaming = c;
        c->srv->piece = 0;
        on_stream_timer(&c->srv->stimer);
        return;
    case M_GARBAGE:
        txt = "this is not http at all\r\n\r\n";
        break;
    case M_HEAD:
        txt = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
        break;
    case M_CONTINUE:
        txt = "HTTP/1.1 100 Continue\r\nX-Interim: yes\r\n\r\n"
              "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
        break;
    case M_TRUNC:
        txt = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";
        break;
    case M_EMPTYHDR:
        txt = "HTTP/1.1 200 OK\r\nX-Empty:\r\nX-After: a\r\nContent-Length: 0\r\n\r\n";
        break;
    case M_BIG_CL:
        out = fill("HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n", 2000, 'x', &len);
        send_out(c, out, len);
        return;
    case M_LARGE_OK:
        out = fill("HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n", 300000, 'y', &len);
        send_out(c, out, len);
        return;
    case M_BIG_CHUNK: {
        char chunk[620];
        len = 0;
        out = malloc(4096);
        len += (size_t)sprintf(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        memset(chunk, 'z', 600);
        for (int i = 0; i < 3; i++) {
            len += (size_t)sprintf(out + len, "258\r\n");
            memcpy(out + len, chunk, 600);
            len += 600;
            memcpy(out + len, "\r\n", 2);
            len += 2;
        }
        memcpy(out + len, "0\r\n\r\n", 5);
        len += 5;
        send_out(c, out, len);
        return;
    }
    case M_ECHO: {
        char head[128];
        int hl =
            snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", c->len);
        out = malloc((size_t)hl + c->len);
        memcpy(out, head, (size_t)hl);
        memcpy(out + hl, c->in, c->len);
        send_out(c, out, (size_t)hl + c->len);
        return;
    }
    }
    len = strlen(txt);
    out = malloc(len);
    memcpy(out, txt, len);
    send_out(c, out, len);
}

/* The request is complete once its head and its Content-Length are in. */
static int
request_complete(sconn_t *c)
{
    char *end = memmem(c->in, c->len, "\r\n\r\n", 4);
    if (end == NULL)
        return 0;
    size_t head = (size_t)(end - c->in) + 4, cl = 0;
    char save = c->in[head - 1];
    c->in[head - 1] = '\0';
    char *p = strcasestr(c->in, "\r\ncontent-length:");
    if (p)
        cl = (size_t)strtoul(p + 17, NULL, 10);
    c->in[head - 1] = save;
    return c->len >= head + cl;
}

static void
on_salloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    sconn_t *c = h->data;
    if (c->cap - c->len < 4096) {
        c->cap = c->cap ? c->cap * 2 : 8192;
        c->in = realloc(c->in, c->cap);
    }
    buf->base = c->in + c->len;
    buf->len = c->cap - c->len;
}

static void
on_sread(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    sconn_t *c = s->data;
    if (nread < 0) {
        sconn_close(c);
        return;
    }
    c->len += (size_t)nread;
    if (!c->answered && request_complete(c)) {
        c->answered = 1;
        answer(c);
    }
}

static void
on_sconnection(uv_stream_t *l, int status)
{
    server_t *s = l->data;
    sconn_t *c = calloc(1, sizeof(*c));
    int slot = -1;

    for (int i = 0; i < MAX_CONNS && slot < 0; i++)
        if (s->conns[i] == NULL)
            slot = i;
    uv_tcp_init(l->loop, &c->tcp);
    c->tcp.data = c;
    c->srv = s;
    c->open = 1;
    if (status < 0 || slot < 0 || uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
        c->open = 0;
        uv_close((uv_handle_t *)&c->tcp, on_sconn_closed);
        return;
    }
    s->conns[slot] = c;
    s->accepted++;
    uv_read_start((uv_stream_t *)&c->tcp, on_salloc, on_sread);
}

static int
server_start(server_t *s, uv_loop_t *loop, int mode)
{
    struct sockaddr_in sa;
    struct sockaddr_storage got;
    int namelen = sizeof(got);

    memset(s, 0, sizeof(*s));
    s->mode = mode;
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    s->listening = 1;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    if (uv_tcp_bind(&s->listener, (struct sockaddr *)&sa, 0) != 0 ||
        uv_listen((uv_stream_t *)&s->listener, 16, on_sconnection) != 0 ||
        uv_tcp_getsockname(&s->listener, (struct sockaddr *)&got, &namelen) != 0)
        return -1;
    s->port = ntohs(((struct sockaddr_in *)&got)->sin_port);
    if (mode == M_STREAM) {
        uv_timer_init(loop, &s->stimer);
        s->stimer.data = s;
    }
    return 0;
}

/* ---------------------------------------------------------------- client side */

typedef struct {
    server_t *srv;
    int calls;
    int err;
    char errmsg[256];
    int status;
    char *body;
    size_t body_len;
    int nheaders;
    char hdrs[1024]; /* "name=value\n" lines */
} result_t;

static void
on_done(gw_httpc_req_t *req, int err, const char *errmsg, const gw_httpc_resp_t *resp, void *arg)
{
    result_t *res = arg;
    res->calls++;
    res->err = err;
    snprintf(res->errmsg, sizeof(res->errmsg), "%s", errmsg ? errmsg : "");
    if (resp) {
        res->status = resp->status;
        res->body = malloc(resp->body_len + 1);
        memcpy(res->body, resp->body, resp->body_len + 1); /* the NUL too */
        res->body_len = resp->body_len;
        res->nheaders = (int)resp->nheaders;
        size_t off = 0;
        for (size_t i = 0; i < resp->nheaders && off < sizeof(res->hdrs); i++)
            off += (size_t)snprintf(res->hdrs + off, sizeof(res->hdrs) - off, "%.*s=%.*s\n",
                                    (int)resp->headers[i].name.len, resp->headers[i].name.data,
                                    (int)resp->headers[i].value.len, resp->headers[i].value.data);
    }
    gw_httpc_cancel(req); /* a no-op from the callback */
    if (res->srv)
        server_stop(res->srv);
}

/* Runs one request against a fresh server in MODE (or none when MODE < 0,
 * against PORT). Returns 0 when the loop closed cleanly. */
static int
run_one(int mode, const char *url_fmt, gw_httpc_opts_t *o, result_t *res)
{
    uv_loop_t loop;
    server_t srv;
    char url[256], err[256];
    int rc;

    memset(res, 0, sizeof(*res));
    uv_loop_init(&loop);
    if (server_start(&srv, &loop, mode) != 0)
        return -1;
    res->srv = &srv;
    snprintf(url, sizeof(url), url_fmt, srv.port);
    o->url = url;
    if (gw_httpc_request(&loop, o, on_done, res, err, sizeof(err)) == NULL) {
        snprintf(res->errmsg, sizeof(res->errmsg), "start failed: %.200s", err);
        server_stop(&srv);
    } else if (res->calls != 0) {
        snprintf(res->errmsg, sizeof(res->errmsg), "callback fired synchronously");
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&loop);
    return rc;
}

static void
result_free(result_t *r)
{
    free(r->body);
    r->body = NULL;
}

static void
test_get_cl(void)
{
    gw_httpc_opts_t o = {0};
    result_t r;
    is_int(run_one(M_CL, "http://127.0.0.1:%d/x", &o, &r), 0, "CL: loop closes cleanly");
    is_int(r.calls, 1, "CL: callback fired once");
    is_int(r.err, 0, "CL: no error (%s)", r.errmsg);
    is_int(r.status, 200, "CL: status");
    is_str(r.body, "hello", "CL: body");
    is_int(r.body_len, 5, "CL: body_len");
    is_int(r.nheaders, 4, "CL: 4 headers");
    is_str(r.hdrs, "Content-Length=5\nX-One=1\nX-Two=two\nX-One=again\n",
           "CL: headers in order, repeated names kept");
    result_free(&r);
}

static void
test_chunked(void)
{
    gw_httpc_opts_t o = {0};
    result_t r;
    is_int(run_one(M_CHUNKED, "http://127.0.0.1:%d/", &o, &r), 0, "chunked: loop closes");
    is_int(r.err, 0, "chunked: no error (%s)", r.errmsg);
    is_str(r.body, "hello world", "chunked: body decoded");
    result_free(&r);
}

static void
test_close_delimited(void)
{
    gw_httpc_opts_t o = {0};
    result_t r;
    is_int(run_one(M_CLOSE, "http://127.0.0.1:%d/", &o, &r), 0, "close: loop closes");
    is_int(r.err, 0, "close: no error (%s)", r.errmsg);
    is_str(r.body, "until the close", "close-delimited body");
    result_free(&r);
}

static void
test_post_echo(void)
{
    gw_header_t hs[] = {{GW_STR("X-Test"), GW_STR("yes")}, {GW_STR("X-Empty"), GW_STR("")}};
    gw_httpc_opts_t o = {
        .method = "POST", .headers = hs, .nheaders = 2, .body = "hello", .body_len = 5};
    result_t r;
    is_int(run_one(M_ECHO, "http://127.0.0.1:%d/echo?x=1#frag", &o, &r), 0, "echo: loop closes");
    is_int(r.err, 0, "echo: no error (%s)", r.errmsg);
    ok(r.body && strncmp(r.body, "POST /echo?x=1 HTTP/1.1\r\n", 25) == 0,
       "echo: request line without the fragment");
    ok(r.body && strstr(r.body, "\r\nHost: 127.0.0.1:") != NULL, "echo: Host sent");
    ok(r.body && strstr(r.body, "\r\nUser-Agent: gateway\r\n") != NULL, "echo: User-Agent sent");
    ok(r.body && strstr(r.body, "\r\nConnection: close\r\n") != NULL, "echo: Connection sent");
    ok(r.body && strstr(r.body, "\r\nContent-Length: 5\r\n") != NULL, "echo: Content-Length");
    ok(r.body && strstr(r.body, "\r\nX-Test: yes\r\n") != NULL, "echo: user header sent");
    ok(r.body && strstr(r.body, "\r\nX-Empty: \r\n") != NULL, "echo: empty header sent");
    ok(r.body && r.body_len > 9 && strcmp(r.body + r.body_len - 9, "\r\n\r\nhello") == 0,
       "echo: body after the head");
    result_free(&r);

    gw_header_t host[] = {{GW_STR("Host"), GW_STR("api.example")}};
    gw_httpc_opts_t o2 = {.method = "PUT", .headers = host, .nheaders = 1};
    run_one(M_ECHO, "http://127.0.0.1:%d", &o2, &r);
    is_int(r.err, 0, "echo 2: no error (%s)", r.errmsg);
    ok(r.body && strncmp(r.body, "PUT / HTTP/1.1\r\n", 16) == 0, "echo 2: empty path sent as /");
    ok(r.body && strstr(r.body, "\r\nHost: api.example\r\n") != NULL &&
           strstr(r.body, "Host: 127.0.0.1") == NULL,
       "echo 2: the caller's Host replaces the default");
    ok(r.body && strstr(r.body, "\r\nContent-Length: 0\r\n") != NULL,
       "echo 2: PUT without a body sends Content-Length: 0");
    result_free(&r);

    gw_httpc_opts_t o3 = {0};
    run_one(M_ECHO, "http://127.0.0.1:%d/g", &o3, &r);
    ok(r.body && strstr(r.body, "Content-Length") == NULL, "echo 3: GET has no Content-Length");
    result_free(&r);
}

static void
test_404(void)
{
    gw_httpc_opts_t o = {0};
    result_t r;
    run_one(M_404, "http://127.0.0.1:%d/missing", &o, &r);
    is_int(r.err, 0, "404: an answer, not an error");
    is_int(r.status, 404, "404: status");
    is_str(r.body, "not found", "404: body");
    result_free(&r);
}

static void
test_timeout(void)
{
    gw_httpc_opts_t o = {.timeout_ms = 150};
    result_t r;
    uint64_t t0 = uv_hrtime();
    is_int(run_one(M_SILENT, "http://127.0.0.1:%d/", &o, &r), 0, "timeout: loop closes");
    is_int(r.err, GW_HTTPC_ETIMEDOUT, "timeout: ETIMEDOUT");
    is_str(r.errmsg, "timeout", "timeout: message");
    ok((uv_hrtime() - t0) / 1000000 < 3000, "timeout: did not wait for the default");
    result_free(&r);
}

static void
test_refused(void)
{
    uv_loop_t loop;
    uv_tcp_t t;
    struct sockaddr_in sa;
    struct sockaddr_storage got;
    int namelen = sizeof(got), port;
    char url[128], err[256];
    result_t r;

    memset(&r, 0, sizeof(r));
    uv_loop_init(&loop);
    uv_tcp_init(&loop, &t);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_bind(&t, (struct sockaddr *)&sa, 0);
    uv_tcp_getsockname(&t, (struct sockaddr *)&got, &namelen);
    port = ntohs(((struct sockaddr_in *)&got)->sin_port);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    gw_httpc_opts_t o = {.url = url};
    ok(gw_httpc_request(&loop, &o, on_done, &r, err, sizeof(err)) != NULL, "refused: started");
    is_int(r.calls, 0, "refused: no synchronous callback");
    uv_run(&loop, UV_RUN_DEFAULT);
    is_int(r.calls, 1, "refused: callback fired once");
    is_int(r.err, GW_HTTPC_ECONNECT, "refused: ECONNECT (%s)", r.errmsg);
    ok(strstr(r.errmsg, "refused") != NULL, "refused: message says refused");
    is_int(uv_loop_close(&loop), 0, "refused: loop closes");
}

static void
test_bad_responses(void)
{
    gw_httpc_opts_t o = {0};
    result_t r;
    is_int(run_one(M_GARBAGE, "http://127.0.0.1:%d/", &o, &r), 0, "garbage: loop closes");
    is_int(r.err, GW_HTTPC_EBADRESP, "garbage: EBADRESP (%s)", r.errmsg);
    ok(strncmp(r.errmsg, "invalid response", 16) == 0, "garbage: message");

    run_one(M_TRUNC, "http://127.0.0.1:%d/", &o, &r);
    is_int(r.err, GW_HTTPC_ERESET, "truncated body: ERESET (%s)", r.errmsg);

    gw_httpc_opts_t big = {.max_body = 1000};
    is_int(run_one(M_BIG_CL, "http://127.0.0.1:%d/", &big, &r), 0, "too large: loop closes");
    is_int(r.err, GW_HTTPC_ETOOLARGE, "declared too large: ETOOLARGE");
    is_str(r.errmsg, "response too large", "too large: message");

    run_one(M_BIG_CHUNK, "http://127.0.0.1:%d/", &big, &r);
    is_int(r.err, GW_HTTPC_ETOOLARGE, "chunked too large: ETOOLARGE (%s)", r.errmsg);

    gw_httpc_opts_t exact = {.max_body = 1800};
    run_one(M_BIG_CHUNK, "http://127.0.0.1:%d/", &exact, &r);
    is_int(r.err, 0, "chunked body exactly max_body passes (%s)", r.errmsg);
    is_int(r.body_len, 1800, "chunked body exactly max_body: length");
    result_free(&r);

    run_one(M_LARGE_OK, "http://127.0.0.1:%d/", &o, &r);
    is_int(r.err, 0, "300 KB body: no error (%s)", r.errmsg);
    is_int(r.body_len, 300000, "300 KB body: length");
    ok(r.body && r.body[0] == 'y' && r.body[299999] == 'y' && r.body[300000] == '\0',
       "300 KB body: content");
    result_free(&r);
}

static void
test_head_and_interim(void)
{
    gw_httpc_opts_t o = {.method = "HEAD", .timeout_ms = 2000};
    result_t r;
    run_one(M_HEAD, "http://127.0.0.1:%d/", &o, &r);
    is_int(r.err, 0, "HEAD: done at the end of the head (%s)", r.errmsg);
    is_int(r.status, 200, "HEAD: status");
    is_int(r.body_len, 0, "HEAD: no body");
    result_free(&r);

    gw_httpc_opts_t p = {.method = "POST", .body = "{}", .body_len = 2};
    run_one(M_CONTINUE, "http://127.0.0.1:%d/", &p, &r);
    is_int(r.err, 0, "100 Continue skipped (%s)", r.errmsg);
    is_int(r.status, 201, "final status after 100");
    is_str(r.hdrs, "Content-Length=2\n", "only the final headers");
    is_str(r.body, "ok", "final body");
    result_free(&r);

    gw_httpc_opts_t g = {0};
    run_one(M_EMPTYHDR, "http://127.0.0.1:%d/", &g, &r);
    is_int(r.err, 0, "empty header value: no error (%s)", r.errmsg);
    is_str(r.hdrs, "X-Empty=\nX-After=a\nContent-Length=0\n", "empty header value kept apart");
    result_free(&r);
}

typedef struct {
    gw_httpc_req_t *req;
    result_t *res;
} canceller_t;

static void
on_cancel_timer(uv_timer_t *t)
{
    canceller_t *c = t->data;
    if (c->res->calls == 0)
        gw_httpc_cancel(c->req);
    uv_close((uv_handle_t *)t, NULL);
}

static void
test_cancel(void)
{
    uv_loop_t loop;
    server_t srv;
    uv_timer_t t;
    char url[128], err[256];
    result_t r;
    canceller_t cc;

    /* Cancelled while waiting for the answer. */
    memset(&r, 0, sizeof(r));
    uv_loop_init(&loop);
    server_start(&srv, &loop, M_SILENT);
    r.srv = &srv;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", srv.port);
    gw_httpc_opts_t o = {.url = url};
    cc.req = gw_httpc_request(&loop, &o, on_done, &r, err, sizeof(err));
    cc.res = &r;
    ok(cc.req != NULL, "cancel: started");
    uv_timer_init(&loop, &t);
    t.data = &cc;
    uv_timer_start(&t, on_cancel_timer, 50, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    is_int(r.calls, 1, "cancel: callback fired once");
    is_int(r.err, GW_HTTPC_ECANCELED, "cancel: ECANCELED");
    is_str(r.errmsg, "cancelled", "cancel: message");
    is_int(srv.accepted, 1, "cancel: the request had connected");
    is_int(uv_loop_close(&loop), 0, "cancel: loop closes");

    /* Cancelled right away, while a name is being resolved. */
    memset(&r, 0, sizeof(r));
    uv_loop_init(&loop);
    server_start(&srv, &loop, M_CL);
    r.srv = &srv;
    snprintf(url, sizeof(url), "http://localhost:%d/", srv.port);
    gw_httpc_req_t *req = gw_httpc_request(&loop, &o, on_done, &r, err, sizeof(err));
    ok(req != NULL, "cancel at once: started");
    gw_httpc_cancel(req);
    is_int(r.calls, 0, "cancel at once: no synchronous callback");
    uv_run(&loop, UV_RUN_DEFAULT);
    is_int(r.calls, 1, "cancel at once: callback fired once");
    is_int(r.err, GW_HTTPC_ECANCELED, "cancel at once: ECANCELED");
    is_int(uv_loop_close(&loop), 0, "cancel at once: loop closes");
}

static void
test_names(void)
{
    gw_httpc_opts_t o = {0};
    result_t r;
    is_int(run_one(M_CL, "http://localhost:%d/", &o, &r), 0, "localhost: loop closes");
    is_int(r.err, 0, "localhost: resolved and answered (%s)", r.errmsg);
    is_str(r.body, "hello", "localhost: body");
    result_free(&r);

    /* A name that cannot resolve: the resolver answers or the budget ends. */
    uv_loop_t loop;
    char err[256];
    memset(&r, 0, sizeof(r));
    uv_loop_init(&loop);
    gw_httpc_opts_t d = {.url = "http://no-such-host.invalid/", .timeout_ms = 3000};
    ok(gw_httpc_request(&loop, &d, on_done, &r, err, sizeof(err)) != NULL, "bad name: started");
    uv_run(&loop, UV_RUN_DEFAULT);
    is_int(r.calls, 1, "bad name: callback fired once");
    ok(r.err == GW_HTTPC_EDNS || r.err == GW_HTTPC_ETIMEDOUT, "bad name: EDNS (%s)", r.errmsg);
    is_int(uv_loop_close(&loop), 0, "bad name: loop closes");
}

static void
test_bad_input(void)
{
    uv_loop_t loop;
    char err[256];
    result_t r;
    static const struct {
        const char *url, *want;
    } urls[] = {
        {"https://127.0.0.1/", "https needs TLS settings"},
        {"HTTPS://example.com/", "https needs TLS settings"},
        {"ftp://example.com/", "only http"},
        {"example.com/path", "only http"},
        {"http://", "bad host"},
        {"http:///path", "bad host"},
        {"http://ho st/", "bad host"},
        {"http://host:0/", "bad port"},
        {"http://host:99999/", "bad port"},
        {"http://host:80x/", "bad port"},
        {"http://host:/", "bad port"},
        {"http://user@host/", "user info"},
        {"http://[::1/", "bad IPv6"},
        {"http://[zz]/", "bad IPv6"},
        {"http://host/a b", "invalid character"},
        {"", "missing URL"},
    };

    memset(&r, 0, sizeof(r));
    uv_loop_init(&loop);
    for (size_t i = 0; i < GW_ARRAY_LEN(urls); i++) {
        gw_httpc_opts_t o = {.url = urls[i].url};
        err[0] = '\0';
        gw_httpc_req_t *req = gw_httpc_request(&loop, &o, on_done, &r, err, sizeof(err));
        ok(req == NULL && strstr(err, urls[i].want) != NULL, "bad URL \"%s\": %s", urls[i].url,
           err);
    }
    gw_httpc_opts_t nourl = {0};
    ok(gw_httpc_request(&loop, &nourl, on_done, &r, err, sizeof(err)) == NULL, "NULL URL: %s", err);
    gw_httpc_opts_t m = {.url = "http://h/", .method = "GE T"};
    ok(gw_httpc_request(&loop, &m, on_done, &r, err, sizeof(err)) == NULL &&
           strstr(err, "bad method"),
       "bad method: %s", err);
    gw_header_t crlf[] = {{GW_STR("X-A"), GW_STR("a\r\nX-Injected: 1")}};
    gw_httpc_opts_t h = {.url = "http://h/", .headers = crlf, .nheaders = 1};
    ok(gw_httpc_request(&loop, &h, on_done, &r, err, sizeof(err)) == NULL, "CRLF in value: %s",
       err);
    gw_header_t badname[] = {{GW_STR("X A"), GW_STR("a")}};
    h.headers = badname;
    ok(gw_httpc_request(&loop, &h, on_done, &r, err, sizeof(err)) == NULL, "bad name: %s", err);
    gw_header_t cl[] = {{GW_STR("content-length"), GW_STR("3")}};
    h.headers = cl;
    ok(gw_httpc_request(&loop, &h, on_done, &r, err, sizeof(err)) == NULL,
       "caller's Content-Length refused: %s", err);
    gw_httpc_opts_t b = {.url = "http://h/", .body_len = 3};
    ok(gw_httpc_request(&loop, &b, on_done, &r, err, sizeof(err)) == NULL,
       "body_len without body: %s", err);
    ok(gw_httpc_request(NULL, &b, on_done, &r, err, sizeof(err)) == NULL, "NULL loop refused");
    ok(gw_httpc_request(&loop, &b, NULL, &r, NULL, 0) == NULL, "NULL callback, NULL err buffer");
    uv_run(&loop, UV_RUN_DEFAULT);
    is_int(r.calls, 0, "no callback for a refused start");
    is_int(uv_loop_close(&loop), 0, "bad input: loop closes");
}

static void
on_first_done(gw_httpc_req_t *req, int err, const char *errmsg, const gw_httpc_resp_t *resp,
              void *arg)
{
    result_t *res = arg;
    char e[128];
    char url[128];
    res->calls++;
    /* A second request started from the callback, against the same server. */
    snprintf(url, sizeof(url), "http://[::ffff:127.0.0.1]:%d/second", res->srv->port);
    gw_httpc_opts_t o = {.url = url};
    if (gw_httpc_request(res->srv->listener.loop, &o, on_done, res + 1, e, sizeof(e)) == NULL)
        server_stop(res->srv);
}

static void
test_chain(void)
{
    uv_loop_t loop;
    server_t srv;
    result_t r[2];
    char url[128], err[256];

    memset(r, 0, sizeof(r));
    uv_loop_init(&loop);
    server_start(&srv, &loop, M_CL);
    r[0].srv = &srv;
    r[1].srv = &srv;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/first", srv.port);
    gw_httpc_opts_t o = {.url = url};
    ok(gw_httpc_request(&loop, &o, on_first_done, &r[0], err, sizeof(err)) != NULL,
       "chain: started");
    uv_run(&loop, UV_RUN_DEFAULT);
    is_int(r[0].calls, 1, "chain: first done");
    is_int(r[1].calls, 1, "chain: second (IPv4-mapped IPv6 literal) done");
    ok(r[1].err == 0 || r[1].err == GW_HTTPC_ECONNECT, "chain: second result (%s)", r[1].errmsg);
    is_int(uv_loop_close(&loop), 0, "chain: loop closes");
    result_free(&r[1]);
}

typedef struct {
    result_t res;
    int pieces;
    int status;
    char got[64];
    size_t got_len;
    int stop_after; /* return non-zero at this piece (1-based); 0 never */
    int cancel_at;  /* call gw_httpc_cancel() at this piece instead */
} stream_t;

static int
on_piece(gw_httpc_req_t *req, int status, const char *data, size_t len, void *arg)
{
    stream_t *st = arg;
    st->pieces++;
    st->status = status;
    if (st->got_len + len < sizeof(st->got)) {
        memcpy(st->got + st->got_len, data, len);
        st->got_len += len;
        st->got[st->got_len] = '\0';
    }
    if (st->cancel_at == st->pieces)
        gw_httpc_cancel(req);
    return st->stop_after == st->pieces;
}

static void
test_stream(void)
{
    stream_t st;

    /* The budget (100 ms) covers the head only: the pieces come 200 ms apart. */
    memset(&st, 0, sizeof(st));
    gw_httpc_opts_t o = {.timeout_ms = 100, .on_body = on_piece};
    uint64_t t0 = uv_hrtime();
    is_int(run_one(M_STREAM, "http://127.0.0.1:%d/watch", &o, &st.res), 0, "stream: loop closes");
    is_int(st.res.err, 0, "stream: no error (%s)", st.res.errmsg);
    is_int(st.res.calls, 1, "stream: callback once, at the end");
    is_int(st.pieces, 2, "stream: two pieces handed over as they came");
    is_int(st.status, 200, "stream: status with the pieces");
    is_str(st.got, "a\nbc\n", "stream: the bytes, chunk framing removed");
    is_int(st.res.body_len, 0, "stream: the final callback gets an empty body");
    ok((uv_hrtime() - t0) / 1000000 >= 350, "stream: lasted past the head's budget");
    result_free(&st.res);

    /* Stopped by the receiver at the first piece. */
    memset(&st, 0, sizeof(st));
    st.stop_after = 1;
    gw_httpc_opts_t s = {.on_body = on_piece};
    is_int(run_one(M_STREAM, "http://127.0.0.1:%d/", &s, &st.res), 0, "stream stop: loop closes");
    is_int(st.res.err, GW_HTTPC_ECANCELED, "stream stop: ECANCELED (%s)", st.res.errmsg);
    is_int(st.pieces, 1, "stream stop: no piece after the refusal");
    result_free(&st.res);

    /* Cancelled from inside the piece callback. */
    memset(&st, 0, sizeof(st));
    st.cancel_at = 1;
    is_int(run_one(M_STREAM, "http://127.0.0.1:%d/", &s, &st.res), 0, "stream cancel: loop closes");
    is_int(st.res.err, GW_HTTPC_ECANCELED, "stream cancel: ECANCELED (%s)", st.res.errmsg);
    is_int(st.res.calls, 1, "stream cancel: callback once");
    is_int(st.pieces, 1, "stream cancel: no piece after the cancel");
    result_free(&st.res);

    /* Still a timeout when the head does not come. */
    memset(&st, 0, sizeof(st));
    gw_httpc_opts_t q = {.timeout_ms = 100, .on_body = on_piece};
    run_one(M_SILENT, "http://127.0.0.1:%d/", &q, &st.res);
    is_int(st.res.err, GW_HTTPC_ETIMEDOUT, "stream: the head's budget still applies");
    result_free(&st.res);
}

int
main(void)
{
    test_get_cl();
    test_chunked();
    test_close_delimited();
    test_post_echo();
    test_404();
    test_timeout();
    test_refused();
    test_bad_responses();
    test_head_and_interim();
    test_cancel();
    test_names();
    test_bad_input();
    test_chain();
    test_stream();
    done_testing();
}
