-- The plugin runner: loads plugins into their own environments, checks
-- their configs against their schemas, builds one chain per route (global
-- plugins first, each list by priority, higher first) and runs phases.
-- gateway/gw_lua.c calls init() once per VM, then run() in a coroutine for
-- rewrite/access and the other entry points on the main state.
local api = require "gw.api"
local base = require "gw.base"
local schema = require "gw.schema"
local cjson = require "cjson.safe"

local gw = api.gw
local phases = base.phases
local traceback = debug.traceback
local xpcall, pcall, type, pairs, ipairs, tostring = xpcall, pcall, type, pairs, ipairs, tostring
local band = bit.band

local M = {}

local chains = {}   -- [route index (0: no route)] = { {plugin, conf, name}, ... }
local masks = {}

-- ---- sandbox ----
-- Plugins share one VM, so everything they can reach in common (the
-- standard library, the string metatable, gw, the modules they may
-- require) is a read-only view: a write raises an error in the plugin
-- that tried, never changes what another plugin or the runtime (which
-- keeps the real tables) sees.

local safe_modules = {
    cjson = true, ["cjson.safe"] = true, ["gw.schema"] = true, ["gw.crypto"] = true,
    ["gw.limit"] = true, bit = true,
}

-- No plugin needs to turn functions into bytecode; nobody in this VM does
-- (strings reach string.* through their metatable, so remove it here).
string.dump = nil -- luacheck: ignore 122

local backing = {} -- [view] = the table it shows
local locked = {}  -- [table] = its name, for tables rawset may not touch

-- A view of t: reads go through to t (table __index, which the JIT follows
-- at no cost), writes raise an error naming the field.
local function readonly(t, name)
    local view = setmetatable({}, {
        __index = t,
        __newindex = function(_, k)
            error(name .. "." .. tostring(k) .. " is read-only", 2)
        end,
        __metatable = false,
    })
    backing[view] = t
    locked[view] = name
    return view
end

-- The sandbox's raw functions and iterators see what a view shows; rawset
-- refuses views (and gw.var, whose fields are variables).
local real_next, real_pairs, real_rawget, real_rawset = next, pairs, rawget, rawset

local function s_next(t, k)
    local b = backing[t]
    if b then return real_next(b, k) end
    return real_next(t, k)
end

local function s_pairs(t)
    if backing[t] then return s_next, t, nil end -- never hand out the real table
    return real_pairs(t)
end

local function s_rawget(t, k)
    return real_rawget(backing[t] or t, k)
end

local function s_rawset(t, k, v)
    local name = locked[t]
    if name then error("rawset: " .. name .. " is read-only", 2) end
    return real_rawset(t, k, v)
end

local lib_views = {
    string = readonly(string, "string"), table = readonly(table, "table"),
    math = readonly(math, "math"), bit = readonly(bit, "bit"),
}
locked[api.gw.var] = "gw.var"

-- getmetatable("") gives plugins a read-only view of the string metatable
-- (its __index the read-only string); the VM keeps using the real one.
debug.getmetatable("").__metatable =
    readonly({ __index = lib_views.string }, "string metatable")

local plugin_paths = {}
local user_modules = {}
local module_views = { bit = lib_views.bit }
local sandbox_base

-- cjson, gw.schema, gw.crypto and bit, or a Lua module of the operator's
-- in plugin_paths (a.b -> a/b.lua), loaded into a sandbox of its own.
-- cjson comes as an instance of the requiring plugin's own (cjson.new), so
-- its settings (encode_max_depth, ...) are that plugin's business only.
local function make_require()
    local own = {}
    return function(name)
        if safe_modules[name] then
            local v = own[name] or module_views[name]
            if v then return v end
            if name == "cjson" or name == "cjson.safe" then
                v = readonly(require(name).new(), name)
                own[name] = v
            else
                v = readonly(require(name), name)
                module_views[name] = v
            end
            return v
        end
        if type(name) ~= "string" or not name:match("^[%w_%-]+[%w_%.%-]*$") then
            error("module '" .. tostring(name) .. "' is not available to plugins", 2)
        end
        if user_modules[name] ~= nil then return user_modules[name] end
        local rel = name:gsub("%.", "/")
        for _, dir in ipairs(plugin_paths) do
            local f = dir .. "/" .. rel .. ".lua"
            local h = io.open(f, "r")
            if h then
                h:close()
                local chunk, err = loadfile(f, "t")
                if not chunk then error(err, 2) end
                setfenv(chunk, setmetatable({}, { __index = sandbox_base() }))
                local m = chunk()
                if m == nil then m = true end
                user_modules[name] = m
                return m
            end
        end
        error("module '" .. name .. "' is not available to plugins", 2)
    end
