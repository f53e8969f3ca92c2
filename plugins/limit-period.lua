-- limit-period: a fixed-window quota per key, kept in Redis exactly as
-- go-zero's periodlimit keeps it (one key PREFIX..KEY, INCRBY, EXPIRE on the
-- first hit), so a go-zero service using the same key shares the count.
local limit = require "gw.limit"

local schema = {
    type = "object",
    properties = {
        period = { type = "integer", minimum = 1, maximum = 31536000 },
        quota = { type = "integer", minimum = 1 },
        key = { type = "string", default = "ip", minLength = 1, maxLength = 128 },
        prefix = { type = "string", maxLength = 256 },
        align = { type = "boolean", default = false },
        policy = { type = "string", enum = { "redis", "local" }, default = "redis" },
        on_redis_error = { type = "string", enum = { "local", "allow", "deny" }, default = "local" },
        show_headers = { type = "boolean", default = true },
    },
    required = { "period", "quota" },
    additionalProperties = false,
}

local plugin = { name = "limit-period", priority = 1001, schema = schema }

function plugin.check(conf)
    return limit.check_key(conf.key)
end

function plugin.access(conf)
    limit.run("period", conf)
end

return plugin
