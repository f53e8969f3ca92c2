-- consumer-counter: counts requests per consumer in a per-worker table and
-- shows the consumer's count so far in an X-Consumer-Count response header.
-- It relies on an auth plugin of higher priority (key-auth) to have set
-- gw.var.consumer; requests without a consumer are not counted.
--
-- The benchmark's counterpart of nginx-lua's per-consumer counter; the header
-- is what makes the count checkable from outside (bench/lua.sh compares it
-- with the number of requests wrk completed).

local plugin = {
    name = "consumer-counter",
    priority = 1000, -- after key-auth (2500)
    schema = { type = "object", additionalProperties = false },
}

-- consumer name -> requests seen by this worker; lives as long as the VM.
local counts = {}

function plugin.access(conf, ctx)
    local consumer = gw.var.consumer
    if consumer == nil then
        return
    end
    local n = (counts[consumer] or 0) + 1
    counts[consumer] = n
    ctx["consumer-counter.n"] = n
end

function plugin.header_filter(conf, ctx)
    local n = ctx["consumer-counter.n"]
    if n ~= nil then
        gw.resp.set_header("X-Consumer-Count", tostring(n))
    end
end

return plugin
