/* gw_minihttp: the parts the status listener does not use (asked-for
 * headers, bodies and their limit, per-connection data, the peer, an answer
 * given after the request callback, on_close, closing with an answer in
 * flight, a keep-alive answer given as the server closes), with a real
 * loop and a blocking client in a thread. */
#include <arpa/inet.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "gw_minihttp.h"
#include "tap.h"

typedef struct {
    int requests; /* requests this connection saw before the current one */
} conn_data_t;

typedef struct {
    uv_timer_t later;
    gw_minihttp_conn_t *waiting; /* answered by the timer */
    int closes;
    gw_minihttp_t *h; /* set: "/bye" answers, then closes this server */
    int bye_closed;
} server_t;

static int port;
static uv_async_t phase_done;

static const gw_minihttp_hdr_t headers[] = {{"x-key", 8}, {"content-type", 32}};

static int
client_connect(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {.tv_sec = 3};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends REQ and reads until the server closes (or 3 s pass). */
static char *
get(const char *req)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = calloc(1, cap);
    int fd = client_connect();

    if (fd < 0)
        return buf;
    for (size_t n = strlen(req), off = 0; off < n;) {
        ssize_t w = send(fd, req + off, n - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    for (ssize_t r; len + 1 < cap && (r = recv(fd, buf + len, cap - len - 1, 0)) > 0;)
        len += (size_t)r;
    buf[len] = '\0';
    close(fd);
    return buf;
}

static void
answer(gw_minihttp_conn_t *c, int status, const char *body)
{
    gw_minihttp_resp_t r = {
        .status = status, .type = "text/plain", .body = body, .body_len = strlen(body)};
    gw_minihttp_respond(c, &r);
}

static void
on_later(uv_timer_t *t)
{
    server_t *s = t->data;
    if (s->waiting != NULL)
        answer(s->waiting, 202, "later");
    s->waiting = NULL;
}

static void on_closed(void *arg);

static void
on_request(gw_minihttp_conn_t *c, const gw_minihttp_req_t *req, void *arg)
{
    server_t *s = arg;
    conn_data_t *d = gw_minihttp_conn_data(c);
    char out[512];

    if (req->url_len == 4 && memcmp(req->url, "/bye", 4) == 0 && s->h != NULL) {
        answer(c, 200, "bye");
        gw_minihttp_close(s->h, 1, on_closed, &s->bye_closed);
        return;
    }
    if (req->url_len == 6 && memcmp(req->url, "/later", 6) == 0) {
        s->waiting = c;
        gw_minihttp_conn_timeout(c, 5000);
        uv_timer_start(&s->later, on_later, 50, 0);
        return;
    }
    if (req->url_len == 6 && memcmp(req->url, "/never", 6) == 0) {
        s->waiting = c; /* the client goes away first */
        return;
    }
    snprintf(out, sizeof(out), "m=%s url=%.*s%s key=%.*s/%u/%d type=%.*s body=%.*s seen=%d peer=%s",
             req->method == HTTP_POST ? "POST" : "other", (int)req->url_len, req->url,
             req->url_too_long ? "+" : "", (int)req->headers[0].len, req->headers[0].value,
             req->headers[0].count, req->headers[0].over, (int)req->headers[1].len,
             req->headers[1].value, (int)req->body_len, req->body ? req->body : "", d->requests,
             gw_minihttp_conn_peer(c));
    d->requests++;
    answer(c, 200, out);
}

static void
on_error(gw_minihttp_conn_t *c, int status, void *arg)
{
    char out[32];
    snprintf(out, sizeof(out), "error %d", status);
    answer(c, status, out);
}

static void
on_close(gw_minihttp_conn_t *c, void *arg)
{
    server_t *s = arg;
    s->closes++;
    if (s->waiting == c)
        s->waiting = NULL;
}

static void *
phase1(void *arg)
{
    char *r;

    r = get("POST /a/b?q=1 HTTP/1.1\r\nX-KEY: abc\r\nx-key: k2\r\nContent-Type: text/x\r\n"
            "Content-Length: 5\r\n\r\nhello");
    ok(strstr(r, "HTTP/1.1 200 OK\r\n") == r, "200 to a POST");
    ok(strstr(r, "Connection: close\r\n") != NULL, "without keep_alive every answer closes");
    ok(strstr(r, "Date: ") != NULL, "conf.date: a Date header");
    ok(strstr(r, "m=POST url=/a/b?q=1 key=k2/2/0 type=text/x body=hello seen=0 "
                 "peer=127.0.0.1") != NULL,
       "method, URL, last of two keys (any case), type, body, fresh data, peer: %s",
       strstr(r, "m="));
    free(r);

    r = get("GET /x HTTP/1.1\r\nX-Key: 123456789\r\n\r\n");
    ok(strstr(r, "key=/1/1 ") != NULL, "a value over its max: over set, nothing kept");
    ok(strstr(r, "body= ") != NULL, "no body");
    free(r);

    r = get("GET /0123456789abcdef HTTP/1.1\r\n\r\n");
    ok(strstr(r, "url=+ ") != NULL, "URL over url_max: flagged");
    free(r);

    r = get("GET /x HTTP/1.1\r\nX-Key: 1\r\nX-Key: 2\r\n\r\nGET /x HTTP/1.1\r\n\r\n");
    ok(strstr(r, "key=2/2/0 ") != NULL, "two keys counted");
    ok(strstr(r + 1, "HTTP/1.1") == NULL, "one request per connection");
    free(r);

    r = get("POST /x HTTP/1.1\r\nContent-Length: 65\r\n\r\n");
    ok(strstr(r, "HTTP/1.1 413 Payload Too Large\r\n") == r && strstr(r, "error 413"),
       "Content-Length over max_body: 413 at once");
    free(r);

    r = get("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            "30\r\n012345678901234567890123456789012345678901234567\r\n"
            "30\r\n012345678901234567890123456789012345678901234567\r\n0\r\n\r\n");
    ok(strstr(r, "HTTP/1.1 413 ") == r, "chunked body over max_body: 413");
    free(r);

    r = get("GET /x HTTP/1.1\r\nX-Pad: 0123456789012345678901234567890123456789012345678901234567"
            "890123456789012345678901234567890123456789012345678901234567890123456789\r\n\r\n");
    ok(strstr(r, "HTTP/1.1 431 Request Header Fields Too Large\r\n") == r, "head over max: 431");
    free(r);

    r = get("NOT HTTP\r\n\r\n");
    ok(strstr(r, "HTTP/1.1 400 Bad Request\r\n") == r, "garbage: 400");
    free(r);

    r = get("GET /later HTTP/1.1\r\n\r\n");
    ok(strstr(r, "HTTP/1.1 202 Accepted\r\n") == r && strstr(r, "\r\n\r\nlater"),
       "an answer given after the request callback");
    free(r);

    int fd = client_connect();
    send(fd, "GET /never HTTP/1.1\r\n\r\n", 23, MSG_NOSIGNAL);
    usleep(100000);
    close(fd);
    usleep(100000);

    uv_async_send(&phase_done);
    return NULL;
}

static void
send_str(int fd, const char *str)
{
    send(fd, str, strlen(str), MSG_NOSIGNAL);
}

static void
on_phase_done(uv_async_t *a)
{
    uv_stop(a->loop);
}

static void
on_closed(void *arg)
{
    *(int *)arg = 1;
}

static int
make_listener(int *port_out)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 128) != 0)
        return -1;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    *port_out = ntohs(sa.sin_port);
    return fd;
}

