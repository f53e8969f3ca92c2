/*
 * The status listener (status_listen): GET /health, GET /ready and
 * GET /metrics, for load balancers and Prometheus.
 *
 * Every worker serves it on the same listening socket, opened by the master;
 * whichever worker accepts a scrape renders the totals of all workers from
 * the shared metrics. HTTP/1.1 with keep-alive; requests on a connection are
 * answered one at a time, in order. A connection is closed after 5 s without
 * a complete request; a request head (request line and headers) is limited
 * to 8 KiB (431); at most 64 connections per worker are served, more are
 * closed on accept.
 */
#ifndef GW_STATUS_H
#define GW_STATUS_H

#include <stddef.h>
#include <uv.h>

#include "gw_core.h"
#include "gw_log.h"

typedef struct gw_status_s gw_status_t;

#define GW_STATUS_MAX_CONNS 64
#define GW_STATUS_MAX_HEAD (8 * 1024)
#define GW_STATUS_IDLE_MS 5000

/**
 * Starts serving on listen_fd, a listening TCP socket. The descriptor is
 * duplicated: the caller keeps listen_fd and may close it at any time.
 * metrics may be NULL (then /metrics answers 503); log may be NULL (then
 * problems go to standard error). Returns NULL and fills err when listen_fd
 * is not a listening stream socket or libuv refuses it.
 */
gw_status_t *gw_status_start(uv_loop_t *loop, int listen_fd, gw_metrics_t *metrics, gw_log_t *log,
                             char *err, size_t errlen);

/**
 * While draining, /ready answers 503 {"status":"draining"} and responses
 * close their connection.
 */
void gw_status_set_draining(gw_status_t *st, int draining);

/** Connections open now (tests). */
size_t gw_status_nconns(const gw_status_t *st);

/**
 * Stops accepting, closes every connection (pending responses are dropped)
 * and frees st. done(arg) is called from the last close callback, once every
 * handle is closed; st must not be used after this call. done may be NULL.
 */
void gw_status_close(gw_status_t *st, void (*done)(void *arg), void *arg);

#endif
