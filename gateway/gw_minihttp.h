/*
 * A small HTTP/1.1 server for the gateway's own endpoints (the status
 * listener, the admin API): not the proxy path. It adopts a listening
 * socket, serves at most conf.max_conns connections (more are accepted and
 * closed at once), parses requests with llhttp, enforces the limits of
 * gw_minihttp_conf_t, writes one response per request and closes each
 * connection after a lingering read, so that a response in flight is not
 * lost to a reset.
 *
 * A connection serves one request at a time: after a complete request it
 * stops reading until that request's response is written, so a client
 * that pipelines without reading cannot make the worker buffer without
 * bound. With conf.keep_alive the next request on the connection is
 * served after that (bytes read past the request are kept); without it
 * every response closes its connection. A connection is closed after
 * conf.idle_ms without a complete request, or without its response being
 * written.
 *
 * Limits: a request head (request line and headers) over conf.max_head
 * bytes gets 431, a body over conf.max_body gets 413, anything llhttp
 * rejects 400: the user answers those from ops.on_error and the
 * connection closes after the answer.
 *
 * Everything runs on the loop's thread; there is no global state.
 */
#ifndef GW_MINIHTTP_H
#define GW_MINIHTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "gw_log.h"

typedef struct gw_minihttp_s gw_minihttp_t;
typedef struct gw_minihttp_conn_s gw_minihttp_conn_t;

/* A request header the user wants to see, by name (any case). */
typedef struct {
    const char *name;
    size_t max; /* bytes of value kept; a longer value sets `over` */
} gw_minihttp_hdr_t;

/* What a request sent of one asked-for header. */
typedef struct {
    const char *value; /* the last occurrence's value (up to max bytes) */
    size_t len;
    unsigned count; /* occurrences */
    int over;       /* some occurrence was longer than max */
} gw_minihttp_hval_t;

typedef struct {
    int method; /* llhttp_method_t: HTTP_GET, HTTP_POST, ... */
    const char *url;
    size_t url_len;
    int url_too_long;                  /* longer than conf.url_max: url holds what fit */
    const gw_minihttp_hval_t *headers; /* one per conf.headers, in order */
    const char *body;                  /* NULL without body */
    size_t body_len;
} gw_minihttp_req_t;

typedef struct {
    int status;        /* the reason phrase comes from the status */
    const char *type;  /* Content-Type */
    const char *extra; /* more header lines, each ending in CRLF; may be NULL */
    const char *body;  /* may be NULL when body_len is 0 */
    size_t body_len;
    int head_only; /* HEAD: Content-Length of body_len, no body sent */
} gw_minihttp_resp_t;

typedef struct {
    /* A complete request. REQ and what it points to are valid during the
     * call only. Answer with gw_minihttp_respond(), now or later (the
     * connection stays until then, bounded by the idle timeout); with
     * conf.keep_alive the answer must be given during the call. */
    void (*on_request)(gw_minihttp_conn_t *c, const gw_minihttp_req_t *req, void *arg);
    /* A request that cannot be served: STATUS is 400, 413 or 431. Answer
     * with gw_minihttp_respond() during the call; the connection closes
     * after it. */
    void (*on_error)(gw_minihttp_conn_t *c, int status, void *arg);
    /* Optional: C is closing, whether answered or not; it must not be used
     * after this call. */
    void (*on_close)(gw_minihttp_conn_t *c, void *arg);
} gw_minihttp_ops_t;

typedef struct {
    const char *name; /* in log lines and errors: "status", "admin" */
    gw_log_t *log;    /* NULL: standard error */
    size_t max_conns;
    size_t max_head;
    size_t max_body; /* 0: bodies are neither collected nor limited */
    size_t url_max;  /* bytes of URL kept */
    uint64_t idle_ms;
    int backlog;
    int keep_alive;                   /* 0: every response closes its connection */
    int date;                         /* 1: responses carry a Date header */
    int peer;                         /* 1: the peer address is read on accept */
    size_t conn_data;                 /* bytes of per-connection user data (zeroed) */
    const gw_minihttp_hdr_t *headers; /* copied pointer: must outlive the server */
    size_t nheaders;
} gw_minihttp_conf_t;

/**
 * Serves on LISTEN_FD, a listening stream socket; it is duplicated, the
 * caller keeps it. CONF and OPS are copied (CONF->headers is not);
 * ARG is passed to every callback. Returns NULL and fills ERR when the
 * descriptor is not a listening stream socket or libuv refuses it.
 */
gw_minihttp_t *gw_minihttp_start(uv_loop_t *loop, int listen_fd, const gw_minihttp_conf_t *conf,
                                 const gw_minihttp_ops_t *ops, void *arg, char *err, size_t errlen);

/** Draining: every later response closes its connection. */
void gw_minihttp_set_draining(gw_minihttp_t *h, int draining);

/** Closes the listener (the connections stay); idempotent. */
void gw_minihttp_stop_accepting(gw_minihttp_t *h);

/** Connections open now. */
size_t gw_minihttp_nconns(const gw_minihttp_t *h);

/**
 * Stops accepting and closes the connections: every one, or with
 * KEEP_ANSWERED those whose answer is not yet queued (an answer on its way
 * finishes, bounded by its timers). H is freed and done(arg) called (done
 * may be NULL) once every handle is closed; H must not be used after this
 * call.
 */
void gw_minihttp_close(gw_minihttp_t *h, int keep_answered, void (*done)(void *arg), void *arg);

/**
 * Queues the response to C's current request; the response is copied.
 * Ignored once C has answered it or is closing. The connection closes after
 * it unless keep-alive applies (conf.keep_alive, the client's wish, not
 * draining, no error).
 */
void gw_minihttp_respond(gw_minihttp_conn_t *c, const gw_minihttp_resp_t *r);

/** Sets C's timeout to MS from now (a request that takes long to answer). */
void gw_minihttp_conn_timeout(gw_minihttp_conn_t *c, uint64_t ms);

/** C's peer address ("unknown" when it could not be read, or without conf.peer). */
const char *gw_minihttp_conn_peer(const gw_minihttp_conn_t *c);

/** C's user data: conf.conn_data bytes, zeroed on accept, owned by C. */
void *gw_minihttp_conn_data(gw_minihttp_conn_t *c);

#endif
