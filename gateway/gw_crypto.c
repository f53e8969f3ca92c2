/*
 * Crypto primitives on OpenSSL 3 EVP (see gw_crypto.h).
 *
 * Every entry point that may fail inside OpenSSL brackets its work with
 * ERR_set_mark()/ERR_pop_to_mark(): the caller's thread may also run TLS,
 * where a stale entry on the error queue turns the next SSL_get_error()
 * into a bogus SSL_ERROR_SSL.
 */
#include "gw_crypto.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

/* OpenSSL rejects NULL buffers in places even when the length is 0. */
static const unsigned char empty[1];

int
gw_crypto_sha256(const char *data, size_t len, unsigned char out[32])
{
    unsigned int n = 0;
    int rc;

    if (out == NULL || (data == NULL && len > 0))
        return GW_ERROR;
    ERR_set_mark();
    rc = EVP_Digest(len ? (const void *)data : empty, len, out, &n, EVP_sha256(), NULL);
    ERR_pop_to_mark();
    return rc == 1 && n == 32 ? GW_OK : GW_ERROR;
}

typedef struct {
    const char *name;
    const char *md;
    size_t size;
} hmac_alg_t;

static const hmac_alg_t hmac_algs[] = {
    {"sha256", "SHA256", 32},
    {"sha384", "SHA384", 48},
    {"sha512", "SHA512", 64},
};

int
gw_crypto_hmac(const char *alg, const char *key, size_t klen, const char *data, size_t dlen,
               unsigned char *out, size_t *outlen)
{
    const hmac_alg_t *a = NULL;
    size_t n = 0;
    unsigned char *res;

    for (size_t i = 0; alg != NULL && i < GW_ARRAY_LEN(hmac_algs); i++)
        if (strcmp(alg, hmac_algs[i].name) == 0)
            a = &hmac_algs[i];
    /* Refuse a short OUT here rather than let OpenSSL fail on it, which
     * costs a fetch and an error queue entry. */
    if (a == NULL || out == NULL || outlen == NULL || *outlen < a->size)
        return GW_ERROR;
    if ((key == NULL && klen > 0) || (data == NULL && dlen > 0))
        return GW_ERROR;
    ERR_set_mark();
    res = EVP_Q_mac(NULL, "HMAC", NULL, a->md, NULL, klen ? (const void *)key : empty, klen,
                    dlen ? (const unsigned char *)data : empty, dlen, out, *outlen, &n);
    ERR_pop_to_mark();
    if (res == NULL || n != a->size)
        return GW_ERROR;
    *outlen = n;
    return GW_OK;
}

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t
gw_crypto_base64_encode(const char *in, size_t len, char *out, size_t cap, int url)
{
    const char *tab = url ? b64_url : b64_std;
    const unsigned char *p = (const unsigned char *)in;
    size_t need, i, o = 0;

    if (len == 0)
        return 0;
    if (in == NULL || out == NULL || len > SIZE_MAX / 4 - 1)
        return 0;
    need = url ? len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0) : (len + 2) / 3 * 4;
    if (need > cap)
        return 0;

    for (i = 0; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
        out[o++] = tab[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        if (!url) {
            out[o++] = '=';
            out[o++] = '=';
        }
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
        if (!url)
            out[o++] = '=';
    }
    return o;
}

/* The 6-bit value of C in the chosen alphabet, or -1. */
static int
b64_value(unsigned char c, int url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

long
gw_crypto_base64_decode(const char *in, size_t len, char *out, size_t cap, int url)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t n = len, pad = 0, rem, need, i, o = 0;
    int v[4];

    if (len == 0)
        return 0;
    if (in == NULL || len > LONG_MAX)
        return -1;
    while (n > 0 && pad < 2 && p[n - 1] == '=') {
        n--;
        pad++;
    }
    rem = n % 4;
    if (rem == 1)
        return -1;
    /* Padding, when there is any, must complete the last quantum. */
    if (pad > 0 && (len % 4 != 0 || pad != (4 - rem) % 4))
        return -1;
    need = n / 4 * 3 + (rem ? rem - 1 : 0);
    if (need > cap || (need > 0 && out == NULL))
        return -2;

    for (i = 0; i + 4 <= n; i += 4) {
        for (int k = 0; k < 4; k++)
            if ((v[k] = b64_value(p[i + k], url)) < 0)
                return -1;
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | v[3];
        out[o++] = (char)(w >> 16);
        out[o++] = (char)(w >> 8);
        out[o++] = (char)w;
    }
    if (rem) {
        uint32_t w = 0;
        for (size_t k = 0; k < rem; k++) {
            if ((v[k] = b64_value(p[i + k], url)) < 0)
                return -1;
            w |= (uint32_t)v[k] << (18 - 6 * k);
        }
        /* Bits past the last whole byte must be zero: one encoding per value. */
        if ((rem == 2 && (v[1] & 15)) || (rem == 3 && (v[2] & 3)))
            return -1;
        out[o++] = (char)(w >> 16);
        if (rem == 3)
            out[o++] = (char)(w >> 8);
    }
    return (long)o;
}

