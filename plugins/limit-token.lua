-- limit-token: a token bucket per key, kept in Redis exactly as go-zero's
-- tokenlimit keeps it ({KEY}.tokens and {KEY}.ts, refilled per whole
-- second), so a go-zero service using the same key shares the bucket.
local limit = require "gw.limit"

local schema = {
    type = "object",
    properties = {
        rate = { type = "number", exclusiveMinimum = 0 },
        burst = { type = "integer", minimum = 1 },
        key = { type = "string", default = "ip", minLength = 1, maxLength = 128 },
        prefix = { type = "string", maxLength = 256 },
        policy = { type = "string", enum = { "redis", "local" }, default = "redis" },
        on_redis_error = { type = "string", enum = { "local", "allow", "deny" }, default = "local" },
        show_headers = { type = "boolean", default = true },
    },
    required = { "rate", "burst" },
    additionalProperties = false,
}

local plugin = { name = "limit-token", priority = 1000, schema = schema }

function plugin.check(conf)
    return limit.check_key(conf.key)
end

function plugin.access(conf)
    limit.run("token", conf)
end

return plugin
