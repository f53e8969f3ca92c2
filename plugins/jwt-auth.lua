-- jwt-auth: authenticates a request by a JSON Web Token (JWS compact form).
-- The consumer is found by a claim of the token (`key` by default) and the
-- token must be signed with that consumer's secret or public key using
-- exactly the consumer's configured algorithm: the token's own `alg` header
-- never chooses how it is verified.

local HMAC = { HS256 = "sha256", HS384 = "sha384", HS512 = "sha512" }
local ASYM = { RS256 = true, ES256 = true }

local schema = {
    type = "object",
    properties = {
        -- header carrying the token; for Authorization the "Bearer " scheme
        -- is required, for any other header it is optional
        header = { type = "string", default = "Authorization", minLength = 1,
                   maxLength = 64, pattern = "^[%w!#$%%&'*+.^_`|~-]+$" },
        query = { type = "string", minLength = 1, maxLength = 64 },
        cookie = { type = "string", minLength = 1, maxLength = 64,
                   pattern = "^[%w!#$%%&'*+.^_`|~-]+$" },
        key_claim = { type = "string", default = "key", minLength = 1 },
        clock_skew = { type = "integer", default = 0, minimum = 0, maximum = 3600 },
        require_exp = { type = "boolean", default = false },
        hide_credentials = { type = "boolean", default = false },
        max_token_size = { type = "integer", default = 8192, minimum = 64,
                           maximum = 65536 },
    },
    additionalProperties = false,
}

-- What a consumer's `jwt-auth:` block may hold.
local consumer_schema = {
    type = "object",
    properties = {
        key = { type = "string", minLength = 1 },
        algorithm = { type = "string", default = "HS256",
                      enum = { "HS256", "HS384", "HS512", "RS256", "ES256" } },
        secret = { type = "string", minLength = 1 },
        base64_secret = { type = "boolean", default = false },
        public_key = { type = "string", minLength = 1 },
    },
    required = { "key" },
    additionalProperties = false,
}

local plugin = {
    name = "jwt-auth",
    priority = 2510,
    schema = schema,
    consumer_schema = consumer_schema,
}

-- A consumer's block is well formed when it has the key material its
-- algorithm needs (and not the other kind, which would invite confusion).
function plugin.check_consumer(c)
    local alg = c.algorithm or "HS256"
    if HMAC[alg] then
        if not c.secret then return nil, "algorithm " .. alg .. " needs secret" end
        if c.public_key then return nil, "algorithm " .. alg .. " takes secret, not public_key" end
    elseif ASYM[alg] then
        if not c.public_key then return nil, "algorithm " .. alg .. " needs public_key" end
        if c.secret then return nil, "algorithm " .. alg .. " takes public_key, not secret" end
        if not c.public_key:find("-----BEGIN PUBLIC KEY-----", 1, true) then
            return nil, "public_key must be a PEM SubjectPublicKeyInfo (BEGIN PUBLIC KEY)"
        end
    else
        return nil, "unsupported algorithm " .. tostring(alg)
    end
    return true
end

local function deny(msg, why)
    if why then gw.log("info", "jwt-auth: ", why) end
    return gw.exit_error(401, msg)
end

local function cookie_value(header, name)
    if not header then return nil end
    for pair in header:gmatch("[^;]+") do
        local k, v = pair:match("^%s*([^=%s]+)%s*=%s*(.-)%s*$")
        if k == name then return v end
    end
    return nil
end

