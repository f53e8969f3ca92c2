-- cors: answers CORS preflight requests at the gateway and adds the CORS
-- response headers to actual cross-origin requests.

local schema = {
    type = "object",
    properties = {
        -- exact origins ("https://app.example.com"), "*" for any, or
        -- "https://*.example.com" for any subdomain of example.com
        allow_origins = { type = "array", items = { type = "string", minLength = 1 },
                          default = { "*" } },
        allow_methods = { type = "array", items = { type = "string", minLength = 1 },
                          default = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE" } },
        -- "*" reflects the preflight's Access-Control-Request-Headers
        allow_headers = { type = "array", items = { type = "string", minLength = 1 },
                          default = { "*" } },
        expose_headers = { type = "array", items = { type = "string", minLength = 1 },
                           default = {} },
        max_age = { type = "integer", default = 5, minimum = 0, maximum = 86400 },
        allow_credentials = { type = "boolean", default = false },
    },
    additionalProperties = false,
}

local plugin = { name = "cors", priority = 4000, schema = schema }

local function list_has(list, v)
    for _, x in ipairs(list) do
        if x == v then return true end
    end
    return false
end

function plugin.check(conf)
    for i, o in ipairs(conf.allow_origins) do
        if o ~= "*" and not o:lower():match("^https?://[%w*.%-]+[%d:]*$") then
            return nil, "allow_origins[" .. i .. "]: expected \"*\" or scheme://host[:port], got " .. o
        end
        if o ~= "*" and o:find("*", 1, true) and not o:match("^https?://%*%.[%w.%-]+[%d:]*$") then
            return nil, "allow_origins[" .. i .. "]: a wildcard is allowed only as scheme://*.domain"
        end
    end
    return true
end

-- The origin to send back in Access-Control-Allow-Origin, or nil.
local function allowed_origin(conf, origin)
    if not origin or origin == "" then return nil end
    local o = origin:lower()
    for _, a in ipairs(conf.allow_origins) do
        if a == "*" then
            -- "*" and credentials do not mix (the Fetch standard): reflect
            return conf.allow_credentials and origin or "*"
        end
        local al = a:lower()
        if al == o then return origin end
        local scheme, suffix = al:match("^(https?://)%*(%..+)$")
        if scheme and o:sub(1, #scheme) == scheme and #o > #scheme + #suffix
            and o:sub(-#suffix) == suffix
            and not o:sub(#scheme + 1, -#suffix - 1):find("[/:@]") then
            return origin
        end
    end
    return nil
end

plugin.allowed_origin = allowed_origin

local function add_vary(existing)
    if not existing or existing == "" then return "Origin" end
    if existing == "*" then return existing end
    for v in existing:gmatch("[^,%s]+") do
        if v:lower() == "origin" then return existing end
    end
    return existing .. ", Origin"
end

function plugin.rewrite(conf, ctx)
    local origin = gw.req.header("Origin")
    if not origin then return end
    local allow = allowed_origin(conf, origin)
    ctx["cors.origin"] = allow

    local want = gw.req.header("Access-Control-Request-Method")
    if gw.req.method() ~= "OPTIONS" or not want then return end

    -- a preflight never reaches the upstream
    if not allow then
        return gw.exit_error(403, "CORS origin not allowed")
    end
    local h = {
        ["Access-Control-Allow-Origin"] = allow,
        ["Access-Control-Allow-Methods"] = table.concat(conf.allow_methods, ", "),
        ["Access-Control-Max-Age"] = tostring(conf.max_age),
    }
    if allow ~= "*" then h["Vary"] = "Origin" end
    if list_has(conf.allow_headers, "*") then
        local req = gw.req.header("Access-Control-Request-Headers")
        if req and req ~= "" then
            h["Access-Control-Allow-Headers"] = req
            h["Vary"] = (h["Vary"] and h["Vary"] .. ", " or "") .. "Access-Control-Request-Headers"
        end
    elseif #conf.allow_headers > 0 then
        h["Access-Control-Allow-Headers"] = table.concat(conf.allow_headers, ", ")
    end
    if conf.allow_credentials then h["Access-Control-Allow-Credentials"] = "true" end
    return gw.exit(204, "", h)
end

function plugin.header_filter(conf, ctx)
    local allow = ctx["cors.origin"]
    if not allow then return end
    gw.resp.set_header("Access-Control-Allow-Origin", allow)
    if allow ~= "*" then
        gw.resp.set_header("Vary", add_vary(gw.resp.header("Vary")))
    end
    if conf.allow_credentials then
        gw.resp.set_header("Access-Control-Allow-Credentials", "true")
    end
    if #conf.expose_headers > 0 then
        gw.resp.set_header("Access-Control-Expose-Headers", table.concat(conf.expose_headers, ", "))
    end
end

return plugin
