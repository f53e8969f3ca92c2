-- gw.schema: every keyword passing and failing, defaults, exact messages,
-- check_schema on bad schemas, YAML nulls.

local t = require "tap"
local schema = require "gw.schema"
local cjson = require "cjson"
local null = cjson.null

local validate, check_schema = schema.validate, schema.check_schema

-- passes(s, value, want, name): valid, result deeply equal to want (or to
-- value when want is nil).
local function passes(s, value, want, name)
    local good, cerr = check_schema(s)
    if not good then
        t.fail(name .. " (bad schema: " .. cerr .. ")")
        return
    end
    local r, err = validate(s, value, "p")
    if r == nil then
        t.fail(name)
        t.diag("  error: " .. tostring(err))
        return
    end
    if want == nil then
        want = value
    end
    t.is_deeply(r, want, name)
end

local function fails(s, value, msg, name, path)
    local good, cerr = check_schema(s)
    if not good then
        t.fail(name .. " (bad schema: " .. cerr .. ")")
        return
    end
    local r, err = validate(s, value, path or "p")
    t.is(r, nil, name .. ": rejected")
    t.is(err, msg, name .. ": message")
end

local function bad_schema(s, msg, name)
    local good, err = check_schema(s)
    t.is(good, nil, name .. ": rejected")
    t.is(err, msg, name .. ": message")
end

-- type ------------------------------------------------------------------

passes({ type = "string" }, "x", nil, "string")
passes({ type = "string" }, "", nil, "empty string")
fails({ type = "string" }, 1, "p: expected string, got number", "string vs number")
fails({ type = "string" }, true, "p: expected string, got boolean", "string vs boolean")
fails({ type = "string" }, { 1 }, "p: expected string, got array", "string vs array")
fails({ type = "string" }, { a = 1 }, "p: expected string, got object", "string vs object")
fails({ type = "string" }, {}, "p: expected string, got empty array/object", "string vs {}")
passes({ type = "number" }, 1.5, nil, "number")
passes({ type = "number" }, -3, nil, "negative number")
fails({ type = "number" }, "1", 'p: expected number, got string', "number vs string")
fails({ type = "number" }, 0 / 0, "p: expected number, got NaN", "NaN is not a number")
passes({ type = "integer" }, 42, nil, "integer")
passes({ type = "integer" }, 3.0, nil, "integer 3.0")
passes({ type = "integer" }, -7, nil, "negative integer")
fails({ type = "integer" }, 1.5, "p: expected integer, got number", "integer vs 1.5")
fails({ type = "integer" }, math.huge, "p: expected integer, got number", "integer vs inf")
fails({ type = "integer" }, "3", "p: expected integer, got string", "integer vs string")
passes({ type = "boolean" }, false, nil, "boolean false")
passes({ type = "boolean" }, true, nil, "boolean true")
fails({ type = "boolean" }, "true", "p: expected boolean, got string", "boolean vs string")
fails({ type = "boolean" }, 0, "p: expected boolean, got number", "boolean vs number")
passes({ type = "object" }, { a = 1 }, nil, "object")
passes({ type = "object" }, {}, nil, "empty table is an object")
fails({ type = "object" }, { 1, 2 }, "p: expected object, got array", "array is not an object")
fails({ type = "object" }, "x", "p: expected object, got string", "object vs string")
passes({ type = "array" }, { 1, "a" }, nil, "array")
passes({ type = "array" }, {}, nil, "empty table is an array")
fails({ type = "array" }, { a = 1 }, "p: expected array, got object", "object is not an array")
fails({ type = "array" }, { [1] = 1, [3] = 3 }, "p: expected array, got object", "sparse table is not an array")
fails({ type = "array" }, { 1, x = 2 }, "p: expected array, got object", "mixed table is not an array")
passes({ type = { "string", "integer" } }, "a", nil, "type list: string")
passes({ type = { "string", "integer" } }, 5, nil, "type list: integer")
fails({ type = { "string", "integer" } }, 5.5, "p: expected string or integer, got number", "type list: two")
fails({ type = { "string", "number", "boolean" } }, {},
    "p: expected string, number or boolean, got empty array/object", "type list: three")
