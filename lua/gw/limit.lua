-- Rate limiting for plugins: keys, the C limiters (gateway/gw_limit.c) and
-- the 429 answer. limit-period and limit-token are thin plugins over this;
-- a plugin of the operator's may use it too (require "gw.limit").
local api = require "gw.api"
local base = require "gw.base"

local ffi, C = base.ffi, base.C
local gw = api.gw
local OK, AGAIN = base.OK, base.AGAIN
local tostring = tostring
local sub, byte = string.sub, string.byte

local M = {}

local KINDS = { period = 0, token = 1 }
local POLICIES = { redis = 0, ["local"] = 1 }
local ON_ERR = { ["local"] = 0, allow = 1, deny = 2 }

-- "ip", "consumer", "route", "header:NAME", "var:NAME"
function M.check_key(spec)
    if spec == "ip" or spec == "consumer" or spec == "route" then return true end
    local kind, name = spec:match("^(%a+):(.+)$")
    if (kind == "header" or kind == "var") and name:match("^[%w_%-]+$") then return true end
    return nil, "key must be ip, consumer, route, header:NAME or var:NAME, got \"" .. spec .. "\""
end

local function key_value(spec)
    if spec == "ip" then return gw.var.remote_addr end
    if spec == "consumer" then return gw.var.consumer end
    if spec == "route" then return gw.var.route end
    if byte(spec, 1) == 104 then return gw.req.header(sub(spec, 8)) end -- header:
    return gw.var[sub(spec, 5)]                                          -- var:
end

-- One C limiter per plugin config and route (the default prefix names the
-- route), made on first use in each worker.
local handles = setmetatable({}, { __mode = "k" })

local function handle(kind, conf)
    -- the route by index (no string made per request); its name only once
    local ri = C.gw_ffi_route_index(api.current())
    local byroute = handles[conf]
    if byroute == nil then
        byroute = {}
        handles[conf] = byroute
    end
    local id = byroute[ri]
    if id then return id end
    local prefix = conf.prefix or ("limit:" .. kind .. ":" .. (gw.var.route or "") .. ":")
    local a, b
    if kind == "period" then a, b = conf.quota, conf.period else a, b = conf.rate, conf.burst end
    id = C.gw_ffi_limiter_new(api.current(), KINDS[kind], a, b, conf.align and 1 or 0, prefix,
                              #prefix, POLICIES[conf.policy or "redis"],
                              ON_ERR[conf.on_redis_error or "local"])
    if id < 0 then error("gw.limit: cannot create the " .. kind .. " limiter", 3) end
    byroute[ri] = id
    return id
end

local out = ffi.new("int64_t[6]")
local HEADERS, ENFORCE = 1, 2

-- Asks the limiter; waits when it asks Redis.
local function ask(kind, conf, key, flags)
    local id = handle(kind, conf)
    local rc = C.gw_ffi_limit_take(api.current(), id, KINDS[kind], key, #key, flags)
    if rc == AGAIN then
        api.wait("gw.limit")
    elseif rc ~= OK then
        error("gw.limit: the limiter cannot answer here", 3)
    end
end

-- Takes one request from the limiter of CONF (kind "period" or "token")
-- for KEY, waiting for Redis when it is asked, and only reports: returns
-- a table: allowed, code (1 allowed, 2 hit quota, 3 over quota), limit,
-- remaining (-1: unknown), reset (seconds, -1: unknown), source ("redis",
-- "local", "policy").
function M.take(kind, conf, key)
    api.can_wait("gw.limit.take")
    ask(kind, conf, tostring(key), 0)
    C.gw_ffi_limit_result(api.current(), out)
    local src = tonumber(out[5])
    return {
        allowed = out[0] ~= 0,
        code = tonumber(out[1]),
        limit = tonumber(out[2]),
        remaining = tonumber(out[3]),
        reset = tonumber(out[4]),
        source = src == 0 and "redis" or src == 1 and "local" or "policy",
    }
end

-- The access-phase body of limit-period and limit-token: the key, the
-- take, and (in C) the X-RateLimit headers and a 429 through the error
-- phase when refused. A request without a value for the key is counted by
-- client IP. Returns whether the request was admitted.
function M.run(kind, conf)
    local key = key_value(conf.key)
    if key == nil or key == "" then key = gw.var.remote_addr end
    ask(kind, conf, key, conf.show_headers == false and ENFORCE or HEADERS + ENFORCE)
    if C.gw_ffi_limit_allowed(api.current()) == 0 then
        api.exited = true
        return false
    end
    return true
end

return M
