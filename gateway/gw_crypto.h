/*
 * Crypto primitives for the Lua runtime (gw.crypto) and the auth plugins:
 * SHA-256, HMAC, base64/base64url, JWS signature verification and a
 * constant-time comparison, on OpenSSL 3 EVP.
 *
 * Every function is a leaf: no Lua state, no global state, no allocation
 * the caller sees; results go to caller-provided buffers. They are safe to
 * call from any thread and from LuaJIT FFI. None of them leaves entries on
 * the OpenSSL error queue of the calling thread, so they never confuse a
 * later SSL_get_error() on the same thread.
 */
#ifndef GW_CRYPTO_H
#define GW_CRYPTO_H

#include <stddef.h>

#include "gw_core.h"

/** Largest output of gw_crypto_hmac (SHA-512). */
#define GW_CRYPTO_HMAC_MAX 64

/**
 * SHA-256 of DATA[0..LEN) into OUT. DATA may be NULL when LEN is 0.
 * Returns GW_OK, or GW_ERROR when OpenSSL fails.
 */
int gw_crypto_sha256(const char *data, size_t len, unsigned char out[32]);

/**
 * HMAC of DATA[0..DLEN) under KEY[0..KLEN) with ALG "sha256", "sha384" or
 * "sha512". *OUTLEN holds the capacity of OUT on entry and the MAC length
 * (32, 48, 64) on success. KEY and DATA may be NULL when their length is 0.
 * Returns GW_OK; GW_ERROR for an unknown ALG, a capacity smaller than the
 * MAC, or an OpenSSL failure (*OUTLEN then unchanged).
 */
int gw_crypto_hmac(const char *alg, const char *key, size_t klen, const char *data, size_t dlen,
                   unsigned char *out, size_t *outlen);

/**
 * Encodes IN[0..LEN) into OUT: standard base64 with '=' padding when URL is
 * 0, base64url (RFC 4648 section 5) without padding when URL is 1. OUT is
 * not NUL-terminated. Returns the number of bytes written; 0 when CAP is
 * too small (and for an empty input). Needs 4 * ((LEN + 2) / 3) bytes at
 * most.
 */
size_t gw_crypto_base64_encode(const char *in, size_t len, char *out, size_t cap, int url);

/**
 * Decodes IN[0..LEN) into OUT and returns the decoded length.
 *   URL = 0: alphabet "+/", padding optional, but when present it must be
 *            complete (the total length a multiple of 4).
 *   URL = 1: alphabet "-_", padding optional (JWS omits it), same rule.
 * Decoding is canonical: characters outside the alphabet (whitespace
 * included), '=' anywhere but at the end, a length of 1 mod 4 and non-zero
 * unused bits in the last character are all malformed, so a given value
 * has exactly one accepted encoding (a JWS signature cannot be altered
 * without changing its bytes).
 * Returns -1 for malformed input, -2 when CAP is too small (the decoded
 * size is at most LEN / 4 * 3 + 2).
 */
long gw_crypto_base64_decode(const char *in, size_t len, char *out, size_t cap, int url);

/**
 * Verifies a JWS signature (RFC 7518 section 3) over DATA[0..DLEN).
 *   ALG    "RS256" "RS384" "RS512" (RSASSA-PKCS1-v1_5) or "ES256" "ES384".
 *   PEM    a public key in PEM "PUBLIC KEY" (SubjectPublicKeyInfo) form,
 *          PEM[0..PEMLEN); an RSA key for RS*, at least 2048 bits; an EC
 *          key on P-256 for ES256 and on P-384 for ES384.
 *   SIG    the raw signature: for RS* as long as the modulus, for ES* the
 *          JWS form r || s (64 bytes for ES256, 96 for ES384).
 * The key is parsed on every call: no cache, so no lifetime to manage and
 * no stale key after a reload (parsing costs a few microseconds).
 * Returns 1 when the signature is valid, 0 when it is not (including a
 * signature of the wrong length or an empty one), -1 on an error (unknown
 * ALG, unreadable key, key type or curve not matching ALG, RSA key too
 * small); then a message goes to ERR[0..ERRLEN) when ERR is not NULL.
 */
int gw_crypto_verify(const char *alg, const char *pem, size_t pemlen, const char *data, size_t dlen,
                     const unsigned char *sig, size_t siglen, char *err, size_t errlen);

/**
 * 1 when A[0..ALEN) and B[0..BLEN) are equal, else 0. For equal lengths
 * the time does not depend on the contents; different lengths answer at
 * once (the length is not a secret).
 */
int gw_crypto_constant_eq(const char *a, size_t alen, const char *b, size_t blen);

#endif
