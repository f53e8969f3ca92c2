-- A stand-in for the `gw` table the runtime gives plugins, for unit tests
-- that run under plain luajit without the gateway.
--
--   local mock = require "mock_gw"
--   local g = mock.new{ method = "GET", path = "/x", headers = {...},
--                       query = {...}, params = {id = "42"}, remote_addr = "10.0.0.1",
--                       consumers = {...}, now = 1000, var = {...},
--                       status = 200, resp_headers = {...} }
--   -- g is also installed as the global `gw`
--   plugin.access(conf, g.ctx)
--   g.exited        -> {status =, body =, headers =} after gw.exit; after
--                      gw.exit_error also error = true, body the envelope
--   g.req_headers   -> request headers as they would go upstream (lower-case names)
--   g.resp_status, g.resp_headers (lower-case names), g.logs ({level, msg})
--
-- Crypto: gw.crypto comes from lua/gw/crypto.lua when that module loads
-- and works outside the gateway; otherwise from libcrypto through the FFI;
-- mock.has_crypto says whether hmac/verify are real. Base64 is pure Lua and
-- always present. Tests may replace g.crypto.verify / g.crypto.hmac.
-- GW_MOCK_NO_CRYPTO=1 in the environment disables the real crypto.

local cjson = require "cjson.safe"

local M = {}

-- Base64 ---------------------------------------------------------------

local STD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

