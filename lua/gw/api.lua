-- The gw.* API plugins see. One table for every plugin of the worker; the
-- request it speaks about is the one the runner entered last. A call that
-- waits (gw.sleep, gw.http.request) yields the request's coroutine and
-- re-enters its request when resumed, so other requests may run meanwhile.
local base = require "gw.base"
local cjson = require "cjson.safe"

local ffi, C = base.ffi, base.C
local P, N, P2, N2, P3 = base.p, base.n, base.p2, base.n2, base.p3
local OK, AGAIN, DECLINED = base.OK, base.AGAIN, base.DECLINED
local fstr = ffi.string
local yield, running = coroutine.yield, coroutine.running
local concat, tostring, type, pairs, select = table.concat, tostring, type, pairs, select
local lower, byte, char, sfind = string.lower, string.byte, string.char, string.find

local M = {}

-- the request being served: its pointer, ctx table and phase
local cur, cur_ctx, cur_phase
M.exited = false

function M.enter(r, ctx, phase)
    cur, cur_ctx, cur_phase = r, ctx, phase
    M.exited = false
end

local gw = {}
M.gw = gw

local allowed = {
    exit = { rewrite = true, access = true, error = true },
    add_resp = { rewrite = true, access = true },
    resp = { header_filter = true, error = true },
    set_req = { rewrite = true, access = true },
    wait = { rewrite = true, access = true, header_filter = true, body_filter = true,
             log = true, error = true },
}

