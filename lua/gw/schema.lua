-- A JSON-Schema subset for plugin configs.
--
--   local schema = require "gw.schema"
--   local ok, err = schema.check_schema(s)          -- once, when a plugin loads
--   local conf, err = schema.validate(s, value, "routes[1].plugins.key-auth")
--
-- validate() never modifies `value`: it returns a new table (tables are
-- copied, scalars returned as they are) with defaults filled in, or nil and
-- one message for the first error, prefixed with the path of the offending
-- value ("routes[1].plugins.key-auth.header: expected string, got number").
-- Object keys are visited in sorted order so the first error is always the
-- same one.
--
-- Keywords:
--   type          "object" "array" "string" "number" "integer" "boolean", or
--                 a list of them (any one matches). "integer" is a number with
--                 no fractional part. An empty table is both an array and an
--                 object; a table whose keys are exactly 1..n is an array and
--                 is not an object.
--   properties    name -> schema, applied to those keys of an object.
--   required      list of keys that must be present (after defaults).
--   default       used (deep-copied, then validated like a given value) when
--                 the key is absent. Defaults nest only through properties
--                 that have a `default` themselves: an absent object property
--                 without one stays absent even when its own properties have
--                 defaults; give it `default = {}` to get them filled.
--   enum          list of allowed values (compared deeply for tables).
--   minimum maximum exclusiveMinimum exclusiveMaximum   numbers (bounds).
--   minLength maxLength   string length in bytes.
--   pattern       a Lua pattern (string.find), NOT a regular expression. It
--                 is anchored only if it anchors itself with ^ and $.
--   items         schema for every element of an array.
--   minItems maxItems     array length.
--   additionalProperties  true (default): other keys are kept unchecked;
--                 false: other keys are errors ("unknown key"); a schema:
--                 applied to every other key.
--   description   ignored.
-- Keywords that do not apply to a value's type are ignored (minimum on a
-- string, items on an object), as in JSON Schema.
--
-- YAML nulls (cjson.null) count as absent: such a key is dropped from the
-- result, so a default or a "missing key" error applies to it. A null array
-- element is an error unless the items schema has no type. A null or nil
-- root value becomes a copy of the root's default, else {} when the root
-- accepts objects (so `key-auth: ~` enables a plugin with its defaults).
--
-- validate() trusts its schema: run check_schema() on it first. Unknown
-- keywords are errors there, so that a misspelt keyword cannot silently turn
-- a check off.

local _M = {}

local ok_cjson, cjson = pcall(require, "cjson")
local null = ok_cjson and cjson.null or nil

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local floor, huge = math.floor, math.huge
local sort, concat = table.sort, table.concat
local fmt, find = string.format, string.find

local TYPES = {
    object = true, array = true, string = true, number = true,
    integer = true, boolean = true,
}

local function is_absent(v)
    return v == nil or (null ~= nil and v == null)
end

-- n > 0 when t is a non-empty sequence 1..n with no other keys; 0 when t is
-- empty; nil otherwise.
local function array_len(t)
    local n, max = 0, 0
    for k in pairs(t) do
        if type(k) ~= "number" or k < 1 or k ~= floor(k) then
            return nil
        end
        n = n + 1
        if k > max then
            max = k
        end
    end
    if n ~= max then
        return nil
    end
    return n
end

local function type_name(v)
    if is_absent(v) then
        return "null"
    end
    local t = type(v)
    if t == "table" then
        local n = array_len(v)
        if n == 0 then
            return "empty array/object"
        end
        return n and "array" or "object"
    elseif t == "number" and v ~= v then
        return "NaN"
    end
    return t
end

local function is_integer(v)
    return type(v) == "number" and v == floor(v) and v > -huge and v < huge
end

local function has_type(v, name)
    local t = type(v)
    if name == "string" or name == "boolean" then
        return t == name
    elseif name == "number" then
        return t == "number" and v == v
    elseif name == "integer" then
        return is_integer(v)
    elseif name == "object" then
        if t ~= "table" then
            return false
        end
        local n = array_len(v)
        return n == nil or n == 0
    elseif name == "array" then
        return t == "table" and array_len(v) ~= nil
    end
    return false
end

local function quote(s)
    return '"' .. s:gsub('[%c"\\]', function(c)
        if c == '"' or c == "\\" then
            return "\\" .. c
        elseif c == "\n" then
            return "\\n"
        elseif c == "\t" then
            return "\\t"
        elseif c == "\r" then
            return "\\r"
        end
        return fmt("\\x%02x", c:byte())
    end) .. '"'
