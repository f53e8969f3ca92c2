/* TLS client contexts and sessions over memory BIOs. */
#include "gw_tls_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "gw_core.h"

struct gw_tls_client_s {
    SSL_CTX *ctx;
    char *sni;
    int verify;
};

struct gw_tlsc_s {
    SSL *ssl;
    BIO *rbio, *wbio; /* what was read from the socket; what goes to it */
    gw_tlsc_cache_t *cache;
    char why[192];
};

struct gw_tls_stores_s {
    struct {
        char *ca_file; /* NULL: the system's store */
        X509_STORE *store;
    } * s;
    size_t n;
};

#define EXPIRY_WARN_DAYS 30

/* The most telling reason OpenSSL left for the last failure. */
static void
ssl_reason(char *buf, size_t len, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(buf, len, "%s", r ? r : fallback);
    ERR_clear_error();
}

static int
readable(const char *what, const char *file, char *err, size_t errlen)
{
    FILE *f = fopen(file, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read %s \"%.200s\": %s", what, file, strerror(errno));
        return 0;
    }
    fclose(f);
    return 1;
}

/* A session the server issued (after the handshake in TLS 1.3, during it
 * in 1.2): kept in the owner's cache for the next connection. */
static int
on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    gw_tlsc_t *t = SSL_get_app_data(ssl);
    if (t == NULL || t->cache == NULL)
        return 0;
    gw_tlsc_cache_clear(t->cache);
    t->cache->session = sess;
    return 1; /* the reference is ours now */
}

gw_tls_stores_t *
gw_tls_stores_new(void)
{
    return calloc(1, sizeof(gw_tls_stores_t));
}

void
gw_tls_stores_free(gw_tls_stores_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->s[i].ca_file);
        X509_STORE_free(s->s[i].store);
    }
    free(s->s);
    free(s);
}

/* The store for CA_FILE (NULL: the system's) in STORES, read on first use. */
static X509_STORE *
shared_store(gw_tls_stores_t *st, const char *ca_file)
{
    for (size_t i = 0; i < st->n; i++)
        if ((ca_file == NULL && st->s[i].ca_file == NULL) ||
            (ca_file && st->s[i].ca_file && strcmp(ca_file, st->s[i].ca_file) == 0))
            return st->s[i].store;
    void *grown = realloc(st->s, (st->n + 1) * sizeof(*st->s));
    if (grown == NULL)
        return NULL;
    st->s = grown;
    X509_STORE *x = X509_STORE_new();
    char *name = ca_file ? strdup(ca_file) : NULL;
    int ok = x && (ca_file == NULL || name) &&
             (ca_file ? X509_STORE_load_file(x, ca_file) : X509_STORE_set_default_paths(x)) == 1;
    if (!ok) {
        X509_STORE_free(x);
        free(name);
        return NULL;
    }
    st->s[st->n].ca_file = name;
    st->s[st->n].store = x;
    st->n++;
    return x;
}

