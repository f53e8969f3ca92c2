/*
 * The status listener: the routes of gw_status.h over gw_minihttp, with
 * keep-alive. Answers are built during the request callback, so requests
 * on a connection are answered one at a time, in order.
 */
#include "gw_status.h"
#include "gw_metrics.h"
#include "gw_minihttp.h"

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define URL_MAX 256

struct gw_status_s {
    gw_minihttp_t *http;
    gw_metrics_t *metrics;
    int draining;
    void (*done)(void *arg);
    void *done_arg;
};

static const char json_type[] = "application/json";

static void
respond(gw_minihttp_conn_t *c, int status, const char *type, const char *body, size_t body_len,
        int head_only, const char *extra)
{
    gw_minihttp_resp_t r = {.status = status,
                            .type = type,
                            .extra = extra,
                            .body = body,
                            .body_len = body_len,
                            .head_only = head_only};
    gw_minihttp_respond(c, &r);
}

#define RESPOND_JSON(c, code, body, head_only, extra)                                              \
    respond((c), (code), json_type, (body), sizeof(body) - 1, (head_only), (extra))

static void
on_error(gw_minihttp_conn_t *c, int code, void *arg)
{
    if (code == 431)
        RESPOND_JSON(c, 431, "{\"code\":431,\"message\":\"request header fields too large\"}", 0,
                     NULL);
    else
        RESPOND_JSON(c, 400, "{\"code\":400,\"message\":\"bad request\"}", 0, NULL);
}

static void
on_request(gw_minihttp_conn_t *c, const gw_minihttp_req_t *req, void *arg)
{
    gw_status_t *st = arg;
    int head_only = req->method == HTTP_HEAD;
    size_t plen = 0;

    if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
        RESPOND_JSON(c, 405, "{\"code\":405,\"message\":\"method not allowed\"}", 0,
                     "Allow: GET, HEAD\r\n");
        return;
    }
    while (plen < req->url_len && req->url[plen] != '?')
        plen++;
#define PATH_IS(lit)                                                                               \
    (!req->url_too_long && plen == sizeof(lit) - 1 && memcmp(req->url, lit, plen) == 0)

    if (PATH_IS("/health")) {
        RESPOND_JSON(c, 200, "{\"status\":\"ok\"}", head_only, NULL);
    } else if (PATH_IS("/ready")) {
        if (st->draining)
            RESPOND_JSON(c, 503, "{\"status\":\"draining\"}", head_only, NULL);
        else
            RESPOND_JSON(c, 200, "{\"status\":\"ready\"}", head_only, NULL);
    } else if (PATH_IS("/metrics")) {
        char *text = NULL;
        size_t len = st->metrics != NULL ? gw_metrics_render(st->metrics, &text) : 0;
        if (text == NULL) {
            RESPOND_JSON(c, 503, "{\"code\":503,\"message\":\"metrics unavailable\"}", head_only,
                         NULL);
            return;
        }
        respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, head_only, NULL);
        free(text);
    } else {
        RESPOND_JSON(c, 404, "{\"code\":404,\"message\":\"not found\"}", head_only, NULL);
    }
#undef PATH_IS
}

gw_status_t *
gw_status_start(uv_loop_t *loop, int listen_fd, gw_metrics_t *metrics, gw_log_t *log, char *err,
                size_t errlen)
{
    static const gw_minihttp_ops_t ops = {.on_request = on_request, .on_error = on_error};
    gw_minihttp_conf_t conf = {.name = "status",
                               .log = log,
                               .max_conns = GW_STATUS_MAX_CONNS,
                               .max_head = GW_STATUS_MAX_HEAD,
                               .url_max = URL_MAX,
                               .idle_ms = GW_STATUS_IDLE_MS,
                               .backlog = 511,
                               .keep_alive = 1};
    char why[200];
    gw_status_t *st = calloc(1, sizeof(*st));

    if (st == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    st->metrics = metrics;
    st->http = gw_minihttp_start(loop, listen_fd, &conf, &ops, st, why, sizeof(why));
    if (st->http == NULL) {
        snprintf(err, errlen, "status listener: %s", why);
        free(st);
        return NULL;
    }
    return st;
}

void
gw_status_set_draining(gw_status_t *st, int draining)
{
    if (st == NULL)
        return;
    st->draining = draining != 0;
    gw_minihttp_set_draining(st->http, st->draining);
}

size_t
gw_status_nconns(const gw_status_t *st)
{
    return st != NULL ? gw_minihttp_nconns(st->http) : 0;
}

static void
on_http_closed(void *arg)
{
    gw_status_t *st = arg;
    void (*done)(void *) = st->done;
    void *done_arg = st->done_arg;

    free(st);
    if (done != NULL)
        done(done_arg);
}

void
gw_status_close(gw_status_t *st, void (*done)(void *arg), void *arg)
{
    if (st == NULL || st->http == NULL)
        return;
    st->done = done;
    st->done_arg = arg;
    gw_minihttp_t *http = st->http;
    st->http = NULL;
    gw_minihttp_close(http, 0, on_http_closed, st);
}
