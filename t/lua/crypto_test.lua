-- gw.crypto over gateway/gw_crypto.c: published vectors, base64 edge cases,
-- the RFC 7515 JWS examples, algorithm confusion.
--
-- The C functions must be in the process: inside the gateway they are; a
-- plain luajit has them only when GW_CRYPTO_LIB names a shared object built
-- from gateway/gw_crypto.c, e.g.
--   cc -shared -fPIC -Igateway gateway/gw_crypto.c -o /tmp/gwcrypto.so -lcrypto
--   GW_CRYPTO_LIB=/tmp/gwcrypto.so luajit t/lua/crypto_test.lua
-- Without either the whole file is skipped.

local ffi = require "ffi"
local crypto = require "gw.crypto"

local function have_symbols()
    return pcall(function()
        return ffi.C.gw_crypto_sha256 ~= nil and ffi.C.gw_crypto_verify ~= nil
    end)
end

if not have_symbols() then
    local lib = os.getenv("GW_CRYPTO_LIB")
    -- global = true puts the library's symbols in ffi.C's namespace.
    if lib and lib ~= "" then
        pcall(ffi.load, lib, true)
    end
end
local t = require "tap"

-- One skipped test rather than a "1..0 # SKIP" plan: t/70-lua-unit.t
-- counts a file that ran no test as a failure.
if not have_symbols() then
    t.skip("gw_crypto symbols not in this process (run inside the gateway or set GW_CRYPTO_LIB)")
    t.done()
end

local function hex(s)
    return (s:gsub(".", function(c)
        return string.format("%02x", c:byte())
    end))
end

local function unhex(h)
    return (h:gsub("%x%x", function(x)
        return string.char(tonumber(x, 16))
    end))
end

