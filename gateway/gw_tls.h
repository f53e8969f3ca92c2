/*
 * Downstream TLS termination (docs/tls.md): the OpenSSL contexts a worker
 * builds from gateway.tls, and one TLS session per client connection.
 *
 * The session runs over two memory BIOs. The connection (gw_http1.c)
 * keeps reading and writing its socket through libuv as a plain one does;
 * it hands what it read to gw_tls_feed, takes plaintext from gw_tls_read
 * into its read buffer, encrypts with gw_tls_write and moves the records
 * gw_tls_take_out returns to its write queue. OpenSSL never touches the
 * socket, so it never blocks, never sees EAGAIN, and every back-pressure
 * and timeout rule of the plain path applies unchanged.
 *
 * Policy (not configurable below it): TLS 1.2 minimum, 1.3 preferred,
 * TLS 1.2 suites ECDHE with AEAD only, no renegotiation, no compression,
 * ALPN http/1.1. Certificates by SNI (exact, then "*.example.com" one
 * label deep), the first entry the default. Resumption by tickets whose
 * keys every worker derives from one secret and the current period (see
 * gw_tls_conf_t.ticket_secret), and by a per-worker session cache.
 */
#ifndef GW_TLS_H
#define GW_TLS_H

#include <stdio.h>
#include <sys/types.h>

#include "gw_config.h"

typedef struct gw_log_s gw_log_t;
typedef struct gw_tls_s gw_tls_t;
typedef struct gw_tls_conn_s gw_tls_conn_t;

/* gw_tls_read: the client sent close_notify. */
#define GW_TLS_CLOSED -3

/**
 * Reads every certificate, key and client CA of conf->tls as a worker
 * would, and fills each entry's not_after. Prints one line per problem to
 * out ("gateway.tls.certificates[0].key: ..."): an unreadable file, a key
 * that is not the certificate's, an expired certificate; and a line
 * starting "warning: " for a certificate that expires within 30 days.
 * Returns the number of errors. Called by the master (-t, start, reload).
 */
int gw_tls_check(gw_conf_t *conf, FILE *out);

/** A random ticket secret for gw_tls_conf_t.ticket_secret: GW_OK or GW_ERROR. */
int gw_tls_new_secret(unsigned char secret[32]);

/** 1 when the kernel offers the "tls" ULP (kernel TLS), else 0. */
int gw_tls_kernel_offers_ktls(void);

/**
 * A worker's contexts, one per certificate entry. Returns NULL with err
 * filled when a file cannot be loaded (the master checked them just before,
 * so this means they changed in between). metrics and slot count
 * handshakes (gateway_tls_handshakes_total).
 */
gw_tls_t *gw_tls_new(const gw_conf_t *conf, gw_log_t *log, gw_metrics_t *metrics, int slot,
                     char *err, size_t errlen);
void gw_tls_free(gw_tls_t *t);

/* A scratch buffer for socket reads: valid until the next call into the
 * loop; gw_tls_feed copies what it is given. */
char *gw_tls_rx_buf(gw_tls_t *t, size_t *len);

/** A server-side session for one accepted connection; peer (the client's
 * address, for log lines) must outlive it. NULL when out of memory. */
gw_tls_conn_t *gw_tls_conn_new(gw_tls_t *t, const char *peer);
void gw_tls_conn_free(gw_tls_conn_t *tc);

/* Bytes read from the socket. GW_OK, or GW_ERROR when out of memory. */
int gw_tls_feed(gw_tls_conn_t *tc, const char *data, size_t len);

/**
 * Drives the handshake on what was fed: GW_OK once it is done (now or
 * before), GW_AGAIN for more bytes, GW_DECLINED when the client spoke plain
 * HTTP, GW_ERROR when it failed (logged, at a bounded rate). Take the
 * output after every call: it may hold records or an alert.
 */
int gw_tls_handshake(gw_tls_conn_t *tc);
int gw_tls_handshake_done(const gw_tls_conn_t *tc);

/**
 * Plaintext into dst: > 0 bytes, GW_AGAIN when more input is needed,
 * GW_TLS_CLOSED on close_notify, GW_ERROR on a bad record (logged).
 */
ssize_t gw_tls_read(gw_tls_conn_t *tc, char *dst, size_t cap);

/* 1 when fed bytes or decrypted plaintext wait to be read. */
int gw_tls_has_input(gw_tls_conn_t *tc);

/* Encrypts len bytes (all of them: the output is memory). GW_OK or GW_ERROR. */
int gw_tls_write(gw_tls_conn_t *tc, const void *data, size_t len);

/* Moves up to cap bytes of records for the socket into dst; 0 when none. */
size_t gw_tls_take_out(gw_tls_conn_t *tc, char *dst, size_t cap);

/* The connection waits for its next request: gives back buffer memory. */
void gw_tls_idle(gw_tls_conn_t *tc);

/* Queues close_notify (after a completed handshake); take the output. */
void gw_tls_shutdown(gw_tls_conn_t *tc);

/* The verified client certificate's subject (RFC 2253), or an empty string. */
gw_str_t gw_tls_client_dn(const gw_tls_conn_t *tc);

#endif