end

-- What plugins see as `gw`: the API through read-only views, so that one
-- plugin cannot replace a function another relies on (gw.req.header = ...).
-- gw.var keeps its own metatable (assigning to it sets a variable).
local gw_view

local function make_gw_view()
    -- tables all the way, which the JIT follows at no cost: the view, then
    -- the API with read-only sub-tables, then gw itself (for gw.ctx)
    local merged = setmetatable({}, { __index = gw })
    for k, v in pairs(gw) do
        if type(v) == "table" and k ~= "var" and k ~= "null" and getmetatable(v) == nil then
            merged[k] = readonly(v, "gw." .. k)
        else
            merged[k] = v
        end
    end
    return readonly(merged, "gw")
end

function sandbox_base()
    local env = {
        assert = assert, error = error, ipairs = ipairs, next = s_next, pairs = s_pairs,
        pcall = pcall, select = select, tonumber = tonumber, tostring = tostring, type = type,
        unpack = unpack, xpcall = xpcall, setmetatable = setmetatable,
        getmetatable = getmetatable, rawget = s_rawget, rawset = s_rawset, rawequal = rawequal,
        string = lib_views.string, table = lib_views.table, math = lib_views.math,
        bit = lib_views.bit, require = make_require(), gw = gw_view, _VERSION = _VERSION,
    }
    -- text only: a binary chunk could break the VM's invariants
    env.load = function(s, name)
        if type(s) ~= "string" then error("load takes text only", 2) end
        return load(s, name, "t", env)
    end
    env.loadstring = function(s, name) return env.load(s, name) end
    env._G = env
    return env
end

local function find_plugin(name, paths)
    if not name:match("^[%w_%-]+$") then return nil end
    for _, dir in ipairs(paths) do
        local f = dir .. "/" .. name .. ".lua"
        local h = io.open(f, "r")
        if h then h:close() return f end
    end
end

local loaded = {}
local loaded_file = {}

local function load_plugin(name, paths)
    if loaded[name] ~= nil then return loaded[name] end
    local file = find_plugin(name, paths)
    if not file then return nil, "unknown plugin \"" .. name .. "\"" end
    local chunk, err = loadfile(file, "t")
    if not chunk then return nil, "plugin \"" .. name .. "\": " .. err end
    local env = setmetatable({}, { __index = sandbox_base() })
    setfenv(chunk, env)
    local ok, p = pcall(chunk)
    if not ok then return nil, "plugin \"" .. name .. "\": " .. tostring(p) end
    if type(p) ~= "table" then return nil, "plugin \"" .. name .. "\" does not return a table" end
    if p.name ~= name then
        return nil, "plugin file " .. file .. " names itself \"" .. tostring(p.name) .. "\""
    end
    if type(p.priority) ~= "number" then
        return nil, "plugin \"" .. name .. "\": priority must be a number"
    end
    p.schema = p.schema or { type = "object" }
    local sok, serr = schema.check_schema(p.schema)
    if not sok then return nil, "plugin \"" .. name .. "\": bad schema: " .. tostring(serr) end
    if p.consumer_schema then
        sok, serr = schema.check_schema(p.consumer_schema)
        if not sok then
            return nil, "plugin \"" .. name .. "\": bad consumer schema: " .. tostring(serr)
        end
    end
    loaded[name] = p
    loaded_file[name] = file
    return p
end

-- ---- consumers ----

local consumers = {}       -- list, as configured (plugin blocks validated)
local consumer_index = {}  -- [plugin][field][value] = consumer

gw.consumers = {
    by = function(plugin, field, value)
        local p = consumer_index[plugin]
        local f = p and p[field]
        return f and f[value] or nil
    end,
    list = function() return consumers end,
}