typedef struct {
    const char *name;
    const char *md;
    const char *keytype;
    int ec;        /* 0: RSA PKCS#1 v1.5, 1: ECDSA */
    int curve_nid; /* ECDSA only */
    size_t half;   /* ECDSA only: bytes in r and in s */
} jws_alg_t;

static const jws_alg_t jws_algs[] = {
    {"RS256", "SHA256", "RSA", 0, 0, 0},
    {"RS384", "SHA384", "RSA", 0, 0, 0},
    {"RS512", "SHA512", "RSA", 0, 0, 0},
    {"ES256", "SHA256", "EC", 1, NID_X9_62_prime256v1, 32},
    {"ES384", "SHA384", "EC", 1, NID_secp384r1, 48},
};

/* RFC 7518 section 3.3: RSA keys for JWS are 2048 bits or larger. */
#define RSA_MIN_BITS 2048

/* An encrypted PEM must never make OpenSSL prompt on the terminal. */
static int
no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/*
 * Reads a PEM "PUBLIC KEY". The decoder narrowed to SubjectPublicKeyInfo
 * and the key type ALG needs is about three times faster than
 * PEM_read_bio_PUBKEY, which tries every decoder OpenSSL has (some 120 us
 * against 370 us for a P-256 key). When it fails, the general reader gets
 * the key anyway so that check_key can say what kind of key it was.
 */
static EVP_PKEY *
read_pubkey(const char *pem, size_t pemlen, const char *keytype)
{
    EVP_PKEY *pkey = NULL;
    OSSL_DECODER_CTX *dctx;
    const unsigned char *p = (const unsigned char *)pem;
    size_t left = pemlen;
    BIO *bio;

    dctx = OSSL_DECODER_CTX_new_for_pkey(&pkey, "PEM", "SubjectPublicKeyInfo", keytype,
                                         EVP_PKEY_PUBLIC_KEY, NULL, NULL);
    if (dctx != NULL && OSSL_DECODER_from_data(dctx, &p, &left) == 1 && pkey != NULL) {
        OSSL_DECODER_CTX_free(dctx);
        return pkey;
    }
    OSSL_DECODER_CTX_free(dctx);
    EVP_PKEY_free(pkey);
    pkey = NULL;

    bio = BIO_new_mem_buf(pem, (int)pemlen);
    if (bio != NULL)
        pkey = PEM_read_bio_PUBKEY(bio, NULL, no_password, NULL);
    BIO_free(bio);
    return pkey;
}

static int
fail(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;

    if (err != NULL && errlen > 0) {
        if (reason != NULL)
            snprintf(err, errlen, "%s: %s", what, reason);
        else
            snprintf(err, errlen, "%s", what);
    }
    return -1;
}

/* JWS carries ECDSA signatures as fixed-width r || s (RFC 7518 section
 * 3.4); OpenSSL verifies the DER SEQUENCE of two INTEGERs. Returns the DER
 * length and *DER (OPENSSL_free it), or -1. */
static int
ecdsa_raw_to_der(const unsigned char *sig, size_t half, unsigned char **der)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)half, NULL);
    BIGNUM *s = BN_bin2bn(sig + half, (int)half, NULL);
    int n = -1;

    if (es == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(es, r, s)) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        return -1;
    }
    *der = NULL;
    n = i2d_ECDSA_SIG(es, der);
    ECDSA_SIG_free(es);
    return n > 0 ? n : -1;
}

