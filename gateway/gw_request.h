/*
 * The request object and the phase machine that drives one request from
 * its parsed head to the end of the response. One field, r->phase, says
 * where a request is; one function in gw_request.c (advance) moves it on:
 *
 *   HEAD -> ACCESS -> UPSTREAM -> UP_HEAD -> BODY -> LOG -> DONE
 *                \________\__________\-> OWN -> BODY (a response the
 *                                              gateway makes)
 *
 * The request never writes bytes for the client: its connection does,
 * through the table of operations below (gw_conn_ops_t), given the
 * response head as data (status and header list). HTTP/1.1 is one such
 * connection (gw_http1.c); one that carries many requests at a time
 * (HTTP/2) can serve the same request code.
 *
 * Ownership:
 * - gw_request_new: the worker's pool lends an object to a connection,
 *   which gives it back with gw_request_end (the only way a request ends;
 *   the object is freed, here or after a log phase that waits, in one
 *   place: request_free).
 * - the header and URL slices point into the connection's buffer until
 *   gw_request_end; a request that outlives its connection copies them.
 * - gw_request_alloc / gw_request_strdup: memory that lives as long as the
 *   request (its arena, else the heap); the caller never frees it.
 * - r->up, the node's connection, is acquired and released in gw_request.c
 *   alone.
 * - gw_conn_ops_t: what the request passes (the head and its field lists,
 *   body bytes) is read during the call only; the connection copies what
 *   it keeps. The connection owns r->conn; the request never frees it.
 * - gw_request_add_resp_header copies name and value into the request.
 *
 * Request objects come from a per-worker free list and carry a small
 * arena, so the steady state allocates nothing per request.
 */
#ifndef GW_REQUEST_H
#define GW_REQUEST_H

#include <uv.h>

#include "gw_config.h"
#include "gw_http.h"
#include "gw_lua.h" /* r->lua, the plugins' state, is embedded */
#include "gw_router.h"
#include "gw_worker.h" /* cycle: r->w is the worker whose runtime the phases use (router,
                        * upstreams, metrics, clock); the worker closes the request pool */

#define GW_MAX_TRIES 8
#define GW_ARENA_SIZE 4096

typedef struct gw_upconn_s gw_upconn_t;
typedef struct gw_target_s gw_target_t;

typedef enum {
    GW_ERR_NONE = 0,
    GW_ERR_NOT_FOUND,
    GW_ERR_NO_NODE,
    GW_ERR_TIMEOUT,
    GW_ERR_UPSTREAM,
    GW_ERR_PLUGIN,
    GW_ERR_LIMITED,      /* a rate limiter refused it: 429 */
    GW_ERR_BREAKER_OPEN, /* the breaker dropped it: 503 */
    GW_ERR_REFUSED,      /* a plugin refused it with gw.exit_error */
} gw_err_kind_t;

/* Where a request is; advance() in gw_request.c moves it on. */
typedef enum {
    GW_RQ_HEAD = 0, /* the connection reads the head (and maybe the body) */
    GW_RQ_ACCESS,   /* routed; rewrite and access plugins run (may wait) */
    GW_RQ_UPSTREAM, /* split, breaker, budget; a node is picked, connected, sent to */
    GW_RQ_UP_HEAD,  /* the node's head: its error phase and header_filter (may wait) */
    GW_RQ_OWN,      /* a response the gateway makes: error phase, header_filter */
    GW_RQ_BODY,     /* the head went to the connection; the body follows */
    GW_RQ_LOG,      /* the response is out: metrics, access log, log phase (may wait) */
    GW_RQ_DONE,     /* logged: the connection lets go (gw_request_end) */
} gw_rq_phase_t;

/* ---- what a request asks of its connection ---- */

/* How the body after a response head is delimited. */
enum {
    GW_BODY_AS_IS,  /* as the header list says (its Content-Length, or none) */
    GW_BODY_LENGTH, /* content_length bytes: the connection writes the length (and Date) */
    GW_BODY_STREAM, /* length unknown: the connection frames it (HTTP/1.1: chunked) */
};