local function index_consumers(list, paths, errs)
    for i, c in ipairs(list) do
        local cpath = "consumers[" .. (i - 1) .. "]"
        for k, v in pairs(c) do
            if k ~= "name" and type(v) == "table" then
                local p, err = load_plugin(k, paths)
                if not p then
                    errs[#errs + 1] = cpath .. "." .. k .. ": " .. err
                elseif p.consumer_schema then
                    local conf, verr = schema.validate(p.consumer_schema, v, cpath .. "." .. k)
                    if conf then c[k] = conf else errs[#errs + 1] = verr end
                    if conf and p.check_consumer then
                        local ok, cerr = p.check_consumer(conf)
                        if not ok then
                            errs[#errs + 1] = cpath .. "." .. k .. ": " .. tostring(cerr)
                        end
                    end
                end
            end
        end
        consumers[#consumers + 1] = c
        for k, v in pairs(c) do
            if k ~= "name" and type(v) == "table" then
                consumer_index[k] = consumer_index[k] or {}
                for field, value in pairs(v) do
                    if type(value) == "string" or type(value) == "number" then
                        local byf = consumer_index[k][field] or {}
                        consumer_index[k][field] = byf
                        byf[value] = byf[value] or c
                    end
                end
            end
        end
    end
end

-- ---- init ----

local function compile_list(list, paths, errs)
    local out = {}
    for _, spec in ipairs(list) do
        local p, err = load_plugin(spec.name, paths)
        if not p then
            errs[#errs + 1] = spec.path .. ": " .. err
        else
            local raw, derr = cjson.decode(spec.json)
            if raw == nil and derr then
                errs[#errs + 1] = spec.path .. ": " .. derr
            else
                local conf, verr = schema.validate(p.schema, raw, spec.path)
                if conf == nil then
                    errs[#errs + 1] = verr
                elseif p.check then
                    local ok, cerr = p.check(conf)
                    if not ok then errs[#errs + 1] = spec.path .. ": " .. tostring(cerr) end
                end
                out[#out + 1] = { plugin = p, conf = conf, name = spec.name }
            end
        end
    end
    table.sort(out, function(a, b)
        if a.plugin.priority ~= b.plugin.priority then
            return a.plugin.priority > b.plugin.priority
        end
        return a.name < b.name
    end)
    return out
end

local function mask_of(chain)
    local m = 0
    for _, e in ipairs(chain) do
        for ph, bitv in pairs(phases) do
            if type(e.plugin[ph]) == "function" then m = bit.bor(m, bitv) end
        end
    end
    return m
end

function M.init(spec)
    local errs = {}
    -- GW_JIT_LOG=FILE: the JIT compiler's trace log, to see what it gives up on
    local jitlog = os.getenv("GW_JIT_LOG")
    if jitlog and not spec.check_only then
        local ok, v = pcall(require, "jit.v")
        if ok then v.start(jitlog) end
    end
    local paths = spec.plugin_paths or {}
    plugin_paths = paths
    local clist = cjson.decode(spec.consumers or "[]") or {}
    local cok, crypto = pcall(require, "gw.crypto")
    if cok then gw.crypto = crypto end
    gw_view = make_gw_view()
    index_consumers(clist, paths, errs)
    local global = compile_list(spec.global or {}, paths, errs)
    chains[0] = global
    masks[0] = mask_of(global)
    for i, list in ipairs(spec.routes or {}) do
        local chain = {}
        for _, e in ipairs(global) do chain[#chain + 1] = e end
        for _, e in ipairs(compile_list(list, paths, errs)) do chain[#chain + 1] = e end
        chains[i] = chain
        masks[i] = mask_of(chain)
    end
    if #errs > 0 then return nil, errs end
    return true, masks
end

-- The loaded plugins for the admin API (GET /plugins): a JSON array of
-- {name, priority, version, phases, file}, by name. Built by hand: an
-- empty phase list must stay an array.
local phase_order = { "rewrite", "access", "header_filter", "body_filter", "log", "error" }

function M.plugins_json()
    local names = {}
    for name in pairs(loaded) do names[#names + 1] = name end
    table.sort(names)
    local out = {}
    for _, name in ipairs(names) do
        local p = loaded[name]
        local ph = {}
        for _, phase in ipairs(phase_order) do
            if type(p[phase]) == "function" then ph[#ph + 1] = cjson.encode(phase) end
        end
        local version = p.version ~= nil and cjson.encode(tostring(p.version)) or "null"
        out[#out + 1] = '{"name":' .. cjson.encode(name) .. ',"priority":' .. cjson.encode(p.priority)
            .. ',"version":' .. version .. ',"phases":[' .. table.concat(ph, ",") .. ']'
            .. ',"file":' .. cjson.encode(loaded_file[name] or "") .. '}'
    end
    return "[" .. table.concat(out, ",") .. "]"
end

-- ---- phases ----

local function fail(r, e, phase, err)
    local msg = "plugin " .. e.name .. " failed in " .. phase .. ": " .. tostring(err)
    base.C.gw_ffi_log(r or 0, base.levels.error, msg, #msg)
end

local run_order = { "rewrite", "access", "header_filter", "log" }

-- Runs one phase over a chain. true: go on (or gw.exit was called: the C
-- side knows); false: a plugin failed (logged).
local function run_phase(r, chain, ctx, phase)
    for _, e in ipairs(chain) do
        local fn = e.plugin[phase]
        if fn then
            api.enter(r, ctx, phase)
            local ok, err = xpcall(fn, traceback, e.conf, ctx)
            if not ok then
                fail(r, e, phase, err)
                return false
            end
            if api.exited then return true end
        end
    end
    return true
end

-- The calls M.run makes for a route and a phase mask, compiled once into
-- one straight-line function (no loop over a 2- or 3-plugin chain): the JIT
-- turns a request's whole pass into one trace.
local flats = {}

local function compile_flat(list)
    local src = { "local api, xpcall, traceback, fail, L = ...\n",
                  "return function(r, ctx)\n" }
    for i = 1, #list do
        src[#src + 1] = ("  api.enter(r, ctx, L[%d].phase)\n"
            .. "  local ok, err = xpcall(L[%d].fn, traceback, L[%d].conf, ctx)\n"
            .. "  if not ok then fail(r, L[%d].e, L[%d].phase, err) return false end\n"
            .. "  if api.exited then return true end\n"):format(i, i, i, i, i)
    end
    src[#src + 1] = "  return true\nend\n"
    local chunk = assert(load(table.concat(src), "=runner-chain", "t"))
    return chunk(api, xpcall, traceback, fail, list)
end

local function flat_for(route, mask)
    local byroute = flats[route]
    if byroute == nil then
        byroute = {}
        flats[route] = byroute
    end
    local fn = byroute[mask]
    if fn then return fn end
    local list = {}
    local chain = chains[route] or {}
    for _, phase in ipairs(run_order) do
        if band(mask, phases[phase]) ~= 0 then
            for _, e in ipairs(chain) do
                local pf = e.plugin[phase]
                if pf then list[#list + 1] = { fn = pf, conf = e.conf, e = e, phase = phase } end
            end
        end
    end
    fn = compile_flat(list)
    byroute[mask] = fn
    return fn
end

-- Coroutine body: the phases in mask (rewrite and access together, or one
-- of header_filter and log), in order.
function M.run(r, route, mask, ctx)
    return flat_for(route, mask)(r, ctx)
end

-- A phase on the main state: it may not wait.
function M.run_sync(r, route, ctx, phase)
    local ok = run_phase(r, chains[route] or {}, ctx, phase)
    api.enter(nil, nil, nil)
    return ok
end

function M.body_filter(r, route, ctx, chunk, eof)
    for _, e in ipairs(chains[route] or {}) do
        local fn = e.plugin.body_filter
        if fn then
            api.enter(r, ctx, "body_filter")
            local ok, out = xpcall(fn, traceback, e.conf, ctx, chunk, eof)
            if not ok then
                fail(r, e, "body_filter", out)
                return false
            end
            if out ~= nil then chunk = tostring(out) end
        end
    end
    api.enter(nil, nil, nil)
    return true, chunk
end

-- Does a plugin of the route want the error phase for this upstream status?
local wanted = {} -- [route][status] = true, filled on first use
function M.wants_upstream(r, route, ctx, status)
    local w = wanted[route]
    if w == nil then
        w = {}
        for _, e in ipairs(chains[route] or {}) do
            local fn = e.plugin.wants_upstream_error
            if fn and e.plugin.error then
                for st = 100, 599 do
                    local ok, yes = pcall(fn, e.conf, st)
                    if ok and yes then w[st] = true end
                end
            end
        end
        wanted[route] = w
    end
    return w[status] == true
end

-- The error phase: the first plugin that returns a status replaces the
-- gateway's answer. true when replaced.
function M.run_error(r, route, ctx, kind, status, message, upstream_status)
    local err = { kind = kind, status = status, message = message,
                  upstream_status = upstream_status }
    for _, e in ipairs(chains[route] or {}) do
        local fn = e.plugin.error
        if fn then
            api.enter(r, ctx, "error")
            local ok, st, body, headers = xpcall(fn, traceback, e.conf, ctx, err)
            if not ok then
                fail(r, e, "error", st)
            elseif api.exited then
                return true
            elseif type(st) == "number" then
                local eok, eerr = pcall(gw.exit, st, body, headers)
                if eok then return true end
                fail(r, e, "error", eerr)
            end
        end
    end
    api.enter(nil, nil, nil)
    return false
end

-- body_filter in a coroutine: its plugins may wait. The output chunk goes
-- to the C side through gw_ffi_body_out.
function M.body_filter_co(r, route, ctx, chunk, eof)
    local ok, out = M.body_filter(r, route, ctx, chunk, eof)
    if ok then base.C.gw_ffi_body_out(r, out, #out) end
    return ok
end

-- The error phase in a coroutine: its plugins may wait. Always true; the C
-- side knows from gw.exit whether the response was replaced.
function M.run_error_co(r, route, ctx, kind, status, message, upstream_status)
    M.run_error(r, route, ctx, kind, status, message, upstream_status)
    return true
end

return M
