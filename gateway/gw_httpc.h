/*
 * A small asynchronous HTTP/1.1 client on libuv and llhttp, for the Lua
 * API (gw.http.request), active health checks and registry discovery.
 *
 * One connection per request, closed at the end (`Connection: close`); no
 * pooling, no redirects; https:// over a TLS session (gw_tls_client) with
 * the caller's context: verification, CA and client certificate are the
 * caller's settings, never a default of this module. The whole response is collected in memory
 * (headers copied, body in a growable buffer capped by max_body), which
 * suits the small control-plane answers this client is meant for; proxied
 * traffic goes through gw_upstream instead. A streamed request (`on_body`)
 * hands the body over as it arrives instead, for answers that never end
 * (an etcd watch).
 *
 * One loop, one thread: a request belongs to the loop it was started on
 * and every function here must be called from that loop's thread.
 */
#ifndef GW_HTTPC_H
#define GW_HTTPC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "gw_core.h"

typedef struct gw_tls_client_s gw_tls_client_t;

/* The codes the callback receives in ERR; ERRMSG says more. */
#define GW_HTTPC_ECANCELED -1 /* gw_httpc_cancel(): "cancelled" */
#define GW_HTTPC_ETIMEDOUT -2 /* timeout_ms spent: "timeout" */
#define GW_HTTPC_EDNS -3      /* the host name did not resolve */
#define GW_HTTPC_ECONNECT -4  /* refused, unreachable: nothing was sent */
#define GW_HTTPC_ERESET -5    /* reset or closed before the response was complete */
#define GW_HTTPC_EBADRESP -6  /* the peer's bytes are not a valid HTTP/1.x response */
#define GW_HTTPC_ETOOLARGE -7 /* body over max_body, or headers over 64 KiB */
#define GW_HTTPC_EINTERNAL -8 /* out of memory or another local failure */

#define GW_HTTPC_DEFAULT_TIMEOUT_MS 5000
#define GW_HTTPC_DEFAULT_MAX_BODY (8u * 1024 * 1024)

typedef struct gw_httpc_req_s gw_httpc_req_t;

/**
 * A response, handed to the callback. Everything it points to (header
 * slices, body) belongs to the request and is valid only while the
 * callback runs: copy what must outlive it.
 *
 * Header names and values are slices in the order received, repeated
 * names kept; they are not NUL-terminated. BODY is the decoded body (chunk
 * framing removed), never NULL, followed by a NUL byte that BODY_LEN does
 * not count, so a text body can be used as a C string. Informational (1xx)
 * responses are skipped; HEAD responses have an empty body.
 */
typedef struct {
    int status;
    gw_header_t *headers;
    size_t nheaders;
    const char *body;
    size_t body_len;
} gw_httpc_resp_t;

/**
 * Fires exactly once per started request, always from the loop, never from
 * inside gw_httpc_request() or gw_httpc_cancel().
 *
 * ERR is 0 with RESP set and ERRMSG NULL (any status, 4xx and 5xx
 * included: they are answers, not errors), or one of GW_HTTPC_E* with RESP
 * NULL and ERRMSG a short human-readable reason. ERRMSG and RESP are valid
 * only during the call.
 *
 * REQ is freed by the module when the callback returns: do not keep it, and
 * do not use it after the callback. Calling gw_httpc_cancel(REQ) inside the
 * callback is a harmless no-op. Starting new requests from the callback is
 * fine.
 */
typedef void (*gw_httpc_cb)(gw_httpc_req_t *req, int err, const char *errmsg,
                            const gw_httpc_resp_t *resp, void *arg);

/**
 * Streaming: receives the body of REQ piece by piece as it arrives (chunk
 * framing removed), with the final response's STATUS. DATA is valid only
 * during the call. Return 0 to go on; anything else stops the request, and
 * its callback then fires with GW_HTTPC_ECANCELED as after
 * gw_httpc_cancel(). Calling gw_httpc_cancel(REQ) from here is fine; no
 * further piece follows it.
 */