local function b64enc(s, alphabet, pad)
    local out = {}
    for i = 1, #s, 3 do
        local a, b, c = s:byte(i, i + 2)
        local n = a * 65536 + (b or 0) * 256 + (c or 0)
        local q = {}
        for k = 3, 0, -1 do
            local v = math.floor(n / 64 ^ k) % 64
            q[#q + 1] = alphabet:sub(v + 1, v + 1)
        end
        if not b then
            q[3], q[4] = pad and "=" or "", pad and "=" or ""
        elseif not c then
            q[4] = pad and "=" or ""
        end
        out[#out + 1] = table.concat(q)
    end
    return table.concat(out)
end

local function b64dec(s, alphabet, padded)
    if type(s) ~= "string" then return nil end
    local map = {}
    for i = 1, 64 do map[alphabet:byte(i)] = i - 1 end
    if padded then
        if #s % 4 ~= 0 then return nil end
        s = s:gsub("==?$", "", 1)
    end
    if #s % 4 == 1 then return nil end
    local out, bits, n = {}, 0, 0
    for i = 1, #s do
        local v = map[s:byte(i)]
        if not v then return nil end
        n = n * 64 + v
        bits = bits + 6
        if bits >= 8 then
            bits = bits - 8
            local byte = math.floor(n / 2 ^ bits)
            out[#out + 1] = string.char(byte)
            n = n - byte * 2 ^ bits
        end
    end
    return table.concat(out)
end

-- libcrypto through the FFI --------------------------------------------

local function ffi_crypto()
    local ok, ffi = pcall(require, "ffi")
    if not ok then return nil end
    local okl, C = pcall(ffi.load, "crypto")
    if not okl then return nil end
    pcall(ffi.cdef, [[
typedef struct evp_md_st EVP_MD;
typedef struct evp_pkey_st EVP_PKEY;
typedef struct bio_st BIO;
typedef struct evp_md_ctx_st EVP_MD_CTX;
const EVP_MD *EVP_sha256(void);
const EVP_MD *EVP_sha384(void);
const EVP_MD *EVP_sha512(void);
unsigned char *HMAC(const EVP_MD *md, const void *key, int key_len,
    const unsigned char *d, size_t n, unsigned char *out, unsigned int *out_len);
unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
BIO *BIO_new_mem_buf(const void *buf, int len);
int BIO_free(BIO *a);
EVP_PKEY *PEM_read_bio_PUBKEY(BIO *bp, EVP_PKEY **x, void *cb, void *u);
void EVP_PKEY_free(EVP_PKEY *pkey);
EVP_MD_CTX *EVP_MD_CTX_new(void);
void EVP_MD_CTX_free(EVP_MD_CTX *ctx);
int EVP_DigestVerifyInit(EVP_MD_CTX *ctx, void **pctx, const EVP_MD *type,
    void *e, EVP_PKEY *pkey);
int EVP_DigestVerify(EVP_MD_CTX *ctx, const unsigned char *sig, size_t siglen,
    const unsigned char *tbs, size_t tbslen);
]])
    local mds = { sha256 = C.EVP_sha256, sha384 = C.EVP_sha384, sha512 = C.EVP_sha512 }
    local c = {}
    function c.sha256(s)
        local out = ffi.new("unsigned char[32]")
        C.SHA256(s, #s, out)
        return ffi.string(out, 32)
    end
    function c.hmac(alg, key, data)
        local md = mds[alg]
        if not md then error("unsupported hmac algorithm: " .. tostring(alg)) end
        local out = ffi.new("unsigned char[64]")
        local len = ffi.new("unsigned int[1]")
        C.HMAC(md(), key, #key, data, #data, out, len)
        return ffi.string(out, len[0])
    end
    -- JWS ES256 signatures are r||s; OpenSSL wants DER.
    local function der_int(b)
        b = b:gsub("^%z+", "")
        if b == "" then b = "\0" end
        if b:byte(1) >= 0x80 then b = "\0" .. b end
        return "\2" .. string.char(#b) .. b
    end
    function c.verify(alg, pem, data, sig)
        local md
        if alg == "RS256" then
            md = C.EVP_sha256()
        elseif alg == "ES256" then
            if #sig ~= 64 then return false, "bad ES256 signature length" end
            local body = der_int(sig:sub(1, 32)) .. der_int(sig:sub(33, 64))
            sig = "\48" .. string.char(#body) .. body
            md = C.EVP_sha256()
        else
            return false, "unsupported algorithm"
        end
        local bio = C.BIO_new_mem_buf(pem, #pem)
        local pkey = C.PEM_read_bio_PUBKEY(bio, nil, nil, nil)
        C.BIO_free(bio)
        if pkey == nil then return false, "bad public key" end
        local mctx = C.EVP_MD_CTX_new()
        local rc = C.EVP_DigestVerifyInit(mctx, nil, md, nil, pkey)
        if rc == 1 then
            rc = C.EVP_DigestVerify(mctx, sig, #sig, data, #data)
        end
        C.EVP_MD_CTX_free(mctx)
        C.EVP_PKEY_free(pkey)
        return rc == 1, rc ~= 1 and "signature mismatch" or nil
    end
    -- the self-test: RFC 4231 test case 2
    local okh, mac = pcall(c.hmac, "sha256", "Jefe", "what do ya want for nothing?")
    local hex = okh and mac:gsub(".", function(ch) return string.format("%02x", ch:byte()) end)
    if hex ~= "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" then
        return nil
    end
    return c
end

local function real_crypto()
    local ok, gc = pcall(require, "gw.crypto")
    if ok and type(gc) == "table" and gc.hmac then
        local okh, mac = pcall(gc.hmac, "sha256", "Jefe", "what do ya want for nothing?")
        if okh and type(mac) == "string" and #mac == 32 then return gc, "gw.crypto" end
    end
    local c = ffi_crypto()
    if c then return c, "libcrypto" end
    return nil
end

-- GW_MOCK_NO_CRYPTO=1 runs the tests as on a machine without libcrypto.
local REAL, REAL_SOURCE
if (os.getenv("GW_MOCK_NO_CRYPTO") or "") == "" then REAL, REAL_SOURCE = real_crypto() end
M.has_crypto = REAL ~= nil
M.crypto_source = REAL_SOURCE

local function constant_eq(a, b)
    if type(a) ~= "string" or type(b) ~= "string" or #a ~= #b then return false end
    local d = 0
    for i = 1, #a do
        if a:byte(i) ~= b:byte(i) then d = d + 1 end
    end
    return d == 0
end

M.b64 = {
    encode = function(s) return b64enc(s, STD, true) end,
    url_encode = function(s) return b64enc(s, URL, false) end,
}

local function new_crypto()
    local c = {
        base64url_encode = function(s) return b64enc(s, URL, false) end,
        base64url_decode = function(s) return b64dec(s, URL, false) end,
        base64_encode = function(s) return b64enc(s, STD, true) end,
        base64_decode = function(s) return b64dec(s, STD, true) end,
        constant_eq = constant_eq,
    }
    local function unavailable() error("crypto unavailable in this test environment") end
    c.sha256 = REAL and REAL.sha256 or unavailable
    c.hmac = REAL and REAL.hmac or unavailable
    c.verify = REAL and REAL.verify or unavailable
    return c
end

-- The mock -------------------------------------------------------------

local function lower_keys(t)
    local r = {}
    for k, v in pairs(t or {}) do r[k:lower()] = v end
    return r
end

local function copy(t)
    local r = {}
    for k, v in pairs(t or {}) do r[k] = v end
    return r
end

function M.new(o)
    o = o or {}
    local g = {}
    g.req_headers = lower_keys(o.headers)
    g.resp_headers = lower_keys(o.resp_headers)
    g.resp_status = o.status or 200
    g.logs = {}
    g.exited = nil
    g.ctx = {}
    g.path = o.path or "/"
    g.method = o.method or "GET"
    g.query_args = copy(o.query)
    g.params = copy(o.params)
    g.body = o.body or ""
    g.clock = o.now or 1000
    g.consumer_list = o.consumers or {}
    g.http_calls = {}
    g.http_handler = o.http -- function(req) -> res | nil, err

    local qs = {}
    for k, v in pairs(g.query_args) do qs[#qs + 1] = k .. "=" .. v end
    table.sort(qs)
    g.uri = g.path .. (#qs > 0 and ("?" .. table.concat(qs, "&")) or "")

    g.req = {
        method = function() return g.method end,
        path = function() return g.path end,
        uri = function() return g.uri end,
        query = function() return copy(g.query_args) end,
        query_arg = function(name) return g.query_args[name] end,
        header = function(name) return g.req_headers[name:lower()] end,
        headers = function() return copy(g.req_headers) end,
        param = function(name) return g.params[name] end,
        params = function() return copy(g.params) end,
        set_header = function(name, value) g.req_headers[name:lower()] = value end,
        clear_header = function(name) g.req_headers[name:lower()] = nil end,
        set_path = function(p) g.path = p end,
        body = function() return g.body end,
    }
    g.resp = {
        status = function() return g.resp_status end,
        header = function(name) return g.resp_headers[name:lower()] end,
        set_header = function(name, value) g.resp_headers[name:lower()] = value end,
        set_status = function(code) g.resp_status = code end,
    }
    g.var = {
        route = "r1", upstream = "u1", request_id = "req-0001",
        remote_addr = o.remote_addr or "127.0.0.1",
    }
    for k, v in pairs(o.var or {}) do g.var[k] = v end

    function g.exit(status, body, headers)
        g.exited = { status = status, body = body, headers = headers or {} }
        return status
    end
    -- as the gateway's: the envelope, error = true (went through exit_error)
    function g.exit_error(status, message, headers)
        if type(status) ~= "number" or status < 400 or status > 599 then
            error("gw.exit_error: status must be an integer 400..599", 2)
        end
        if type(message) ~= "string" or message == "" then
            error("gw.exit_error: message must be a non-empty string", 2)
        end
        g.exited = { status = status, error = true, headers = headers or {},
                     body = { code = status, message = message, request_id = g.var.request_id } }
        return true
    end
    function g.log(level, ...)
        local parts = {}
        for i = 1, select("#", ...) do parts[#parts + 1] = tostring(select(i, ...)) end
        g.logs[#g.logs + 1] = { level = level, msg = table.concat(parts) }
    end
    function g.now() return g.clock end
    function g.sleep(s) g.clock = g.clock + s end
    g.json = {
        encode = function(v) return cjson.encode(v) end,
        decode = function(s)
            local v, err = cjson.decode(s)
            if v == nil and err then error(err) end
            return v
        end,
    }
    g.crypto = new_crypto()
    g.consumers = {
        by = function(plugin, field, value)
            for _, c in ipairs(g.consumer_list) do
                local pc = c[plugin]
                if type(pc) == "table" and pc[field] == value then return c end
            end
            return nil
        end,
        list = function() return g.consumer_list end,
    }
    g.http = {
        request = function(req)
            g.http_calls[#g.http_calls + 1] = req
            if not g.http_handler then return nil, "no http handler in mock" end
            return g.http_handler(req)
        end,
    }
    rawset(_G, "gw", g)
    return g
end

return M
