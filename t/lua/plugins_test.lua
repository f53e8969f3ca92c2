-- The built-in plugins against the mock gw (t/lua/mock_gw.lua): allow and
-- deny paths of each, schema defaults, and a wide set of bad JWTs.

local t = require "tap"
local mock = require "mock_gw"
local cjson = require "cjson"

local has_schema, schema = pcall(require, "gw.schema")
if not has_schema then schema = nil end

-- A plugin config as the runtime would hand it over: schema-checked, with
-- defaults filled in, then plugin.check. Without gw.schema, only top-level
-- defaults are filled.
local function conf(p, raw, expect_err)
    raw = raw or {}
    local c, err
    if schema then
        local good, serr = schema.check_schema(p.schema)
        -- (the schema itself is tested once per plugin below)
        if not good and serr then error(p.name .. ": bad schema: " .. serr) end
        c, err = schema.validate(p.schema, raw, p.name)
    else
        local function fill(sch, v)
            if type(v) ~= "table" or not sch.properties then return v end
            local r = {}
            for k, x in pairs(v) do r[k] = x end
            for k, s in pairs(sch.properties) do
                if r[k] == nil and s.default ~= nil then r[k] = s.default end
                r[k] = fill(s, r[k])
            end
            return r
        end
        c = fill(p.schema, raw)
    end
    if c and p.check then
        local good, cerr = p.check(c)
        if not good then c, err = nil, cerr end
    end
    if expect_err then return c, err end
    if not c then error(p.name .. ": config rejected: " .. tostring(err)) end
    return c
end

local function load(name)
    package.loaded[name] = nil
    return require(name)
end

local function exited(g, status, message, name)
    if not g.exited then
        t.ok(false, name .. " (no exit)")
        return
    end
    t.is(g.exited.status, status, name .. ": status")
    if status >= 400 then
        -- a refusal is the gateway's error envelope, through gw.exit_error
        t.ok(g.exited.error, name .. ": gw.exit_error")
        t.is_deeply(g.exited.body, { code = status, message = message,
                                     request_id = g.var.request_id }, name .. ": envelope")
    elseif message then
        t.is(type(g.exited.body) == "table" and g.exited.body.message or g.exited.body,
            message, name .. ": message")
    end
end

-- Every plugin file loads, has the fields the runtime needs, and a schema
-- the validator accepts.
for _, name in ipairs({ "request-id", "key-auth", "jwt-auth", "ip-restriction", "cors",
    "response-rewrite", "error-mapping", "degradation" }) do
    local p = load(name)
    t.is(p.name, name, name .. ": name")
    t.ok(type(p.priority) == "number", name .. ": priority")
    if schema then
        local good, err = schema.check_schema(p.schema)
        t.ok(good, name .. ": schema is valid" .. (err and (" (" .. err .. ")") or ""))
    end
end

-------------------------------------------------------------------------
-- request-id

do
    local p = load("request-id")
    local c = conf(p)
    t.is(c.header, "X-Request-Id", "request-id: default header")
    t.is(c.response, true, "request-id: default response")

    local g = mock.new{ var = { request_id = "abc123" } }
    c = conf(p, { header = "X-Trace-Id" })
    p.rewrite(c, g.ctx)
    t.is(g.req_headers["x-trace-id"], "abc123", "request-id: upstream header")
    p.header_filter(c, g.ctx)
    t.is(g.resp_headers["x-trace-id"], "abc123", "request-id: response header")

    g = mock.new{ var = { request_id = "abc123" } }
    c = conf(p, { header = "X-Trace-Id", response = false })
    p.header_filter(c, g.ctx)
    t.is(g.resp_headers["x-trace-id"], nil, "request-id: response = false")

    if schema then
        local bad, err = conf(p, { header = "Bad Header" }, true)
        t.ok(bad == nil and err, "request-id: header name with a space is refused")
        bad = conf(p, { header = 5 }, true)
        t.is(bad, nil, "request-id: non-string header is refused")
    end
end

-------------------------------------------------------------------------
-- key-auth

do
    local p = load("key-auth")
    local consumers = {
        { name = "alice", ["key-auth"] = { key = "alice-key" } },
        { name = "bob", ["key-auth"] = { key = "bob-key" } },
    }
    local c = conf(p)
    t.is(c.header, "X-API-Key", "key-auth: default header")
    t.is(c.hide_credentials, true, "key-auth: hide_credentials by default")
    t.is(c.query, nil, "key-auth: no query argument by default")

    local g = mock.new{ consumers = consumers, headers = { ["X-API-Key"] = "alice-key" } }
    p.access(c, g.ctx)
    t.is(g.exited, nil, "key-auth: good key passes")
    t.is(g.var.consumer, "alice", "key-auth: consumer set")
    t.is(g.req_headers["x-api-key"], nil, "key-auth: key hidden from the upstream")

    g = mock.new{ consumers = consumers, headers = { ["x-api-key"] = "bob-key" } }
    p.access(conf(p, { hide_credentials = false }), g.ctx)
    t.is(g.var.consumer, "bob", "key-auth: header name is case-insensitive")
    t.is(g.req_headers["x-api-key"], "bob-key", "key-auth: hide_credentials = false keeps it")

    g = mock.new{ consumers = consumers }
    p.access(c, g.ctx)
    exited(g, 401, "missing API key", "key-auth: no key")
    t.is(g.var.consumer, nil, "key-auth: no consumer on failure")

    g = mock.new{ consumers = consumers, headers = { ["X-API-Key"] = "" } }
    p.access(c, g.ctx)
    exited(g, 401, "missing API key", "key-auth: empty key")

    g = mock.new{ consumers = consumers, headers = { ["X-API-Key"] = "alice-kez" } }
    p.access(c, g.ctx)
    exited(g, 401, "invalid API key", "key-auth: wrong key")

    g = mock.new{ consumers = consumers, query = { apikey = "bob-key" } }
    p.access(c, g.ctx)
    exited(g, 401, "missing API key", "key-auth: query ignored unless configured")

    g = mock.new{ consumers = consumers, query = { apikey = "bob-key" } }
    p.access(conf(p, { query = "apikey" }), g.ctx)
    t.is(g.exited, nil, "key-auth: key from the query")
    t.is(g.var.consumer, "bob", "key-auth: query consumer")

    g = mock.new{ consumers = consumers, headers = { ["X-Key"] = "nope" }, query = { k = "bob-key" } }
    p.access(conf(p, { header = "X-Key", query = "k" }), g.ctx)
    exited(g, 401, "invalid API key", "key-auth: header wins over query")

    if schema then
        t.ok(conf(p, { hedaer = "X" }, true) == nil, "key-auth: unknown config key refused")
    end
