/*
 * Downstream HTTP/1.1 connections: accept, read, llhttp (strict) plus the
 * gateway's own framing checks, keep-alive, pipelining (one request at a
 * time, answers in order), limits and client timeouts, and the write path
 * to the client with back-pressure. It owns HTTP/1.1 on the wire: the
 * requests it starts answer through its gw_conn_ops_t (gw_request.h),
 * which turns response heads given as data into bytes and frames bodies
 * (Content-Length as given, chunked, or until close).
 *
 * Buffers: a connection holds a read buffer only while it has unparsed
 * bytes or a request in flight, so an idle keep-alive connection costs the
 * struct below and nothing else. The current request's head stays at the
 * start of the buffer until the request ends; its header slices point
 * into it.
 */
#ifndef GW_HTTP1_H
#define GW_HTTP1_H

#include <llhttp.h>
#include <uv.h>

#include "gw_deadline.h"
#include "gw_http.h"
#include "gw_worker.h" /* cycle: c->w, its read buffers and connection list; the worker
                        * accepts and drains connections */
#include "gw_wqueue.h"

enum {
    GW_CONN_S_IDLE = 0, /* between requests (keep-alive) */
    GW_CONN_S_HEAD,     /* reading a request head */
    GW_CONN_S_BODY,     /* head done; request in flight, body maybe pending */
    GW_CONN_S_CLOSING,
};

struct gw_conn_s {
    uv_tcp_t tcp;
    gw_worker_t *w;
    gw_link_t link;
    uv_timer_t timer; /* client_header, client_body, keepalive */
    gw_deadline_t dl;
    llhttp_t parser;
    gw_rbuf_t *rbuf;
    size_t len; /* bytes in rbuf */
    size_t pos; /* bytes handed to llhttp */
    size_t head_start;
    gw_request_t *req;
    int state;
    unsigned reading : 1;   /* uv_read_start is active */
    unsigned keepalive : 1; /* client wants and may keep the connection */
    unsigned closing : 1;
    unsigned body_paused : 1; /* llhttp paused in the body: upstream is behind */
    unsigned close_after : 1; /* close once the current response is written */
    unsigned in_parse : 1;
    unsigned buffering : 1; /* holding the body until it is whole or fills the buffer */
    unsigned dry_run : 1;   /* llhttp is only validating buffered body bytes */
    unsigned dry_complete : 1;
    unsigned ext_name_seen : 1;
    gw_buf_t *collect;   /* a dry run copies body bytes here */
    int user_status;     /* what an HPE_USER from a callback means */
    int mstate;          /* gateway_connections{state}: reading, writing or idle */
    unsigned failed : 1; /* a write failed: close from the next loop turn */
    size_t dry_received;
    llhttp_t body_parser;      /* the parser as it stood at the end of the head */
    gw_wqueue_t out;           /* bytes waiting for the socket */
    uint64_t head_deadline_ms; /* client_header: absolute, not reset by trickling */
    unsigned requests;
    unsigned char edge; /* GW_EDGE_*: how epoll reports this socket */
    /* TLS listeners: the session between the socket and rbuf/out (gw_tls.h) */
    struct gw_tls_conn_s *tls;
    unsigned tls_pumping : 1; /* decrypting into rbuf; a nested call only asks again */
    unsigned tls_again : 1;
    /* the current response (one at a time) */
    unsigned resp_started : 1; /* its head went to send_head */
    unsigned head_pending : 1; /* its head waits to go out with the first body bytes */
    unsigned rechunk : 1;      /* its body goes out in chunks the gateway frames */
    unsigned head_only : 1;    /* a HEAD request: no body goes out */
    char remote_ip[48];
    unsigned char remote_ip_len;
};

/* The connection came over TLS (X-Forwarded-Proto, gw.var.scheme). */
static inline int
gw_conn_is_tls(const gw_conn_t *c)
{
    return c != NULL && c->tls != NULL;
}

/* The verified client certificate's subject (mTLS), or an empty string. */
gw_str_t gw_conn_tls_client_dn(const gw_conn_t *c);

/* The listener callback. */
void gw_http1_on_connection(uv_stream_t *server, int status);

/*
 * Writes to the client: tries the socket at once and keeps only what it
 * did not take (copied). Returns 1 when everything went out, 0 when some
 * is queued (the caller should stop reading its source until
 * gw_request_on_client_drained), -1 when the connection is closing.
 */
int gw_conn_write(gw_conn_t *c, const uv_buf_t *bufs, unsigned n);

/* Closes the connection; a request in flight ends (gw_request_end). */
void gw_conn_close(gw_conn_t *c);

#endif
