/*
 * Downstream TLS: contexts, certificate choice, resumption, and the
 * memory-BIO session under one client connection. See gw_tls.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/buffer.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "gw_log.h"
#include "gw_metrics.h"
#include "gw_tls.h"

#define RX_BUF 65536
#define EXPIRY_WARN_SECS (30 * 86400)
/* handshake failures logged per worker and second; the rest are counted */
#define LOG_PER_SEC 5
/* memory BIO buffers larger than this are not kept between requests */
#define IDLE_BIO_KEEP 16384

/* TLS 1.2: forward secrecy and an AEAD, nothing else. TLS 1.3 suites are
 * all AEAD with ephemeral keys: OpenSSL's defaults stay. */
static const char cipher_list[] = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL";

typedef struct {
    uint64_t period;
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char mac[32];
} ticket_key_t;

typedef struct {
    SSL_CTX *ctx;
    const gw_tls_cert_conf_t *conf;
} cert_ctx_t;

struct gw_tls_s {
    cert_ctx_t *certs; /* [0] is the default */
    size_t ncerts;
    const gw_tls_conf_t *conf;
    gw_log_t *log;
    gw_metrics_t *metrics;
    int slot;
    ticket_key_t keys[2]; /* the current period's and the previous one's */
    time_t log_sec;
    unsigned log_count, log_dropped;
    char rx[RX_BUF];
};

struct gw_tls_conn_s {
    SSL *ssl;
    BIO *rbio, *wbio;
    gw_tls_t *t;
    const char *peer;
    char *client_dn;
    size_t client_dn_len;
    unsigned done : 1;
    unsigned failed : 1;
};

static int ex_index = -1; /* the gw_tls_t behind an SSL_CTX; set once, never changes */

/* ---- errors and log lines ---- */

static const char *
ossl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown error";
}

/* Broken handshakes are what scanners send all day: a few lines a second
 * say what happens, the rest only count. */
static void
log_bounded(gw_tls_t *t, const char *peer, const char *what, const char *why)
{
    time_t now = time(NULL);
    if (now != t->log_sec) {
        if (t->log_dropped)
            gw_log(t->log, GW_LOG_WARN, "tls: %u more failed handshakes not logged",
                   t->log_dropped);
        t->log_sec = now;
        t->log_count = t->log_dropped = 0;
    }
    if (t->log_count++ >= LOG_PER_SEC) {
        t->log_dropped++;
        return;
    }
    gw_log(t->log, GW_LOG_WARN, "tls: %s from %s: %s", what, peer, why);
}

/* ---- ticket keys ---- */

static void
derive(const unsigned char secret[32], const char *label, uint64_t period, unsigned char out[32])
{
    unsigned char msg[40];
    unsigned int len = 32;
    size_t ll = strlen(label);
    memcpy(msg, label, ll);
    for (int i = 0; i < 8; i++)
        msg[ll + i] = (unsigned char)(period >> (8 * i));
    HMAC(EVP_sha256(), secret, 32, msg, ll + 8, out, &len);
}

/* Keys are a function of the secret and the period number: every worker
 * (and every worker after a reload, forked from the same master) derives
 * the same ones without talking to the others. */
static void
refresh_keys(gw_tls_t *t)
{
    uint64_t rot = t->conf->ticket_key_rotation_ms / 1000;
    uint64_t period = (uint64_t)time(NULL) / (rot ? rot : 1);
    if (t->keys[0].period == period && period != 0)
        return;
    for (int i = 0; i < 2; i++) {
        ticket_key_t *k = &t->keys[i];
        unsigned char name[32];
        k->period = period - (uint64_t)i;
        derive(t->conf->ticket_secret, "gw ticket name", k->period, name);
        memcpy(k->name, name, sizeof(k->name));
        derive(t->conf->ticket_secret, "gw ticket aes", k->period, k->aes);
        derive(t->conf->ticket_secret, "gw ticket mac", k->period, k->mac);
    }
}

static int
ticket_cb(SSL *s, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
          EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    gw_tls_t *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(s), ex_index);
    const ticket_key_t *k = NULL;
    OSSL_PARAM params[3];
    refresh_keys(t);
    if (enc) {
        k = &t->keys[0];
        if (RAND_bytes(iv, 16) <= 0)
            return -1;
        memcpy(key_name, k->name, 16);
    } else {
        for (int i = 0; i < 2 && k == NULL; i++)
            if (memcmp(key_name, t->keys[i].name, 16) == 0)
                k = &t->keys[i];
        if (k == NULL)
            return 0; /* an older key or another instance's: full handshake */
    }
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->mac, 32);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    if (!EVP_MAC_CTX_set_params(hctx, params))
        return -1;
    if (enc)
        return EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) ? 1 : -1;
    if (!EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv))
        return -1;
    return k == &t->keys[0] ? 1 : 2; /* 2: accepted, and a new ticket is issued */
}

