/*
 * Upstreams as one worker runs them: nodes with their keep-alive pools,
 * balancer targets (an upstream, or a subset of its nodes chosen by a
 * route or a canary rule), and upstream connections: connect, send, read and parse
 * the response (llhttp, strict), with connect/send/read timeouts.
 *
 * A Content-Length body is passed through as the bytes the upstream sent,
 * so the common case copies nothing; a chunked body is decoded here when
 * the user asks (GW_UP_READ_DECODED) and re-framed by the user, so no
 * upstream framing reaches a client.
 *
 * A connection knows nothing of what uses it: it reports through a table
 * of callbacks (as h2o's httpclient does) and takes what it needs of the
 * exchange as plain data (gw_upconn_user_t). The user acquires and
 * releases it; the connection never drops its user by itself.
 */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include <llhttp.h>
#include <uv.h>

#include "gw_core.h"
#include "gw_deadline.h"
#include "gw_health.h"
#include "gw_http.h"
#include "gw_node.h"
#include "gw_rbuf.h"
#include "gw_wqueue.h"

typedef struct gw_upstream_rt_s gw_upstream_rt_t;
typedef struct gw_target_s gw_target_t;
typedef struct gw_upstreams_s gw_upstreams_t;
typedef struct gw_log_s gw_log_t;

/* What the upstreams take from the worker that runs them: the worker
 * hands it over as plain data, so this module needs nothing of it. */
typedef struct {
    uv_loop_t *loop;
    const gw_conf_t *conf;
    gw_log_t *log;
    gw_metrics_t *metrics;
    int slot;
    uint64_t seed;           /* the balancers' and health checks' randomness */
    gw_rbuf_pool_t *rbufs;   /* read buffers, shared with the client side */
    struct gw_shstate_s *sh; /* state shared by the workers; NULL: each its own */
    uint64_t *reads;         /* bumped per read with bytes: how dense traffic is */
} gw_upstreams_env_t;

struct gw_target_s {
    gw_upstream_rt_t *up;
    gw_balancer_t *bal;
    gw_node_t **nodes;
    size_t nnodes;
    const gw_kv_t *subset; /* the meta its nodes match; none: every node */
    size_t nsubset;
};

struct gw_upstream_rt_s {
    gw_upstreams_t *set; /* the worker's upstreams, this one among them */
    const gw_upstream_conf_t *conf;
    gw_node_t **nodes; /* each allocated alone: a registry change frees some */
    size_t nnodes;
    uint64_t disc_version; /* discovery: the list version in use */
    int disc_known;        /* discovery: a list was ever applied */
    gw_target_t all;
    gw_health_t *health;          /* NULL when the upstream has no health checks */
    struct gw_breaker_s *breaker; /* scope "upstream" */
    struct gw_tls_client_s *tls;  /* scheme https; NULL: plain HTTP */
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
    uv_loop_t *loop;
    gw_log_t *log;
    gw_rbuf_pool_t *rbufs;
    uint64_t *reads;
    gw_link_t retired; /* removed nodes still referenced: their shared slots stay touched */
    struct gw_tls_stores_s *tls_stores; /* the https upstreams' CA stores, shared */
    int draining;                       /* no connection goes back to a pool any more */
    struct gw_shstate_s *sh;            /* NULL: no shared state */
};

typedef struct gw_upconn_s gw_upconn_t;

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

/* A response head as the node sent it, interim (1xx) ones dropped. */
typedef struct {
    int status;
    unsigned chunked : 1;     /* the node frames the body in chunks */
    unsigned until_close : 1; /* the body ends when the node closes */
    size_t nheaders;
    /* slices of the connection's read buffer: valid in on_head, and while
     * the head is held, until gw_upconn_continue */
    gw_header_t headers[GW_MAX_HEADERS];
} gw_up_head_t;

/* on_head's answer, and gw_upconn_continue's argument after a hold. */
enum {
    GW_UP_HOLD = 0,         /* the user decides later (gw_upconn_continue) */
    GW_UP_READ = 1,         /* body bytes as the node framed them */
    GW_UP_READ_DECODED = 2, /* body bytes with the chunk framing taken off */
};

/*
 * What a connection reports to its user. One static const table per kind
 * of user; every call gets the user's pointer. Calls come from the loop,
 * or from the user's own gw_upconn_continue and gw_upconn_resume (bytes
 * already read are handed on at once); never after the release.
 */
typedef struct {
    void (*on_ready)(void *user);   /* connected: the request may be written */
    void (*on_drained)(void *user); /* what was queued has been written */
    /* GW_UP_HOLD, GW_UP_READ or GW_UP_READ_DECODED */
    int (*on_head)(void *user, const gw_up_head_t *head);
    /* Body bytes; 0 when the user is behind (the connection stops reading
     * until gw_upconn_resume). */
    int (*on_body)(void *user, const char *data, size_t len);
    void (*on_done)(void *user); /* the response is complete */
    /* The connection is closed and useless: the user releases it. */
    void (*on_error)(void *user, gw_up_error_t e);
} gw_upconn_cb_t;

/* Who uses a connection, and what the connection must know of the
 * exchange: filled by the user for each acquire. */
