-- consumer-counter: counts requests per consumer in a per-worker table, the
-- benchmark's counterpart of nginx-lua's per-consumer counter. It relies on
-- an auth plugin of higher priority (key-auth) to have set gw.var.consumer;
-- requests without a consumer are not counted.
--
-- With `report: true` (on a route of its own) it counts nothing and answers
-- {"consumer": ..., "count": ...} for the caller's consumer instead, so that
-- bench/lua.sh can compare the count with the requests wrk completed without
-- adding any work to the measured route.

local plugin = {
    name = "consumer-counter",
    priority = 1000, -- after key-auth (2500)
    schema = {
        type = "object",
        properties = { report = { type = "boolean", default = false } },
        additionalProperties = false,
    },
}

-- consumer name -> requests seen by this worker; lives as long as the VM and
-- is shared by every route the plugin is on.
local counts = {}

function plugin.access(conf, ctx)
    local consumer = gw.var.consumer
    if consumer == nil then
        return
    end
    if conf.report then
        return gw.exit(200, { consumer = consumer, count = counts[consumer] or 0 })
    end
    counts[consumer] = (counts[consumer] or 0) + 1
end

return plugin