typedef int (*gw_httpc_body_cb)(gw_httpc_req_t *req, int status, const char *data, size_t len,
                                void *arg);

/**
 * What to send. Nothing here is kept: gw_httpc_request() copies all it needs
 * before returning, so the caller may free these right after the call.
 */
typedef struct {
    /* A token such as "GET" or "POST"; NULL means "GET". */
    const char *method;
    /* "http[s]://host[:port][/path][?query]", host a name, an IPv4
     * address or a bracketed IPv6 address; the port defaults to 80 (443
     * for https), a fragment is dropped. https needs TLS below. */
    const char *url;
    /* Extra request headers. `Host` and `User-Agent` given here replace the
     * defaults; `Content-Length`, `Transfer-Encoding` and `Connection` are
     * managed by the client and refused. Names must be tokens, values must
     * hold no CR, LF or NUL. */
    const gw_header_t *headers;
    size_t nheaders;
    /* A body is sent with Content-Length when BODY is not NULL (even when
     * BODY_LEN is 0); POST, PUT and PATCH without one send
     * `Content-Length: 0`. */
    const char *body;
    size_t body_len;
    /* Budget for the whole request: DNS, connect, send and receive.
     * 0 means GW_HTTPC_DEFAULT_TIMEOUT_MS. With ON_BODY, the budget ends
     * when the response head is in. */
    uint64_t timeout_ms;
    /* Largest body accepted; larger fails with GW_HTTPC_ETOOLARGE
     * ("response too large"). 0 means GW_HTTPC_DEFAULT_MAX_BODY. Not
     * applied with ON_BODY, whose receiver bounds what it keeps. */
    size_t max_body;
    /* NULL: the body is collected and handed to the callback (the usual
     * way). Set: a streamed request. The body goes to ON_BODY (with ARG)
     * and is not kept, the callback gets an empty body when the response
     * ends, no deadline applies once the head is in, and TCP keep-alive
     * probes notice a peer that vanished. The request lasts until the
     * peer ends the body, an error, a non-zero return from ON_BODY or
     * gw_httpc_cancel(). */
    gw_httpc_body_cb on_body;
    /* https:// URLs: the TLS context (borrowed for the call only: the
     * request holds what it needs), and the name the server's certificate
     * is checked against and sent as SNI (NULL: the URL's host; an IP
     * address is checked against the certificate's IP addresses). An
     * https URL without TLS is refused; a failed handshake is
     * GW_HTTPC_ECONNECT with the reason ("certificate verify failed: ..."). */
    gw_tls_client_t *tls;
    const char *tls_name;
} gw_httpc_opts_t;

/**
 * Starts a request on LOOP. A host name is resolved with uv_getaddrinfo()
 * (in libuv's thread pool, never blocking the loop) and each address it
 * yields is tried in turn until one accepts the connection.
 *
 * Sends the request line, `Host`, `User-Agent: gateway`, `Connection:
 * close`, `Content-Length` when there is a body, then OPTS's headers and
 * body.
 *
 * Returns NULL on bad input (NULL LOOP, OPTS or CB, a malformed URL, https
 * without TLS, a bad method or header) or when memory runs out, with the reason in ERR
 * (ERRLEN bytes, always NUL-terminated when ERRLEN > 0; ERR may be NULL); the
 * callback then never fires. Otherwise returns the request, and CB fires
 * exactly once, later, from the loop, with ARG.
 */
gw_httpc_req_t *gw_httpc_request(uv_loop_t *loop, const gw_httpc_opts_t *opts, gw_httpc_cb cb,
                                 void *arg, char *err, size_t errlen);

/**
 * Cancels REQ: its callback fires soon after from the loop (never from
 * inside this call) with GW_HTTPC_ECANCELED and "cancelled", so the owner
 * can always release its own state in the callback. A no-op when called
 * from REQ's own callback. REQ must not be used after its callback has
 * returned.
 */
void gw_httpc_cancel(gw_httpc_req_t *req);

#endif