int
main(void)
{
    static const gw_minihttp_ops_t ops = {
        .on_request = on_request, .on_error = on_error, .on_close = on_close};
    const gw_minihttp_conf_t conf = {.name = "test",
                                     .max_conns = 4,
                                     .max_head = 128,
                                     .max_body = 64,
                                     .url_max = 10,
                                     .idle_ms = 2000,
                                     .backlog = 16,
                                     .date = 1,
                                     .peer = 1,
                                     .conn_data = sizeof(conn_data_t),
                                     .headers = headers,
                                     .nheaders = 2};
    server_t s = {0};
    char err[256];
    uv_loop_t loop;
    pthread_t t;
    int closed = 0;

    uv_loop_init(&loop);
    ok(gw_minihttp_start(&loop, -1, &conf, &ops, &s, err, sizeof(err)) == NULL, "fd -1 refused: %s",
       err);
    int lfd = make_listener(&port);
    gw_minihttp_t *h = gw_minihttp_start(&loop, lfd, &conf, &ops, &s, err, sizeof(err));
    ok(h != NULL, "started on 127.0.0.1:%d", port);
    if (h == NULL)
        done_testing();
    close(lfd);
    uv_timer_init(&loop, &s.later);
    s.later.data = &s;
    uv_async_init(&loop, &phase_done, on_phase_done);

    pthread_create(&t, NULL, phase1, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    pthread_join(t, NULL);
    ok(s.waiting == NULL, "on_close told of the unanswered connection whose client left");
    for (int i = 0; i < 100 && gw_minihttp_nconns(h) > 0; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    is_int(gw_minihttp_nconns(h), 0, "every connection gone");
    is_int(s.closes, 10, "on_close once for every connection");

    /* Closing keeps an answered connection until it ends (its answer is
     * out, the lingering read bounded by its timer); an unanswered one goes
     * at once. */
    int answered = client_connect(), idle = client_connect();
    send(answered, "GET /x HTTP/1.1\r\n\r\n", 20, MSG_NOSIGNAL);
    for (int i = 0; i < 20; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    is_int(gw_minihttp_nconns(h), 2, "two connections open");
    gw_minihttp_stop_accepting(h);
    gw_minihttp_stop_accepting(h);
    gw_minihttp_close(h, 1, on_closed, &closed);
    for (int i = 0; i < 20; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    ok(!closed, "the answered connection is kept");
    char c, buf[1024];
    is_int(recv(idle, &c, 1, 0), 0, "the unanswered one is closed");
    ssize_t n = recv(answered, buf, sizeof(buf) - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    ok(strstr(buf, "HTTP/1.1 200 OK\r\n") == buf, "the answered one got its answer");
    close(answered);
    close(idle);

    /* A keep-alive server that closes while an answer is on its way: the
     * connection ends after that answer, it does not read a next request. */
    gw_minihttp_conf_t kconf = conf;
    kconf.keep_alive = 1;
    server_t ks = {0};
    int klfd = make_listener(&port);
    ks.h = gw_minihttp_start(&loop, klfd, &kconf, &ops, &ks, err, sizeof(err));
    ok(ks.h != NULL, "a keep-alive server on 127.0.0.1:%d", port);
    close(klfd);
    int kfd = client_connect();
    send_str(kfd, "GET /y HTTP/1.1\r\n\r\n");
    for (int i = 0; i < 20; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    n = recv(kfd, buf, sizeof(buf) - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    ok(strstr(buf, "Connection: keep-alive\r\n") != NULL, "a first answer keeps the connection");
    send_str(kfd, "GET /bye HTTP/1.1\r\n\r\n");
    for (int i = 0; i < 20; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    send_str(kfd, "GET /z HTTP/1.1\r\n\r\n");
    for (int i = 0; i < 20; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    size_t got = 0;
    for (ssize_t r;
         got + 1 < sizeof(buf) && (r = recv(kfd, buf + got, sizeof(buf) - 1 - got, 0)) > 0;)
        got += (size_t)r;
    buf[got] = '\0';
    ok(strstr(buf, "HTTP/1.1 200 OK\r\n") == buf && strstr(buf, "\r\n\r\nbye") != NULL,
       "the answer given as the server closes arrives");
    ok(strstr(buf + 1, "HTTP/1.1") == NULL, "no request after it is served: %.60s", buf);
    close(kfd);
    for (int i = 0; i < 50 && !ks.bye_closed; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    ok(ks.bye_closed, "the closing server finished");

    uv_close((uv_handle_t *)&s.later, NULL);
    uv_close((uv_handle_t *)&phase_done, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ok(closed, "close callback ran");
    is_int(uv_loop_close(&loop), 0, "every handle closed");
    done_testing();
}
