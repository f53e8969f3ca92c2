-- Minimal TAP producer for the Lua unit tests (t/lua/*_test.lua).
--
--   local t = require "tap"      -- also installs the functions as globals
--   ok(cond, name)               is(got, want, name)      isnt(got, bad, name)
--   is_deeply(got, want, name)   like(str, pattern, name) unlike(str, pattern, name)
--   dies(fn, pattern, name)      -- fn must raise an error matching pattern
--   lives(fn, name)              -- fn must not raise
--   diag(...)  note(...)  skip(reason)
--   done()                       -- prints the plan and exits 1 on any failure
--
-- Patterns are Lua patterns. Each assertion returns whether it passed.

local _M = {}

local count, failed = 0, 0

local function out(s)
    io.stdout:write(s, "\n")
    io.stdout:flush()
end

local function comment(s)
    for line in (tostring(s) .. "\n"):gmatch("(.-)\n") do
        out("# " .. line)
    end
end

local function esc(s)
    return (s:gsub('[%c"\\]', function(c)
        if c == "\n" then
            return "\\n"
        elseif c == "\t" then
            return "\\t"
        elseif c == '"' or c == "\\" then
            return "\\" .. c
        end
        return string.format("\\%03d", c:byte())
    end))
end

local function sorted_keys(t)
    local keys = {}
    for k in pairs(t) do
        keys[#keys + 1] = k
    end
    table.sort(keys, function(a, b)
        local ta, tb = type(a), type(b)
        if ta ~= tb then
            return ta < tb
        end
        if ta == "number" or ta == "string" then
            return a < b
        end
        return tostring(a) < tostring(b)
    end)
    return keys
end

-- A stable, one-line rendering of a value (tables with sorted keys).
local function dump(v, seen)
    local t = type(v)
    if t == "string" then
        return '"' .. esc(v) .. '"'
    elseif t ~= "table" then
        if t == "userdata" and tostring(v) == "userdata: NULL" then
            return "null"
        end
        return tostring(v)
    end
    seen = seen or {}
    if seen[v] then
        return "<cycle>"
    end
    seen[v] = true
    local parts, n = {}, #v
    for i = 1, n do
        parts[#parts + 1] = dump(v[i], seen)
    end
    for _, k in ipairs(sorted_keys(v)) do
        if not (type(k) == "number" and k >= 1 and k <= n and k % 1 == 0) then
            local ks = (type(k) == "string" and k:match("^[%a_][%w_]*$"))
                and k or "[" .. dump(k, seen) .. "]"
            parts[#parts + 1] = ks .. " = " .. dump(v[k], seen)
        end
    end
    seen[v] = nil
    return "{" .. table.concat(parts, ", ") .. "}"
end
_M.dump = dump

local function report(pass, name)
    count = count + 1
    local line = (pass and "ok " or "not ok ") .. count
    if name and name ~= "" then
        line = line .. " - " .. tostring(name):gsub("\n", " "):gsub("#", "\\#")
    end
    out(line)
    if not pass then
        failed = failed + 1
        local info = debug.getinfo(3, "Sl")
        if info then
            comment("  Failed test at " .. info.short_src .. " line "
                .. info.currentline .. ".")
        end
    end
    return pass
end

function _M.ok(cond, name)
    return report(not not cond, name)
end

function _M.is(got, want, name)
    local pass = got == want
    report(pass, name)
    if not pass then
        comment("       got: " .. dump(got))
        comment("  expected: " .. dump(want))
    end
    return pass
end

function _M.isnt(got, bad, name)
    local pass = got ~= bad
    report(pass, name)
    if not pass then
        comment("       got: " .. dump(got))
        comment("  expected: anything else")
    end
    return pass
end

local function key_path(path, k)
    if type(k) == "string" and k:match("^[%a_][%w_]*$") then
        return path .. "." .. k
    end
    return path .. "[" .. dump(k) .. "]"
end

-- The first place where got and want differ: path, got part, want part.
local function first_diff(got, want, path, seen)
    if got == want then
        return nil
    end
    if type(got) ~= "table" or type(want) ~= "table" then
        return path, got, want
    end
    seen = seen or {}
    if seen[got] == want then
        return nil
    end
    seen[got] = want
    local keys, have = {}, {}
    for _, k in ipairs(sorted_keys(want)) do
        keys[#keys + 1] = k
        have[k] = true
    end
    for _, k in ipairs(sorted_keys(got)) do
        if not have[k] then
            keys[#keys + 1] = k
        end
    end
    for _, k in ipairs(keys) do
        local p, g, w = first_diff(got[k], want[k], key_path(path, k), seen)
        if p then
            return p, g, w
        end
    end
    return nil
end

function _M.is_deeply(got, want, name)
    local path, g, w = first_diff(got, want, "")
    local pass = path == nil
    report(pass, name)
    if not pass then
        comment("  differ at: " .. (path == "" and "top level" or path))
        comment("       got: " .. (g == nil and "(absent)" or dump(g)))
        comment("  expected: " .. (w == nil and "(absent)" or dump(w)))
        if path ~= "" then
            comment("  whole got: " .. dump(got))
            comment("  whole expected: " .. dump(want))
        end
    end
    return pass
end

function _M.like(str, pattern, name)
    local pass = type(str) == "string" and str:find(pattern) ~= nil
    report(pass, name)
    if not pass then
        comment("                  " .. dump(str))
        comment("  doesn't match   " .. dump(pattern))
    end
    return pass
end

function _M.unlike(str, pattern, name)
    local pass = type(str) == "string" and str:find(pattern) == nil
    report(pass, name)
    if not pass then
        comment("                  " .. dump(str))
        comment("  matches         " .. dump(pattern))
    end
    return pass
end

function _M.dies(fn, pattern, name)
    local good, err = pcall(fn)
    local pass = not good and (pattern == nil
        or tostring(err):find(pattern) ~= nil)
    report(pass, name)
    if not pass then
        if good then
            comment("  did not raise an error")
        else
            comment("     error: " .. dump(tostring(err)))
            comment("  expected: " .. dump(pattern))
        end
    end
    return pass
end

function _M.lives(fn, name)
    local good, err = pcall(fn)
    report(good, name)
    if not good then
        comment("  raised: " .. tostring(err))
    end
    return good
end

function _M.pass(name)
    return report(true, name)
end

function _M.fail(name)
    return report(false, name)
end

function _M.diag(...)
    local parts = {}
    for i = 1, select("#", ...) do
        parts[i] = tostring((select(i, ...)))
    end
    comment(table.concat(parts, " "))
end
_M.note = _M.diag

function _M.skip(reason)
    count = count + 1
    out("ok " .. count .. " # skip " .. (reason or ""))
end

function _M.done()
    out("1.." .. count)
    if failed > 0 then
        comment("Looks like you failed " .. failed .. " test"
            .. (failed == 1 and "" or "s") .. " of " .. count .. ".")
        os.exit(1)
    end
    os.exit(0)
end

for k, f in pairs(_M) do
    if k ~= "dump" then
        _G[k] = f
    end
end

return _M
