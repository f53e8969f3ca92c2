/* gw_crypto: digests and MACs against published vectors, base64 edge cases,
 * and JWS signature verification with keys made here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "gw_crypto.h"
#include "tap.h"

static char *
hex(const unsigned char *p, size_t n)
{
    static char buf[2 * 256 + 1];
    for (size_t i = 0; i < n && i < 256; i++)
        snprintf(buf + 2 * i, 3, "%02x", p[i]);
    buf[2 * (n < 256 ? n : 256)] = '\0';
    return buf;
}

static void
test_sha256(void)
{
    unsigned char d[32];

    is_int(gw_crypto_sha256("abc", 3, d), GW_OK, "sha256 abc");
    is_str(hex(d, 32), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
           "sha256 abc digest");
    is_int(gw_crypto_sha256(NULL, 0, d), GW_OK, "sha256 of nothing");
    is_str(hex(d, 32), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
           "sha256 empty digest");
    is_int(gw_crypto_sha256(NULL, 3, d), GW_ERROR, "sha256 NULL data with a length");
}

/* RFC 4231 test cases 1, 2 and 6. */
static void
test_hmac(void)
{
    struct {
        const char *name;
        int key_byte;
        size_t klen;
        const char *key, *data;
        const char *want[3];
    } tc[] = {
        {"rfc4231 #1",
         0x0b,
         20,
         NULL,
         "Hi There",
         {"b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
          "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8"
          "b2fa9cb6",
          "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274e"
          "aea3f4e4be9d914eeb61f1702e696c203a126854"}},
        {"rfc4231 #2",
         0,
         4,
         "Jefe",
         "what do ya want for nothing?",
         {"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
          "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ec"
          "fab21649",
          "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65"
          "f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"}},
        {"rfc4231 #6",
         0xaa,
         131,
         NULL,
         "Test Using Larger Than Block-Size Key - Hash Key First",
         {"60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
          "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df1"
          "63f44952",
          "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd221"
          "5d6a1e5295e64f73f63f0aec8b915a985d786598"}},
    };
    const char *algs[3] = {"sha256", "sha384", "sha512"};
    const size_t sizes[3] = {32, 48, 64};
    unsigned char out[GW_CRYPTO_HMAC_MAX];
    char key[256];

    for (size_t i = 0; i < GW_ARRAY_LEN(tc); i++) {
        if (tc[i].key == NULL)
            memset(key, tc[i].key_byte, tc[i].klen);
        else
            memcpy(key, tc[i].key, tc[i].klen);
        for (int a = 0; a < 3; a++) {
            size_t n = sizeof(out);
            int rc =
                gw_crypto_hmac(algs[a], key, tc[i].klen, tc[i].data, strlen(tc[i].data), out, &n);
            is_int(rc, GW_OK, "%s hmac-%s", tc[i].name, algs[a]);
            is_int(n, sizes[a], "%s hmac-%s length", tc[i].name, algs[a]);
            is_str(hex(out, n), tc[i].want[a], "%s hmac-%s value", tc[i].name, algs[a]);
        }
    }

    size_t n = sizeof(out);
    is_int(gw_crypto_hmac("sha1", "k", 1, "d", 1, out, &n), GW_ERROR, "hmac sha1 refused");
    is_int(gw_crypto_hmac("SHA256", "k", 1, "d", 1, out, &n), GW_ERROR,
           "hmac names are lower-case");
    is_int(gw_crypto_hmac(NULL, "k", 1, "d", 1, out, &n), GW_ERROR, "hmac NULL alg");
    n = 47;
    is_int(gw_crypto_hmac("sha384", "k", 1, "d", 1, out, &n), GW_ERROR, "hmac short output buffer");
    is_int(n, 47, "outlen untouched on error");
    n = sizeof(out);
    is_int(gw_crypto_hmac("sha256", NULL, 0, NULL, 0, out, &n), GW_OK, "hmac empty key and data");
    is_str(hex(out, n), "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad",
           "hmac-sha256 of empty under empty key");
}

static long
dec(const char *s, int url, char *out, size_t cap)
{
    return gw_crypto_base64_decode(s, strlen(s), out, cap, url);
}