passes({}, { anything = { 1, 2 } }, nil, "no type: anything goes")

-- messages without a path, and with awkward keys ------------------------

do
    local r, err = validate({ type = "string" }, 1)
    t.is(err, "expected string, got number", "no path: bare message")
    r, err = validate({ type = "string" }, 1, "")
    t.is(err, "expected string, got number", "empty path: bare message")
    r, err = validate({ type = "object", properties = { a = { type = "string" } } }, { a = 1 })
    t.is(err, "a: expected string, got number", "no path: key alone")
    r, err = validate({ type = "object", additionalProperties = { type = "integer" } },
        { ["a b"] = "x" }, "p")
    t.is(err, 'p["a b"]: expected integer, got string', "odd key is bracketed")
    r, err = validate({ type = "object", properties = { ["key-auth"] = { type = "object" } } },
        { ["key-auth"] = 1 }, "routes[1].plugins")
    t.is(err, "routes[1].plugins.key-auth: expected object, got number", "dashed key keeps dots")
end

-- properties, nested paths -------------------------------------------------

do
    local s = {
        type = "object",
        properties = {
            header = { type = "string" },
            limits = {
                type = "object",
                properties = { rate = { type = "integer", minimum = 1 } },
            },
        },
    }
    passes(s, { header = "X-Key", limits = { rate = 5 } }, nil, "properties")
    passes(s, {}, {}, "properties are optional")
    fails(s, { header = 1 }, "routes[1].plugins.key-auth.header: expected string, got number",
        "property type", "routes[1].plugins.key-auth")
    fails(s, { limits = { rate = 0 } }, "p.limits.rate: must be >= 1, got 0", "nested property")
    passes(s, { header = "h", other = { 1 } }, nil, "additional keys allowed by default")
    -- the first error is the first key in sorted order
    fails(s, { limits = { rate = 0 }, header = 1 }, "p.header: expected string, got number",
        "errors are reported in key order")
end

-- required -------------------------------------------------------------------

do
    local s = {
        type = "object",
        properties = { name = { type = "string" }, key = { type = "string" } },
        required = { "name", "key" },
    }
    passes(s, { name = "a", key = "b" }, nil, "required present")
    fails(s, { key = "b" }, 'p: missing key "name"', "required missing")
    fails(s, { name = "a" }, 'p: missing key "key"', "second required missing")
    fails(s, {}, 'p: missing key "name"', "first required reported first")
    fails(s, { name = null, key = "b" }, 'p: missing key "name"', "null counts as missing")
    passes(s, { name = "", key = false and "" or "k" }, nil, "empty string is present")
    local sb = { type = "object", properties = { on = { type = "boolean" } }, required = { "on" } }
    passes(sb, { on = false }, nil, "false is present")
end

-- default --------------------------------------------------------------------

