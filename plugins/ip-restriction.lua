-- ip-restriction: allows or denies a request by the client address
-- (gw.var.remote_addr) against lists of IPv4/IPv6 addresses and CIDR blocks.
-- The deny list is checked first; then, when the allow list is not empty,
-- the address must be in it.

local schema = {
    type = "object",
    properties = {
        allow = { type = "array", items = { type = "string", minLength = 2, maxLength = 64 },
                  default = {} },
        deny = { type = "array", items = { type = "string", minLength = 2, maxLength = 64 },
                 default = {} },
        status = { type = "integer", default = 403, minimum = 400, maximum = 599 },
        message = { type = "string", default = "forbidden", minLength = 1, maxLength = 1024,
                    pattern = "^[^%z]+$" },
    },
    additionalProperties = false,
}

local plugin = { name = "ip-restriction", priority = 3000, schema = schema }

-- Addresses are arrays of bytes: 4 for IPv4, 16 for IPv6.

local function parse_v4(s)
    local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    if not a then return nil end
    local r = {}
    for i, part in ipairs({ a, b, c, d }) do
        -- leading zeros are refused: some resolvers read them as octal
        if #part > 3 or (#part > 1 and part:sub(1, 1) == "0") then return nil end
        local n = tonumber(part)
        if n > 255 then return nil end
        r[i] = n
    end
    return r
end

local function parse_groups(s, out)
    if s == "" then return true end
    for g in (s .. ":"):gmatch("([^:]*):") do
        if not g:match("^%x%x?%x?%x?$") then return nil end
        out[#out + 1] = tonumber(g, 16)
    end
    return true
end

local function parse_v6(s)
    if s:find("%%") then return nil end -- zone ids never reach a gateway
    local v4tail
    local head = s:match("^(.*:)(%d+%.%d+%.%d+%.%d+)$")
    if head then
        v4tail = parse_v4(s:sub(#head + 1))
        if not v4tail then return nil end
        s = head
        if s:sub(-2) ~= "::" then s = s:sub(1, -2) end
    end
    local left, right = s, nil
    local dc = s:find("::", 1, true)
    if dc then
        left, right = s:sub(1, dc - 1), s:sub(dc + 2)
        if right:find("::", 1, true) then return nil end
    end
    local lg, rg = {}, {}
    if not parse_groups(left, lg) then return nil end
    if right and not parse_groups(right, rg) then return nil end
    local want = v4tail and 6 or 8
    local have = #lg + #rg
    if dc then
        if have >= want then return nil end -- "::" stands for at least one group
    elseif have ~= want then
        return nil
    end
    local groups = {}
    for _, g in ipairs(lg) do groups[#groups + 1] = g end
    for _ = 1, want - have do groups[#groups + 1] = 0 end
    for _, g in ipairs(rg) do groups[#groups + 1] = g end
    local r = {}
    for _, g in ipairs(groups) do
        r[#r + 1] = math.floor(g / 256)
        r[#r + 1] = g % 256
    end
    if v4tail then
        for i = 1, 4 do r[#r + 1] = v4tail[i] end
    end
    return r
end

local function parse_addr(s)
    if type(s) ~= "string" then return nil end
    if s:find(":", 1, true) then return parse_v6(s) end
    return parse_v4(s)
end

-- "a.b.c.d", "a.b.c.d/n", "x::y", "x::y/n" -> {bytes =, bits =}
local function parse_cidr(s)
    local addr, bits = s:match("^([^/]+)/(%d+)$")
    if not addr then addr = s end
    local bytes = parse_addr(addr)
    if not bytes then return nil end
    local max = #bytes * 8
    if bits then
        if #bits > 1 and bits:sub(1, 1) == "0" then return nil end
        bits = tonumber(bits)
        if bits > max then return nil end
    else
        bits = max
    end
    return { bytes = bytes, bits = bits }
end

plugin.parse_addr = parse_addr
plugin.parse_cidr = parse_cidr

local function contains(net, bytes)
    if #net.bytes ~= #bytes then return false end
    local bits = net.bits
    for i = 1, #bytes do
        if bits <= 0 then return true end
        if bits >= 8 then
            if net.bytes[i] ~= bytes[i] then return false end
        else
            -- compare the top `bits` bits only
            local unit = 2 ^ (8 - bits)
            if net.bytes[i] - net.bytes[i] % unit ~= bytes[i] - bytes[i] % unit then
                return false
            end
        end
        bits = bits - 8
    end
    return true
end

local function in_list(list, bytes, v4)
    for _, net in ipairs(list) do
        if contains(net, bytes) or (v4 and contains(net, v4)) then return true end
    end
    return false
end

local function compile(list, what)
    local r = {}
    for i, s in ipairs(list or {}) do
        local net = parse_cidr(s)
        if not net then
            return nil, what .. "[" .. i .. "]: not an IP address or CIDR block: " .. s
        end
        r[#r + 1] = net
    end
    return r
end

-- Compiled lists per config table, so the request path never parses text.
local compiled = setmetatable({}, { __mode = "k" })

local function lists(conf)
    local c = compiled[conf]
    if c then return c end
    local allow, err = compile(conf.allow, "allow")
    if not allow then return nil, err end
    local deny
    deny, err = compile(conf.deny, "deny")
    if not deny then return nil, err end
    c = { allow = allow, deny = deny }
    compiled[conf] = c
    return c
end

function plugin.check(conf)
    local c, err = lists(conf)
    if not c then return nil, err end
    if #c.allow == 0 and #c.deny == 0 then
        return nil, "allow or deny must list at least one address"
    end
    return true
end

function plugin.access(conf, ctx)
    local c = assert(lists(conf))
    local addr = gw.var.remote_addr
    local bytes = parse_addr(addr)
    if not bytes then
        -- an address we cannot read matches nothing: refuse rather than guess
        gw.log("warn", "ip-restriction: unparsable client address ", tostring(addr))
        return gw.exit_error(conf.status, conf.message)
    end
    -- ::ffff:a.b.c.d is an IPv4 client on a dual-stack socket
    local v4
    if #bytes == 16 then
        local mapped = true
        for i = 1, 10 do if bytes[i] ~= 0 then mapped = false end end
        if mapped and bytes[11] == 255 and bytes[12] == 255 then
            v4 = { bytes[13], bytes[14], bytes[15], bytes[16] }
        end
    end
    if in_list(c.deny, bytes, v4) then
        return gw.exit_error(conf.status, conf.message)
    end
    if #c.allow > 0 and not in_list(c.allow, bytes, v4) then
        return gw.exit_error(conf.status, conf.message)
    end
end

return plugin