static void
test_base64(void)
{
    static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *std[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    static const char *url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    char out[512], back[512];
    size_t n;
    long m;

    for (size_t i = 0; i < GW_ARRAY_LEN(plain); i++) {
        n = gw_crypto_base64_encode(plain[i], strlen(plain[i]), out, sizeof(out), 0);
        out[n] = '\0';
        is_str(out, std[i], "rfc4648 base64 \"%s\"", plain[i]);
        n = gw_crypto_base64_encode(plain[i], strlen(plain[i]), out, sizeof(out), 1);
        out[n] = '\0';
        is_str(out, url[i], "rfc4648 base64url \"%s\"", plain[i]);

        m = dec(std[i], 0, back, sizeof(back));
        ok(m == (long)strlen(plain[i]) && memcmp(back, plain[i], (size_t)m) == 0,
           "decode base64 \"%s\"", std[i]);
        m = dec(url[i], 0, back, sizeof(back));
        ok(m == (long)strlen(plain[i]) && memcmp(back, plain[i], (size_t)m) == 0,
           "decode unpadded base64 \"%s\"", url[i]);
        m = dec(url[i], 1, back, sizeof(back));
        ok(m == (long)strlen(plain[i]) && memcmp(back, plain[i], (size_t)m) == 0,
           "decode base64url \"%s\"", url[i]);
        m = dec(std[i], 1, back, sizeof(back));
        ok(m == (long)strlen(plain[i]) && memcmp(back, plain[i], (size_t)m) == 0,
           "decode padded base64url \"%s\"", std[i]);
    }

    /* The two alphabets differ in values 62 and 63. */
    n = gw_crypto_base64_encode("\xfb\xff", 2, out, sizeof(out), 0);
    out[n] = '\0';
    is_str(out, "+/8=", "standard alphabet");
    n = gw_crypto_base64_encode("\xfb\xff", 2, out, sizeof(out), 1);
    out[n] = '\0';
    is_str(out, "-_8", "url alphabet");
    is_int(dec("-_8", 1, back, sizeof(back)), 2, "url decodes -_");
    is_int(dec("+/8=", 0, back, sizeof(back)), 2, "standard decodes +/");
    is_int(dec("+/8", 1, back, sizeof(back)), -1, "url rejects +/");
    is_int(dec("-_8=", 0, back, sizeof(back)), -1, "standard rejects -_");

    /* Every byte value and length, both ways. */
    unsigned char raw[300];
    int all_ok = 1;
    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = (unsigned char)(i * 7 + 3);
    for (int u = 0; u <= 1; u++)
        for (size_t len = 0; len <= sizeof(raw) && all_ok; len++) {
            char enc[512];
            n = gw_crypto_base64_encode((const char *)raw, len, enc, sizeof(enc), u);
            m = gw_crypto_base64_decode(enc, n, back, sizeof(back), u);
            int good = m == (long)len && memcmp(back, raw, len) == 0;
            /* The exact capacity suffices, one less does not. */
            if (len > 0)
                good = good && gw_crypto_base64_encode((const char *)raw, len, enc, n, u) == n &&
                       gw_crypto_base64_encode((const char *)raw, len, enc, n - 1, u) == 0 &&
                       gw_crypto_base64_decode(enc, n, back, len, u) == (long)len &&
                       gw_crypto_base64_decode(enc, n, back, len - 1, u) == -2;
            if (!good) {
                all_ok = 0;
                printf("# round trip failed at len %zu url %d\n", len, u);
            }
        }
    ok(all_ok, "round trips of 0..300 bytes, exact capacities");

    static const struct {
        const char *in;
        int url;
        const char *why;
    } bad[] = {
        {"Z", 0, "one char"},
        {"Zm9vY", 1, "length 1 mod 4"},
        {"Zg=", 0, "incomplete padding"},
        {"Zg=", 1, "incomplete padding (url)"},
        {"Zm8==", 0, "too much padding"},
        {"Zm9v=", 0, "padding after a full quantum"},
        {"Zm9v====", 0, "a block of padding"},
        {"===", 0, "only padding"},
        {"====", 0, "four pads"},
        {"Zg==Zg==", 0, "padding in the middle"},
        {"Zm=v", 0, "padding inside a quantum"},
        {"Zh==", 0, "non-zero unused bits (1 byte)"},
        {"Zh", 1, "non-zero unused bits (url)"},
        {"Zm9=", 0, "non-zero unused bits (2 bytes)"},
        {"Zm9v\n", 0, "trailing newline"},
        {" Zm9v", 0, "leading space"},
        {"Zm 9v", 0, "inner space"},
        {"Zm9v*A==", 0, "bad character"},
        {"Zm9v.A", 1, "dot in base64url"},
    };
    for (size_t i = 0; i < GW_ARRAY_LEN(bad); i++)
        is_int(dec(bad[i].in, bad[i].url, back, sizeof(back)), -1, "malformed: %s", bad[i].why);
    is_int(gw_crypto_base64_decode("Zm\0v", 4, back, sizeof(back), 0), -1, "malformed: NUL byte");
    is_int(gw_crypto_base64_decode(NULL, 0, back, sizeof(back), 1), 0,
           "empty input decodes to empty");
    is_int(gw_crypto_base64_encode("abc", 3, out, 3, 0), 0, "encode cap too small");
}

/* ---- signatures ---- */

static char *
pubkey_pem(EVP_PKEY *pkey)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p, *s;
    long n;

    PEM_write_bio_PUBKEY(b, pkey);
    n = BIO_get_mem_data(b, &p);
    s = malloc((size_t)n + 1);
    memcpy(s, p, (size_t)n);
    s[n] = '\0';
    BIO_free(b);
    return s;
}