do
    local s = {
        type = "object",
        properties = {
            header = { type = "string", default = "X-API-Key" },
            hide = { type = "boolean", default = true },
            n = { type = "integer", default = 0 },
            list = { type = "array", items = { type = "string" }, default = { "a", "b" } },
        },
    }
    passes(s, {}, { header = "X-API-Key", hide = true, n = 0, list = { "a", "b" } }, "defaults filled")
    passes(s, { header = "X-K", hide = false, n = 3, list = {} },
        { header = "X-K", hide = false, n = 3, list = {} }, "given values win, false kept")
    passes(s, { header = null }, { header = "X-API-Key", hide = true, n = 0, list = { "a", "b" } },
        "null gets the default")

    local r1 = validate(s, {}, "p")
    local r2 = validate(s, {}, "p")
    r1.list[1] = "changed"
    t.is(r2.list[1], "a", "defaults are deep-copied per result")
    t.is(s.properties.list.default[1], "a", "schema default untouched")

    local input = { hide = false }
    local r = validate(s, input, "p")
    t.is(input.header, nil, "input not modified")
    t.ok(r ~= input, "a new table is returned")

    -- nested defaults: filled only through properties that have a default
    local nested = {
        type = "object",
        properties = {
            timeouts = {
                type = "object",
                default = {},
                properties = {
                    connect = { type = "number", default = 1 },
                    read = { type = "number", default = 5 },
                },
            },
            retry = {
                type = "object",
                properties = { count = { type = "integer", default = 2 } },
            },
        },
    }
    passes(nested, {}, { timeouts = { connect = 1, read = 5 } },
        "absent object with default {} gets its inner defaults; without default stays absent")
    passes(nested, { timeouts = { read = 9 }, retry = {} },
        { timeouts = { connect = 1, read = 9 }, retry = { count = 2 } },
        "given nested objects get their missing defaults")
    passes(nested, { timeouts = null }, { timeouts = { connect = 1, read = 5 } },
        "null nested object gets its default")

    local arr = {
        type = "array",
        items = { type = "object", properties = { w = { type = "integer", default = 1 } } },
    }
    passes(arr, { {}, { w = 5 } }, { { w = 1 }, { w = 5 } }, "defaults inside array items")

    -- required + default: the default satisfies required
    local rd = {
        type = "object",
        properties = { mode = { type = "string", default = "on" } },
        required = { "mode" },
    }
    passes(rd, {}, { mode = "on" }, "default satisfies required")

    -- a default is validated like a given value
    local dv = {
        type = "object",
        properties = {
            o = {
                type = "object",
                default = { a = "x" },
                properties = { a = { type = "string" }, b = { type = "string", default = "y" } },
            },
        },
    }
    passes(dv, {}, { o = { a = "x", b = "y" } }, "defaults inside a default are filled")
end

-- root: nil / null --------------------------------------------------------------

do
    local s = { type = "object", properties = { h = { type = "string", default = "d" } } }
    passes(s, nil, { h = "d" }, "nil root object becomes {} with defaults")
    passes(s, null, { h = "d" }, "null root object becomes {} with defaults")
    local r, err = validate({ type = "string" }, nil, "p")
    t.is(err, "p: expected string, got null", "nil root string is an error")
    r, err = validate({ type = "string", default = "z" }, null, "p")
    t.is(r, "z", "null root takes the root default")
    passes({ type = { "object", "string" } }, null, {}, "root type list with object")
end

-- enum -----------------------------------------------------------------------

passes({ type = "string", enum = { "a", "b" } }, "b", nil, "enum string")
fails({ type = "string", enum = { "a", "b" } }, "c", 'p: expected one of "a", "b", got "c"', "enum string fails")
passes({ enum = { 1, "one", true } }, true, nil, "enum mixed")
fails({ enum = { 1, "one", true } }, 2, 'p: expected one of 1, "one", true, got 2', "enum mixed fails")
fails({ type = "integer", enum = { 200, 404 } }, 500, "p: expected one of 200, 404, got 500", "enum integer fails")
fails({ type = "string", enum = { "a" } }, 'q"\n', 'p: expected one of "a", got "q\\"\\n"', "enum quotes escape")
passes({ type = "array", enum = { { 1, 2 }, { 3 } } }, { 3 }, nil, "enum of tables compares deeply")
fails({ type = "array", enum = { { 1, 2 } } }, { 2, 1 }, "p: expected one of array, got array",
    "enum of tables fails")
fails({ type = "string", enum = { "a" } }, 1, "p: expected string, got number", "type checked before enum")

-- numbers -----------------------------------------------------------------------

do
    local s = { type = "number", minimum = 1, maximum = 10 }
    passes(s, 1, nil, "minimum inclusive")
    passes(s, 10, nil, "maximum inclusive")
    fails(s, 0, "p: must be >= 1, got 0", "below minimum")
    fails(s, 10.5, "p: must be <= 10, got 10.5", "above maximum")
    local e = { type = "number", exclusiveMinimum = 0, exclusiveMaximum = 1 }
    passes(e, 0.5, nil, "exclusive bounds")
    fails(e, 0, "p: must be > 0, got 0", "exclusiveMinimum")
    fails(e, 1, "p: must be < 1, got 1", "exclusiveMaximum")
    fails(e, -0.25, "p: must be > 0, got -0.25", "exclusiveMinimum negative")
    fails({ type = "integer", minimum = -5 }, -6, "p: must be >= -5, got -6", "negative minimum")
    passes({ minimum = 5 }, "abc", nil, "minimum ignored for strings")
