/*
 * The request object and the phase machine that drives one request from
 * its parsed head to the end of the response:
 *
 *   head -> normalise -> route -> split -> balance -> connect/reuse ->
 *   send head + stream body -> response head -> stream body -> log
 *
 * Request objects come from a per-worker free list and carry a small
 * arena, so the steady state allocates nothing per request.
 */
#ifndef GW_REQUEST_H
#define GW_REQUEST_H

#include <uv.h>

#include "gw_config.h"
#include "gw_http.h"
#include "gw_lua.h" /* cycle: r->lua, the plugins' state, is embedded */
#include "gw_router.h"
#include "gw_worker.h" /* cycle: users of r read the worker through r->w */

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

struct gw_request_s {
    gw_request_t *next_free;
    gw_worker_t *w;
    gw_conn_t *conn;
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
    unsigned head_sent : 1;        /* response head written to the client */
    unsigned resp_done : 1;        /* response fully written */
    unsigned upstream_started : 1; /* some of the request may have reached a node */
    unsigned finished : 1;
    unsigned client_gone : 1;
    unsigned body_bytes_sent : 1; /* upstream got at least one body byte */
    unsigned head_pending : 1;    /* response head built, waiting to go out with body bytes */
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

    unsigned path_set : 1;    /* a plugin set the upstream path */
    unsigned log_waiting : 1; /* the log phase waits: the request may outlive its connection */
    void (*log_done)(gw_request_t *r,
                     int status); /* the connection's, for a log phase that waits */
    unsigned rechunk : 1;         /* the client gets the (filtered) body as chunks */
    size_t nvars;
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
    gw_buf_t resp_extra;  /* "Name: value\r\n" lines every response of r gets (limiters) */

    gw_buf_t uphead; /* the head sent upstream; reused across requests */
    char arena[GW_ARENA_SIZE];
    size_t arena_used;
};

/* Free-list management (the worker owns the objects). */
gw_request_t *gw_request_new(gw_worker_t *w, gw_conn_t *c);
/* The connection is done with r, answered or not (the client went away:
 * r abandons its upstream side and logs). r goes back to the pool, here or,
 * when its log phase waits, once that ends (r then outlives its
 * connection). The only way a request ends. */
void gw_request_end(gw_request_t *r);
void gw_request_pool_close(gw_worker_t *w);

/* Arena allocation; falls back to NULL when full (callers answer 431/500). */
void *gw_request_alloc(gw_request_t *r, size_t n);
/* A copy that lives as long as the request: the arena, else the heap. */
char *gw_request_strdup(gw_request_t *r, const char *p, size_t n);

/* For the plugins' API (gw_lua_api.c), which sees neither connection nor
 * upstream: the request body as the client sent it (gw_conn_read_body's
 * returns), and the name of the upstream chosen (NULL before the split). */
int gw_request_read_body(gw_request_t *r, gw_buf_t *out);
const char *gw_request_upstream_name(const gw_request_t *r);

/* Phase entry points called by the downstream side. */
void gw_request_on_head(gw_request_t *r);
/* Body bytes (de-chunked). Returns 1 to continue, 0 when the upstream is
 * behind (the caller pauses the body until gw_conn_resume_body). */
int gw_request_on_body(gw_request_t *r, const char *data, size_t len);
void gw_request_on_body_done(gw_request_t *r);
void gw_request_on_client_drained(gw_request_t *r);

/* Ends the request with an error the gateway makes (JSON envelope). */
void gw_request_fail(gw_request_t *r, int status, const char *message);

/* Called by the downstream side once the response is out: metrics, the
 * access log, then the plugins' log phase. GW_AGAIN: a plugin waits;
 * done(r, status) follows unless the connection ended r meanwhile
 * (done NULL: the phase may not wait). */
int gw_request_log(gw_request_t *r, void (*done)(gw_request_t *r, int status));

#endif