static char *
privkey_pem(EVP_PKEY *pkey)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p, *s;
    long n;

    PEM_write_bio_PrivateKey(b, pkey, NULL, NULL, 0, NULL, NULL);
    n = BIO_get_mem_data(b, &p);
    s = malloc((size_t)n + 1);
    memcpy(s, p, (size_t)n);
    s[n] = '\0';
    BIO_free(b);
    return s;
}

/* Signs DATA the way a JWS issuer does: PKCS#1 v1.5 for RSA, and for EC
 * the DER signature turned into fixed-width r || s of HALF bytes each. */
static size_t
jws_sign(EVP_PKEY *pkey, const char *md, size_t half, const char *data, unsigned char *out)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned char der[1024];
    size_t n = sizeof(der);

    EVP_DigestSignInit_ex(c, NULL, md, NULL, NULL, pkey, NULL);
    EVP_DigestSign(c, der, &n, (const unsigned char *)data, strlen(data));
    EVP_MD_CTX_free(c);
    if (half == 0) {
        memcpy(out, der, n);
        return n;
    }
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)n);
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(es, &r, &s);
    BN_bn2binpad(r, out, (int)half);
    BN_bn2binpad(s, out + half, (int)half);
    ECDSA_SIG_free(es);
    return 2 * half;
}

static int
verify(const char *alg, const char *pem, const char *data, const unsigned char *sig, size_t siglen,
       char *err)
{
    return gw_crypto_verify(alg, pem, pem ? strlen(pem) : 0, data, strlen(data), sig, siglen, err,
                            256);
}