end

-- strings ---------------------------------------------------------------------------

do
    local s = { type = "string", minLength = 2, maxLength = 4 }
    passes(s, "ab", nil, "minLength inclusive")
    passes(s, "abcd", nil, "maxLength inclusive")
    fails(s, "a", "p: must be at least 2 bytes long, got 1", "too short")
    fails(s, "abcde", "p: must be at most 4 bytes long, got 5", "too long")
    fails({ type = "string", minLength = 1 }, "", "p: must be at least 1 byte long, got 0", "singular byte")
    fails({ type = "string", maxLength = 2 }, "\xc3\xa9\xc3\xa9", "p: must be at most 2 bytes long, got 4",
        "length is in bytes")
    passes({ minLength = 3 }, 1, nil, "minLength ignored for numbers")

    local p = { type = "string", pattern = "^%w+$" }
    passes(p, "abc123", nil, "anchored pattern")
    fails(p, "ab-c", "p: must match pattern ^%w+$", "anchored pattern fails")
    fails(p, "", "p: must match pattern ^%w+$", "anchored pattern on empty")
    local u = { type = "string", pattern = "%d" }
    passes(u, "abc1def", nil, "unanchored pattern matches anywhere")
    fails(u, "abc", "p: must match pattern %d", "unanchored pattern fails")
    passes({ type = "string", pattern = "^/" }, "/api", nil, "prefix anchor only")
    fails({ type = "string", pattern = "^/" }, "api/", "p: must match pattern ^/", "prefix anchor fails")
    passes({ type = "string", pattern = "a.c" }, "abc", nil, "pattern is a Lua pattern")
    fails({ type = "string", pattern = "^a|b$" }, "a", "p: must match pattern ^a|b$",
        "| is not alternation")
end

-- arrays -------------------------------------------------------------------------------

do
    local s = { type = "array", items = { type = "string", pattern = "^%d+%.%d+%.%d+%.%d+$" },
        minItems = 1, maxItems = 3 }
    passes(s, { "10.0.0.1" }, nil, "items ok")
    fails(s, { "10.0.0.1", 5 }, "p.allow[2]: expected string, got number", "items type", "p.allow")
    fails(s, { "10.0.0.1", "x" }, "p[2]: must match pattern ^%d+%.%d+%.%d+%.%d+$", "items pattern")
    fails(s, {}, "p: must have at least 1 item, got 0", "minItems")
    fails(s, { "1.1.1.1", "1.1.1.1", "1.1.1.1", "1.1.1.1" }, "p: must have at most 3 items, got 4", "maxItems")
    fails({ type = "array", minItems = 2 }, { 1 }, "p: must have at least 2 items, got 1", "minItems plural")
    fails({ type = "array", items = { type = "string" } }, { null }, "p[1]: expected string, got null",
        "null array element")
    fails({ type = "array", items = { type = "string" } }, { "a", "b", null },
        "p[3]: expected string, got null", "trailing null element")
    passes({ type = "array" }, { null }, { null }, "null element without items schema")
    fails({ type = "array", items = { type = "array", items = { type = "integer" } } },
        { { 1 }, { 2, "x" } }, "p[2][2]: expected integer, got string", "nested arrays")
    local objs = { type = "array", items = { type = "object",
        properties = { name = { type = "string" } }, required = { "name" } } }
    fails(objs, { { name = "a" }, {} }, 'p[2]: missing key "name"', "required inside items")
    fails(objs, { { name = "a" }, { name = 1 } }, "p[2].name: expected string, got number",
        "property inside items")
    passes({ type = { "array", "string" }, items = { type = "integer" } }, "x", nil, "items ignored for strings")
end

-- additionalProperties -----------------------------------------------------------------