typedef struct {
    const gw_upconn_cb_t *cb;
    void *user;
    unsigned head_request : 1; /* HEAD: a response without a body, whatever its head says */
    unsigned idempotent : 1;   /* may go out on a pooled connection without a look at it */
    unsigned body_follows : 1; /* body bytes follow the head: the send timeout runs */
} gw_upconn_user_t;

struct gw_upconn_s {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_timer_t timer;
    gw_deadline_t dl;
    gw_upstreams_t *set;
    gw_node_t *node;
    gw_upstream_rt_t *up;
    const gw_upconn_cb_t *cb;
    void *user;     /* NULL once released */
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
    unsigned decode_body : 1; /* the user wants the body de-chunked */
    unsigned paused : 1;      /* the user is behind: not reading */
    unsigned in_parse : 1;
    unsigned head_request : 1;
    unsigned closing : 1;
    unsigned held : 1;           /* the response head waits for a plugin */
    unsigned fast : 2;           /* UP_FAST_*: how this response is being read */
    unsigned fast_keepalive : 1; /* the fast path's reading of Connection */
    unsigned char edge;          /* GW_EDGE_*: how epoll reports this socket */
    int64_t remaining;           /* fast path: body bytes still to come */
    int header_state;
    int failed; /* a gw_up_error_t waiting to be reported from the loop */
    int64_t content_length;
    uint64_t requests;
    gw_up_head_t head;
    /* https: the session under the socket (NULL: plain), and a read
     * buffer for the ciphertext, held only inside a read callback */
    struct gw_tlsc_s *tls;
    gw_rbuf_t *tls_in;
    unsigned drain_wanted : 1; /* https: a write returned 0, on_drained is owed */
};

gw_upstreams_t *gw_upstreams_new(const gw_upstreams_env_t *env, char *err, size_t errlen);
void gw_upstreams_free(gw_upstreams_t *u);

/* Once a second: keeps this worker's shared slots alive and lets health
 * pick up what other workers changed. */
void gw_upstreams_tick(gw_upstreams_t *u);

/* The worker drains: connections are closed when their exchange ends. */
void gw_upstreams_drain(gw_upstreams_t *u);

/*
 * Discovery: replaces the nodes of upstream INDEX with ENTRIES[0..N). A
 * node whose address is in both lists is kept as it is (its balancer
 * state, EWMA, in-flight count, health, breaker and idle connections);
 * new ones start healthy; removed ones leave every balancer at once, their
 * idle connections close, and they are freed when the last request or
 * connection using them lets go. Targets with a subset are recomputed.
 * Returns GW_OK, or GW_ERROR (out of memory) leaving the old list.
 */
struct gw_disc_entry_s;
int gw_upstreams_set_nodes(gw_upstreams_t *u, size_t index, const struct gw_disc_entry_s *entries,
                           size_t n);

/* A request or a connection starts or stops pointing at NODE. */
void gw_node_ref(gw_node_t *node);
void gw_node_unref(gw_node_t *node);

gw_target_t *gw_upstreams_target(gw_upstreams_t *u, const gw_route_conf_t *route, int split);

/* The breaker a request to ROUTE's target SPLIT (-1: the route's upstream)
 * asks before a node is picked: the route's or the upstream's, by scope;
 * NULL with scope node or breaker off. */
struct gw_breaker_s *gw_upstreams_breaker(gw_upstreams_t *u, const gw_route_conf_t *route,
                                          int split);

/*
 * Binds a connection to node for a user: an idle pooled one when possible
 * (then *ready is 1 and the user may send at once), else a new one (then
 * on_ready or on_error follows). Returns NULL only when no connection can
 * be made at all.
 */
gw_upconn_t *gw_upconn_acquire(gw_upstream_rt_t *up, gw_node_t *node, const gw_upconn_user_t *user,
                               int *ready);

/* A new connection to node, never a pooled one; then as for
 * gw_upconn_acquire's new connections. NULL when the connect cannot start. */
gw_upconn_t *gw_upconn_connect(gw_upstream_rt_t *up, gw_node_t *node, const gw_upconn_user_t *user);

/* Writes request bytes. 1: all taken, 0: queued (wait for on_drained),
 * -1: failed (on_error follows from the loop). */
int gw_upconn_write(gw_upconn_t *u, const uv_buf_t *bufs, unsigned n);

/* The request was fully sent: start the read timeout and the response. */
void gw_upconn_request_sent(gw_upconn_t *u);

/* After a held response head: read on (HOW: GW_UP_READ or
 * GW_UP_READ_DECODED), or finish a bodiless response. Until then the
 * head's headers stay valid (the body waits behind them). */
void gw_upconn_continue(gw_upconn_t *u, int how);

/* Flow control from the user's side. */
void gw_upconn_pause(gw_upconn_t *u);
void gw_upconn_resume(gw_upconn_t *u);

/* Detaches from its user, who hears nothing more of it; pools the
 * connection when it is clean and REUSE allows, else closes it. */
void gw_upconn_release(gw_upconn_t *u, int reuse);

/* Closes every pooled idle connection (worker exit). */
void gw_upstreams_close_idle(gw_upstreams_t *u);

#endif