static void
test_verify(void)
{
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *rsa_small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *ec2 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *ec384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    char *rsa_pem = pubkey_pem(rsa), *rsa2_pem = pubkey_pem(rsa2);
    char *small_pem = pubkey_pem(rsa_small), *ec_pem = pubkey_pem(ec), *ec2_pem = pubkey_pem(ec2);
    char *ec384_pem = pubkey_pem(ec384), *ed_pem = pubkey_pem(ed), *rsa_priv = privkey_pem(rsa);
    const char *data = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";
    unsigned char sig[512], bad[512];
    char err[256];
    size_t n;

    ok(rsa && rsa2 && rsa_small && ec && ec2 && ec384 && ed, "test keys generated");

    /* RS256 */
    n = jws_sign(rsa, "SHA256", 0, data, sig);
    is_int(n, 256, "RS256 signature is as long as the modulus");
    is_int(verify("RS256", rsa_pem, data, sig, n, err), 1, "RS256 valid");
    is_str(err, "", "no error message when valid");
    is_int(verify("RS256", rsa_pem, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib2IifQ", sig, n, err), 0,
           "RS256 tampered data");
    memcpy(bad, sig, n);
    bad[n / 2] ^= 1;
    is_int(verify("RS256", rsa_pem, data, bad, n, err), 0, "RS256 tampered signature");
    is_int(verify("RS256", rsa2_pem, data, sig, n, err), 0, "RS256 other key");
    is_int(verify("RS384", rsa_pem, data, sig, n, err), 0, "RS256 signature checked as RS384");
    is_int(verify("RS256", rsa_pem, data, sig, n - 1, err), 0, "RS256 truncated signature");
    is_int(verify("RS256", rsa_pem, data, sig, 0, err), 0, "RS256 empty signature");
    is_int(verify("RS256", rsa_pem, data, NULL, 0, err), 0, "RS256 NULL signature");
    memset(bad, 0xff, n);
    is_int(verify("RS256", rsa_pem, data, bad, n, err), 0, "RS256 signature above the modulus");
    {
        /* PEM as pasted by people: CRLF line ends, text before the armour. */
        char crlf[1024], *o = crlf;
        o += sprintf(o, "the signing service key\r\n");
        for (const char *p = rsa_pem; *p; p++) {
            if (*p == '\n')
                *o++ = '\r';
            *o++ = *p;
        }
        *o = '\0';
        is_int(verify("RS256", crlf, data, sig, n, err), 1,
               "RS256 with a CRLF PEM after some text");
    }
    n = jws_sign(rsa, "SHA512", 0, data, sig);
    is_int(verify("RS512", rsa_pem, data, sig, n, err), 1, "RS512 valid");
    n = jws_sign(rsa, "SHA384", 0, data, sig);
    is_int(verify("RS384", rsa_pem, data, sig, n, err), 1, "RS384 valid");

    /* ES256 */
    n = jws_sign(ec, "SHA256", 32, data, sig);
    is_int(verify("ES256", ec_pem, data, sig, n, err), 1, "ES256 valid");
    is_int(verify("ES256", ec_pem, "x", sig, n, err), 0, "ES256 tampered data");
    memcpy(bad, sig, n);
    bad[40] ^= 0x80;
    is_int(verify("ES256", ec_pem, data, bad, n, err), 0, "ES256 tampered s");
    memcpy(bad, sig, n);
    bad[0] ^= 0x01;
    is_int(verify("ES256", ec_pem, data, bad, n, err), 0, "ES256 tampered r");
    is_int(verify("ES256", ec2_pem, data, sig, n, err), 0, "ES256 other key");
    is_int(verify("ES256", ec_pem, data, sig, 63, err), 0, "ES256 63-byte signature");
    is_int(verify("ES256", ec_pem, data, sig, 0, err), 0, "ES256 empty signature");
    memset(bad, 0, 64);
    is_int(verify("ES256", ec_pem, data, bad, 64, err), 0, "ES256 r = s = 0");
    memset(bad, 0xff, 64);
    is_int(verify("ES256", ec_pem, data, bad, 64, err), 0, "ES256 r, s above the order");
    {
        /* The DER form is not the JWS form. */
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        size_t dn = sizeof(bad);
        EVP_DigestSignInit_ex(c, NULL, "SHA256", NULL, NULL, ec, NULL);
        EVP_DigestSign(c, bad, &dn, (const unsigned char *)data, strlen(data));
        EVP_MD_CTX_free(c);
        is_int(verify("ES256", ec_pem, data, bad, dn, err), 0, "ES256 DER signature refused");
    }
    n = jws_sign(ec384, "SHA384", 48, data, sig);
    is_int(n, 96, "ES384 signature is 96 bytes");
    is_int(verify("ES384", ec384_pem, data, sig, n, err), 1, "ES384 valid");
    is_int(verify("ES384", ec384_pem, data, sig, 64, err), 0, "ES384 64-byte signature");

    /* Keys that do not fit the algorithm are errors, not invalid signatures. */
    n = jws_sign(rsa, "SHA256", 0, data, sig);
    is_int(verify("ES256", rsa_pem, data, sig, 64, err), -1, "RSA key with ES256");
    ok(strstr(err, "EC") != NULL, "  says it needs an EC key: %s", err);
    n = jws_sign(ec, "SHA256", 32, data, sig);
    is_int(verify("RS256", ec_pem, data, sig, n, err), -1, "EC key with RS256");
    ok(strstr(err, "RSA") != NULL, "  says it needs an RSA key: %s", err);
    is_int(verify("ES256", ec384_pem, data, sig, n, err), -1, "P-384 key with ES256");
    ok(strstr(err, "prime256v1") != NULL, "  names the curve: %s", err);
    is_int(verify("ES384", ec_pem, data, sig, 96, err), -1, "P-256 key with ES384");
    is_int(verify("RS256", ed_pem, data, sig, 256, err), -1, "Ed25519 key with RS256");
    is_int(verify("ES256", ed_pem, data, sig, 64, err), -1, "Ed25519 key with ES256");
    is_int(verify("RS256", small_pem, data, sig, 128, err), -1, "1024-bit RSA key refused");
    ok(strstr(err, "2048") != NULL, "  says why: %s", err);

    /* Bad keys and algorithms. */
    is_int(verify("RS256", "not a key", data, sig, 256, err), -1, "garbage PEM");
    ok(strncmp(err, "cannot read the PEM public key", 30) == 0, "  message: %s", err);
    is_int(verify("RS256", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", data,
                  sig, 256, err),
           -1, "PEM with a garbage body");
    is_int(verify("RS256", rsa_priv, data, sig, 256, err), -1, "a private key PEM is not read");
    is_int(verify("RS256", NULL, data, sig, 256, err), -1, "no PEM");
    is_int(verify("RS256", "", data, sig, 256, err), -1, "empty PEM");
    is_int(verify("HS256", rsa_pem, data, sig, 256, err), -1, "HS256 is not a verify algorithm");
    is_str(err, "unsupported algorithm HS256", "  message");
    is_int(verify("none", rsa_pem, data, sig, 0, err), -1, "none refused");
    is_int(verify("rs256", rsa_pem, data, sig, 256, err), -1, "algorithm names are case-sensitive");
    is_int(verify(NULL, rsa_pem, data, sig, 256, err), -1, "NULL algorithm");
    is_int(gw_crypto_verify("RS256", "x", 1, "d", 1, sig, 256, NULL, 0), -1, "NULL err buffer");
    {
        /* A PEM cut anywhere must fail cleanly. */
        size_t len = strlen(rsa_pem);
        int all = 1;
        for (size_t cut = 1; cut < len; cut += 7)
            if (gw_crypto_verify("RS256", rsa_pem, cut, data, strlen(data), sig, 256, err, 4) != -1)
                all = 0;
        ok(all, "every truncated PEM is an error");
        ok(strlen(err) <= 3, "error message bounded by errlen");
    }
    is_int(ERR_peek_error(), 0, "nothing left on the OpenSSL error queue");

    free(rsa_pem);
    free(rsa2_pem);
    free(small_pem);
    free(ec_pem);
    free(ec2_pem);
    free(ec384_pem);
    free(ed_pem);
    free(rsa_priv);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(rsa2);
    EVP_PKEY_free(rsa_small);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(ec2);
    EVP_PKEY_free(ec384);
    EVP_PKEY_free(ed);
}

/* A PEM public key from OSSL_PARAMs: how a JWK becomes something
 * gw_crypto_verify reads. */
static char *
pem_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pkey = NULL;
    char *pem = NULL;

    if (params != NULL && pc != NULL && EVP_PKEY_fromdata_init(pc) == 1 &&
        EVP_PKEY_fromdata(pc, &pkey, EVP_PKEY_PUBLIC_KEY, params) == 1)
        pem = pubkey_pem(pkey);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(pc);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return pem;
}