do
    local closed = { type = "object", properties = { a = { type = "string" } }, additionalProperties = false }
    passes(closed, { a = "x" }, nil, "closed object, known key")
    fails(closed, { a = "x", b = 1 }, "p.b: unknown key", "closed object, unknown key")
    fails(closed, { aa = 1, a = "x", zz = 2 }, "p.aa: unknown key", "first unknown key in order")
    passes(closed, { a = "x", b = null }, { a = "x" }, "null unknown key is dropped, not an error")
    fails(closed, { 1 }, "p: expected object, got array", "array vs closed object")

    local typed = { type = "object", properties = { a = { type = "string" } },
        additionalProperties = { type = "integer", minimum = 0 } }
    passes(typed, { a = "x", n = 1, m = 2 }, nil, "additionalProperties schema")
    fails(typed, { a = "x", n = -1 }, "p.n: must be >= 0, got -1", "additionalProperties schema fails")
    fails(typed, { a = 1 }, "p.a: expected string, got number", "properties win over additionalProperties")

    local map = { type = "object", additionalProperties = { type = "object",
        properties = { code = { type = "integer", default = 10000 } } } }
    passes(map, { e1 = {}, e2 = { code = 1 } }, { e1 = { code = 10000 }, e2 = { code = 1 } },
        "defaults through additionalProperties")

    passes({ type = "object", additionalProperties = true }, { x = 1 }, nil, "additionalProperties true")
    fails({ type = "object", additionalProperties = { type = "string" } }, { [5] = "x", a = "b" },
        "p[5]: key must be a string, got number", "non-string key")
end

-- values are copied, never shared or modified ------------------------------------

do
    local s = { type = "object", properties = { o = { type = "object",
        properties = { list = { type = "array" } } } } }
    local input = { o = { list = { 1, 2 } }, free = { deep = { 1 } } }
    local r = validate(s, input, "p")
    t.is_deeply(r, input, "copy equals input")
    t.ok(r.o ~= input.o and r.o.list ~= input.o.list and r.free.deep ~= input.free.deep,
        "nested tables are copies")
    local cyc = { x = 1 }
    cyc.self = cyc
    r = validate({ type = "object" }, { c = cyc }, "p")
    t.ok(r and r.c.self == r.c, "a cycle in an unchecked part is copied, not followed forever")
end

-- description ------------------------------------------------------------------------------

passes({ type = "string", description = "the header to read" }, "x", nil, "description ignored")

-- the brief's key-auth example -------------------------------------------------------------

do
    local s = { type = "object", properties = { header = { type = "string", default = "X-API-Key" } } }
    t.ok(check_schema(s), "key-auth schema is valid")
    local r = validate(s, cjson.decode('{"header": null}'), "routes[1].plugins.key-auth")
    t.is_deeply(r, { header = "X-API-Key" }, "JSON null from the YAML config takes the default")
    local _, err = validate(s, cjson.decode('{"header": 5}'), "routes[1].plugins.key-auth")
    t.is(err, "routes[1].plugins.key-auth.header: expected string, got number", "the issue's message")
    _, err = validate(s, cjson.decode('[1]'), "routes[1].plugins.key-auth")
    t.is(err, "routes[1].plugins.key-auth: expected object, got array", "array config rejected")
    r = validate(s, cjson.decode('[]'), "routes[1].plugins.key-auth")
    t.is_deeply(r, { header = "X-API-Key" }, "empty JSON array is an empty object")
end

-- check_schema --------------------------------------------------------------------------------

t.ok(check_schema({}), "empty schema is valid")
t.ok(check_schema({
    type = "object",
    description = "all keywords",
    properties = {
        s = { type = "string", minLength = 1, maxLength = 9, pattern = "^%a", enum = { "ab" }, default = "ab" },
        n = { type = "number", minimum = 0, maximum = 1, exclusiveMinimum = -1, exclusiveMaximum = 2 },
        a = { type = "array", items = { type = "integer" }, minItems = 0, maxItems = 2, default = {} },
        o = { type = { "object", "string" }, additionalProperties = false },
    },
    required = { "s" },
    additionalProperties = { type = "boolean" },
}), "every keyword")

bad_schema("x", 'schema: schema must be a table, got string', "not a table")
bad_schema({ typ = "string" }, "schema.typ: unknown schema keyword", "typo keyword")
bad_schema({ type = "object", properties = { a = { type = "string", minlength = 3 } } },
    "schema.properties.a.minlength: unknown schema keyword", "nested typo keyword")