static int
check_key(const jws_alg_t *a, EVP_PKEY *pkey, char *err, size_t errlen)
{
    const char *type = EVP_PKEY_get0_type_name(pkey);
    char group[80];
    size_t glen = 0;

    if (type == NULL)
        type = "unknown";
    if (!a->ec) {
        if (!EVP_PKEY_is_a(pkey, "RSA")) {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "%s needs an RSA public key, got %s", a->name, type);
            return -1;
        }
        if (EVP_PKEY_get_bits(pkey) < RSA_MIN_BITS) {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "RSA key of %d bits, %s needs at least %d",
                         EVP_PKEY_get_bits(pkey), a->name, RSA_MIN_BITS);
            return -1;
        }
        return 0;
    }
    if (!EVP_PKEY_is_a(pkey, "EC")) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s needs an EC public key, got %s", a->name, type);
        return -1;
    }
    if (!EVP_PKEY_get_group_name(pkey, group, sizeof(group), &glen) ||
        OBJ_sn2nid(group) != a->curve_nid) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s needs a key on %s, got %s", a->name, OBJ_nid2sn(a->curve_nid),
                     glen ? group : "an unnamed curve");
        return -1;
    }
    return 0;
}

int
gw_crypto_verify(const char *alg, const char *pem, size_t pemlen, const char *data, size_t dlen,
                 const unsigned char *sig, size_t siglen, char *err, size_t errlen)
{
    const jws_alg_t *a = NULL;
    EVP_PKEY *pkey = NULL;
    EVP_MD_CTX *mctx = NULL;
    unsigned char *der = NULL;
    const unsigned char *vsig = sig;
    size_t vlen = siglen;
    int rc = -1;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    for (size_t i = 0; alg != NULL && i < GW_ARRAY_LEN(jws_algs); i++)
        if (strcmp(alg, jws_algs[i].name) == 0)
            a = &jws_algs[i];
    if (a == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "unsupported algorithm %s", alg ? alg : "(null)");
        return -1;
    }
    if (data == NULL && dlen > 0) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "no data");
        return -1;
    }
    if (pem == NULL || pemlen == 0 || pemlen > INT_MAX) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "no public key");
        return -1;
    }

    ERR_set_mark();
    pkey = read_pubkey(pem, pemlen, a->keytype);
    if (pkey == NULL) {
        rc = fail(err, errlen, "cannot read the PEM public key");
        goto done;
    }
    if (check_key(a, pkey, err, errlen) != 0)
        goto done;

    /* A wrong-sized signature cannot verify: say "invalid" without
     * asking OpenSSL, which would report it as an error. */
    if (a->ec) {
        if (siglen != 2 * a->half || sig == NULL) {
            rc = 0;
            goto done;
        }
        int n = ecdsa_raw_to_der(sig, a->half, &der);
        if (n < 0) {
            rc = fail(err, errlen, "cannot encode the ECDSA signature");
            goto done;
        }
        vsig = der;
        vlen = (size_t)n;
    } else if (sig == NULL || siglen == 0 || siglen != (size_t)EVP_PKEY_get_size(pkey)) {
        rc = 0;
        goto done;
    }

    mctx = EVP_MD_CTX_new();
    if (mctx == NULL || EVP_DigestVerifyInit_ex(mctx, NULL, a->md, NULL, NULL, pkey, NULL) != 1) {
        rc = fail(err, errlen, "cannot set up the verification");
        goto done;
    }
    /* Anything but 1 is a signature that does not verify: OpenSSL returns
     * 0 or -1 for a bad signature depending on where it notices. */
    rc = EVP_DigestVerify(mctx, vsig, vlen, dlen ? (const unsigned char *)data : empty, dlen) == 1;

done:
    EVP_MD_CTX_free(mctx);
    OPENSSL_free(der);
    EVP_PKEY_free(pkey);
    ERR_pop_to_mark();
    return rc;
}

int
gw_crypto_constant_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return 0;
    if (alen == 0)
        return 1;
    if (a == NULL || b == NULL)
        return 0;
    return CRYPTO_memcmp(a, b, alen) == 0;
}