/* The JWS Compact Serialization examples of RFC 7515 appendix A.2 (RS256)
 * and A.3 (ES256), with their keys given as JWKs. */
static const char rfc7515_payload[] =
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt"
    "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ";

static void
test_rfc7515_rs256(void)
{
    const char *n64 = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddx"
                      "HmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMs"
                      "D1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSH"
                      "SXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdV"
                      "MTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8"
                      "NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
    const char *sig64 = "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7"
                        "AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4"
                        "BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K"
                        "0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqv"
                        "hJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrB"
                        "p0igcN_IoypGlUPQGe77Rw";
    char input[256], nbuf[256], sig[256], err[256];
    long nlen, slen;

    snprintf(input, sizeof(input), "eyJhbGciOiJSUzI1NiJ9.%s", rfc7515_payload);
    nlen = gw_crypto_base64_decode(n64, strlen(n64), nbuf, sizeof(nbuf), 1);
    slen = gw_crypto_base64_decode(sig64, strlen(sig64), sig, sizeof(sig), 1);
    is_int(nlen, 256, "A.2 modulus decodes");
    is_int(slen, 256, "A.2 signature decodes");
    if (nlen != 256 || slen != 256)
        return;

    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BIGNUM *n = BN_bin2bn((unsigned char *)nbuf, (int)nlen, NULL);
    BIGNUM *e = BN_new();
    BN_set_word(e, 65537); /* "AQAB" */
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e);
    char *pem = pem_from_params("RSA", bld);
    BN_free(n);
    BN_free(e);
    ok(pem != NULL, "A.2 key built from the JWK");
    if (pem == NULL)
        return;
    is_int(gw_crypto_verify("RS256", pem, strlen(pem), input, strlen(input), (unsigned char *)sig,
                            256, err, sizeof(err)),
           1, "RFC 7515 A.2 RS256 example verifies");
    input[30] ^= 1;
    is_int(gw_crypto_verify("RS256", pem, strlen(pem), input, strlen(input), (unsigned char *)sig,
                            256, err, sizeof(err)),
           0, "RFC 7515 A.2 with a changed payload does not");
    free(pem);
}

