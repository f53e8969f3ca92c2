-- gw.crypto: digests, MACs, base64 and JWS signature checks for plugins,
-- over the C functions of gateway/gw_crypto.c (OpenSSL 3) through the FFI.
--
-- The symbols are resolved in the running process (ffi.C): the gateway
-- binary exports them. Loading this module never touches them, so it loads
-- anywhere; calling a function outside a process that has them raises
-- "missing symbol".
--
--   sha256(s)                      -> 32 raw bytes
--   hmac(alg, key, data)           -> raw MAC | nil, err   alg "sha256" "sha384" "sha512"
--   base64_encode(s)               -> standard alphabet, padded
--   base64_decode(s)               -> bytes | nil, err     padding optional
--   base64url_encode(s)            -> URL alphabet, no padding (JWS)
--   base64url_decode(s)            -> bytes | nil, err     padding optional
--   verify(alg, pem, data, sig)    -> true | false | false, err
--       alg "RS256" "RS384" "RS512" "ES256" "ES384"; pem a "PUBLIC KEY" PEM;
--       sig the raw JWS signature (ES*: r || s). `false` alone: the
--       signature does not verify; `false, err`: the check could not be made
--       (bad key, key type or curve not matching alg, unknown alg).
--   constant_eq(a, b)              -> bool; false unless both are strings
--
-- Decoding is strict and canonical (see gw_crypto.h): no whitespace, no
-- stray padding, no non-zero unused bits.

local ffi = require "ffi"

local C = ffi.C
local ffi_new, ffi_str = ffi.new, ffi.string
local type, tostring = type, tostring

-- These declarations live here only: declaring them a second time in the
-- same VM is an error in LuaJIT.
ffi.cdef [[
int gw_crypto_sha256(const char *data, size_t len, unsigned char out[32]);
int gw_crypto_hmac(const char *alg, const char *key, size_t klen, const char *data,
                   size_t dlen, unsigned char *out, size_t *outlen);
size_t gw_crypto_base64_encode(const char *in, size_t len, char *out, size_t cap, int url);
long gw_crypto_base64_decode(const char *in, size_t len, char *out, size_t cap, int url);
int gw_crypto_verify(const char *alg, const char *pem, size_t pemlen, const char *data,
                     size_t dlen, const unsigned char *sig, size_t siglen, char *err,
                     size_t errlen);
int gw_crypto_constant_eq(const char *a, size_t alen, const char *b, size_t blen);
]]

-- Scratch buffers, one per VM. No call below yields between filling a
-- buffer and copying it out with ffi.string, so coroutines can share them.
local digest = ffi_new("unsigned char[64]")
local digest_len = ffi_new("size_t[1]")
local errbuf_size = 256
local errbuf = ffi_new("char[?]", errbuf_size)

-- The text buffer grows in powers of two up to KEEP bytes and stays;
-- larger requests get a buffer of their own, left to the GC, so one big
-- body does not pin memory for the life of the worker.
local KEEP = 64 * 1024
local text, text_size = ffi_new("char[?]", 512), 512

local function text_buf(n)
    if n <= text_size then
        return text
    end
    if n > KEEP then
        return ffi_new("char[?]", n)
    end
    local size = text_size
    while size < n do
        size = size * 2
    end
    text, text_size = ffi_new("char[?]", size), size
    return text
end

local function need_string(v, fname, pos)
    if type(v) ~= "string" then
        error("gw.crypto." .. fname .. ": argument " .. pos .. " must be a string, got "
            .. type(v), 3)
    end
end

local _M = {}

function _M.sha256(s)
    need_string(s, "sha256", 1)
    if C.gw_crypto_sha256(s, #s, digest) ~= 0 then
        return nil, "sha256 failed"
    end
    return ffi_str(digest, 32)
end

local HMAC_ALGS = { sha256 = true, sha384 = true, sha512 = true }

function _M.hmac(alg, key, data)
    if not HMAC_ALGS[alg] then
        return nil, "unsupported hmac algorithm " .. tostring(alg)
    end
    need_string(key, "hmac", 2)
    need_string(data, "hmac", 3)
    digest_len[0] = 64
    if C.gw_crypto_hmac(alg, key, #key, data, #data, digest, digest_len) ~= 0 then
        return nil, "hmac failed"
    end
    return ffi_str(digest, digest_len[0])
end

local function encode(s, url, fname)
    need_string(s, fname, 1)
    local n = #s
    if n == 0 then
        return ""
    end
    local cap = math.floor((n + 2) / 3) * 4
    local buf = text_buf(cap)
    local w = C.gw_crypto_base64_encode(s, n, buf, cap, url)
    if w == 0 then
        error("gw.crypto." .. fname .. ": encoding failed")
    end
    return ffi_str(buf, w)
end

local function decode(s, url)
    if type(s) ~= "string" then
        return nil, "not a string"
    end
    local n = #s
    if n == 0 then
        return ""
    end
    local cap = math.floor(n / 4) * 3 + 2
    local buf = text_buf(cap)
    local got = tonumber(C.gw_crypto_base64_decode(s, n, buf, cap, url))
    if got < 0 then
        return nil, url == 1 and "malformed base64url" or "malformed base64"
    end
    return ffi_str(buf, got)
end

function _M.base64_encode(s)
    return encode(s, 0, "base64_encode")
end

function _M.base64url_encode(s)
    return encode(s, 1, "base64url_encode")
end

function _M.base64_decode(s)
    return decode(s, 0)
end

function _M.base64url_decode(s)
    return decode(s, 1)
end

local VERIFY_ALGS = { RS256 = true, RS384 = true, RS512 = true, ES256 = true, ES384 = true }

function _M.verify(alg, pem, data, sig)
    if not VERIFY_ALGS[alg] then
        return false, "unsupported algorithm " .. tostring(alg)
    end
    if type(pem) ~= "string" or pem == "" then
        return false, "no public key"
    end
    if type(data) ~= "string" then
        return false, "no signed data"
    end
    if type(sig) ~= "string" then
        return false
    end
    local rc = C.gw_crypto_verify(alg, pem, #pem, data, #data, sig, #sig, errbuf, errbuf_size)
    if rc == 1 then
        return true
    end
    if rc == 0 then
        return false
    end
    return false, ffi_str(errbuf)
end

function _M.constant_eq(a, b)
    if type(a) ~= "string" or type(b) ~= "string" then
        return false
    end
    return C.gw_crypto_constant_eq(a, #a, b, #b) == 1
end

return _M
