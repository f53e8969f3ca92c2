-- luacheck over the Lua runtime (lua/), the plugins (plugins/) and the Lua
-- unit tests (t/lua/); `make lint`, part of `make test`.

std = "luajit"
max_line_length = 120
-- plugin functions have fixed signatures (conf, ctx, ...): an argument a
-- plugin does not use is normal
unused_args = false

-- What a plugin sees: exactly the sandbox environment runner.lua builds
-- (sandbox_base), so that a plugin reaching for os, io or a global of the
-- runtime is flagged here and not at its first request.
stds.gw_sandbox = {
    read_globals = {
        "assert", "error", "ipairs", "next", "pairs", "pcall", "select", "tonumber",
        "tostring", "type", "unpack", "xpcall", "setmetatable", "getmetatable",
        "rawget", "rawset", "rawequal", "require", "load", "loadstring",
        "_G", "_VERSION",
        -- assigning to gw.var.NAME sets a request variable
        gw = { other_fields = true, fields = { var = { read_only = false, other_fields = true } } },
        string = { other_fields = true }, table = { other_fields = true },
        math = { other_fields = true }, bit = { other_fields = true },
    },
}

files["plugins/"] = { std = "gw_sandbox" }
files["bench/plugins/"] = { std = "gw_sandbox" }
-- the runtime defines the global `gw` table the API lives in
files["lua/"] = { globals = { "gw" } }
-- tests: long literal tokens, and values assigned only to show a call's
-- shape (st, body = ...) are fine there
files["t/lua/"] = { globals = { "gw" }, max_line_length = false, ignore = { "311", "231" } }