/* A response head as data. The connection drops what is hop-by-hop (and
 * the fields a Connection header names), writes X-Request-Id from
 * request_id and Date when the list has none, and adds its own framing. */
typedef struct {
    int status;
    const gw_header_t *headers; /* the response's fields; an empty name is skipped */
    size_t nheaders;
    const gw_header_t *extra; /* fields the gateway adds (limiters, gw.resp.add_header) */
    size_t nextra;
    gw_str_t request_id;
    int64_t content_length;   /* GW_BODY_LENGTH */
    unsigned framing : 2;     /* GW_BODY_* */
    unsigned until_close : 1; /* the body ends when the node closes (as-is framing) */
    unsigned close : 1;       /* the client's connection ends after this response */
} gw_resp_head_t;

/*
 * A connection's operations, one static table per protocol; every call
 * is about request R (r->conn is the connection, opaque to the request).
 * Writes take what the socket does not and keep it until written.
 */
typedef struct gw_conn_ops_s {
    /* The response head; the body follows through send_body (the head may
     * wait to go out with its first bytes). */
    void (*send_head)(gw_request_t *r, const gw_resp_head_t *h);
    /* Body bytes, LAST on the final call (LEN may be 0). 1: all out, 0:
     * queued (gw_request_on_client_drained follows), -1: the connection
     * is failing (it ends the request from the loop). */
    int (*send_body)(gw_request_t *r, const char *data, size_t len, int last);
    /* Takes back a head nothing of which reached the client yet: 1 when
     * it did (a clean error may follow instead), 0 when too late. */
    int (*unsend_head)(gw_request_t *r);
    /* Cuts the response: the only honest signal once a head is out. */
    void (*abort)(gw_request_t *r);
    /* The request is logged and over: the connection moves on and ends r
     * (gw_request_end), now or once its bytes are written. */
    void (*finish)(gw_request_t *r);
    /* The request body: the node takes (more of) it. */
    void (*resume_body)(gw_request_t *r);
    /* The whole request body, as the client sent it, into out: GW_OK,
     * GW_DECLINED when it is too large to hold (it will be streamed),
     * GW_ERROR when none is pending. */
    int (*read_body)(gw_request_t *r, gw_buf_t *out);
} gw_conn_ops_t;

struct gw_request_s {
    gw_request_t *next_free;
    gw_worker_t *w;
    gw_conn_t *conn; /* the connection's own: the request only hands it back to cops */
    const gw_conn_ops_t *cops;
    gw_rq_phase_t phase;
    uint64_t start_ns;

    /* head, as parsed (slices into the connection buffer) */
    gw_str_t method;
    gw_str_t url;
    size_t nheaders;
    int header_state; /* 0 none, 1 in a name, 2 in a value, 3 after a value */
    unsigned http_major, http_minor;
    int64_t content_length; /* -1: none */
    unsigned chunked : 1;
    unsigned expect_continue : 1;
    unsigned has_body : 1;
    unsigned body_done : 1; /* the whole request body was read */
    unsigned idempotent : 1;
    unsigned close_conn : 1; /* the client's connection ends after the response */
    size_t body_received;

    gw_req_view_t view;
    gw_str_t host_header;
    gw_str_t request_id;
    gw_str_t traceparent;
    gw_str_t xff;

    const gw_route_conf_t *route;
    size_t nparams; /* the route's :params, in params[] */
    gw_target_t *target;
    gw_node_t *node;
    gw_node_t *tried[GW_MAX_TRIES];
    unsigned ntried;
    unsigned ndropped;        /* nodes whose breaker (scope node) dropped this request */
    struct gw_breaker_s *brk; /* the route or upstream breaker that let it pass */
    unsigned brk_pending : 1; /* brk waits for this request's outcome */
    unsigned reconnected : 1; /* sent again once on a new connection (stale pooled one) */
    gw_upconn_t *up;
    uint64_t up_start_ns;
    uint64_t up_latency_ns; /* connect to response end of the last attempt */

