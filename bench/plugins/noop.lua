-- noop: an access phase that does nothing. bench/lua.sh enables it on the
-- benchmark route to measure what running one Lua plugin costs per request,
-- against the same config without plugins.

local plugin = { name = "noop", priority = 1, schema = { type = "object", additionalProperties = false } }

function plugin.access(conf, ctx) end

return plugin
