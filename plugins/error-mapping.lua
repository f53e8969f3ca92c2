-- error-mapping: turns the gateway's own errors, and chosen upstream error
-- responses, into the business error body the services behind the gateway
-- already use ({code, message} as go-zero and go-micro errors), with a code
-- table kept in the config.

local KINDS = {
    limited = true, breaker_open = true, no_node = true, timeout = true,
    upstream_error = true, plugin_error = true, not_found = true, refused = true,
}

local rule = {
    type = "object",
    properties = {
        code = { type = "integer" },
        message = { type = "string" },
        http_status = { type = "integer", minimum = 200, maximum = 599 },
    },
    required = { "code" },
    additionalProperties = false,
}

local code_rule = {
    type = "object",
    properties = {
        code = { type = "integer" },
        message = { type = "string" },
    },
    required = { "code" },
    additionalProperties = false,
}

local schema = {
    type = "object",
    properties = {
        kinds = { type = "object", additionalProperties = rule, default = {} },
        statuses = { type = "object", additionalProperties = rule, default = {} },
        default = rule,
        http_status = { type = "integer", minimum = 200, maximum = 599 },
        -- upstream answers with these statuses are replaced through the
        -- error phase (their body is dropped)
        upstream_statuses = { type = "array", default = {},
                              items = { type = "integer", minimum = 300, maximum = 599 } },
        -- upstream answers with these statuses keep flowing, and their JSON
        -- body is read and rewritten
        upstream_body = {
            type = "object",
            properties = {
                statuses = { type = "array", items = { type = "integer", minimum = 200, maximum = 599 } },
                code_field = { type = "string", default = "code", minLength = 1 },
                message_field = { type = "string", default = "message", minLength = 1 },
                codes = { type = "object", additionalProperties = code_rule, default = {} },
                max_size = { type = "integer", default = 65536, minimum = 1024,
                             maximum = 1048576 },
            },
            required = { "statuses" },
            additionalProperties = false,
        },
    },
    additionalProperties = false,
}

local EMPTY = {}

local plugin = { name = "error-mapping", priority = 500, schema = schema }

local function set_of(list)
    local s = {}
    for _, v in ipairs(list or {}) do s[v] = true end
    return s
end

-- Status sets per config table, built once.
local sets = setmetatable({}, { __mode = "k" })

local function sets_for(conf)
    local s = sets[conf]
    if not s then
        s = {
            upstream = set_of(conf.upstream_statuses),
            body = set_of(conf.upstream_body and conf.upstream_body.statuses),
        }
        sets[conf] = s
    end
    return s
end

function plugin.check(conf)
    for k in pairs(conf.kinds or {}) do
        if not KINDS[k] then return nil, "kinds." .. k .. ": unknown error kind" end
    end
    for k in pairs(conf.statuses or {}) do
        local n = tonumber(k)
        if not k:match("^%d%d%d$") or n < 100 or n > 599 then
            return nil, "statuses." .. k .. ": expected an HTTP status (100-599)"
        end
    end
    local ub = conf.upstream_body
    if ub then
        for k in pairs(ub.codes or {}) do
            if k == "" then return nil, "upstream_body.codes: empty code" end
        end
        local s = set_of(conf.upstream_statuses)
        for _, st in ipairs(ub.statuses) do
            if s[st] then
                return nil, "status " .. st .. " is in both upstream_statuses and upstream_body.statuses"
            end
        end
    end
    return true
end

local function body(code, message)
    return { code = code, message = message, request_id = gw.var.request_id }
end

function plugin.wants_upstream_error(conf, status)
    return sets_for(conf).upstream[status] == true
end

function plugin.error(conf, ctx, err)
    local r
    if err.upstream_status then
        -- an upstream status: only if this plugin asked for it
        if not sets_for(conf).upstream[err.upstream_status] then return nil end
        r = (conf.statuses or EMPTY)[tostring(err.upstream_status)] or conf.default
    else
        r = (conf.kinds or EMPTY)[err.kind] or (conf.statuses or EMPTY)[tostring(err.status)] or conf.default
    end
    if not r then return nil end
    ctx["error-mapping.done"] = true
    local status = r.http_status or conf.http_status or err.status
    return status, body(r.code, r.message or err.message or "error"), nil
end

-- Reading an upstream JSON error body ---------------------------------

function plugin.header_filter(conf, ctx)
    if not conf.upstream_body or ctx["error-mapping.done"] then return end
    local status = gw.resp.status()
    if not sets_for(conf).body[status] then return end
    ctx["error-mapping.body"] = { status = status, parts = {}, size = 0 }
    local r = (conf.statuses or EMPTY)[tostring(status)]
    local to = (r and r.http_status) or conf.http_status
    if to then gw.resp.set_status(to) end
    gw.resp.set_header("Content-Length", nil)
    gw.resp.set_header("Content-Encoding", nil)
    gw.resp.set_header("Content-Type", "application/json")
end

local function field(t, path)
    for name in path:gmatch("[^.]+") do
        if type(t) ~= "table" then return nil end
        t = t[name]
    end
    return t
end

-- The business body for an upstream error body (text may be nil).
function plugin.map_body(conf, status, text)
    local ub = conf.upstream_body
    local up_code, up_msg
    if text then
        local ok, v = pcall(gw.json.decode, text)
        if ok and type(v) == "table" then
            up_code = field(v, ub.code_field)
            up_msg = field(v, ub.message_field)
            if type(up_code) ~= "number" and type(up_code) ~= "string" then up_code = nil end
            if type(up_msg) ~= "string" then up_msg = nil end
        end
    end
    local r = (up_code ~= nil and (ub.codes or EMPTY)[tostring(up_code)])
        or (conf.statuses or EMPTY)[tostring(status)] or conf.default
    if r then
        return body(r.code, r.message or up_msg or "error")
    end
    return body(up_code or status, up_msg or "error")
end

function plugin.body_filter(conf, ctx, chunk, eof)
    local st = ctx["error-mapping.body"]
    if not st then return nil end
    if st.finished then return "" end
    if chunk and chunk ~= "" and not st.overflow then
        st.size = st.size + #chunk
        if st.size > conf.upstream_body.max_size then
            -- too big to be an error body worth reading: map by status only
            st.overflow = true
            st.parts = nil
        else
            st.parts[#st.parts + 1] = chunk
        end
    end
    if not eof then return "" end
    st.finished = true
    local text = not st.overflow and table.concat(st.parts) or nil
    return gw.json.encode(plugin.map_body(conf, st.status, text))
end

return plugin
