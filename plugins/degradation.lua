-- degradation: when the gateway is about to fail a request for one of the
-- chosen reasons (breaker open, timeout, upstream down, ...), answers with a
-- configured fallback response instead, and counts how often it did.

local KINDS = {
    "limited", "breaker_open", "no_node", "timeout",
    "upstream_error", "plugin_error", "not_found", "refused",
}

local schema = {
    type = "object",
    properties = {
        on = { type = "array", items = { type = "string", enum = KINDS } },
        -- also degrade when the upstream answers with one of these statuses
        upstream_statuses = { type = "array", default = {},
                              items = { type = "integer", minimum = 300, maximum = 599 } },
        status = { type = "integer", default = 200, minimum = 200, maximum = 599 },
        headers = { type = "object", additionalProperties = { type = "string" }, default = {} },
        json = { type = "object" },
        text = { type = "string" },
        -- "module.function": called as f(ctx, err) -> status, body, headers
        handler = { type = "string", pattern = "^[%w_.%-]+%.[%a_][%w_]*$" },
    },
    additionalProperties = false,
}

local plugin = { name = "degradation", priority = 400, schema = schema }

-- How many times each route was answered by this plugin, in this worker.
local counts = {}
plugin.counts = counts

local sets = setmetatable({}, { __mode = "k" })

local function sets_for(conf)
    local s = sets[conf]
    if not s then
        s = { kinds = {}, statuses = {} }
        for _, k in ipairs(conf.on or {}) do s.kinds[k] = true end
        for _, st in ipairs(conf.upstream_statuses or {}) do s.statuses[st] = true end
        sets[conf] = s
    end
    return s
end

function plugin.check(conf)
    local n = 0
    for _, v in ipairs({ conf.json ~= nil, conf.text ~= nil, conf.handler ~= nil }) do
        if v then n = n + 1 end
    end
    if n > 1 then return nil, "json, text and handler exclude each other" end
    if #(conf.on or {}) == 0 and #(conf.upstream_statuses or {}) == 0 then
        return nil, "on or upstream_statuses must name at least one case"
    end
    for name, value in pairs(conf.headers or {}) do
        if not name:match("^[%w!#$%%&'*+.^_`|~-]+$") then return nil, "headers: bad name " .. name end
        if value:find("[\r\n%z]") then return nil, "headers." .. name .. ": control characters" end
    end
    return true
end

local handlers = {}

local function resolve(spec)
    local h = handlers[spec]
    if h then return h end
    local mod, fn = spec:match("^(.+)%.([^.]+)$")
    local ok, m = pcall(require, mod)
    if not ok then return nil, "cannot load " .. mod .. ": " .. tostring(m) end
    if type(m) ~= "table" or type(m[fn]) ~= "function" then
        return nil, spec .. " is not a function"
    end
    handlers[spec] = m[fn]
    return m[fn]
end

function plugin.wants_upstream_error(conf, status)
    return sets_for(conf).statuses[status] == true
end

local function copy(t)
    local r = {}
    for k, v in pairs(t or {}) do r[k] = v end
    return r
end

local function static(conf)
    local headers = copy(conf.headers)
    if conf.text then
        local has_ct = false
        for k in pairs(headers) do
            if k:lower() == "content-type" then has_ct = true end
        end
        if not has_ct then headers["Content-Type"] = "text/plain; charset=utf-8" end
        return conf.status, conf.text, headers
    end
    if conf.json then return conf.status, conf.json, headers end
    return conf.status, "", headers
end

function plugin.error(conf, ctx, err)
    local s = sets_for(conf)
    local hit
    if err.upstream_status then
        hit = s.statuses[err.upstream_status]
    else
        hit = s.kinds[err.kind]
    end
    if not hit then return nil end

    local status, body, headers
    if conf.handler then
        local f, why = resolve(conf.handler)
        if f then
            local ok, a, b, c = pcall(f, ctx, err)
            if ok and a ~= nil then
                status, body, headers = a, b, c
            elseif not ok then
                gw.log("error", "degradation: handler ", conf.handler, " failed: ", tostring(a))
            end
        else
            gw.log("error", "degradation: ", why)
        end
        -- a handler that fails or declines leaves the original error
        if status == nil then return nil end
    else
        status, body, headers = static(conf)
    end

    local route = gw.var.route or ""
    counts[route] = (counts[route] or 0) + 1
    ctx.degraded = true
    ctx["degradation.kind"] = err.upstream_status and ("upstream " .. err.upstream_status) or err.kind
    return status, body, headers
end

function plugin.log(conf, ctx)
    if not ctx.degraded then return end
    local route = gw.var.route or ""
    gw.log("info", "degradation: route ", route, " answered a fallback for ",
        tostring(ctx["degradation.kind"]), " (", counts[route] or 0, " so far)")
end

return plugin
