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
#include "gw_router.h"
#include "gw_worker.h"

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

    /* Lua plugins (gw_lua.c); lua_phases 0: this request never enters the VM */
    unsigned lua_phases;
    int lua_co_ref; /* the running coroutine, 0 when none */
    void (*lua_done)(gw_request_t *r, int status);
    int lua_exit_status; /* a plugin ended the request with this status */
    const char *lua_exit_ctype;
    unsigned lua_waiting : 1; /* the coroutine waits for a timer or a response */
    unsigned path_set : 1;    /* a plugin set the upstream path */
    unsigned in_error_phase : 1;
    unsigned in_header_filter : 1;
    unsigned log_waiting : 1; /* the log phase waits: the request may outlive its connection */
    unsigned bf_busy : 1;     /* a body_filter call waits */
    unsigned bf_end : 1;      /* the upstream body ended; the eof call is due */
    unsigned bf_eof_running : 1;
    unsigned rechunk : 1; /* the client gets the (filtered) body as chunks */
    void *lua_limit;      /* a limiter's Redis answer being waited for */
    void *lua_redis;      /* gw.redis: the wait, then its reply */
    int lua_limit_route;  /* metrics: route and limiter kind of that wait */
    int lua_limit_which;
    int lua_limit_id;
    int lua_limit_flags;
    int64_t lua_limit_res[6]; /* the finished answer, for the Lua side */
    void *lua_http;           /* gw.http.request: the wait, then its result */
    void *lua_http_req;       /* the gw_httpc_req_t being waited for */
    unsigned lua_http_done : 1;
    size_t nvars;
    size_t nrhdrs; /* response headers copied for header_filter */
    int status_override;
    int fail_status;          /* the error the error phase may replace */
    int own_status;           /* a gateway-made response waiting for header_filter */
    const char *fail_message; /* a constant, or a plugin's (in the request's arena) */
    void *extra;              /* allocations the arena could not hold */

    /* not cleared between requests: only [0, nheaders) is meaningful */
    gw_header_t headers[GW_MAX_HEADERS];
    /* [0, nparams): values are slices of the path as routed */
    gw_param_t params[GW_MAX_PARAMS];
    gw_header_t vars[16]; /* variables plugins set: var:NAME */
    gw_header_t *rhdrs;   /* GW_MAX_HEADERS slots, allocated on first use */
    int lua_ctx_ref;      /* registry slot of ctx, kept across requests */
    int lua_ctx_fresh;    /* the slot holds this request's (or an unused) table */
    uv_timer_t budget;    /* route timeout */
    uv_timer_t lua_timer; /* gw.sleep */
    gw_buf_t lua_exit_body;
    gw_buf_t lua_exit_headers; /* "Name: value\r\n" lines */
    gw_buf_t lua_scratch;      /* body_filter output */
    gw_buf_t bf_in;            /* body bytes waiting for body_filter */
    gw_buf_t bf_chunk;         /* the chunk body_filter works on */
    gw_buf_t resp_extra;       /* "Name: value\r\n" lines every response of r gets (limiters) */

    gw_buf_t uphead; /* the head sent upstream; reused across requests */
    char arena[GW_ARENA_SIZE];
    size_t arena_used;
};

/* Free-list management (the worker owns the objects). */
gw_request_t *gw_request_new(gw_worker_t *w, gw_conn_t *c);
void gw_request_free(gw_request_t *r);
/* The connection goes away while r still runs (a waiting log phase): r
 * takes copies of what pointed into the connection's buffer. */
void gw_request_detach(gw_request_t *r);
void gw_request_pool_close(gw_worker_t *w);

/* Arena allocation; falls back to NULL when full (callers answer 431/500). */
void *gw_request_alloc(gw_request_t *r, size_t n);
/* A copy that lives as long as the request: the arena, else the heap. */
char *gw_request_strdup(gw_request_t *r, const char *p, size_t n);

/* Phase entry points called by the downstream side. */
void gw_request_on_head(gw_request_t *r);
/* Body bytes (de-chunked). Returns 1 to continue, 0 when the upstream is
 * behind (the caller pauses the body until gw_conn_resume_body). */
int gw_request_on_body(gw_request_t *r, const char *data, size_t len);
void gw_request_on_body_done(gw_request_t *r);
void gw_request_on_client_drained(gw_request_t *r);
/* The client connection failed or closed: abandon the upstream side and
 * any Lua phase that waits; log. A log phase that waits returns with
 * log_waiting set and calls log_done when it ends: the caller detaches the
 * request meanwhile (gw_request_detach). */
void gw_request_on_client_gone(gw_request_t *r, void (*log_done)(gw_request_t *, int));

/* Ends the request with an error the gateway makes (JSON envelope). */
void gw_request_fail(gw_request_t *r, int status, const char *message);

/* Called by the downstream side once the response is out: metrics, the
 * access log, then the plugins' log phase. GW_AGAIN: a plugin waits;
 * done(r, status) follows (done NULL: the phase may not wait). */
int gw_request_log(gw_request_t *r, void (*done)(gw_request_t *r, int status));

#endif
