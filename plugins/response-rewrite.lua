-- response-rewrite: changes the status, headers and/or body of the response
-- before it reaches the client.

local schema = {
    type = "object",
    properties = {
        status = { type = "integer", minimum = 200, maximum = 599 },
        headers = {
            type = "object",
            properties = {
                set = { type = "object", additionalProperties = { type = "string" } },
                remove = { type = "array", items = { type = "string", minLength = 1 } },
            },
            additionalProperties = false,
        },
        body = { type = "string" },
        -- rewrite only responses with one of these statuses (empty: all)
        statuses = { type = "array", items = { type = "integer", minimum = 100, maximum = 599 },
                     default = {} },
    },
    additionalProperties = false,
}

local plugin = { name = "response-rewrite", priority = 899, schema = schema }

local HEADER = "^[%w!#$%%&'*+.^_`|~-]+$"

function plugin.check(conf)
    if conf.status == nil and conf.headers == nil and conf.body == nil then
        return nil, "nothing to rewrite: set status, headers or body"
    end
    local h = conf.headers or {}
    for name, value in pairs(h.set or {}) do
        if not name:match(HEADER) then return nil, "headers.set: bad header name " .. name end
        if value:find("[\r\n%z]") then return nil, "headers.set." .. name .. ": control characters" end
    end
    for i, name in ipairs(h.remove or {}) do
        if not name:match(HEADER) then
            return nil, "headers.remove[" .. i .. "]: bad header name " .. name
        end
    end
    return true
end

local function applies(conf, status)
    if #conf.statuses == 0 then return true end
    for _, s in ipairs(conf.statuses) do
        if s == status then return true end
    end
    return false
end

function plugin.header_filter(conf, ctx)
    if not applies(conf, gw.resp.status()) then return end
    ctx["response-rewrite.on"] = true
    if conf.status then gw.resp.set_status(conf.status) end
    if conf.body then
        -- the new body has another length and validator, and is sent as it
        -- is written (chunked)
        gw.resp.set_header("Content-Length", nil)
        gw.resp.set_header("Content-Encoding", nil)
        gw.resp.set_header("ETag", nil)
    end
    local h = conf.headers
    if h then
        for _, name in ipairs(h.remove or {}) do gw.resp.set_header(name, nil) end
        for name, value in pairs(h.set or {}) do gw.resp.set_header(name, value) end
    end
end

function plugin.body_filter(conf, ctx, chunk, eof)
    if not conf.body or not ctx["response-rewrite.on"] then return nil end
    if ctx["response-rewrite.sent"] then return "" end
    ctx["response-rewrite.sent"] = true
    return conf.body
end

return plugin
