-- request-id: copies the request id the gateway assigned (gw.var.request_id)
-- into a header of the operator's choice, on the request sent upstream and on
-- the response. The core always sends X-Request-Id; this plugin is for
-- services that expect another name (X-Trace-Id, X-Correlation-Id, ...).

local schema = {
    type = "object",
    properties = {
        header = { type = "string", default = "X-Request-Id", minLength = 1,
                   maxLength = 64, pattern = "^[%w!#$%%&'*+.^_`|~-]+$" },
        -- also return the header to the client
        response = { type = "boolean", default = true },
    },
    additionalProperties = false,
}

local plugin = { name = "request-id", priority = 12000, schema = schema }

function plugin.rewrite(conf, ctx)
    local id = gw.var.request_id
    if id == nil or id == "" then return end
    gw.req.set_header(conf.header, id)
end

function plugin.header_filter(conf, ctx)
    if not conf.response then return end
    local id = gw.var.request_id
    if id == nil or id == "" then return end
    gw.resp.set_header(conf.header, id)
end

return plugin