/* ---- certificate choice ---- */

static int
name_match(const char *pattern, const char *name)
{
    if (strcasecmp(pattern, name) == 0)
        return 1;
    if (strncmp(pattern, "*.", 2) != 0)
        return 0;
    const char *dot = strchr(name, '.');
    /* one label: "a.example.com" matches "*.example.com", "b.a.example.com" does not */
    return dot && dot != name && strcasecmp(pattern + 1, dot) == 0;
}

static const cert_ctx_t *
choose(const gw_tls_t *t, const char *name)
{
    for (int wild = 0; wild < 2; wild++)
        for (size_t i = 0; i < t->ncerts; i++)
            for (size_t j = 0; j < t->certs[i].conf->nsni; j++) {
                const char *p = t->certs[i].conf->sni[j];
                if ((p[0] == '*') == wild && name_match(p, name))
                    return &t->certs[i];
            }
    return &t->certs[0];
}

/* The host name of the ClientHello's server_name extension (RFC 6066
 * section 3) into OUT; 0 when there is none or it is malformed. */
static int
hello_servername(SSL *s, char *out, size_t outlen)
{
    const unsigned char *p;
    size_t len;
    if (!SSL_client_hello_get0_ext(s, TLSEXT_TYPE_server_name, &p, &len) || len < 2)
        return 0;
    size_t list = ((size_t)p[0] << 8) | p[1];
    if (list > len - 2)
        return 0;
    p += 2;
    len = list;
    while (len >= 3) {
        unsigned type = p[0];
        size_t n = ((size_t)p[1] << 8) | p[2];
        p += 3;
        len -= 3;
        if (n > len)
            return 0;
        if (type == TLSEXT_NAMETYPE_host_name) {
            if (n == 0 || n >= outlen || memchr(p, '\0', n) != NULL)
                return 0;
            memcpy(out, p, n);
            out[n] = '\0';
            return 1;
        }
        p += n;
        len -= n;
    }
    return 0;
}

/*
 * The certificate entry is chosen from the ClientHello, before OpenSSL
 * looks at a ticket or a cached session: the servername callback runs only
 * after that, so a session made under one entry (say the default, without
 * client_ca) would resume under another (one that demands a client
 * certificate) and skip its verification. Switching here also moves the
 * session id context, which then refuses such a session.
 */