static void
test_rfc7515_es256(void)
{
    const char *x = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const char *y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
    const char *sig64 = "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSA"
                        "pmWQxfKTUJqPP3-Kg6NU1Q";
    unsigned char point[65];
    char input[256], sig[64], err[256];

    snprintf(input, sizeof(input), "eyJhbGciOiJFUzI1NiJ9.%s", rfc7515_payload);
    point[0] = 0x04; /* uncompressed point: 04 || x || y */
    is_int(gw_crypto_base64_decode(x, strlen(x), (char *)point + 1, 32, 1), 32, "A.3 x decodes");
    is_int(gw_crypto_base64_decode(y, strlen(y), (char *)point + 33, 32, 1), 32, "A.3 y decodes");
    is_int(gw_crypto_base64_decode(sig64, strlen(sig64), sig, sizeof(sig), 1), 64,
           "A.3 signature decodes");

    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point));
    char *pem = pem_from_params("EC", bld);
    ok(pem != NULL, "A.3 key built from the JWK");
    if (pem == NULL)
        return;
    is_int(gw_crypto_verify("ES256", pem, strlen(pem), input, strlen(input), (unsigned char *)sig,
                            64, err, sizeof(err)),
           1, "RFC 7515 A.3 ES256 example verifies");
    is_int(gw_crypto_verify("ES256", pem, strlen(pem), input, strlen(input) - 1,
                            (unsigned char *)sig, 64, err, sizeof(err)),
           0, "RFC 7515 A.3 with one byte less does not");
    free(pem);
}

static void
test_constant_eq(void)
{
    is_int(gw_crypto_constant_eq("abc", 3, "abc", 3), 1, "equal");
    is_int(gw_crypto_constant_eq("abc", 3, "abd", 3), 0, "last byte differs");
    is_int(gw_crypto_constant_eq("xbc", 3, "abc", 3), 0, "first byte differs");
    is_int(gw_crypto_constant_eq("abc", 3, "abcd", 4), 0, "prefix is not equal");
    is_int(gw_crypto_constant_eq("", 0, "", 0), 1, "empty equals empty");
    is_int(gw_crypto_constant_eq(NULL, 0, "", 0), 1, "NULL empty equals empty");
    is_int(gw_crypto_constant_eq("a\0b", 3, "a\0c", 3), 0, "compares past NUL bytes");
    is_int(gw_crypto_constant_eq("a\0b", 3, "a\0b", 3), 1, "equal with NUL bytes");
}

int
main(void)
{
    test_sha256();
    test_hmac();
    test_base64();
    test_verify();
    test_rfc7515_rs256();
    test_rfc7515_es256();
    test_constant_eq();
    done_testing();
}