local function without_cookie(header, name)
    local keep = {}
    for pair in header:gmatch("[^;]+") do
        local k = pair:match("^%s*([^=%s]+)")
        if k ~= name then keep[#keep + 1] = pair:match("^%s*(.-)%s*$") end
    end
    return table.concat(keep, "; ")
end

-- Returns token, where-it-came-from.
local function find_token(conf)
    local h = gw.req.header(conf.header)
    if h and h ~= "" then
        local scheme, rest = h:match("^%s*(%S+)%s+(.-)%s*$")
        if scheme and scheme:lower() == "bearer" then
            return rest, "header"
        end
        if conf.header:lower() ~= "authorization" then
            return (h:match("^%s*(.-)%s*$")), "header"
        end
        return false, "header" -- Authorization with another scheme
    end
    if conf.query then
        local q = gw.req.query_arg(conf.query)
        if q and q ~= "" then return q, "query" end
    end
    if conf.cookie then
        local c = cookie_value(gw.req.header("Cookie"), conf.cookie)
        if c and c ~= "" then return c, "cookie" end
    end
    return nil
end

-- Strict base64url: the URL alphabet, no padding, a length that can occur.
local function b64url(s)
    if s == "" or s:find("[^%w%-_]") or #s % 4 == 1 then return nil end
    return gw.crypto.base64url_decode(s)
end

local function json_object(text)
    if not text or not text:find("^%s*{") then return nil end
    local ok, v = pcall(gw.json.decode, text)
    if not ok or type(v) ~= "table" then return nil end
    return v
end

local function is_number(v)
    return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge
end

-- Parses and verifies a token; returns consumer, claims or nil, message, why.
function plugin.verify(conf, token)
    if #token > conf.max_token_size then
        return nil, "invalid token", "token too large"
    end
    local h64, p64, s64 = token:match("^([^.]*)%.([^.]*)%.([^.]*)$")
    if not h64 then return nil, "invalid token", "not three dot-separated parts" end

    local htext, ptext, sig = b64url(h64), b64url(p64), b64url(s64)
    if not htext or not ptext then return nil, "invalid token", "malformed base64url" end
    if not sig or sig == "" then return nil, "invalid token", "missing or malformed signature" end

    local header = json_object(htext)
    if not header then return nil, "invalid token", "header is not a JSON object" end
    local claims = json_object(ptext)
    if not claims then return nil, "invalid token", "payload is not a JSON object" end

    local alg = header.alg
    if type(alg) ~= "string" or not (HMAC[alg] or ASYM[alg]) then
        return nil, "invalid token", "unsupported alg " .. tostring(alg)
    end
    if header.typ ~= nil and (type(header.typ) ~= "string" or header.typ:upper() ~= "JWT") then
        return nil, "invalid token", "typ is not JWT"
    end
    if header.crit ~= nil then
        return nil, "invalid token", "crit header extensions are not supported"
    end

    local key = claims[conf.key_claim]
    if type(key) ~= "string" or key == "" then
        return nil, "invalid token", "no " .. conf.key_claim .. " claim"
    end
    local consumer = gw.consumers.by("jwt-auth", "key", key)
    local cc = consumer and consumer["jwt-auth"]
    if type(cc) ~= "table" then
        return nil, "invalid token", "no consumer for " .. conf.key_claim .. " claim"
    end

    local want = cc.algorithm or "HS256"
    if alg ~= want then
        return nil, "invalid token", "alg " .. alg .. " is not the consumer's " .. want
    end

    local input = h64 .. "." .. p64
    if HMAC[want] then
        local secret = cc.secret
        if type(secret) ~= "string" or secret == "" or cc.public_key then
            return nil, "invalid token", "consumer has no secret for " .. want
        end
        if cc.base64_secret then
            secret = gw.crypto.base64_decode(secret)
            if not secret then return nil, "invalid token", "consumer secret is not base64" end
        end
        local mac = gw.crypto.hmac(HMAC[want], secret, input)
        if not gw.crypto.constant_eq(mac, sig) then
            return nil, "invalid token", "signature mismatch"
        end
    else
        local pem = cc.public_key
        if type(pem) ~= "string" or pem == "" or cc.secret then
            return nil, "invalid token", "consumer has no public key for " .. want
        end
        if want == "ES256" and #sig ~= 64 then
            return nil, "invalid token", "ES256 signature is not 64 bytes"
        end
        local ok, err = gw.crypto.verify(want, pem, input, sig)
        if ok ~= true then
            return nil, "invalid token", "signature mismatch" .. (err and (": " .. err) or "")
        end
    end

    -- Time claims are looked at only once the signature holds, so a forged
    -- token learns nothing from the answer.
    local now, skew = gw.now(), conf.clock_skew
    if claims.exp ~= nil then
        if not is_number(claims.exp) then return nil, "invalid token", "exp is not a number" end
        if now >= claims.exp + skew then return nil, "token expired", "expired" end
    elseif conf.require_exp then
        return nil, "invalid token", "no exp claim"
    end
    if claims.nbf ~= nil then
        if not is_number(claims.nbf) then return nil, "invalid token", "nbf is not a number" end
        if now + skew < claims.nbf then return nil, "token not yet valid", "nbf in the future" end
    end
    return consumer, claims
end

function plugin.access(conf, ctx)
    local token, where = find_token(conf)
    if token == nil then return deny("missing token") end
    if token == false or token == "" then
        return deny("invalid token", "Authorization is not a Bearer token")
    end

    local consumer, claims, why = plugin.verify(conf, token)
    if not consumer then return deny(claims, why) end

    gw.var.consumer = consumer.name
    ctx.jwt_claims = claims
    if conf.hide_credentials then
        if where == "header" then
            gw.req.clear_header(conf.header)
        elseif where == "cookie" then
            local rest = without_cookie(gw.req.header("Cookie"), conf.cookie)
            if rest == "" then
                gw.req.clear_header("Cookie")
            else
                gw.req.set_header("Cookie", rest)
            end
        end
    end
end

return plugin