-- sha256 ---------------------------------------------------------------
t.is(hex(crypto.sha256("abc")),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "sha256 abc")
t.is(hex(crypto.sha256("")),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "sha256 empty")
t.is(#crypto.sha256(string.rep("x", 200000)), 32, "sha256 of a large string")
t.dies(function() crypto.sha256(nil) end, "must be a string", "sha256(nil) raises")

-- hmac: RFC 4231 test case 2 -------------------------------------------
local jefe, what = "Jefe", "what do ya want for nothing?"
t.is(hex(crypto.hmac("sha256", jefe, what)),
    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", "hmac-sha256")
t.is(hex(crypto.hmac("sha384", jefe, what)),
    "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
    .. "8e2240ca5e69e2c78b3239ecfab21649", "hmac-sha384")
t.is(hex(crypto.hmac("sha512", jefe, what)),
    "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
    .. "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737", "hmac-sha512")
t.is(hex(crypto.hmac("sha256", string.rep("\170", 131),
    "Test Using Larger Than Block-Size Key - Hash Key First")),
    "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    "hmac-sha256 with a key longer than a block")
t.is(#crypto.hmac("sha256", "", ""), 32, "hmac with empty key and data")
local mac, err = crypto.hmac("md5", "k", "d")
t.ok(mac == nil and err == "unsupported hmac algorithm md5", "hmac md5 refused")
mac, err = crypto.hmac(nil, "k", "d")
t.ok(mac == nil and err ~= nil, "hmac without an algorithm")
t.dies(function() crypto.hmac("sha256", nil, "d") end, "must be a string", "hmac nil key raises")

-- base64 -----------------------------------------------------------------
local rfc4648 = {
    { "", "", "" }, { "f", "Zg==", "Zg" }, { "fo", "Zm8=", "Zm8" }, { "foo", "Zm9v", "Zm9v" },
    { "foob", "Zm9vYg==", "Zm9vYg" }, { "fooba", "Zm9vYmE=", "Zm9vYmE" },
    { "foobar", "Zm9vYmFy", "Zm9vYmFy" },
}
for _, v in ipairs(rfc4648) do
    t.is(crypto.base64_encode(v[1]), v[2], "base64_encode " .. v[1])
    t.is(crypto.base64url_encode(v[1]), v[3], "base64url_encode " .. v[1])
    t.is(crypto.base64_decode(v[2]), v[1], "base64_decode " .. v[2])
    t.is(crypto.base64url_decode(v[3]), v[1], "base64url_decode " .. v[3])
end
t.is(crypto.base64_encode("\251\255"), "+/8=", "standard alphabet")
t.is(crypto.base64url_encode("\251\255"), "-_8", "url alphabet")
t.is(crypto.base64url_decode("+/8"), nil, "base64url rejects +/")
t.is(crypto.base64_decode("-_8="), nil, "base64 rejects -_")
t.is(crypto.base64_decode("Zg"), "f", "base64 accepts missing padding")

for _, bad in ipairs({ "Z", "Zg=", "Zm9v=", "Zh==", "Zg==Zg==", "Zm9v\n", " Zm9v", "Zm 9v", "====" }) do
    local s, e = crypto.base64_decode(bad)
    t.ok(s == nil and e == "malformed base64", "base64_decode rejects " .. string.format("%q", bad))
end
t.is(crypto.base64url_decode("Zh"), nil, "base64url rejects non-zero unused bits")
t.is(crypto.base64url_decode(nil), nil, "base64url_decode(nil) is nil")

do
    -- Every length across the scratch buffer's growth and past its cap.
    local all = true
    local bytes = {}
    for i = 0, 255 do
        bytes[#bytes + 1] = string.char(i)
    end
    local alphabet = table.concat(bytes)
    for _, n in ipairs({ 0, 1, 2, 3, 100, 383, 384, 385, 1000, 49151, 49152, 49153, 200000 }) do
        local s = string.rep(alphabet, math.ceil(n / 256)):sub(1, n)
        if crypto.base64_decode(crypto.base64_encode(s)) ~= s
            or crypto.base64url_decode(crypto.base64url_encode(s)) ~= s then
            all = false
            t.diag("round trip failed for length " .. n)
        end
    end
    t.ok(all, "round trips up to 200000 bytes")
end

-- constant_eq ------------------------------------------------------------
t.is(crypto.constant_eq("secret", "secret"), true, "constant_eq equal")
t.is(crypto.constant_eq("secret", "secreT"), false, "constant_eq differs")
t.is(crypto.constant_eq("secret", "secrets"), false, "constant_eq lengths differ")
t.is(crypto.constant_eq("", ""), true, "constant_eq empty")
t.is(crypto.constant_eq(nil, "x"), false, "constant_eq nil")
t.is(crypto.constant_eq("a\0b", "a\0c"), false, "constant_eq past NUL")

-- JWS: RFC 7515 appendix A -------------------------------------------------
local payload = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt"
    .. "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ"

local function pem(der)
    local b64 = crypto.base64_encode(der)
    local lines = {}
    for i = 1, #b64, 64 do
        lines[#lines + 1] = b64:sub(i, i + 63)
    end
    return "-----BEGIN PUBLIC KEY-----\n" .. table.concat(lines, "\n")
        .. "\n-----END PUBLIC KEY-----\n"
end

-- A.1: HS256 with the JWK "k" secret.
do
    local input = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9." .. payload
    local key = crypto.base64url_decode(
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
    local want = crypto.base64url_decode("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
    t.ok(crypto.constant_eq(crypto.hmac("sha256", key, input), want), "RFC 7515 A.1 HS256")
end

-- A.2: RS256. SubjectPublicKeyInfo for a 2048-bit modulus and e = 65537.
local rsa_n = crypto.base64url_decode(
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL"
    .. "-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsL"
    .. "A9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8"
    .. "NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ")
local rsa_pem = pem(unhex("30820122300d06092a864886f70d01010105000382010f003082010a0282010100")
    .. rsa_n .. unhex("0203010001"))
local rs_input = "eyJhbGciOiJSUzI1NiJ9." .. payload
local rs_sig = crypto.base64url_decode(
    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujG"
    .. "bds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K"
    .. "0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6"
    .. "LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw")
t.is(#rs_sig, 256, "A.2 signature decodes")
t.is_deeply({ crypto.verify("RS256", rsa_pem, rs_input, rs_sig) }, { true }, "RFC 7515 A.2 RS256")
t.is_deeply({ crypto.verify("RS256", rsa_pem, rs_input .. "x", rs_sig) }, { false },
    "A.2 with changed data: false, no error")
t.is_deeply({ crypto.verify("RS256", rsa_pem, rs_input, rs_sig:sub(1, 255)) }, { false },
    "A.2 truncated signature")
t.is_deeply({ crypto.verify("RS256", rsa_pem, rs_input, "") }, { false }, "empty signature")
t.is_deeply({ crypto.verify("RS256", rsa_pem, rs_input, nil) }, { false }, "nil signature")

-- A.3: ES256. SubjectPublicKeyInfo for an uncompressed P-256 point.
local ec_pem = pem(unhex("3059301306072a8648ce3d020106082a8648ce3d030107034200") .. "\4"
    .. crypto.base64url_decode("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU")
    .. crypto.base64url_decode("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"))
local es_input = "eyJhbGciOiJFUzI1NiJ9." .. payload
local es_sig = crypto.base64url_decode(
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q")
t.is(#es_sig, 64, "A.3 signature decodes")
t.is_deeply({ crypto.verify("ES256", ec_pem, es_input, es_sig) }, { true }, "RFC 7515 A.3 ES256")
t.is_deeply({ crypto.verify("ES256", ec_pem, rs_input, es_sig) }, { false }, "A.3 other data")
t.is_deeply({ crypto.verify("ES256", ec_pem, es_input, es_sig:sub(1, 63)) }, { false },
    "A.3 63-byte signature")

-- Algorithm confusion is an error, never a pass.
local ok, e = crypto.verify("ES256", rsa_pem, es_input, es_sig)
t.ok(ok == false and e and e:find("EC public key"), "RSA key with ES256: " .. tostring(e))
ok, e = crypto.verify("RS256", ec_pem, rs_input, rs_sig)
t.ok(ok == false and e and e:find("RSA public key"), "EC key with RS256: " .. tostring(e))
ok, e = crypto.verify("ES384", ec_pem, es_input, es_sig .. es_sig:sub(1, 32))
t.ok(ok == false and e and e:find("secp384r1"), "P-256 key with ES384: " .. tostring(e))
ok, e = crypto.verify("HS256", rsa_pem, rs_input, rs_sig)
t.ok(ok == false and e == "unsupported algorithm HS256", "HS256 is not a verify algorithm")
ok, e = crypto.verify("none", rsa_pem, rs_input, "")
t.ok(ok == false and e ~= nil, "none refused")
ok, e = crypto.verify("RS256", "-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n",
    rs_input, rs_sig)
t.ok(ok == false and e and e:find("^cannot read the PEM public key"), "garbage PEM: " .. tostring(e))
ok, e = crypto.verify("RS256", nil, rs_input, rs_sig)
t.ok(ok == false and e == "no public key", "nil PEM")
-- An HMAC over the token made with the public key as the secret is no RSA
-- signature.
ok, e = crypto.verify("RS256", rsa_pem, rs_input, crypto.hmac("sha256", rsa_pem, rs_input))
t.is_deeply({ ok, e }, { false }, "HS256-with-public-key signature does not verify as RS256")

t.done()