bad_schema({ type = "strng" }, 'schema.type: unknown type "strng"', "unknown type")
bad_schema({ type = "null" }, 'schema.type: unknown type "null"', "null type unsupported")
bad_schema({ type = { "string", "strng" } }, 'schema.type[2]: unknown type "strng"', "unknown type in list")
bad_schema({ type = { "string", "string" } }, 'schema.type[2]: duplicate type "string"', "duplicate type")
bad_schema({ type = {} }, "schema.type: must be a non-empty list of type names", "empty type list")
bad_schema({ properties = { "a" } }, "schema.properties: must be a table of name -> schema", "properties as list")
bad_schema({ properties = { a = "string" } }, "schema.properties.a: schema must be a table, got string",
    "property not a schema")
bad_schema({ required = "a" }, "schema.required: must be a non-empty list of key names", "required not a list")
bad_schema({ required = { 1 } }, "schema.required[1]: must be a string, got number", "required not strings")
bad_schema({ properties = { a = {} }, required = { "b" }, additionalProperties = false },
    'schema.required[1]: key "b" is required but not allowed by properties', "required key not allowed")
bad_schema({ enum = {} }, "schema.enum: must be a non-empty list of values", "empty enum")
bad_schema({ type = "string", enum = { "a", 1 } }, "schema.enum[2]: expected string, got number",
    "enum value of the wrong type")
bad_schema({ minimum = "1" }, "schema.minimum: must be a number, got string", "minimum not a number")
bad_schema({ exclusiveMaximum = true }, "schema.exclusiveMaximum: must be a number, got boolean",
    "exclusiveMaximum boolean (draft 4 style) rejected")
bad_schema({ minLength = -1 }, "schema.minLength: must be a non-negative integer, got -1", "negative minLength")
bad_schema({ maxItems = 1.5 }, "schema.maxItems: must be a non-negative integer, got 1.5", "fractional maxItems")
bad_schema({ minimum = 5, maximum = 1 }, "schema: minimum 5 is greater than maximum 1", "min > max")
bad_schema({ minLength = 5, maxLength = 1 }, "schema: minLength 5 is greater than maxLength 1", "minLength > maxLength")
bad_schema({ pattern = 5 }, "schema.pattern: must be a string, got number", "pattern not a string")
bad_schema({ pattern = "[a" }, "schema.pattern: bad Lua pattern: malformed pattern (missing ']')", "malformed pattern")
bad_schema({ pattern = "%" }, "schema.pattern: bad Lua pattern: malformed pattern (ends with '%')",
    "pattern ends with %")
bad_schema({ items = true }, "schema.items: schema must be a table, got boolean", "items not a schema")
bad_schema({ items = { type = "int" } }, 'schema.items.type: unknown type "int"', "bad items schema")
bad_schema({ additionalProperties = "no" }, "schema.additionalProperties: schema must be a table, got string",
    "additionalProperties string")
bad_schema({ additionalProperties = { tpye = "string" } },
    "schema.additionalProperties.tpye: unknown schema keyword", "bad additionalProperties schema")
bad_schema({ description = 1 }, "schema.description: must be a string, got number", "description not a string")
bad_schema({ type = "string", default = 1 }, "schema.default: expected string, got number", "bad default")
bad_schema({ type = "object", properties = { n = { type = "integer", minimum = 1, default = 0 } } },
    "schema.properties.n.default: must be >= 1, got 0", "nested bad default")
bad_schema({ type = "object", default = { x = 1 }, additionalProperties = false },
    "schema.default.x: unknown key", "default with unknown key")

do
    local rec = { type = "object", properties = {} }
    rec.properties.self = rec
    bad_schema(rec, "schema.properties.self: recursive schemas are not supported", "recursive schema")
    local shared = { type = "string" }
    t.ok(check_schema({ type = "object", properties = { a = shared, b = shared } }),
        "a shared sub-schema is not recursion")
    local good, err = check_schema({ typ = 1 }, "plugins.key-auth.schema")
    t.is(err, "plugins.key-auth.schema.typ: unknown schema keyword", "check_schema path prefix")
    t.is(good, nil, "check_schema path prefix: rejected")
end

t.done()