gw_tls_client_t *
gw_tls_client_new(const gw_tls_client_conf_t *conf, gw_tls_stores_t *stores, char *err,
                  size_t errlen)
{
    static const unsigned char alpn[] = "\x08http/1.1";
    char why[160];
    gw_tls_client_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->verify = conf->verify;
    if (conf->sni && (c->sni = strdup(conf->sni)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto failed;
    }
    ERR_clear_error();
    if ((c->ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
        ssl_reason(why, sizeof(why), "out of memory");
        snprintf(err, errlen, "cannot create a TLS context: %s", why);
        goto failed;
    }
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(c->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_alpn_protos(c->ctx, alpn, sizeof(alpn) - 1);
    SSL_CTX_set_session_cache_mode(c->ctx,
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c->ctx, on_new_session);
    SSL_CTX_set_verify(c->ctx, conf->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (conf->verify && stores) {
        X509_STORE *x = NULL;
        if (conf->ca_file && !readable("ca_file", conf->ca_file, err, errlen))
            goto failed;
        if ((x = shared_store(stores, conf->ca_file)) == NULL) {
            ssl_reason(why, sizeof(why), "unreadable");
            snprintf(err, errlen, "%s%.200s%s: %s", conf->ca_file ? "ca_file \"" : "",
                     conf->ca_file ? conf->ca_file : "the system's CA store",
                     conf->ca_file ? "\"" : "", why);
            goto failed;
        }
        SSL_CTX_set1_cert_store(c->ctx, x);
    } else if (conf->verify) {
        if (conf->ca_file) {
            if (!readable("ca_file", conf->ca_file, err, errlen))
                goto failed;
            if (SSL_CTX_load_verify_locations(c->ctx, conf->ca_file, NULL) != 1) {
                ssl_reason(why, sizeof(why), "no certificate found");
                snprintf(err, errlen, "ca_file \"%.200s\": %s", conf->ca_file, why);
                goto failed;
            }
        } else if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
            ssl_reason(why, sizeof(why), "unreadable");
            snprintf(err, errlen, "the system's CA store: %s", why);
            goto failed;
        }
    }
    if (conf->cert) {
        if (!readable("cert", conf->cert, err, errlen) || !readable("key", conf->key, err, errlen))
            goto failed;
        if (SSL_CTX_use_certificate_chain_file(c->ctx, conf->cert) != 1) {
            ssl_reason(why, sizeof(why), "no certificate found");
            snprintf(err, errlen, "cert \"%.200s\": %s", conf->cert, why);
            goto failed;
        }
        if (SSL_CTX_use_PrivateKey_file(c->ctx, conf->key, SSL_FILETYPE_PEM) != 1) {
            if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
                ERR_clear_error();
                snprintf(err, errlen, "key \"%.200s\" does not match cert \"%.200s\"", conf->key,
                         conf->cert);
                goto failed;
            }
            ssl_reason(why, sizeof(why), "no private key found");
            snprintf(err, errlen, "key \"%.200s\": %s", conf->key, why);
            goto failed;
        }
        if (SSL_CTX_check_private_key(c->ctx) != 1) {
            ERR_clear_error();
            snprintf(err, errlen, "key \"%.200s\" does not match cert \"%.200s\"", conf->key,
                     conf->cert);
            goto failed;
        }
    }
    return c;
failed:
    ERR_clear_error();
    gw_tls_client_free(c);
    return NULL;
}

void
gw_tls_client_free(gw_tls_client_t *c)
{
    if (c == NULL)
        return;
    SSL_CTX_free(c->ctx);
    free(c->sni);
    free(c);
}

const char *
gw_tls_client_sni(const gw_tls_client_t *c)
{
    return c ? c->sni : NULL;
}

int
gw_tls_client_check(const gw_tls_client_conf_t *conf, char *err, size_t errlen, char *warn,
                    size_t warnlen)
{
    if (warnlen)
        warn[0] = '\0';
    gw_tls_client_t *c = gw_tls_client_new(conf, NULL, err, errlen);
    if (c == NULL)
        return GW_ERROR;
    X509 *x = conf->cert ? SSL_CTX_get0_certificate(c->ctx) : NULL;
    int rc = GW_OK;
    if (x) {
        int days = 0, secs = 0;
        const ASN1_TIME *na = X509_get0_notAfter(x);
        if (X509_cmp_current_time(na) <= 0) {
            snprintf(err, errlen, "cert \"%.200s\" has expired", conf->cert);
            rc = GW_ERROR;
        } else if (ASN1_TIME_diff(&days, &secs, NULL, na) == 1 && days < EXPIRY_WARN_DAYS) {
            snprintf(warn, warnlen, "cert \"%.200s\" expires in %d day%s", conf->cert, days,
                     days == 1 ? "" : "s");
        }
    }
    gw_tls_client_free(c);
    return rc;
}

void
gw_tlsc_cache_clear(gw_tlsc_cache_t *cache)
{
    if (cache && cache->session) {
        SSL_SESSION_free(cache->session);
        cache->session = NULL;
    }
}

static int
is_ip(const char *s)
{
    unsigned char a[16];
    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

gw_tlsc_t *
gw_tlsc_new(gw_tls_client_t *c, const char *name, gw_tlsc_cache_t *cache)
{
    gw_tlsc_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    ERR_clear_error();
    t->ssl = SSL_new(c->ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    /* an empty input BIO means "more to come", not the end */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_app_data(t->ssl, t);
    SSL_set_connect_state(t->ssl);
    t->cache = cache;
    int ok = 1;
    if (name && is_ip(name)) {
        if (c->verify)
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name) == 1;
    } else if (name) {
        ok = SSL_set_tlsext_host_name(t->ssl, name) == 1;
        if (ok && c->verify) {
            SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            ok = SSL_set1_host(t->ssl, name) == 1;
        }
    }
    if (ok && cache && cache->session)
        ok = SSL_set_session(t->ssl, cache->session) == 1;
    if (!ok) {
        gw_tlsc_free(t);
        ERR_clear_error();
        return NULL;
    }
    return t;
}

void
gw_tlsc_free(gw_tlsc_t *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl); /* and both BIOs */
    free(t);
}

int
gw_tlsc_feed(gw_tlsc_t *t, const char *data, size_t len)
{
    if (len == 0)
        return GW_OK;
    return BIO_write(t->rbio, data, (int)len) == (int)len ? GW_OK : GW_ERROR;
}

/* After a failed call: the verification result says more than the alert
 * that followed it. */
static void
set_failure(gw_tlsc_t *t, int rc)
{
    long v = SSL_get_verify_result(t->ssl);
    int e = SSL_get_error(t->ssl, rc);
    /* with verify: false the chain is still checked and its result kept:
     * it is not why this call failed */
    if (v != X509_V_OK && SSL_get_verify_mode(t->ssl) != SSL_VERIFY_NONE) {
        snprintf(t->why, sizeof(t->why), "certificate verify failed: %s",
                 X509_verify_cert_error_string(v));
        ERR_clear_error();
    } else if (e == SSL_ERROR_SSL) {
        ssl_reason(t->why, sizeof(t->why), "protocol error");
    } else {
        ERR_clear_error();
        snprintf(t->why, sizeof(t->why), "unexpected end of the session");
    }
}

int
gw_tlsc_handshake(gw_tlsc_t *t)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1)
        return GW_OK;
    if (SSL_get_error(t->ssl, rc) == SSL_ERROR_WANT_READ)
        return GW_AGAIN;
    set_failure(t, rc);
    return GW_ERROR;
}

