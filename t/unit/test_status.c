/* gw_status: a real loop serving a loopback socket, a blocking client in a
 * thread. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "gw_config.h"
#include "gw_metrics.h"
#include "gw_status.h"
#include "tap.h"

static int port;
static uv_async_t phase_done;

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

static int
send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Sends req and reads until the server closes (or 3 s pass). */
static char *
exchange(const char *req, size_t req_len)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    int fd = client_connect();

    buf[0] = '\0';
    if (fd < 0)
        return buf;
    send_all(fd, req, req_len);
    for (;;) {
        if (len + 1 >= cap)
            buf = realloc(buf, cap *= 2);
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    close(fd);
    return buf;
}

static char *
get(const char *req)
{
    return exchange(req, strlen(req));
}

static int
count(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)) != NULL; p++)
        n++;
    return n;
}

static void *
phase1(void *arg)
{
    char *r;

    r = get("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    ok(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0, "/health 200");
    ok(strstr(r, "Content-Type: application/json\r\n") != NULL, "/health is JSON");
    ok(strstr(r, "Connection: close\r\n") != NULL, "Connection: close honoured");
    ok(strstr(r, "\r\n\r\n{\"status\":\"ok\"}") != NULL, "/health body");
    free(r);

    r = get("GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    ok(strstr(r, "HTTP/1.1 200 OK\r\n") == r && strstr(r, "\r\n\r\n{\"status\":\"ready\"}"),
       "/ready 200 ready");
    free(r);

    r = get("GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    ok(strstr(r, "HTTP/1.1 200 OK\r\n") == r, "/metrics 200");
    ok(strstr(r, "Content-Type: text/plain; version=0.0.4") != NULL, "/metrics content type");
    ok(strstr(r, "\ngateway_requests_total{route=\"r\",status=\"200\"} 1\n") != NULL,
       "/metrics has the recorded request");
    ok(strstr(r, "# TYPE gateway_connections gauge\n") != NULL, "/metrics has TYPE lines");
    free(r);

    r = get("HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    ok(strstr(r, "HTTP/1.1 200 OK\r\n") == r && strstr(r, "Content-Length: 15\r\n") &&
           strstr(r, "{") == NULL,
       "HEAD: headers only");
    free(r);

    r = get("GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    ok(strstr(r, "HTTP/1.1 404 Not Found\r\n") == r &&
           strstr(r, "\r\n\r\n{\"code\":404,\"message\":\"not found\"}"),
       "unknown path 404 JSON");
    free(r);

    r = get("POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi");
    ok(strstr(r, "HTTP/1.1 405 Method Not Allowed\r\n") == r && strstr(r, "Allow: GET, HEAD\r\n"),
       "POST 405 with Allow");
    free(r);

    r = get("GARBAGE\r\n\r\n");
    ok(strstr(r, "HTTP/1.1 400 Bad Request\r\n") == r && strstr(r, "Connection: close\r\n"),
       "malformed request 400 and close");
    free(r);

    {
        size_t n = 9000;
        char *req = malloc(n + 100);
        int k = snprintf(req, 100, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ");
        memset(req + k, 'a', n);
        memcpy(req + k + n, "\r\n\r\n", 5);
        r = exchange(req, strlen(req));
        ok(strstr(r, "HTTP/1.1 431 ") == r, "9000-byte header: 431");
        free(r);
        free(req);
    }

    /* Keep-alive and pipelining: three requests in one send, answered in order. */
    r = get("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    {
        const char *a = strstr(r, "{\"status\":\"ok\"}"), *b = strstr(r, "{\"code\":404"),
                   *c = strstr(r, "{\"status\":\"ready\"}");
        is_int(count(r, "HTTP/1.1 "), 3, "three pipelined responses");
        ok(a && b && c && a < b && b < c, "in order");
        is_int(count(r, "Connection: keep-alive\r\n"), 2, "first two keep the connection");
    }
    free(r);

    /* HTTP/1.0 without keep-alive closes. */
    r = get("GET /health HTTP/1.0\r\n\r\n");
    ok(strstr(r, "HTTP/1.1 200 OK\r\n") == r && strstr(r, "Connection: close\r\n"),
       "HTTP/1.0 closes");
    free(r);

    uv_async_send(&phase_done);
    return NULL;
}

static void *
phase_cap(void *arg)
{
    int fds[GW_STATUS_MAX_CONNS];
    int served = 0;
    const char *req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

    for (int i = 0; i < GW_STATUS_MAX_CONNS; i++) {
        char buf[512];
        size_t len = 0;
        fds[i] = client_connect();
        if (fds[i] < 0 || send_all(fds[i], req, strlen(req)) != 0)
            continue;
        while (len < sizeof(buf) - 1) {
            ssize_t r = recv(fds[i], buf + len, sizeof(buf) - 1 - len, 0);
            if (r <= 0)
                break;
            len += (size_t)r;
            buf[len] = '\0';
            if (strstr(buf, "{\"status\":\"ok\"}"))
                break;
        }
        buf[len] = '\0';
        served += strstr(buf, "{\"status\":\"ok\"}") != NULL;
    }
    is_int(served, GW_STATUS_MAX_CONNS, "64 kept-alive connections served");

    int extra = client_connect();
    char c;
    ssize_t r = extra >= 0 ? recv(extra, &c, 1, 0) : -1;
    is_int(r, 0, "connection 65 closed at once");
    if (extra >= 0)
        close(extra);
    for (int i = 0; i < GW_STATUS_MAX_CONNS; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    uv_async_send(&phase_done);
    return NULL;
}

static void *
phase_draining(void *arg)
{
    char *r = get("GET /ready HTTP/1.1\r\nHost: x\r\n\r\n");
    ok(strstr(r, "HTTP/1.1 503 Service Unavailable\r\n") == r &&
           strstr(r, "\r\n\r\n{\"status\":\"draining\"}"),
       "/ready 503 draining");
    ok(strstr(r, "Connection: close\r\n") != NULL, "draining closes keep-alive connections");
    free(r);
    r = get("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    ok(strstr(r, "HTTP/1.1 200 OK\r\n") == r, "/health still 200 while draining");
    free(r);
    uv_async_send(&phase_done);
    return NULL;
}

static void
on_phase_done(uv_async_t *a)
{
    uv_stop(a->loop);
}

static void
run_phase(uv_loop_t *loop, void *(*fn)(void *))
{
    pthread_t t;
    pthread_create(&t, NULL, fn, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    pthread_join(t, NULL);
}

/* Lets the server see the clients' closes before the next phase counts. */
static void
settle(uv_loop_t *loop, gw_status_t *st)
{
    for (int i = 0; i < 300 && gw_status_nconns(st) > 0; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
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
    gw_route_conf_t routes[1] = {{.name = "r"}};
    gw_conf_t conf = {.routes = routes, .nroutes = 1};
    char err[256];
    uv_loop_t loop;
    int closed = 0;

    uv_loop_init(&loop);

    /* Bad descriptors */
    ok(gw_status_start(&loop, -1, NULL, NULL, err, sizeof(err)) == NULL, "fd -1 refused: %s", err);
    {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        ok(gw_status_start(&loop, s, NULL, NULL, err, sizeof(err)) == NULL,
           "non-listening socket refused: %s", err);
        close(s);
        s = socket(AF_INET, SOCK_DGRAM, 0);
        ok(gw_status_start(&loop, s, NULL, NULL, err, sizeof(err)) == NULL,
           "UDP socket refused: %s", err);
        close(s);
    }

    int lfd = make_listener(&port);
    ok(lfd >= 0, "listening on 127.0.0.1:%d", port);

    gw_metrics_t *m = gw_metrics_new(&conf, 2);
    gw_metrics_worker_start(m, 0);
    gw_metrics_request(m, 0, 0, 200, 0.01);

    gw_status_t *st = gw_status_start(&loop, lfd, m, NULL, err, sizeof(err));
    ok(st != NULL, "status listener started");
    if (st == NULL) {
        printf("# %s\n", err);
        done_testing();
    }
    /* The listener holds its own copy of the descriptor. */
    close(lfd);

    uv_async_init(&loop, &phase_done, on_phase_done);

    run_phase(&loop, phase1);
    settle(&loop, st);
    is_int(gw_status_nconns(st), 0, "all connections gone after phase 1");

    run_phase(&loop, phase_cap);
    settle(&loop, st);
    is_int(gw_status_nconns(st), 0, "all connections gone after the cap test");

    gw_status_set_draining(st, 1);
    run_phase(&loop, phase_draining);

    /* Close with a connection still open. */
    int idle = client_connect();
    for (int i = 0; i < 50 && gw_status_nconns(st) == 0; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    is_int(gw_status_nconns(st), 1, "an idle connection is open");
    gw_status_close(st, on_closed, &closed);
    uv_close((uv_handle_t *)&phase_done, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ok(closed, "close callback ran");
    is_int(uv_loop_close(&loop), 0, "every handle closed");
    if (idle >= 0) {
        char c;
        is_int(recv(idle, &c, 1, 0), 0, "idle connection closed by the server");
        close(idle);
    }

    gw_metrics_free(m);
    done_testing();
}
