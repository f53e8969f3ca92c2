-- remote-auth: authorises a request by asking an auth service about its
-- bearer token. The service gets the client's `Authorization` header on a
-- GET to `url`; a 200 with {"user": "<id>"} lets the request through as that
-- user, a 401 or 403 refuses it. Answers, refusals included, are cached per
-- worker for `ttl` seconds, so a busy client costs one auth call per TTL.

local schema = {
    type = "object",
    properties = {
        url         = { type = "string", pattern = "^http://" },
        timeout     = { type = "number", default = 0.5, minimum = 0.01, maximum = 10 },
        ttl         = { type = "number", default = 10, minimum = 0, maximum = 3600 },
        max_cache   = { type = "integer", default = 10000, minimum = 1 },
        user_header = { type = "string", default = "X-User-Id", pattern = "^[%w%-]+$" },
    },
    required = { "url" },
    additionalProperties = false,
}

local plugin = { name = "remote-auth", priority = 2400, schema = schema }

-- Module-level state lives as long as the worker's VM: one cache per worker
-- and per config (two routes may ask two different services), dropped with
-- its config on reload. conf -> { n = <entries>, by_token = { [token] =
-- { expires = <gw.now()>, user = <id, or false for a refusal> } } }
local caches = setmetatable({}, { __mode = "k" })

local function lookup(conf, token)
    local c = caches[conf]
    local e = c and c.by_token[token]
    if e and e.expires > gw.now() then return e end
    return nil
end

local function store(conf, token, user)
    local c = caches[conf]
    if not c or c.n >= conf.max_cache then -- crude bound: start over
        c = { n = 0, by_token = {} }
        caches[conf] = c
    end
    if not c.by_token[token] then c.n = c.n + 1 end
    local e = { expires = gw.now() + conf.ttl, user = user }
    c.by_token[token] = e
    return e
end

-- The auth service's verdict on TOKEN: the cache entry, or nil and the
-- error to answer with (status, message).
local function ask(conf, token)
    -- yields this request's coroutine; other requests keep running
    local res, err = gw.http.request{
        method = "GET",
        url = conf.url,
        headers = { Authorization = "Bearer " .. token },
        timeout = conf.timeout,
    }
    if not res then
        gw.log("warn", "remote-auth: auth service unreachable: ", err)
        return nil, 503, "auth service unavailable"
    end
    if res.status == 401 or res.status == 403 then
        return store(conf, token, false)
    end
    if res.status ~= 200 then
        gw.log("warn", "remote-auth: auth service answered ", res.status)
        return nil, 503, "auth service unavailable"
    end
    local ok, answer = pcall(gw.json.decode, res.body)
    if not ok or type(answer) ~= "table" or type(answer.user) ~= "string" or answer.user == "" then
        gw.log("error", "remote-auth: auth service answer without a user")
        return nil, 502, "bad answer from auth service"
    end
    return store(conf, token, answer.user)
end

function plugin.access(conf, ctx)
    local auth = gw.req.header("Authorization")
    local token = auth and auth:match("^[Bb]earer%s+(%S+)$")
    if not token then
        return gw.exit_error(401, "missing token")
    end
    local e = lookup(conf, token)
    if not e then
        local status, message
        e, status, message = ask(conf, token)
        if not e then return gw.exit_error(status, message) end
    end
    if not e.user then
        return gw.exit_error(401, "invalid token")
    end
    gw.var.consumer = e.user                 -- access log, limiters, hash_on
    ctx.user = e.user                        -- later phases of this request
    gw.req.set_header(conf.user_header, e.user) -- replaces what a client sent
end

return plugin
