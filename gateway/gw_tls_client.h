/*
 * TLS towards servers: upstream nodes (gw_upstream.c) and the async HTTP
 * client (gw_httpc.c: health checks, gw.http.request, registries).
 *
 * Two objects. A gw_tls_client_t is one configured client context (an
 * SSL_CTX: CA store, optional client certificate, verification on or off),
 * built once per upstream or registry per process. A gw_tlsc_t is one
 * connection's TLS session over memory BIOs: its owner moves the bytes
 * between the socket and the session (feed what it read, send what is
 * pending), so the socket stays the owner's libuv stream with its own
 * write queue, timers and edge-triggered reads.
 *
 * Verification: the peer's chain against the CA store and its name
 * against NAME given to gw_tlsc_new: a DNS name (sent as SNI too) or an
 * IP address (checked against the certificate's IP SANs, no SNI, as RFC
 * 6066 forbids an address there). TLS 1.2 minimum, ALPN http/1.1, no
 * renegotiation. Sessions are resumed through a gw_tlsc_cache_t the owner
 * keeps per server (a node).
 *
 * One loop, one thread; nothing here blocks except gw_tls_client_new and
 * gw_tls_client_check, which read files (at load, never per request).
 */
#ifndef GW_TLS_CLIENT_H
#define GW_TLS_CLIENT_H

#include <stddef.h>
#include <sys/types.h>

/* TLS towards a server: upstreams with `scheme: https` (upstreams[].tls)
 * and registries with https:// endpoints (registries.NAME.tls). Read by
 * gw_tls_client.c; -t checks the files. */
typedef struct {
    int enabled;      /* https: the connections speak TLS */
    int verify;       /* 1 unless the config says `verify: false` */
    char *ca_file;    /* NULL: the system's CA store */
    char *sni;        /* the name sent and checked; NULL: the node's host */
    char *cert, *key; /* a client certificate: both or neither */
} gw_tls_client_conf_t;

typedef struct gw_tls_client_s gw_tls_client_t;
typedef struct gw_tlsc_s gw_tlsc_t;

/* The last session a server gave, to resume the next connection with;
 * zeroed to start, emptied with gw_tlsc_cache_clear. */
typedef struct {
    void *session; /* SSL_SESSION */
} gw_tlsc_cache_t;

/**
 * -t: the files CONF names are readable and hold what they should (a CA
 * file with at least one certificate, a certificate with its private key,
 * not expired). GW_OK, or GW_ERROR with the reason in ERR. A certificate
 * that expires within 30 days puts a note in WARN (WARN[0] stays 0 else).
 */
int gw_tls_client_check(const gw_tls_client_conf_t *conf, char *err, size_t errlen, char *warn,
                        size_t warnlen);

/*
 * CA stores shared by the contexts of one process: the system's store is
 * about a megabyte once read, and every https upstream of every worker
 * would read its own. Contexts made with the same STORES and the same
 * ca_file (or none) share one store. Freed after, or before, the contexts
 * that use it (they hold a reference).
 */
typedef struct gw_tls_stores_s gw_tls_stores_t;
gw_tls_stores_t *gw_tls_stores_new(void);
void gw_tls_stores_free(gw_tls_stores_t *s);

/** A context for CONF, its CA store from STORES (NULL: a store of its
 * own); NULL with the reason in ERR. */
gw_tls_client_t *gw_tls_client_new(const gw_tls_client_conf_t *conf, gw_tls_stores_t *stores,
                                   char *err, size_t errlen);
void gw_tls_client_free(gw_tls_client_t *c);

/* The configured sni, or NULL. */
const char *gw_tls_client_sni(const gw_tls_client_t *c);

void gw_tlsc_cache_clear(gw_tlsc_cache_t *cache);

/**
 * A client session that verifies the peer against NAME (see above; NULL:
 * the chain only, no SNI). CACHE, when not NULL, offers the session kept
 * there and receives the ones the server issues; it must outlive the
 * session. NULL when out of memory.
 */
gw_tlsc_t *gw_tlsc_new(gw_tls_client_t *c, const char *name, gw_tlsc_cache_t *cache);
void gw_tlsc_free(gw_tlsc_t *t);

/* Bytes read from the socket. GW_OK, or GW_ERROR (out of memory). */
int gw_tlsc_feed(gw_tlsc_t *t, const char *data, size_t len);

/* Drives the handshake: GW_OK done, GW_AGAIN more bytes are needed (send
 * what is pending first), GW_ERROR failed (gw_tlsc_error says why). */
int gw_tlsc_handshake(gw_tlsc_t *t);

/* Plain bytes out of what was fed: > 0 bytes, 0 more bytes are needed,
 * GW_TLSC_CLOSED the server closed the session (close_notify), GW_ERROR. */
#define GW_TLSC_CLOSED -4
ssize_t gw_tlsc_read(gw_tlsc_t *t, char *buf, size_t len);

/* Plain bytes in: all taken (the ciphertext waits in gw_tlsc_pending).
 * GW_OK or GW_ERROR. */
int gw_tlsc_write(gw_tlsc_t *t, const char *data, size_t len);

/* What must go to the socket: *DATA and the length (0: nothing); valid
 * until gw_tlsc_sent, which drops it all (the owner copies what the
 * socket did not take). */
size_t gw_tlsc_pending(gw_tlsc_t *t, const char **data);
void gw_tlsc_sent(gw_tlsc_t *t);

/* Unread bytes inside the session: a connection with some must not be
 * reused, they belong to no request. */
int gw_tlsc_has_unread(gw_tlsc_t *t);

/* Queues close_notify (gw_tlsc_pending), when the handshake completed. */
void gw_tlsc_shutdown(gw_tlsc_t *t);

/* Why the last call failed: "certificate verify failed: hostname
 * mismatch", "wrong version number", ... Valid until the next call. */
const char *gw_tlsc_error(const gw_tlsc_t *t);

/* Whether the handshake resumed a session (tests, logs). */
int gw_tlsc_resumed(const gw_tlsc_t *t);

#endif