static int
client_hello_cb(SSL *s, int *alert, void *arg)
{
    gw_tls_t *t = arg;
    char name[256];
    const cert_ctx_t *cc = hello_servername(s, name, sizeof(name)) ? choose(t, name) : &t->certs[0];
    if (SSL_get_SSL_CTX(s) != cc->ctx) {
        SSL_set_SSL_CTX(s, cc->ctx);
        /* SSL_set_SSL_CTX moves the certificate, not the client
         * verification: take it from the chosen entry */
        SSL_set_verify(s, SSL_CTX_get_verify_mode(cc->ctx), NULL);
        STACK_OF(X509_NAME) *cas = SSL_CTX_get_client_CA_list(cc->ctx);
        SSL_set_client_CA_list(s, cas ? SSL_dup_CA_list(cas) : NULL);
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* Acknowledges the name the ClientHello callback chose by. */
static int
servername_cb(SSL *s, int *alert, void *arg)
{
    return SSL_get_servername(s, TLSEXT_NAMETYPE_host_name) ? SSL_TLSEXT_ERR_OK
                                                            : SSL_TLSEXT_ERR_NOACK;
}

static int
alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
        unsigned int inlen, void *arg)
{
    static const unsigned char h1[] = "\x08http/1.1";
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, h1, sizeof(h1) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* no_application_protocol (RFC 7301) */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* ---- contexts ---- */

static int
set_err(char *err, size_t errlen, const char *path, const char *key, const char *file,
        const char *why)
{
    snprintf(err, errlen, "%s.%s: \"%s\": %s", path, key, file, why);
    ERR_clear_error();
    return GW_ERROR;
}

/* A file we cannot open says why better than OpenSSL's "system lib". */
static int
readable(char *err, size_t errlen, const char *path, const char *key, const char *file)
{
    FILE *f = fopen(file, "r");
    if (f == NULL)
        return set_err(err, errlen, path, key, file, strerror(errno));
    fclose(f);
    return GW_OK;
}

static SSL_CTX *
ctx_new(const gw_tls_conf_t *tc, const gw_tls_cert_conf_t *cc, size_t idx, char *err, size_t errlen)
{
    char path[64];
    snprintf(path, sizeof(path), "gateway.tls.certificates[%zu]", idx);
    if (readable(err, errlen, path, "cert", cc->cert) != GW_OK ||
        readable(err, errlen, path, "key", cc->key) != GW_OK ||
        (cc->client_ca && readable(err, errlen, path, "client_ca", cc->client_ca) != GW_OK))
        return NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "%s: %s", path, ossl_reason());
        return NULL;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cc->cert) != 1) {
        set_err(err, errlen, path, "cert", cc->cert, ossl_reason());
        goto failed;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cc->key, SSL_FILETYPE_PEM) != 1) {
        set_err(err, errlen, path, "key", cc->key, ossl_reason());
        goto failed;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        set_err(err, errlen, path, "key", cc->key, "does not match the certificate");
        goto failed;
    }
    if (cc->client_ca) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cc->client_ca);
        if (names == NULL || SSL_CTX_load_verify_locations(ctx, cc->client_ca, NULL) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            set_err(err, errlen, path, "client_ca", cc->client_ca, "no PEM certificate in it");
            goto failed;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    SSL_CTX_set_min_proto_version(ctx, tc->min_protocol ? tc->min_protocol : TLS1_2_VERSION);
    SSL_CTX_set_cipher_list(ctx, cipher_list);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* records are encrypted into memory, which always takes them whole;
     * an idle keep-alive connection keeps no record buffers */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* sessions of one entry do not resume on another (its client CA may differ) */
    unsigned char sid[16];
    int n = snprintf((char *)sid, sizeof(sid), "gw%zu", idx);
    SSL_CTX_set_session_id_context(ctx, sid, (unsigned)n);
    if (tc->session_cache_size > 0) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
        SSL_CTX_sess_set_cache_size(ctx, tc->session_cache_size);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    SSL_CTX_set_timeout(ctx, (long)(tc->session_timeout_ms / 1000));
    if (!tc->session_tickets)
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    /* one ticket per handshake is enough for a client to resume; none when
     * neither tickets nor the cache could ever take it back */
    SSL_CTX_set_num_tickets(ctx, tc->session_tickets || tc->session_cache_size > 0 ? 1 : 0);
    return ctx;
failed:
    SSL_CTX_free(ctx);
    return NULL;
}

static int64_t
not_after(const X509 *x)
{
    struct tm tm;
    if (x == NULL || ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

int
gw_tls_check(gw_conf_t *conf, FILE *out)
{
    int errors = 0;
    char err[1024];
    time_t now = time(NULL);
    int has_listener = 0;
    for (size_t i = 0; i < conf->nlisten; i++)
        has_listener |= conf->listen[i].tls;
    for (size_t i = 0; i < conf->tls.ncerts; i++) {
        gw_tls_cert_conf_t *cc = &conf->tls.certs[i];
        SSL_CTX *ctx = ctx_new(&conf->tls, cc, i, err, sizeof(err));
        if (ctx == NULL) {
            fprintf(out, "%s\n", err);
            errors++;
            continue;
        }
        cc->not_after = not_after(SSL_CTX_get0_certificate(ctx));
        SSL_CTX_free(ctx);
        int64_t left = cc->not_after - (int64_t)now;
        if (left <= 0) {
            fprintf(out,
                    "gateway.tls.certificates[%zu].cert: \"%s\" expired %lld day(s) ago; "
                    "clients would refuse it\n",
                    i, cc->cert, (long long)(-left / 86400));
            errors++;
        } else if (left < EXPIRY_WARN_SECS) {
            fprintf(out,
                    "warning: gateway.tls.certificates[%zu].cert: \"%s\" expires in %lld day(s)\n",
                    i, cc->cert, (long long)(left / 86400));
        }
    }
    if (conf->tls.ncerts && !has_listener)
        fprintf(out, "warning: gateway.tls: certificates but no listener with tls: true\n");
    return errors;
}

int
gw_tls_new_secret(unsigned char secret[32])
{
    return RAND_bytes(secret, 32) == 1 ? GW_OK : GW_ERROR;
}

int
gw_tls_kernel_offers_ktls(void)
{
    char buf[256];
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (char *tok = strtok(buf, " \n"); tok; tok = strtok(NULL, " \n"))
        if (strcmp(tok, "tls") == 0)
            return 1;
    return 0;
}

void
gw_tls_free(gw_tls_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->ncerts; i++)
        SSL_CTX_free(t->certs[i].ctx);
    free(t->certs);
    OPENSSL_cleanse(t->keys, sizeof(t->keys));
    free(t);
}

gw_tls_t *
gw_tls_new(const gw_conf_t *conf, gw_log_t *log, gw_metrics_t *metrics, int slot, char *err,
           size_t errlen)
{
    if (ex_index < 0)
        ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    gw_tls_t *t = calloc(1, sizeof(*t));
    if (t == NULL || conf->tls.ncerts == 0) {
        snprintf(err, errlen, "tls: %s", t ? "no certificates" : "out of memory");
        free(t);
        return NULL;
    }
    t->conf = &conf->tls;
    t->log = log;
    t->metrics = metrics;
    t->slot = slot;
    t->certs = calloc(conf->tls.ncerts, sizeof(*t->certs));
    if (t->certs == NULL)
        goto failed;
    for (size_t i = 0; i < conf->tls.ncerts; i++) {
        SSL_CTX *ctx = ctx_new(&conf->tls, &conf->tls.certs[i], i, err, errlen);
        if (ctx == NULL)
            goto failed;
        t->certs[t->ncerts].ctx = ctx;
        t->certs[t->ncerts++].conf = &conf->tls.certs[i];
        SSL_CTX_set_ex_data(ctx, ex_index, t);
        SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, t);
        SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
        SSL_CTX_set_tlsext_servername_arg(ctx, t);
        SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, t);
        if (conf->tls.session_tickets)
            SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
    }
    refresh_keys(t);
    return t;