    int status;    /* status sent to the client */
    int up_status; /* status the upstream answered, 0 if none */
    uint64_t bytes_sent;
    gw_err_kind_t err;
    int budget_active;

    unsigned path_set : 1; /* a plugin set the upstream path */
    size_t nvars;
    size_t nresp_hdrs; /* resp_hdrs in use */
    size_t cap_resp_hdrs;
    gw_header_t *resp_hdrs;   /* fields every response of r gets (limiters): the arena */
    int fail_status;          /* the error the error phase may replace */
    const char *fail_message; /* a constant, or a plugin's (in the request's arena) */
    void *extra;              /* allocations the arena could not hold */

    /* not cleared between requests: only [0, nheaders) is meaningful */
    gw_header_t headers[GW_MAX_HEADERS];
    /* [0, nparams): values are slices of the path as routed */
    gw_param_t params[GW_MAX_PARAMS];
    gw_header_t vars[16]; /* variables plugins set: var:NAME */
    gw_lua_req_t lua;     /* plugins' state: gw_lua_req_reset per request */
    uv_timer_t budget;    /* route timeout */

    gw_buf_t uphead; /* the head sent upstream; reused across requests */
    gw_buf_t wire;   /* the connection's: the response head as it goes out */
    char arena[GW_ARENA_SIZE];
    size_t arena_used;
};

/* A request for connection C (answered through OPS), from the worker's
 * pool; REMOTE_IP is copied when the request outlives C. */
gw_request_t *gw_request_new(gw_worker_t *w, gw_conn_t *c, const gw_conn_ops_t *ops,
                             gw_str_t remote_ip);
/* The connection is done with r, answered or not (the client went away:
 * r abandons its upstream side and logs). r goes back to the pool, here or,
 * when its log phase waits, once that ends (r then outlives its
 * connection). The only way a request ends. */
void gw_request_end(gw_request_t *r);
/* Frees the worker's idle request objects (the worker's exit). */
void gw_request_pool_close(gw_worker_t *w);

/* Arena allocation; falls back to NULL when full (callers answer 431/500). */
void *gw_request_alloc(gw_request_t *r, size_t n);
/* A copy that lives as long as the request: the arena, else the heap. */
char *gw_request_strdup(gw_request_t *r, const char *p, size_t n);

/* For the plugins' API (gw_lua_api.c), which sees neither connection nor
 * upstream: the request body as the client sent it (cops->read_body's
 * returns), the name of the upstream chosen (NULL before the split), and
 * a field every response of r gets (copied into r). */
int gw_request_read_body(gw_request_t *r, gw_buf_t *out);
const char *gw_request_upstream_name(const gw_request_t *r);
void gw_request_add_resp_header(gw_request_t *r, gw_str_t name, gw_str_t value);

/* ---- events from the connection ---- */

/* The head is parsed and checked: the phases start. */
void gw_request_on_head(gw_request_t *r);
/* Body bytes (de-chunked). Returns 1 to continue, 0 when the upstream is
 * behind (the caller pauses the body until cops->resume_body). */
int gw_request_on_body(gw_request_t *r, const char *data, size_t len);
void gw_request_on_body_done(gw_request_t *r);
/* What send_body queued is written. */
void gw_request_on_client_drained(gw_request_t *r);
/* The connection found the request bad (parse error, timeout): the
 * gateway answers STATUS (JSON envelope, error phase), or cuts a response
 * already started. */
void gw_request_fail(gw_request_t *r, int status, const char *message);

/* Has a response head gone to the connection? */
static inline int
gw_request_responding(const gw_request_t *r)
{
    return r->phase >= GW_RQ_BODY;
}

#endif
