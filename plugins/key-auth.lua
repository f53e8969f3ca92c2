-- key-auth: authenticates a request by an API key in a header (or a query
-- argument) that must equal the `key-auth.key` of a configured consumer.

local schema = {
    type = "object",
    properties = {
        header = { type = "string", default = "X-API-Key", minLength = 1,
                   maxLength = 64, pattern = "^[%w!#$%%&'*+.^_`|~-]+$" },
        query = { type = "string", minLength = 1, maxLength = 64 },
        hide_credentials = { type = "boolean", default = true },
    },
    additionalProperties = false,
}

-- What a consumer's `key-auth:` block may hold.
local consumer_schema = {
    type = "object",
    properties = {
        key = { type = "string", minLength = 1, maxLength = 512 },
    },
    required = { "key" },
    additionalProperties = false,
}

local plugin = {
    name = "key-auth",
    priority = 2500,
    schema = schema,
    consumer_schema = consumer_schema,
}

function plugin.access(conf, ctx)
    local key = gw.req.header(conf.header)
    local from_header = key ~= nil and key ~= ""
    if not from_header and conf.query then
        key = gw.req.query_arg(conf.query)
    end
    if key == nil or key == "" then
        return gw.exit_error(401, "missing API key")
    end

    -- The consumer table is a hash keyed by the API key, so finding it costs
    -- the same for any key of a given length; the final comparison is
    -- constant-time so that a hash collision never short-cuts on a prefix.
    local consumer = gw.consumers.by("key-auth", "key", key)
    local ck = consumer and consumer["key-auth"] and consumer["key-auth"].key
    if not consumer or not gw.crypto.constant_eq(ck or "", key) then
        return gw.exit_error(401, "invalid API key")
    end

    gw.var.consumer = consumer.name
    if conf.hide_credentials and from_header then
        gw.req.clear_header(conf.header)
    end
end

return plugin