end

local function num(v)
    if is_integer(v) and v > -2 ^ 53 and v < 2 ^ 53 then
        return fmt("%d", v)
    end
    return fmt("%.14g", v)
end

local function repr(v)
    local t = type(v)
    if t == "string" then
        return quote(v)
    elseif t == "number" then
        return num(v)
    elseif is_absent(v) then
        return "null"
    elseif t == "table" then
        return type_name(v)
    end
    return tostring(v)
end

local function key_path(path, k)
    if type(k) == "string" and find(k, "^[%w_%-]+$") then
        if path == "" then
            return k
        end
        return path .. "." .. k
    end
    return path .. "[" .. repr(k) .. "]"
end

local function fail(path, msg)
    if path == "" then
        return nil, msg
    end
    return nil, path .. ": " .. msg
end

local function deep_equal(a, b)
    if a == b then
        return true
    end
    if type(a) ~= "table" or type(b) ~= "table" then
        return false
    end
    for k, v in pairs(a) do
        if not deep_equal(v, b[k]) then
            return false
        end
    end
    for k in pairs(b) do
        if a[k] == nil then
            return false
        end
    end
    return true
end

local function deep_copy(v, seen)
    if type(v) ~= "table" then
        return v
    end
    seen = seen or {}
    if seen[v] then
        return seen[v]
    end
    local out = {}
    seen[v] = out
    for k, x in pairs(v) do
        out[deep_copy(k, seen)] = deep_copy(x, seen)
    end
    return out
end