local function check_phase(what, name)
    if not allowed[what][cur_phase] then
        local list = {}
        for p in pairs(allowed[what]) do list[#list + 1] = p end
        table.sort(list)
        error(name .. " cannot be called in the " .. tostring(cur_phase) .. " phase (only in: "
              .. concat(list, ", ") .. ")", 3)
    end
end

local function need_request(name)
    if cur == nil then error(name .. " needs a request", 3) end
end

-- ---- gw.req ----

local req = {}
gw.req = req

local function req_get(what)
    need_request("gw.req")
    if C.gw_ffi_req_get(cur, what, P, N) ~= OK then return nil end
    return fstr(P[0], N[0])
end

function req.method() return req_get(base.METHOD) end
function req.path() return req_get(base.PATH) end
function req.uri() return req_get(base.URI) end
function req.host() return req_get(base.HOST) end
function req.raw_query() return req_get(base.QUERY) or "" end

local function unescape(s)
    s = s:gsub("+", " ")
    return (s:gsub("%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

function req.query()
    local t = {}
    for pair in (req.raw_query()):gmatch("[^&]+") do
        local k, v = pair:match("^([^=]*)=?(.*)$")
        k = unescape(k)
        if t[k] == nil then t[k] = unescape(v) end
    end
    return t
end

function req.query_arg(name)
    return req.query()[name]
end

function req.header(name)
    need_request("gw.req.header")
    if type(name) ~= "string" then error("gw.req.header: name must be a string", 2) end
    if C.gw_ffi_req_header(cur, name, #name, P, N) ~= OK then return nil end
    return fstr(P[0], N[0])
end

function req.headers()
    need_request("gw.req.headers")
    local t = {}
    for i = 0, C.gw_ffi_req_nheaders(cur) - 1 do
        if C.gw_ffi_req_header_at(cur, i, P, N, P2, N2) == OK then
            local k = lower(fstr(P[0], N[0]))
            if t[k] == nil then t[k] = fstr(P2[0], N2[0]) end
        end
    end
    return t
end

-- The route's path parameters (/users/:id), as they are in the request
-- path: still percent-encoded, never holding a '/'.
function req.param(name)
    need_request("gw.req.param")
    if type(name) ~= "string" then error("gw.req.param: name must be a string", 2) end
    if C.gw_ffi_req_param(cur, name, #name, P, N) ~= OK then return nil end
    return fstr(P[0], N[0])
end

function req.params()
    need_request("gw.req.params")
    local t = {}
    for i = 0, C.gw_ffi_req_nparams(cur) - 1 do
        if C.gw_ffi_req_param_at(cur, i, P, N, P2, N2) == OK then
            local k = fstr(P[0], N[0])
            if t[k] == nil then t[k] = fstr(P2[0], N2[0]) end
        end
    end
    return t
end

-- Names and values are checked in C (gw_ffi_*_set_header refuse control
-- characters, ':' and spaces in names): string patterns would stop the JIT.
local function header_arg(fn, name, value)
    if type(name) ~= "string" or name == "" then
        error(fn .. ": invalid header name", 3)
    end
    if value ~= nil then value = tostring(value) end
    return value
end

-- gw.req.set_header and gw.resp.set_header: the same checks over two lists
local function set_header(ffi_fn, fn, phases_key, failure, name, value)
    need_request(fn)
    check_phase(phases_key, fn)
    value = header_arg(fn, name, value)
    local clear = value == nil and 1 or 0
    value = value or ""
    if ffi_fn(cur, name, #name, value, #value, clear) ~= OK then
        error(fn .. ": " .. failure, 3)
    end
end

function req.set_header(name, value)
    set_header(C.gw_ffi_req_set_header, "gw.req.set_header", "set_req",
               "invalid header, or too many headers", name, value)
end

function req.clear_header(name)
    req.set_header(name, nil)
end

function req.set_path(p)
    need_request("gw.req.set_path")
    check_phase("set_req", "gw.req.set_path")
    if type(p) ~= "string" or byte(p, 1) ~= 47 or p:find("[%s%c?#]") then
        error("gw.req.set_path: the path must start with / and hold no spaces, ? or #", 2)
    end
    C.gw_ffi_req_set_path(cur, p, #p)
end

-- The whole request body, when it fits in the connection's read buffer
-- (see docs/plugins/writing.md); nil, err otherwise.
function req.body()
    need_request("gw.req.body")
    check_phase("set_req", "gw.req.body")
    local rc = C.gw_ffi_req_body(cur, P, N)
    if rc == OK then return fstr(P[0], N[0]) end
    if rc == DECLINED then return nil, "request body larger than the read buffer" end
    return nil, "request body not available"
end

-- ---- gw.resp ----

local resp = {}
gw.resp = resp

function resp.status()
    need_request("gw.resp.status")
    return C.gw_ffi_resp_status(cur)
end

function resp.set_status(code)
    need_request("gw.resp.set_status")
    check_phase("resp", "gw.resp.set_status")
    if C.gw_ffi_resp_set_status(cur, tonumber(code) or 0) ~= OK then
        error("gw.resp.set_status: status must be 100..599", 2)
    end
end

function resp.header(name)
    need_request("gw.resp.header")
    if C.gw_ffi_resp_header(cur, name, #name, P, N) ~= OK then return nil end
    return fstr(P[0], N[0])
end

function resp.set_header(name, value)
    set_header(C.gw_ffi_resp_set_header, "gw.resp.set_header", "resp",
               "cannot set this header here", name, value)
end

-- A header every response of this request gets, the gateway's own
-- (errors, 429) included; set before the response exists.
function resp.add_header(name, value)
    need_request("gw.resp.add_header")
    check_phase("add_resp", "gw.resp.add_header")
    value = header_arg("gw.resp.add_header", name, value)
    if value == nil or C.gw_ffi_resp_add_header(cur, name, #name, value, #value) ~= OK then
        error("gw.resp.add_header: invalid header", 2)
    end
end

-- ---- gw.var, gw.ctx ----

gw.var = setmetatable({}, {
    __index = function(_, k)
        need_request("gw.var")
        if k == "latency" then return C.gw_ffi_req_elapsed(cur) end
        if type(k) ~= "string" then return nil end
        if C.gw_ffi_var_get(cur, k, #k, P, N) ~= OK then return nil end
        return fstr(P[0], N[0])
    end,
    __newindex = function(_, k, v)
        need_request("gw.var")
        if type(k) ~= "string" or v == nil then error("gw.var: a name and a value", 2) end
        v = tostring(v)
        if C.gw_ffi_var_set(cur, k, #k, v, #v) ~= OK then
            error("gw.var." .. k .. " cannot be set", 2)
        end
    end,
})

-- gw.ctx reads the current request's table
setmetatable(gw, {
    __index = function(_, k)
        if k == "ctx" then return cur_ctx end
    end,
})

-- ---- gw.exit, gw.log, time ----

function gw.exit(status, body, headers)
    need_request("gw.exit")
    check_phase("exit", "gw.exit")
    status = tonumber(status)
    if not status or status < 100 or status > 599 then
        error("gw.exit: status must be 100..599", 2)
    end
    local ctype = "json"
    if type(body) == "table" then
        body = cjson.encode(body) or "{}"
    elseif body == nil then
        body = ""
    else
        body, ctype = tostring(body), "text"
    end
    C.gw_ffi_exit(cur, status, body, #body, ctype)
    if headers then
        for k, v in pairs(headers) do
            k, v = tostring(k), tostring(v)
            if C.gw_ffi_exit_header(cur, k, #k, v, #v) ~= OK then
                error("gw.exit: invalid header " .. k, 2)
            end
        end
    end
    M.exited = true
    return true
end

-- gw.exit_error(status, message[, headers]): the request ends with the
-- gateway's own error answer, {"code": status, "message": message,
-- "request_id": <X-Request-Id>} as application/json, going through the
-- error phase as the gateway's errors do. headers (name -> value) go on
-- that answer whatever replaces it (Retry-After, WWW-Authenticate, ...).
function gw.exit_error(status, message, headers)
    need_request("gw.exit_error")
    check_phase("exit", "gw.exit_error")
    status = tonumber(status)
    if not status or status % 1 ~= 0 or status < 400 or status > 599 then
        error("gw.exit_error: status must be an integer 400..599", 2)
    end
    if type(message) ~= "string" or message == "" or sfind(message, "\0", 1, true) then
        error("gw.exit_error: message must be a non-empty string without NUL bytes", 2)
    end
    if headers ~= nil then
        if type(headers) ~= "table" then error("gw.exit_error: headers must be a table", 2) end
        for k, v in pairs(headers) do
            k, v = tostring(k), tostring(v)
            if C.gw_ffi_resp_add_header(cur, k, #k, v, #v) ~= OK then
                error("gw.exit_error: invalid header " .. k .. " (or one the gateway sets)", 2)
            end
        end
    end
    C.gw_ffi_exit_error(cur, status, message, #message)
    M.exited = true
    return true
end

function gw.log(level, ...)
    local lv = base.levels[level]
    if lv == nil then error("gw.log: level must be debug, info, warn or error", 2) end
    local n = select("#", ...)
    local parts = {}
    for i = 1, n do parts[i] = tostring((select(i, ...))) end
    local msg = concat(parts) -- as ngx.log: the arguments, concatenated
    C.gw_ffi_log(cur or 0, lv, msg, #msg)
end

function gw.now()
    return C.gw_ffi_now()
end

-- Waits keep the coroutine's request: another request may run meanwhile.
local function wait(name)
    local r, ctx, phase = cur, cur_ctx, cur_phase
    yield()
    cur, cur_ctx, cur_phase = r, ctx, phase
end

local function can_wait(name)
    need_request(name)
    check_phase("wait", name)
    local co, main = running()
    if co == nil or main then error(name .. " cannot wait here", 3) end
end

function gw.sleep(seconds)
    can_wait("gw.sleep")
    seconds = tonumber(seconds)
    if not seconds or seconds < 0 then error("gw.sleep: seconds must be >= 0", 2) end
    if C.gw_ffi_sleep(cur, seconds) == AGAIN then wait("gw.sleep") end
end

gw.json = {
    encode = function(v) return cjson.encode(v) end,
    decode = function(s) return cjson.decode(s) end,
}

-- for gw.limit: the request being served, and a wait that keeps it
function M.current() return cur end
M.wait = wait
M.can_wait = can_wait

-- ---- gw.redis ----

gw.null = cjson.null
local errp0 = ffi.new("const char *[1]")
local argv_t, lens_t = ffi.typeof("const char *[?]"), ffi.typeof("size_t[?]")
local sub, find = string.sub, string.find

-- the encoding of gateway/gw_lua_api.c's encode_reply
local function decode(s, pos, top)
    local t = sub(s, pos, pos)
    if t == "i" then
        local e = find(s, "\n", pos, true)
        return tonumber(sub(s, pos + 1, e - 1)), e + 1
    elseif t == "s" or t == "e" then
        local c = find(s, ":", pos, true)
        local len = tonumber(sub(s, pos + 1, c - 1))
        local v = sub(s, c + 1, c + len)
        if t == "e" then
            if top then return nil, c + len + 1, v end
            return false, c + len + 1
        end
        return v, c + len + 1
    elseif t == "a" then
        local e = find(s, "\n", pos, true)
        local n = tonumber(sub(s, pos + 1, e - 1))
        local arr, p = {}, e + 1
        for i = 1, n do arr[i], p = decode(s, p, false) end
        return arr, p
    end
    return gw.null, pos + 1
end

function gw.redis(...)
    can_wait("gw.redis")
    local n = select("#", ...)
    if n == 0 then error("gw.redis: a command name and its arguments", 2) end
    -- keep holds the strings argv points into until the call returns
    local argv, lens, keep = argv_t(n), lens_t(n), {} -- luacheck: ignore 241
    for i = 1, n do
        local a = select(i, ...)
        local ta = type(a)
        if ta ~= "string" and ta ~= "number" then
            error("gw.redis: argument " .. i .. " must be a string or a number", 2)
        end
        a = tostring(a)
        keep[i] = a
        argv[i - 1], lens[i - 1] = a, #a
    end
    if C.gw_ffi_redis(cur, n, argv, lens, errp0) ~= AGAIN then return nil, fstr(errp0[0]) end
    wait("gw.redis")
    if C.gw_ffi_redis_result(cur, P, N, errp0) ~= OK then
        local err = fstr(errp0[0])
        C.gw_ffi_redis_release(cur)
        return nil, err
    end
    local enc = fstr(P[0], N[0])
    C.gw_ffi_redis_release(cur)
    local v, _, err = decode(enc, 1, true)
    if err then return nil, err end
    return v
end

-- ---- gw.http ----

gw.http = {}
local errp = ffi.new("const char *[1]")

function gw.http.request(o)
    can_wait("gw.http.request")
    if type(o) ~= "table" or type(o.url) ~= "string" then
        error("gw.http.request: a table with url", 2)
    end
    local lines = {}
    if o.headers then
        for k, v in pairs(o.headers) do
            lines[#lines + 1] = header_arg("gw.http.request", k, v) and (k .. ": " .. tostring(v) .. "\r\n")
        end
    end
    local hs = concat(lines)
    local body = o.body and tostring(o.body) or ""
    local rc = C.gw_ffi_http(cur, o.method or "GET", o.url, hs, #hs, body, #body,
                             tonumber(o.timeout) or 0, errp)
    if rc ~= AGAIN then return nil, fstr(errp[0]) end
    wait("gw.http.request")
    C.gw_ffi_http_result(cur, base.status, P, N, P2, N2, P3)
    local status = base.status[0]
    if status == 0 then
        local err = fstr(P3[0])
        C.gw_ffi_http_release(cur)
        return nil, err
    end
    local res = { status = status, headers = {}, body = fstr(P2[0], N2[0]) }
    for k, v in fstr(P[0], N[0]):gmatch("([^:\r\n]+): ([^\r\n]*)\r\n") do
        local lk = lower(k)
        if res.headers[lk] == nil then res.headers[lk] = v end
    end
    C.gw_ffi_http_release(cur)
    return res
end

return M