failed:
    if (t->certs == NULL)
        snprintf(err, errlen, "tls: out of memory");
    gw_tls_free(t);
    return NULL;
}

char *
gw_tls_rx_buf(gw_tls_t *t, size_t *len)
{
    *len = sizeof(t->rx);
    return t->rx;
}

/* ---- one connection ---- */

gw_tls_conn_t *
gw_tls_conn_new(gw_tls_t *t, const char *peer)
{
    gw_tls_conn_t *tc = calloc(1, sizeof(*tc));
    if (tc == NULL)
        return NULL;
    tc->t = t;
    tc->peer = peer;
    tc->ssl = SSL_new(t->certs[0].ctx);
    tc->rbio = BIO_new(BIO_s_mem());
    tc->wbio = BIO_new(BIO_s_mem());
    if (tc->ssl == NULL || tc->rbio == NULL || tc->wbio == NULL) {
        BIO_free(tc->rbio);
        BIO_free(tc->wbio);
        SSL_free(tc->ssl);
        free(tc);
        ERR_clear_error();
        return NULL;
    }
    /* an empty input BIO means "wait for bytes", not end of stream */
    BIO_set_mem_eof_return(tc->rbio, -1);
    BIO_set_mem_eof_return(tc->wbio, -1);
    SSL_set_bio(tc->ssl, tc->rbio, tc->wbio);
    SSL_set_accept_state(tc->ssl);
    return tc;
}

void
gw_tls_conn_free(gw_tls_conn_t *tc)
{
    if (tc == NULL)
        return;
    SSL_free(tc->ssl); /* frees both BIOs */
    free(tc->client_dn);
    free(tc);
}

int
gw_tls_feed(gw_tls_conn_t *tc, const char *data, size_t len)
{
    if (len > INT32_MAX || BIO_write(tc->rbio, data, (int)len) != (int)len)
        return GW_ERROR;
    return GW_OK;
}

static void
keep_client_dn(gw_tls_conn_t *tc)
{
    X509 *x = SSL_get0_peer_certificate(tc->ssl);
    if (x == NULL)
        return;
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL)
        return;
    if (X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0) {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        tc->client_dn = malloc((size_t)n + 1);
        if (tc->client_dn) {
            memcpy(tc->client_dn, p, (size_t)n);
            tc->client_dn[n] = '\0';
            tc->client_dn_len = (size_t)n;
        }
    }
    BIO_free(b);
}

/* OpenSSL's reason codes for a client that sent plain HTTP */
static int
plain_http(unsigned long e)
{
    return ERR_GET_LIB(e) == ERR_LIB_SSL && (ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST ||
                                             ERR_GET_REASON(e) == SSL_R_HTTPS_PROXY_REQUEST);
}