local function sorted_keys(t)
    local keys = {}
    for k in pairs(t) do
        keys[#keys + 1] = k
    end
    sort(keys, function(a, b)
        local ta, tb = type(a), type(b)
        if ta ~= tb then
            return ta < tb
        end
        if ta == "string" or ta == "number" then
            return a < b
        end
        return tostring(a) < tostring(b)
    end)
    return keys
end

local function plural(n, word)
    return num(n) .. " " .. word .. (n == 1 and "" or "s")
end

local function types_text(t)
    if type(t) == "string" then
        return t
    end
    if #t == 1 then
        return t[1]
    end
    return concat(t, ", ", 1, #t - 1) .. " or " .. t[#t]
end

-- Whether s names `name` among its types (false when s has no type).
local function accepts(s, name)
    if type(s.type) == "table" then
        for _, n in ipairs(s.type) do
            if n == name then
                return true
            end
        end
        return false
    end
    return s.type == name
end

local validate

local function check_object(s, v, path)
    local out = {}
    for k, x in pairs(v) do
        if not is_absent(x) then
            out[k] = x
        end
    end

    local props = s.properties
    if props then
        for _, k in ipairs(sorted_keys(props)) do
            if out[k] == nil and props[k].default ~= nil then
                out[k] = deep_copy(props[k].default)
            end
        end
    end

    if s.required then
        for _, k in ipairs(s.required) do
            if out[k] == nil then
                return fail(path, "missing key " .. quote(k))
            end
        end
    end

    local extra = s.additionalProperties
    for _, k in ipairs(sorted_keys(out)) do
        local sub = props and props[k]
        local kp = key_path(path, k)
        if sub == nil then
            if extra == false then
                return fail(kp, "unknown key")
            elseif type(k) ~= "string" then
                return fail(kp, "key must be a string, got " .. type(k))
            elseif type(extra) == "table" then
                sub = extra
            end
        end
        if sub then
            local r, err = validate(sub, out[k], kp)
            if r == nil then
                return nil, err
            end
            out[k] = r
        else
            out[k] = deep_copy(out[k])
        end
    end
    return out
end

local function check_array(s, v, path)
    local n = #v
    if s.minItems and n < s.minItems then
        return fail(path, "must have at least " .. plural(s.minItems, "item")
            .. ", got " .. num(n))
    end
    if s.maxItems and n > s.maxItems then
        return fail(path, "must have at most " .. plural(s.maxItems, "item")
            .. ", got " .. num(n))
    end
    local out = {}
    for i = 1, n do
        local x = v[i]
        if s.items then
            local r, err = validate(s.items, x, path .. "[" .. i .. "]")
            if r == nil then
                return nil, err
            end
            out[i] = r
        else
            out[i] = deep_copy(x)
        end
    end
    return out
end

-- validate(s, v, path): v may be nil or null only at the root or as an
-- array element; object members that are null were dropped by check_object.
validate = function(s, v, path)
    local t = s.type
    if t then
        local matched
        if type(t) == "string" then
            matched = has_type(v, t)
        else
            for _, name in ipairs(t) do
                if has_type(v, name) then
                    matched = true
                    break
                end
            end
        end
        if not matched then
            return fail(path, "expected " .. types_text(t) .. ", got "
                .. type_name(v))
        end
    end

    if s.enum then
        local found
        for _, e in ipairs(s.enum) do
            if deep_equal(e, v) then
                found = true
                break
            end
        end
        if not found then
            local names = {}
            for i, e in ipairs(s.enum) do
                names[i] = repr(e)
            end
            return fail(path, "expected one of " .. concat(names, ", ")
                .. ", got " .. repr(v))
        end
    end

    local vt = type(v)
    if vt == "number" then
        if s.minimum and v < s.minimum then
            return fail(path, "must be >= " .. num(s.minimum) .. ", got "
                .. num(v))
        end
        if s.maximum and v > s.maximum then
            return fail(path, "must be <= " .. num(s.maximum) .. ", got "
                .. num(v))
        end
        if s.exclusiveMinimum and v <= s.exclusiveMinimum then
            return fail(path, "must be > " .. num(s.exclusiveMinimum)
                .. ", got " .. num(v))
        end
        if s.exclusiveMaximum and v >= s.exclusiveMaximum then
            return fail(path, "must be < " .. num(s.exclusiveMaximum)
                .. ", got " .. num(v))
        end
        return v
    elseif vt == "string" then
        local n = #v
        if s.minLength and n < s.minLength then
            return fail(path, "must be at least " .. plural(s.minLength,
                "byte") .. " long, got " .. num(n))
        end
        if s.maxLength and n > s.maxLength then
            return fail(path, "must be at most " .. plural(s.maxLength,
                "byte") .. " long, got " .. num(n))
        end
        if s.pattern and not find(v, s.pattern) then
            return fail(path, "must match pattern " .. s.pattern)
        end
        return v
    elseif vt == "table" then
        local n = array_len(v)
        -- An empty table takes the shape the schema asks for.
        local as_array
        if n == nil then
            as_array = false
        elseif n > 0 then
            as_array = true
        else
            if s.type then
                as_array = not accepts(s, "object")
            else
                as_array = (s.items ~= nil or s.minItems ~= nil)
                    and s.properties == nil
            end
        end
        if as_array then
            return check_array(s, v, path)
        end
        return check_object(s, v, path)
    end
    return v
end

function _M.validate(s, value, path)
    path = path or ""
    if is_absent(value) then
        if s.default ~= nil then
            value = deep_copy(s.default)
        elseif accepts(s, "object") then
            value = {}
        end
    end
    return validate(s, value, path)
end

-- check_schema ---------------------------------------------------------

local KEYWORDS = {
    type = true, properties = true, required = true, default = true,
    enum = true, minimum = true, maximum = true, exclusiveMinimum = true,
    exclusiveMaximum = true, minLength = true, maxLength = true,
    pattern = true, items = true, minItems = true, maxItems = true,
    additionalProperties = true, description = true,
}

local function is_count(v)
    return is_integer(v) and v >= 0
end

local check

local function check_list(v, path, what)
    if type(v) ~= "table" or not array_len(v) or #v == 0 then
        return fail(path, "must be a non-empty list of " .. what)
    end
    return true
end

local function check_bounds(s, path, lo, hi)
    if s[lo] ~= nil and s[hi] ~= nil and s[lo] > s[hi] then
        return fail(path, lo .. " " .. num(s[lo]) .. " is greater than "
            .. hi .. " " .. num(s[hi]))
    end
    return true
end

check = function(s, path, active)
    if type(s) ~= "table" then
        return fail(path, "schema must be a table, got " .. type_name(s))
    end
    if active[s] then
        return fail(path, "recursive schemas are not supported")
    end
    active[s] = true

    for _, k in ipairs(sorted_keys(s)) do
        if not KEYWORDS[k] then
            return fail(key_path(path, k), "unknown schema keyword")
        end
    end

    local ok, err
    local t = s.type
    if t ~= nil then
        local tp = key_path(path, "type")
        if type(t) == "string" then
            if not TYPES[t] then
                return fail(tp, "unknown type " .. repr(t))
            end
        else
            ok, err = check_list(t, tp, "type names")
            if not ok then
                return nil, err
            end
            local seen = {}
            for i, name in ipairs(t) do
                if not TYPES[name] then
                    return fail(tp .. "[" .. i .. "]", "unknown type "
                        .. repr(name))
                end
                if seen[name] then
                    return fail(tp .. "[" .. i .. "]", "duplicate type "
                        .. repr(name))
                end
                seen[name] = true
            end
        end
    end

    if s.properties ~= nil then
        local pp = key_path(path, "properties")
        if type(s.properties) ~= "table" or array_len(s.properties)
                and next(s.properties) then
            return fail(pp, "must be a table of name -> schema")
        end
        for _, k in ipairs(sorted_keys(s.properties)) do
            if type(k) ~= "string" then
                return fail(key_path(pp, k), "property names must be strings")
            end
            ok, err = check(s.properties[k], key_path(pp, k), active)
            if not ok then
                return nil, err
            end
        end
    end

    if s.required ~= nil then
        local rp = key_path(path, "required")
        ok, err = check_list(s.required, rp, "key names")
        if not ok then
            return nil, err
        end
        for i, k in ipairs(s.required) do
            if type(k) ~= "string" then
                return fail(rp .. "[" .. i .. "]", "must be a string, got "
                    .. type_name(k))
            end
            if s.additionalProperties == false
                    and not (s.properties and s.properties[k]) then
                return fail(rp .. "[" .. i .. "]", "key " .. quote(k)
                    .. " is required but not allowed by properties")
            end
        end
    end

    if s.enum ~= nil then
        ok, err = check_list(s.enum, key_path(path, "enum"), "values")
        if not ok then
            return nil, err
        end
    end

    for _, k in ipairs({ "minimum", "maximum", "exclusiveMinimum",
            "exclusiveMaximum" }) do
        if s[k] ~= nil and (type(s[k]) ~= "number" or s[k] ~= s[k]) then
            return fail(key_path(path, k), "must be a number, got "
                .. type_name(s[k]))
        end
    end
    for _, k in ipairs({ "minLength", "maxLength", "minItems", "maxItems" }) do
        if s[k] ~= nil and not is_count(s[k]) then
            return fail(key_path(path, k), "must be a non-negative integer, got "
                .. repr(s[k]))
        end
    end
    for _, b in ipairs({ { "minimum", "maximum" }, { "minLength", "maxLength" },
            { "minItems", "maxItems" } }) do
        ok, err = check_bounds(s, path, b[1], b[2])
        if not ok then
            return nil, err
        end
    end

    if s.pattern ~= nil then
        local pp = key_path(path, "pattern")
        if type(s.pattern) ~= "string" then
            return fail(pp, "must be a string, got " .. type_name(s.pattern))
        end
        local good, perr = pcall(find, "", s.pattern)
        if not good then
            perr = tostring(perr):gsub("^.-:%d+: ", "")
            return fail(pp, "bad Lua pattern: " .. perr)
        end
    end

    if s.items ~= nil then
        ok, err = check(s.items, key_path(path, "items"), active)
        if not ok then
            return nil, err
        end
    end

    local ap = s.additionalProperties
    if ap ~= nil and type(ap) ~= "boolean" then
        ok, err = check(ap, key_path(path, "additionalProperties"), active)
        if not ok then
            return nil, err
        end
    end

    if s.description ~= nil and type(s.description) ~= "string" then
        return fail(key_path(path, "description"), "must be a string, got "
            .. type_name(s.description))
    end

    active[s] = nil

    -- A default must itself be valid, or the plugin gets a config no user
    -- could have written.
    if s.default ~= nil then
        ok, err = validate(s, deep_copy(s.default), key_path(path, "default"))
        if ok == nil then -- a valid default may be false
            return nil, err
        end
    end
    if s.enum ~= nil then
        for i, e in ipairs(s.enum) do
            local probe = { type = s.type }
            ok, err = validate(probe, e, key_path(path, "enum") .. "[" .. i
                .. "]")
            if ok == nil then
                return nil, err
            end
        end
    end
    return true
end

-- check_schema(s [, path]) -> true | nil, err. path prefixes messages
-- (default "schema"): "schema.properties.header.type: unknown type \"strng\"".
function _M.check_schema(s, path)
    return check(s, path or "schema", {})
end

_M.null = null

return _M