end

-------------------------------------------------------------------------
-- jwt-auth

local RSA_PUB = [[
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAxiJINUlgJVeTbITRiGqN
7z9my/2YXfClXtlXcoiFPFeugXh5QTKOymEWvwuTectlRYiYlEwE+vKX14wBm184
z4Aw95zdP6Ii5NV7n6bokj4fAOGDT20030a/FMyacVRQyGduDmweCkQrDLT2YlSW
b2jsiSw92LtcE5ar+qYdBP0qb4QSeNZ/CHzPGVc6ptl+cbbuTDlqBaL7HI/DXdmR
JVbkRB2zeXu0qeoZhcLGPrpRx1xTGQdSgYVGw6WFOqxSVCPHgwT6KzHTtklGnTSg
fjQ/5kcAxX5844NxvF0hjg16cPCDz93sA+3RV7TQZ8S9d2z5nBtIKI5e5IFzCw+s
GQIDAQAB
-----END PUBLIC KEY-----
]]
local EC_PUB = [[
-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE4dYwk11R1m4H2YWx3XQM+k3faScW
MG+CIRQVdzVFzfQ4cGqjWbd7yESzTZq0ZK6svu5qFacM/D86CnYKJZZUkA==
-----END PUBLIC KEY-----
]]
-- Signed with the private halves of the keys above (not kept):
-- {"key":"rsa-user","exp":2000,"nbf":1000,"sub":"r"} and
-- {"key":"ec-user","exp":2000,"sub":"e"}.
local RS256_TOKEN = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJrZXkiOiJyc2EtdXNlciIsImV4cCI6MjAwMCwibmJmIjoxMDAwLCJzdWIiOiJyIn0.VUQNYxy2YK5CHNc61MedeFG9HJppOymPXYSWX9g8tzvRAJTuJHfGxg3Wk1cSAfanBp4uUoIadgx09hEUBwgGodi_J1OPd1vcFak92ElYypVRjJ84PAmc6D6mZ2MWLiGEeeOnYWQTFHX-qY07zuePwKJpYFehMvyQFp5evMkN1QlHur0WxQ7R-ROLc7p2fQIXiI0Iwcqc5H5ASeW5CJD768lK59Nr_UIBDiaRTrs211O-EoTN_asKVCa3hnWF4lPMKwLMnnIkHyqhsUdDrTreXy_CJtag4IRJIx_S-mRFbEc0buwLNN_YdR9xBfYRDQRn73B3HoZRVI1doo4ILXEt4Q"
local ES256_TOKEN = "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJrZXkiOiJlYy11c2VyIiwiZXhwIjoyMDAwLCJzdWIiOiJlIn0.h-dMAy4OavAijJg7um9-jAdZeGxE-3dsEVcVtNGmys_Bf9vZmuFx4h4s0g1lhL_CJGpmfDb204q9hJbJ_kfECA"

