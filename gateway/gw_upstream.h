/*
 * Upstreams as one worker runs them: nodes with their keep-alive pools,
 * balancer targets (an upstream, or a subset of its nodes chosen by a
 * route or a canary rule), and upstream connections: connect, send, read and parse
 * the response (llhttp, strict), with connect/send/read timeouts.
 *
 * A Content-Length body is passed through as the bytes the upstream sent,
 * so the common case copies nothing; a chunked body is decoded here and
 * re-framed by gw_request (chunks toward HTTP/1.1 clients, close-delimited
 * toward HTTP/1.0 ones), so no upstream framing reaches a client.
 */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include <llhttp.h>
#include <uv.h>

#include "gw_deadline.h"
#include "gw_health.h"
#include "gw_http.h"
#include "gw_node.h"
#include "gw_request.h"
#include "gw_worker.h"
#include "gw_wqueue.h"

typedef struct gw_upstream_rt_s gw_upstream_rt_t;

struct gw_target_s {
    gw_upstream_rt_t *up;
    gw_balancer_t *bal;
    gw_node_t **nodes;
    size_t nnodes;
};

struct gw_upstream_rt_s {
    const gw_upstream_conf_t *conf;
    gw_node_t *nodes;
    size_t nnodes;
    gw_target_t all;
    gw_health_t *health;          /* NULL when the upstream has no health checks */
    struct gw_breaker_s *breaker; /* scope "upstream" */
};

struct gw_upstreams_s {
    gw_upstream_rt_t *ups;
    /* breakers of scope "route": per route, one per target (targets of one
     * route that lead to the same upstream share one); NULL entries where
     * the upstream's scope is another or its breaker is off */
    struct gw_breaker_s ***route_breakers;
    const gw_conf_t *w_conf;
    size_t n;
    gw_target_t **route_targets; /* per route: [0] the route's upstream (and subset),
                                  * [1+i] split rule i */
    size_t *nsplits;
    size_t nroutes;
};

typedef enum {
    GW_UP_CONNECT_FAILED = 1, /* the request never left the gateway */
    GW_UP_RESET,              /* closed or reset before any response byte */
    GW_UP_TIMEOUT,
    GW_UP_BAD_RESPONSE,
    GW_UP_TRUNCATED,       /* closed in the middle of the response */
    GW_UP_CONNECT_TIMEOUT, /* never left the gateway either */
    GW_UP_STALE,           /* GW_UP_RESET on a connection reused from the pool:
                              the node may have closed it as idle */
} gw_up_error_t;

struct gw_upconn_s {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_timer_t timer;
    gw_deadline_t dl;
    gw_worker_t *w;
    gw_node_t *node;
    gw_upstream_rt_t *up;
    gw_request_t *req;
    gw_link_t link; /* in the node's idle list */
    llhttp_t parser;
    gw_rbuf_t *rbuf;
    size_t len, pos;
    gw_wqueue_t out;
    int state;
    unsigned reused : 1;
    unsigned reading : 1;
    unsigned head_done : 1;
    unsigned resp_done : 1;
    unsigned got_bytes : 1;
    unsigned reusable : 1;    /* the upstream allows keep-alive */
    unsigned decode_body : 1; /* de-chunk for an HTTP/1.0 client */
    unsigned paused : 1;      /* the client is behind: not reading */
    unsigned in_parse : 1;
    unsigned head_request : 1;
    unsigned needs_eof : 1;
    unsigned is_chunked : 1;
    unsigned closing : 1;
    unsigned held : 1;           /* the response head waits for a plugin */
    unsigned fast : 2;           /* UP_FAST_*: how this response is being read */
    unsigned fast_keepalive : 1; /* the fast path's reading of Connection */
    unsigned char edge;          /* GW_EDGE_*: how epoll reports this socket */
    int64_t remaining;           /* fast path: body bytes still to come */
    int header_state;
    int failed; /* a gw_up_error_t waiting to be reported from the loop */
    int status;
    int64_t content_length;
    gw_header_t headers[GW_MAX_HEADERS];
    size_t nheaders;
    uint64_t requests;
};

gw_upstreams_t *gw_upstreams_new(gw_worker_t *w, char *err, size_t errlen);
void gw_upstreams_free(gw_upstreams_t *u);

gw_target_t *gw_upstreams_target(gw_upstreams_t *u, const gw_route_conf_t *route, int split);

/* The breaker a request to ROUTE's target SPLIT (-1: the route's upstream)
 * asks before a node is picked: the route's or the upstream's, by scope;
 * NULL with scope node or breaker off. */
struct gw_breaker_s *gw_upstreams_breaker(gw_upstreams_t *u, const gw_route_conf_t *route,
                                          int split);

/*
 * Binds a connection to node for request r: an idle pooled one when
 * possible (then *ready is 1 and the caller may send at once), else a new
 * one (then gw_request_on_upstream_ready or gw_request_on_upstream_error
 * follows). Returns NULL only when no connection can be made at all.
 */
gw_upconn_t *gw_upconn_acquire(gw_worker_t *w, gw_upstream_rt_t *up, gw_node_t *node,
                               gw_request_t *r, int *ready);

/* A new connection to node for r, never a pooled one; then as for
 * gw_upconn_acquire's new connections. NULL when the connect cannot start. */
gw_upconn_t *gw_upconn_connect(gw_worker_t *w, gw_upstream_rt_t *up, gw_node_t *node,
                               gw_request_t *r);

/* Writes request bytes. 1: all taken, 0: queued (wait for
 * gw_request_on_upstream_drained), -1: failed (the error callback follows). */
int gw_upconn_write(gw_upconn_t *u, const uv_buf_t *bufs, unsigned n);

/* The request was fully sent: start the read timeout and the response. */
void gw_upconn_request_sent(gw_upconn_t *u);

/* After a held response head: read on, or finish a bodiless response.
 * Until then the head's headers stay valid (the body waits behind them). */
void gw_upconn_continue(gw_upconn_t *u);

/* Flow control from the client side. */
void gw_upconn_pause(gw_upconn_t *u);
void gw_upconn_resume(gw_upconn_t *u);

/* Detaches from the request; pools the connection when it is clean. */
void gw_upconn_release(gw_upconn_t *u, int reuse);

/* Closes every pooled idle connection (worker exit). */
void gw_upstreams_close_idle(gw_upstreams_t *u);

/* Events for the request (implemented in gw_request.c). */
void gw_request_on_upstream_ready(gw_request_t *r);
void gw_request_on_upstream_drained(gw_request_t *r);
void gw_request_on_upstream_error(gw_request_t *r, gw_up_error_t e);
/* 1: go on with the body; 0: hold it (a plugin's header_filter waits)
 * until gw_upconn_continue. */
int gw_request_on_response_head(gw_request_t *r, gw_upconn_t *u);
/* Body bytes to forward as they are; returns 0 when the client is behind. */
int gw_request_on_response_body(gw_request_t *r, const char *data, size_t len);
void gw_request_on_response_done(gw_request_t *r);

#endif