ssize_t
gw_tlsc_read(gw_tlsc_t *t, char *buf, size_t len)
{
    ERR_clear_error();
    int n = SSL_read(t->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    if (n > 0)
        return n;
    switch (SSL_get_error(t->ssl, n)) {
    case SSL_ERROR_WANT_READ:
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        return GW_TLSC_CLOSED;
    default:
        set_failure(t, n);
        return GW_ERROR;
    }
}

int
gw_tlsc_write(gw_tlsc_t *t, const char *data, size_t len)
{
    while (len > 0) {
        int chunk = len > (1u << 30) ? (1 << 30) : (int)len;
        ERR_clear_error();
        int n = SSL_write(t->ssl, data, chunk);
        if (n <= 0) {
            set_failure(t, n);
            return GW_ERROR;
        }
        data += n;
        len -= (size_t)n;
    }
    return GW_OK;
}

size_t
gw_tlsc_pending(gw_tlsc_t *t, const char **data)
{
    char *p = NULL;
    long n = BIO_get_mem_data(t->wbio, &p);
    *data = p;
    return n > 0 ? (size_t)n : 0;
}

void
gw_tlsc_sent(gw_tlsc_t *t)
{
    (void)BIO_reset(t->wbio);
}

int
gw_tlsc_has_unread(gw_tlsc_t *t)
{
    return SSL_has_pending(t->ssl) || BIO_ctrl_pending(t->rbio) > 0;
}

void
gw_tlsc_shutdown(gw_tlsc_t *t)
{
    if (SSL_is_init_finished(t->ssl)) {
        ERR_clear_error();
        (void)SSL_shutdown(t->ssl);
        ERR_clear_error();
    }
}

const char *
gw_tlsc_error(const gw_tlsc_t *t)
{
    return t->why[0] ? t->why : "error";
}

int
gw_tlsc_resumed(const gw_tlsc_t *t)
{
    return SSL_session_reused(t->ssl);
}