do
    local p = load("jwt-auth")
    local b64u = mock.b64.url_encode
    local consumers = {
        { name = "alice", ["jwt-auth"] = { key = "alice", secret = "alice-secret", algorithm = "HS256" } },
        { name = "h384", ["jwt-auth"] = { key = "h384", secret = "s384", algorithm = "HS384" } },
        { name = "h512", ["jwt-auth"] = { key = "h512", secret = "s512", algorithm = "HS512" } },
        { name = "b64", ["jwt-auth"] = { key = "b64", secret = mock.b64.encode("\0\1\2binary"),
                                         base64_secret = true, algorithm = "HS256" } },
        { name = "rsa", ["jwt-auth"] = { key = "rsa-user", public_key = RSA_PUB, algorithm = "RS256" } },
        { name = "ec", ["jwt-auth"] = { key = "ec-user", public_key = EC_PUB, algorithm = "ES256" } },
    }
    local MD = { HS256 = "sha256", HS384 = "sha384", HS512 = "sha512" }

    -- Without real crypto, an HMAC stand-in that is deterministic and keyed,
    -- so that signature checks still tell good from bad.
    local function setup(g)
        if not mock.has_crypto then
            g.crypto.hmac = function(alg, key, data) return alg .. "|" .. key .. "|" .. data end
            g.crypto.verify = function() return false, "no crypto" end
        end
        return g
    end
    local function hs(alg, secret, header, claims, raw_payload)
        local h = type(header) == "string" and header or cjson.encode(header)
        local pl = raw_payload or cjson.encode(claims)
        local input = b64u(h) .. "." .. b64u(pl)
        local g = setup(mock.new{})
        return input .. "." .. b64u(g.crypto.hmac(MD[alg] or "sha256", secret, input))
    end
    local function run(c, headers, o)
        o = o or {}
        local g = setup(mock.new{ consumers = consumers, headers = headers, query = o.query,
                                  now = o.now or 1500 })
        p.access(c, g.ctx)
        return g
    end
    local function bearer(tok) return { Authorization = "Bearer " .. tok } end

    local c = conf(p)
    t.is(c.header, "Authorization", "jwt: default header")
    t.is(c.key_claim, "key", "jwt: default key_claim")
    t.is(c.clock_skew, 0, "jwt: default clock_skew")
    t.is(c.hide_credentials, false, "jwt: default hide_credentials")

    local good = hs("HS256", "alice-secret", { alg = "HS256", typ = "JWT" }, { key = "alice", exp = 2000 })
    local g = run(c, bearer(good))
    t.is(g.exited, nil, "jwt: good HS256 token passes")
    t.is(g.var.consumer, "alice", "jwt: consumer set")
    t.is(g.ctx.jwt_claims and g.ctx.jwt_claims.exp, 2000, "jwt: claims in ctx")
    t.is(g.req_headers.authorization, "Bearer " .. good, "jwt: token kept by default")

    g = run(c, { Authorization = "bearer  " .. good .. "  " })
    t.is(g.var.consumer, "alice", "jwt: scheme is case-insensitive, spaces trimmed")

    g = run(conf(p, { hide_credentials = true }), bearer(good))
    t.is(g.var.consumer, "alice", "jwt: hide_credentials passes")
    t.is(g.req_headers.authorization, nil, "jwt: hide_credentials removes Authorization")

    for _, alg in ipairs({ "HS384", "HS512" }) do
        local who = alg == "HS384" and "h384" or "h512"
        local sec = alg == "HS384" and "s384" or "s512"
        g = run(c, bearer(hs(alg, sec, { alg = alg }, { key = who })))
        t.is(g.var.consumer, who, "jwt: " .. alg .. " passes")
    end
    g = run(c, bearer(hs("HS256", "\0\1\2binary", { alg = "HS256" }, { key = "b64" })))
    t.is(g.var.consumer, "b64", "jwt: base64 secret")

    -- where the token comes from
    g = run(c, {})
    exited(g, 401, "missing token", "jwt: no token")
    g = run(c, { Authorization = "Basic YWxpY2U6eA==" })
    exited(g, 401, "invalid token", "jwt: another scheme")
    g = run(c, { Authorization = "Bearer" })
    exited(g, 401, "invalid token", "jwt: Bearer without a token")
    g = run(c, {}, { query = { jwt = good } })
    exited(g, 401, "missing token", "jwt: query ignored unless configured")
    g = run(conf(p, { query = "jwt" }), {}, { query = { jwt = good } })
    t.is(g.var.consumer, "alice", "jwt: token from the query")
    g = run(conf(p, { cookie = "jwt", hide_credentials = true }),
        { Cookie = "a=1; jwt=" .. good .. "; b=2" })
    t.is(g.var.consumer, "alice", "jwt: token from a cookie")
    t.is(g.req_headers.cookie, "a=1; b=2", "jwt: hide_credentials strips only that cookie")
    g = run(conf(p, { header = "X-Token" }), { ["X-Token"] = good })
    t.is(g.var.consumer, "alice", "jwt: raw token in a custom header")

    -- malformed tokens
    local h64, p64, s64 = good:match("^([^.]+)%.([^.]+)%.([^.]+)$")
    local bad = {
        { "two parts", h64 .. "." .. p64 },
        { "four parts", good .. "." .. s64 },
        { "empty signature", h64 .. "." .. p64 .. "." },
        { "padded header", h64 .. "=." .. p64 .. "." .. s64 },
        { "padded signature", good .. "=" },
        { "standard base64 chars", h64 .. "." .. p64 .. "." .. s64:gsub("[-_]", "+") .. "+/" },
        { "bad base64 char", h64 .. "." .. p64 .. "." .. s64 .. "!" },
        { "impossible base64 length", h64 .. "." .. p64 .. "." .. s64 .. "AA" },
        { "signature of another token",
          h64 .. "." .. b64u(cjson.encode({ key = "alice", admin = true })) .. "." .. s64 },
        { "header not JSON", b64u("{alg:HS256}") .. "." .. p64 .. "." .. s64 },
        { "header a JSON array", b64u('["HS256"]') .. "." .. p64 .. "." .. s64 },
        { "header a JSON string", b64u('"x"') .. "." .. p64 .. "." .. s64 },
        { "payload not JSON", hs("HS256", "alice-secret", { alg = "HS256" }, nil, "key=alice") },
        { "payload an array", hs("HS256", "alice-secret", { alg = "HS256" }, nil, '["alice"]') },
        { "no key claim", hs("HS256", "alice-secret", { alg = "HS256" }, { sub = "alice" }) },
        { "numeric key claim", hs("HS256", "alice-secret", { alg = "HS256" }, { key = 5 }) },
        { "unknown consumer", hs("HS256", "alice-secret", { alg = "HS256" }, { key = "mallory" }) },
        { "wrong secret", hs("HS256", "guess", { alg = "HS256" }, { key = "alice" }) },
        { "typ not JWT", hs("HS256", "alice-secret", { alg = "HS256", typ = "JWE" }, { key = "alice" }) },
        { "crit header", hs("HS256", "alice-secret", { alg = "HS256", crit = { "exp" } }, { key = "alice" }) },
        { "alg missing", hs("HS256", "alice-secret", { typ = "JWT" }, { key = "alice" }) },
        { "alg mismatch HS512 for HS256 consumer", hs("HS512", "alice-secret", { alg = "HS512" }, { key = "alice" }) },
        { "HS256 for an RS256 consumer, keyed with its public key",
          hs("HS256", RSA_PUB, { alg = "HS256" }, { key = "rsa-user" }) },
        { "HS256 for an ES256 consumer, keyed with its public key",
          hs("HS256", EC_PUB, { alg = "HS256" }, { key = "ec-user" }) },
        { "exp not a number", hs("HS256", "alice-secret", { alg = "HS256" }, { key = "alice", exp = "2000" }) },
        { "nbf not a number", hs("HS256", "alice-secret", { alg = "HS256" }, { key = "alice", nbf = true }) },
        { "exp null", hs("HS256", "alice-secret", { alg = "HS256" }, nil, '{"key":"alice","exp":null}') },
    }
    for _, alg in ipairs({ "none", "None", "NONE", "nOnE" }) do
        local h = b64u(cjson.encode({ alg = alg, typ = "JWT" }))
        local pl = b64u(cjson.encode({ key = "alice" }))
        bad[#bad + 1] = { "alg " .. alg .. " unsigned", h .. "." .. pl .. "." }
        bad[#bad + 1] = { "alg " .. alg .. " with a signature", h .. "." .. pl .. "." .. s64 }
        bad[#bad + 1] = { "alg " .. alg .. " signed with the secret",
                          hs("HS256", "alice-secret", { alg = alg }, { key = "alice" }) }
    end
    bad[#bad + 1] = { "alg hs256 (case)", hs("HS256", "alice-secret", { alg = "hs256" }, { key = "alice" }) }
    for _, b in ipairs(bad) do
        g = run(c, bearer(b[2]))
        exited(g, 401, "invalid token", "jwt: " .. b[1])
        t.is(g.var.consumer, nil, "jwt: " .. b[1] .. ": no consumer")
    end
    g = run(c, bearer(string.rep("a", 9000) .. "." .. p64 .. "." .. s64))
    exited(g, 401, "invalid token", "jwt: oversized token")

    -- time claims
    local function timed(claims) return bearer(hs("HS256", "alice-secret", { alg = "HS256" }, claims)) end
    g = run(c, timed({ key = "alice", exp = 1500 }), { now = 1500 })
    exited(g, 401, "token expired", "jwt: exp == now is expired")
    g = run(c, timed({ key = "alice", exp = 1400 }), { now = 1500 })
    exited(g, 401, "token expired", "jwt: expired")
    g = run(conf(p, { clock_skew = 120 }), timed({ key = "alice", exp = 1400 }), { now = 1500 })
    t.is(g.var.consumer, "alice", "jwt: expired within the skew passes")
    g = run(conf(p, { clock_skew = 60 }), timed({ key = "alice", exp = 1400 }), { now = 1500 })
    exited(g, 401, "token expired", "jwt: expired beyond the skew")
    g = run(c, timed({ key = "alice", nbf = 1600 }), { now = 1500 })
    exited(g, 401, "token not yet valid", "jwt: nbf in the future")
    g = run(conf(p, { clock_skew = 100 }), timed({ key = "alice", nbf = 1600 }), { now = 1500 })
    t.is(g.var.consumer, "alice", "jwt: nbf within the skew passes")
    g = run(c, timed({ key = "alice", nbf = 1500 }), { now = 1500 })
    t.is(g.var.consumer, "alice", "jwt: nbf == now passes")
    g = run(c, timed({ key = "alice" }))
    t.is(g.var.consumer, "alice", "jwt: no exp passes by default")
    g = run(conf(p, { require_exp = true }), timed({ key = "alice" }))
    exited(g, 401, "invalid token", "jwt: require_exp refuses a token without exp")
    -- a forged token learns nothing about expiry
    g = run(c, bearer(hs("HS256", "guess", { alg = "HS256" }, { key = "alice", exp = 1 })))
    exited(g, 401, "invalid token", "jwt: expired and forged says invalid")

    -- asymmetric algorithms: real signatures when crypto is available, an
    -- injected verifier otherwise
    if mock.has_crypto then
        t.diag("jwt: RS256/ES256 with real crypto from " .. mock.crypto_source)
        g = run(c, bearer(RS256_TOKEN))
        t.is(g.var.consumer, "rsa", "jwt: RS256 passes")
        t.is(g.ctx.jwt_claims and g.ctx.jwt_claims.sub, "r", "jwt: RS256 claims")
        g = run(c, bearer(ES256_TOKEN))
        t.is(g.var.consumer, "ec", "jwt: ES256 passes")
        g = run(c, bearer(RS256_TOKEN), { now = 2500 })
        exited(g, 401, "token expired", "jwt: RS256 expired")
        g = run(c, bearer(RS256_TOKEN), { now = 900 })
        exited(g, 401, "token not yet valid", "jwt: RS256 not yet valid")
        local rh, rp, rs = RS256_TOKEN:match("^([^.]+)%.([^.]+)%.([^.]+)$")
        local flip = (rs:sub(1, 1) == "A") and "B" or "A"
        g = run(c, bearer(rh .. "." .. rp .. "." .. flip .. rs:sub(2)))
        exited(g, 401, "invalid token", "jwt: RS256 bad signature")
        g = run(c, bearer(rh .. "." .. b64u('{"key":"rsa-user","sub":"admin"}') .. "." .. rs))
        exited(g, 401, "invalid token", "jwt: RS256 tampered payload")
        local eh, ep, es = ES256_TOKEN:match("^([^.]+)%.([^.]+)%.([^.]+)$")
        g = run(c, bearer(eh .. "." .. ep .. "." .. es:sub(1, -3)))
        exited(g, 401, "invalid token", "jwt: ES256 short signature")
        -- an RS256 header on a token for the ES256 consumer
        g = run(c, bearer(rh .. "." .. ep .. "." .. es))
        exited(g, 401, "invalid token", "jwt: RS256 header for an ES256 consumer")
    else
        t.skip("no crypto: RS256/ES256 real signatures")
    end
    do
        -- the verifier sees exactly the consumer's algorithm, key and input
        local seen
        local gg = mock.new{ consumers = consumers, headers = bearer(RS256_TOKEN), now = 1500 }
        gg.crypto.verify = function(alg, pem, data, sig)
            seen = { alg = alg, pem = pem, data = data, n = #sig }
            return true
        end
        p.access(c, gg.ctx)
        t.is(gg.var.consumer, "rsa", "jwt: injected verifier accepts")
        t.is(seen and seen.alg, "RS256", "jwt: verifier gets the consumer's algorithm")
        t.is(seen and seen.pem, RSA_PUB, "jwt: verifier gets the consumer's key")
        t.is(seen and seen.data, RS256_TOKEN:match("^(.*)%."), "jwt: verifier gets the signing input")
        t.is(seen and seen.n, 256, "jwt: verifier gets the raw signature")
        gg = mock.new{ consumers = consumers, headers = bearer(RS256_TOKEN), now = 1500 }
        gg.crypto.verify = function() return false, "nope" end
        p.access(c, gg.ctx)
        exited(gg, 401, "invalid token", "jwt: injected verifier refuses")
    end

    -- consumer blocks
    t.ok(p.check_consumer({ key = "a", secret = "s", algorithm = "HS256" }), "jwt: consumer HS256 ok")
    t.ok(not p.check_consumer({ key = "a", public_key = RSA_PUB, algorithm = "HS256" }),
        "jwt: consumer HS256 with a public key refused")
    t.ok(not p.check_consumer({ key = "a", secret = "s", algorithm = "RS256" }),
        "jwt: consumer RS256 with a secret refused")
    t.ok(not p.check_consumer({ key = "a", public_key = "xyz", algorithm = "ES256" }),
        "jwt: consumer ES256 with a non-PEM key refused")
    t.ok(p.check_consumer({ key = "a", public_key = EC_PUB, algorithm = "ES256" }), "jwt: consumer ES256 ok")
    if schema then
        t.ok(schema.validate(p.consumer_schema, { key = "a", secret = "s", algorithm = "none" }) == nil,
            "jwt: consumer algorithm none refused by the schema")
        t.ok(conf(p, { clock_skew = -1 }, true) == nil, "jwt: negative clock_skew refused")
    end
end

-------------------------------------------------------------------------
-- ip-restriction

do
    local p = load("ip-restriction")
    local function check(c, addr)
        local g = mock.new{ remote_addr = addr }
        p.access(c, g.ctx)
        return g.exited == nil, g
    end

    -- parsing
    local function hex(bytes)
        if not bytes then return nil end
        local s = {}
        for i, b in ipairs(bytes) do s[i] = string.format("%02x", b) end
        return table.concat(s)
    end
    t.is(hex(p.parse_addr("10.1.2.3")), "0a010203", "ip: v4")
    t.is(hex(p.parse_addr("::1")), string.rep("00", 15) .. "01", "ip: ::1")
    t.is(hex(p.parse_addr("::")), string.rep("00", 16), "ip: ::")
    t.is(hex(p.parse_addr("2001:db8::8:800:200c:417a")), "20010db80000000000080800200c417a",
        "ip: v6 with ::")
    t.is(hex(p.parse_addr("fe80::")), "fe80" .. string.rep("00", 14), "ip: trailing ::")
    t.is(hex(p.parse_addr("::ffff:1.2.3.4")), string.rep("00", 10) .. "ffff01020304", "ip: v4-mapped")
    t.is(hex(p.parse_addr("1:2:3:4:5:6:7:8")), "00010002000300040005000600070008", "ip: full v6")
    t.is(hex(p.parse_addr("1:2:3:4:5:6:1.2.3.4")), "000100020003000400050006" .. "01020304", "ip: full v6 + v4")
    for _, s in ipairs({ "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.-4", "1::2::3",
        "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "12345::", "g::1", ":1:2", "1:2:3:4:5:6:7:8::",
        "fe80::1%eth0", "", "::1.2.3", "localhost" }) do
        t.is(p.parse_addr(s), nil, "ip: refuses " .. string.format("%q", s))
    end
    t.is(p.parse_cidr("10.0.0.0/33"), nil, "ip: v4 prefix > 32 refused")
    t.is(p.parse_cidr("::/129"), nil, "ip: v6 prefix > 128 refused")
    t.is(p.parse_cidr("10.0.0.0/08"), nil, "ip: prefix with a leading zero refused")
    t.ok(p.parse_cidr("::/0"), "ip: ::/0")

    local c = conf(p, { allow = { "10.0.0.0/8", "192.168.1.7", "2001:db8::/32" } })
    t.is_deeply(c.deny, {}, "ip: default deny list")
    t.is(c.status, 403, "ip: default status")
    t.ok(check(c, "10.200.3.4"), "ip: allow v4 in CIDR")
    t.ok(check(c, "192.168.1.7"), "ip: allow single v4")
    t.ok(not check(c, "192.168.1.8"), "ip: single v4 neighbour refused")
    t.ok(not check(c, "11.0.0.1"), "ip: v4 outside refused")
    t.ok(check(c, "2001:db8:ffff::1"), "ip: allow v6 in CIDR")
    t.ok(not check(c, "2001:db9::1"), "ip: v6 outside refused")
    t.ok(check(c, "::ffff:10.9.9.9"), "ip: v4-mapped client matches a v4 rule")
    local _, g = check(c, "8.8.8.8")
    exited(g, 403, "forbidden", "ip: refusal")
    _, g = check(c, "not-an-ip")
    exited(g, 403, "forbidden", "ip: unparsable client address refused")

    c = conf(p, { allow = { "10.0.0.0/8" }, deny = { "10.1.0.0/16" } })
    t.ok(not check(c, "10.1.2.3"), "ip: deny wins over allow")
    t.ok(check(c, "10.2.2.3"), "ip: allow outside the deny block")

    c = conf(p, { deny = { "192.0.2.0/25", "::1" } })
    t.ok(not check(c, "192.0.2.127"), "ip: deny /25 upper edge")
    t.ok(check(c, "192.0.2.128"), "ip: just outside /25")
    t.ok(not check(c, "::1"), "ip: deny ::1")
    t.ok(check(c, "127.0.0.1"), "ip: deny-only list lets others through")

    c = conf(p, { allow = { "172.16.0.0/12" }, status = 404, message = "not here" })
    t.ok(check(c, "172.31.255.255"), "ip: /12 upper edge")
    t.ok(not check(c, "172.32.0.0"), "ip: /12 just outside")
    _, g = check(c, "1.1.1.1")
    exited(g, 404, "not here", "ip: configured status and message")

    local bad, err = conf(p, { allow = { "10.0.0.0/8", "10.0.0.300" } }, true)
    t.ok(bad == nil and tostring(err):find("allow%[2%]"), "ip: bad entry refused, named: " .. tostring(err))
    bad = conf(p, {}, true)
    t.is(bad, nil, "ip: empty lists refused")
end

-------------------------------------------------------------------------
-- cors

do
    local p = load("cors")
    local function req(c, o)
        local g = mock.new(o)
        p.rewrite(c, g.ctx)
        if not g.exited then p.header_filter(c, g.ctx) end
        return g
    end
    local c = conf(p)
    t.is_deeply(c.allow_origins, { "*" }, "cors: default origins")
    t.is(c.allow_credentials, false, "cors: default credentials")

    local g = req(c, { headers = { Origin = "https://a.example" } })
    t.is(g.exited, nil, "cors: simple request goes upstream")
    t.is(g.resp_headers["access-control-allow-origin"], "*", "cors: *")
    t.is(g.resp_headers["vary"], nil, "cors: no Vary with *")

    g = req(c, { headers = {} })
    t.is(g.resp_headers["access-control-allow-origin"], nil, "cors: no Origin, no headers")

    g = req(c, { method = "OPTIONS", headers = { Origin = "https://a.example",
        ["Access-Control-Request-Method"] = "PUT", ["Access-Control-Request-Headers"] = "x-a, x-b" } })
    exited(g, 204, nil, "cors: preflight answered")
    local h = g.exited and g.exited.headers or {}
    t.is(h["Access-Control-Allow-Origin"], "*", "cors: preflight origin")
    t.like(h["Access-Control-Allow-Methods"] or "", "PUT", "cors: preflight methods")
    t.is(h["Access-Control-Allow-Headers"], "x-a, x-b", "cors: preflight reflects request headers")
    t.is(h["Access-Control-Max-Age"], "5", "cors: preflight max age")

    g = req(c, { method = "OPTIONS", headers = { Origin = "https://a.example" } })
    t.is(g.exited, nil, "cors: OPTIONS without Access-Control-Request-Method goes upstream")

    local cc = conf(p, { allow_origins = { "*" }, allow_credentials = true,
                         expose_headers = { "X-Total" }, allow_headers = { "X-A" }, max_age = 600 })
    g = req(cc, { headers = { Origin = "https://b.example" }, resp_headers = { Vary = "Accept" } })
    t.is(g.resp_headers["access-control-allow-origin"], "https://b.example",
        "cors: credentials with * reflect the origin")
    t.is(g.resp_headers["access-control-allow-credentials"], "true", "cors: credentials header")
    t.is(g.resp_headers["vary"], "Accept, Origin", "cors: Vary extended")
    t.is(g.resp_headers["access-control-expose-headers"], "X-Total", "cors: expose headers")
    g = req(cc, { method = "OPTIONS", headers = { Origin = "https://b.example",
        ["Access-Control-Request-Method"] = "GET" } })
    h = g.exited and g.exited.headers or {}
    t.is(h["Access-Control-Allow-Origin"], "https://b.example", "cors: preflight never * with credentials")
    t.is(h["Access-Control-Allow-Headers"], "X-A", "cors: preflight fixed headers")
    t.is(h["Access-Control-Max-Age"], "600", "cors: preflight max age set")

    local lc = conf(p, { allow_origins = { "https://app.example.com", "https://*.corp.example" } })
    g = req(lc, { headers = { Origin = "https://app.example.com" } })
    t.is(g.resp_headers["access-control-allow-origin"], "https://app.example.com", "cors: listed origin")
    t.is(g.resp_headers["vary"], "Origin", "cors: Vary: Origin")
    g = req(lc, { headers = { Origin = "https://x.corp.example" } })
    t.is(g.resp_headers["access-control-allow-origin"], "https://x.corp.example", "cors: wildcard subdomain")
    for _, o in ipairs({ "https://evil.example", "http://app.example.com", "https://corp.example",
        "https://evil.com/.corp.example", "https://app.example.com.evil", "null" }) do
        g = req(lc, { headers = { Origin = o } })
        t.is(g.resp_headers["access-control-allow-origin"], nil, "cors: refuses origin " .. o)
    end
    g = req(lc, { method = "OPTIONS", headers = { Origin = "https://evil.example",
        ["Access-Control-Request-Method"] = "GET" } })
    exited(g, 403, "CORS origin not allowed", "cors: preflight from a foreign origin")

    t.is(conf(p, { allow_origins = { "app.example.com" } }, true), nil, "cors: origin without scheme refused")
    t.is(conf(p, { allow_origins = { "https://a*.example.com" } }, true), nil, "cors: odd wildcard refused")
end

-------------------------------------------------------------------------
-- response-rewrite

do
    local p = load("response-rewrite")
    local function resp(c, o)
        local g = mock.new(o)
        p.header_filter(c, g.ctx)
        local out = {}
        for i, chunk in ipairs(o.chunks or { "" }) do
            local r = p.body_filter(c, g.ctx, chunk, i == #(o.chunks or { "" }))
            out[#out + 1] = r == nil and chunk or r
        end
        return g, table.concat(out)
    end
    local c = conf(p, { status = 503, headers = { set = { ["X-A"] = "1" }, remove = { "Server" } },
                        body = '{"ok":false}' })
    local g, body = resp(c, { status = 200, resp_headers = { Server = "up", ["Content-Length"] = "10",
        ETag = '"x"' }, chunks = { "hello", " world" } })
    t.is(g.resp_status, 503, "rewrite: status")
    t.is(g.resp_headers["x-a"], "1", "rewrite: header set")
    t.is(g.resp_headers["server"], nil, "rewrite: header removed")
    t.is(g.resp_headers["content-length"], nil, "rewrite: Content-Length dropped with a new body")
    t.is(g.resp_headers["etag"], nil, "rewrite: ETag dropped with a new body")
    t.is(body, '{"ok":false}', "rewrite: body replaced once")

    c = conf(p, { headers = { set = { ["X-B"] = "2" } } })
    g, body = resp(c, { resp_headers = { ["Content-Length"] = "5" }, chunks = { "hello" } })
    t.is(body, "hello", "rewrite: body untouched without body")
    t.is(g.resp_headers["content-length"], "5", "rewrite: Content-Length kept without body")

    c = conf(p, { statuses = { 404 }, body = "gone" })
    g, body = resp(c, { status = 200, chunks = { "fine" } })
    t.is(body, "fine", "rewrite: other statuses untouched")
    g, body = resp(c, { status = 404, chunks = { "x", "y", "z" } })
    t.is(body, "gone", "rewrite: listed status rewritten")

    t.is(conf(p, {}, true), nil, "rewrite: empty config refused")
    t.is(conf(p, { headers = { set = { ["Bad Name"] = "x" } } }, true), nil, "rewrite: bad header name refused")
    t.is(conf(p, { headers = { set = { ["X-A"] = "a\r\nb" } } }, true), nil, "rewrite: CRLF value refused")
    if schema then
        t.is(conf(p, { status = 99 }, true), nil, "rewrite: status out of range refused")
    end
end

-------------------------------------------------------------------------
-- error-mapping

do
    local p = load("error-mapping")
    local c = conf(p, {
        kinds = { timeout = { code = 20001, message = "service busy" },
                  breaker_open = { code = 20002, message = "try later", http_status = 200 } },
        statuses = { ["404"] = { code = 10001, message = "user not found" },
                     ["429"] = { code = 20003 } },
        upstream_statuses = { 404, 500 },
    })
    local g = mock.new{ var = { request_id = "rid-1" } }
    local st, body = p.error(c, g.ctx, { kind = "timeout", status = 504, message = "gateway timeout" })
    t.is(st, 504, "errmap: status kept by default")
    t.is_deeply(body, { code = 20001, message = "service busy", request_id = "rid-1" }, "errmap: kind mapped")
    st, body = p.error(c, g.ctx, { kind = "breaker_open", status = 503, message = "x" })
    t.is(st, 200, "errmap: rule http_status")
    t.is(body.code, 20002, "errmap: breaker code")
    st, body = p.error(c, g.ctx, { kind = "limited", status = 429, message = "too many requests" })
    t.is(body and body.code, 20003, "errmap: mapped by gateway status")
    t.is(body and body.message, "too many requests", "errmap: message defaults to the gateway's")
    st = p.error(c, g.ctx, { kind = "no_node", status = 503, message = "x" })
    t.is(st, nil, "errmap: unmapped kind left alone")

    -- a plugin's refusal (gw.exit_error): by its kind, else by its status
    local rc = conf(p, { kinds = { refused = { code = 40100 } },
                         statuses = { ["403"] = { code = 40300 } } })
    st, body = p.error(rc, g.ctx, { kind = "refused", status = 401, message = "missing API key" })
    t.is(st, 401, "errmap: refused keeps its status")
    t.is_deeply(body, { code = 40100, message = "missing API key", request_id = "rid-1" },
        "errmap: kind refused mapped, the plugin's message kept")
    t.is(conf(p, { kinds = { refused = { code = 1 } } }, true) ~= nil, true, "errmap: kind refused accepted")

    t.ok(p.wants_upstream_error(c, 404), "errmap: asks for upstream 404")
    t.ok(not p.wants_upstream_error(c, 503), "errmap: not for upstream 503")
    st, body = p.error(c, g.ctx, { kind = "upstream_error", status = 404, upstream_status = 404, message = "x" })
    t.is(st, 404, "errmap: upstream 404 status")
    t.is(body and body.code, 10001, "errmap: upstream 404 mapped")
    st = p.error(c, g.ctx, { kind = "upstream_error", status = 500, upstream_status = 500, message = "x" })
    t.is(st, nil, "errmap: upstream 500 without a rule left alone")
    st = p.error(c, g.ctx, { kind = "upstream_error", status = 429, upstream_status = 429, message = "x" })
    t.is(st, nil, "errmap: upstream status not asked for left alone")

    local d = conf(p, { default = { code = 99999, message = "internal" }, http_status = 200 })
    st, body = p.error(d, g.ctx, { kind = "plugin_error", status = 500, message = "x" })
    t.is(st, 200, "errmap: global http_status")
    t.is_deeply(body, { code = 99999, message = "internal", request_id = "rid-1" }, "errmap: default rule")

    -- upstream JSON bodies
    local b = conf(p, {
        statuses = { ["400"] = { code = 40000, message = "bad request", http_status = 200 } },
        upstream_body = { statuses = { 400, 500 }, code_field = "error.code", message_field = "error.msg",
                          codes = { ["5"] = { code = 10001, message = "user not found" } } },
    })
    t.is(b.upstream_body.max_size, 65536, "errmap: upstream_body defaults")
    local function upstream(status, chunks)
        local gg = mock.new{ status = status, resp_headers = { ["Content-Length"] = "99",
            ["Content-Type"] = "text/plain" }, var = { request_id = "rid-2" } }
        p.header_filter(b, gg.ctx)
        local out = {}
        for i, ch in ipairs(chunks) do
            local r = p.body_filter(b, gg.ctx, ch, i == #chunks)
            out[#out + 1] = r == nil and ch or r
        end
        return gg, table.concat(out)
    end
    local gg, text = upstream(500, { '{"error":{"co', 'de":5,"msg":"no such user"}}' })
    t.is(gg.resp_headers["content-length"], nil, "errmap: body mapping drops Content-Length")
    t.is(gg.resp_headers["content-type"], "application/json", "errmap: body mapping is JSON")
    t.is_deeply(cjson.decode(text), { code = 10001, message = "user not found", request_id = "rid-2" },
        "errmap: upstream code mapped across chunks")
    gg, text = upstream(500, { '{"error":{"code":7,"msg":"quota"}}' })
    t.is_deeply(cjson.decode(text), { code = 7, message = "quota", request_id = "rid-2" },
        "errmap: unmapped upstream code kept")
    gg, text = upstream(400, { "<html>bad</html>" })
    t.is(gg.resp_status, 200, "errmap: body mapping takes the status rule's http_status")
    t.is_deeply(cjson.decode(text), { code = 40000, message = "bad request", request_id = "rid-2" },
        "errmap: non-JSON body mapped by status")
    gg, text = upstream(200, { "fine" })
    t.is(text, "fine", "errmap: other statuses untouched")

    t.is(conf(p, { kinds = { bogus = { code = 1 } } }, true), nil, "errmap: unknown kind refused")
    t.is(conf(p, { statuses = { ["4xx"] = { code = 1 } } }, true), nil, "errmap: bad status key refused")
    t.is(conf(p, { upstream_statuses = { 500 }, upstream_body = { statuses = { 500 } } }, true), nil,
        "errmap: a status in both lists refused")
    if schema then
        t.is(conf(p, { kinds = { timeout = { message = "x" } } }, true), nil, "errmap: rule without code refused")
    end
end

-------------------------------------------------------------------------
-- degradation

do
    local p = load("degradation")
    local c = conf(p, { on = { "breaker_open", "timeout" }, json = { status = "PENDING" },
                        headers = { ["X-Degraded"] = "1" } })
    t.is(c.status, 200, "degrade: default status")
    local g = mock.new{ var = { route = "orders" } }
    local st, body, h = p.error(c, g.ctx, { kind = "timeout", status = 504, message = "x" })
    t.is(st, 200, "degrade: status")
    t.is_deeply(body, { status = "PENDING" }, "degrade: json body")
    t.is(h and h["X-Degraded"], "1", "degrade: headers")
    t.is(g.ctx.degraded, true, "degrade: ctx.degraded")
    t.is(p.counts.orders, 1, "degrade: counted")
    p.log(c, g.ctx)
    t.like(g.logs[#g.logs] and g.logs[#g.logs].msg or "", "orders.*1 so far", "degrade: logged with the count")

    g = mock.new{ var = { route = "orders" } }
    st = p.error(c, g.ctx, { kind = "no_node", status = 503, message = "x" })
    t.is(st, nil, "degrade: other kinds left alone")
    t.is(g.ctx.degraded, nil, "degrade: not marked")
    p.log(c, g.ctx)
    t.is(#g.logs, 0, "degrade: nothing logged")
    p.error(c, g.ctx, { kind = "breaker_open", status = 503, message = "x" })
    t.is(p.counts.orders, 2, "degrade: counted again")

    local tc = conf(p, { on = { "upstream_error" }, upstream_statuses = { 502 }, status = 503, text = "later" })
    g = mock.new{ var = { route = "pay" } }
    st, body, h = p.error(tc, g.ctx, { kind = "upstream_error", status = 502, upstream_status = 502, message = "x" })
    t.is(st, 503, "degrade: upstream status degraded")
    t.is(body, "later", "degrade: text body")
    t.like(h["Content-Type"] or "", "^text/plain", "degrade: text content type")
    t.ok(p.wants_upstream_error(tc, 502), "degrade: asks for upstream 502")
    t.ok(not p.wants_upstream_error(tc, 500), "degrade: not for 500")

    package.loaded["fallback_mod"] = {
        answer = function(ctx, err) return 202, { kind = err.kind } end,
        decline = function() return nil end,
        boom = function() error("kaput") end,
    }
    local hc = conf(p, { on = { "timeout" }, handler = "fallback_mod.answer" })
    g = mock.new{ var = { route = "h" } }
    st, body = p.error(hc, g.ctx, { kind = "timeout", status = 504, message = "x" })
    t.is(st, 202, "degrade: handler status")
    t.is_deeply(body, { kind = "timeout" }, "degrade: handler body")
    g = mock.new{ var = { route = "h" } }
    st = p.error(conf(p, { on = { "timeout" }, handler = "fallback_mod.decline" }), g.ctx,
        { kind = "timeout", status = 504, message = "x" })
    t.is(st, nil, "degrade: declining handler leaves the error")
    g = mock.new{ var = { route = "h" } }
    st = p.error(conf(p, { on = { "timeout" }, handler = "fallback_mod.boom" }), g.ctx,
        { kind = "timeout", status = 504, message = "x" })
    t.is(st, nil, "degrade: failing handler leaves the error")
    t.like(g.logs[1] and g.logs[1].msg or "", "kaput", "degrade: handler failure logged")
    t.is(p.counts.h, 1, "degrade: only answered fallbacks counted")
    g = mock.new{ var = { route = "h" } }
    st = p.error(conf(p, { on = { "timeout" }, handler = "no_such_mod.f" }), g.ctx,
        { kind = "timeout", status = 504, message = "x" })
    t.is(st, nil, "degrade: missing handler module leaves the error")

    t.is(conf(p, { on = { "timeout" }, json = {}, text = "x" }, true), nil, "degrade: json and text refused")
    t.is(conf(p, {}, true), nil, "degrade: nothing to degrade on refused")
    if schema then
        t.is(conf(p, { on = { "explosion" } }, true), nil, "degrade: unknown kind refused")
    end
end

t.done()