int
gw_tls_handshake(gw_tls_conn_t *tc)
{
    if (tc->done)
        return GW_OK;
    if (tc->failed)
        return GW_ERROR;
    ERR_clear_error();
    int rc = SSL_do_handshake(tc->ssl);
    if (rc == 1) {
        tc->done = 1;
        keep_client_dn(tc);
        gw_metrics_tls_handshake(tc->t->metrics, tc->t->slot,
                                 SSL_session_reused(tc->ssl) ? GW_METRICS_TLS_RESUMED
                                                             : GW_METRICS_TLS_FULL);
        return GW_OK;
    }
    int e = SSL_get_error(tc->ssl, rc);
    if (e == SSL_ERROR_WANT_READ)
        return GW_AGAIN;
    tc->failed = 1;
    gw_metrics_tls_handshake(tc->t->metrics, tc->t->slot, GW_METRICS_TLS_FAILED);
    unsigned long err = ERR_peek_last_error();
    if (plain_http(err)) {
        ERR_clear_error();
        return GW_DECLINED;
    }
    const char *why = e == SSL_ERROR_SSL ? ossl_reason() : "unexpected end";
    if (ERR_GET_REASON(err) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        long v = SSL_get_verify_result(tc->ssl);
        why = X509_verify_cert_error_string(v);
    }
    log_bounded(tc->t, tc->peer, "handshake failed", why);
    ERR_clear_error();
    return GW_ERROR;
}

int
gw_tls_handshake_done(const gw_tls_conn_t *tc)
{
    return tc->done;
}

ssize_t
gw_tls_read(gw_tls_conn_t *tc, char *dst, size_t cap)
{
    ERR_clear_error();
    int n = SSL_read(tc->ssl, dst, cap > INT32_MAX ? INT32_MAX : (int)cap);
    if (n > 0)
        return n;
    int e = SSL_get_error(tc->ssl, n);
    if (e == SSL_ERROR_WANT_READ)
        return GW_AGAIN;
    if (e == SSL_ERROR_ZERO_RETURN)
        return GW_TLS_CLOSED;
    log_bounded(tc->t, tc->peer, "bad record", e == SSL_ERROR_SSL ? ossl_reason() : "read failed");
    ERR_clear_error();
    return GW_ERROR;
}

int
gw_tls_has_input(gw_tls_conn_t *tc)
{
    return BIO_ctrl_pending(tc->rbio) > 0 || SSL_has_pending(tc->ssl);
}

int
gw_tls_write(gw_tls_conn_t *tc, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        size_t w = 0;
        int chunk = len > INT32_MAX ? INT32_MAX : (int)len;
        if (SSL_write_ex(tc->ssl, p, (size_t)chunk, &w) != 1) {
            ERR_clear_error();
            return GW_ERROR;
        }
        p += w;
        len -= w;
    }
    return GW_OK;
}

size_t
gw_tls_take_out(gw_tls_conn_t *tc, char *dst, size_t cap)
{
    if (BIO_ctrl_pending(tc->wbio) == 0)
        return 0;
    int n = BIO_read(tc->wbio, dst, cap > INT32_MAX ? INT32_MAX : (int)cap);
    return n > 0 ? (size_t)n : 0;
}

static size_t
bio_cap(BIO *b)
{
    BUF_MEM *bm = NULL;
    BIO_get_mem_ptr(b, &bm);
    return bm ? bm->max : 0;
}

/* A memory BIO keeps the largest buffer it ever held: after a large
 * request or response an idle connection gives it back. Small ones stay,
 * so a kept-alive connection of small requests pays no allocation. */
void
gw_tls_idle(gw_tls_conn_t *tc)
{
    if (!tc->done || BIO_ctrl_pending(tc->rbio) || BIO_ctrl_pending(tc->wbio) ||
        SSL_has_pending(tc->ssl))
        return;
    if (bio_cap(tc->rbio) <= IDLE_BIO_KEEP && bio_cap(tc->wbio) <= IDLE_BIO_KEEP)
        return;
    BIO *r = BIO_new(BIO_s_mem()), *w = BIO_new(BIO_s_mem());
    if (r == NULL || w == NULL) {
        BIO_free(r);
        BIO_free(w);
        return;
    }
    BIO_set_mem_eof_return(r, -1);
    BIO_set_mem_eof_return(w, -1);
    SSL_set_bio(tc->ssl, r, w); /* frees the old pair */
    tc->rbio = r;
    tc->wbio = w;
}

void
gw_tls_shutdown(gw_tls_conn_t *tc)
{
    if (tc->done && !tc->failed) {
        SSL_shutdown(tc->ssl);
        ERR_clear_error();
    }
}

gw_str_t
gw_tls_client_dn(const gw_tls_conn_t *tc)
{
    if (tc == NULL || tc->client_dn == NULL)
        return (gw_str_t){"", 0};
    return (gw_str_t){tc->client_dn, tc->client_dn_len};
}
