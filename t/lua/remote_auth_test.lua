-- remote-auth against a stand-in auth service: verdicts, the cache, and
-- every way the service can fail.
local t = require "tap"
local mock = require "mock_gw"
local schema = require "gw.schema"
local plugin = require "remote-auth"

local conf = assert(schema.validate(plugin.schema, { url = "http://auth/check", ttl = 10, max_cache = 100 }))
t.is(conf.timeout, 0.5, "timeout default")
t.is(conf.user_header, "X-User-Id", "user_header default")
t.is(select(2, schema.validate(plugin.schema, { ttl = 5 })) ~= nil, true, "url is required")
t.is(select(2, schema.validate(plugin.schema, { url = "ftp://x" })) ~= nil, true, "url must be http://")

local calls = 0
local answers = {
    good = { status = 200, body = '{"user":"u1"}' },
    other = { status = 200, body = '{"user":"u2"}' },
    nouser = { status = 200, body = '{"id":"u1"}' },
    notjson = { status = 200, body = "<html>" },
    boom = { status = 500, body = "" },
}
local function auth_service(req)
    calls = calls + 1
    local token = req.headers.Authorization:match("^Bearer (.+)$")
    if token == "down" then return nil, "connection refused" end
    return answers[token] or { status = 401, body = "" }
end

local function access(token, now)
    local headers = token and { Authorization = "Bearer " .. token } or {}
    headers["X-User-Id"] = "forged"
    local g = mock.new{ headers = headers, http = auth_service, now = now or 100 }
    plugin.access(conf, g.ctx)
    return g
end

local g = access("good")
t.is(g.exited, nil, "good token passes")
t.is(g.var.consumer, "u1", "consumer set")
t.is(g.req_headers["x-user-id"], "u1", "user id sent upstream, replacing the client's")
t.is(g.http_calls[1].method, "GET", "GET to the auth service")
t.is(g.http_calls[1].timeout, 0.5, "with the configured timeout")
t.is(calls, 1, "one call")

g = access("good", 105)
t.is(g.var.consumer, "u1", "cached answer")
t.is(calls, 1, "served from the cache")
g = access("good", 111)
t.is(calls, 2, "asked again after ttl")

g = access("bad")
t.is(g.exited and g.exited.status, 401, "refused token: 401")
access("bad", 101)
t.is(calls, 3, "refusals are cached too")

g = access(nil)
t.is(g.exited and g.exited.status, 401, "no token: 401")
t.is(calls, 3, "no call without a token")

g = access("down")
t.is(g.exited and g.exited.status, 503, "service unreachable: 503")
t.is(#g.logs > 0 and g.logs[1].level, "warn", "and a warning")
t.is(access("boom").exited.status, 503, "service error: 503")
t.is(access("nouser").exited.status, 502, "answer without a user: 502")
t.is(access("notjson").exited.status, 502, "answer not JSON: 502")
local before = calls
access("boom", 101)
t.is(calls, before + 1, "failures are not cached")

-- a second route's config (another auth service) has a cache of its own
local conf2 = assert(schema.validate(plugin.schema, { url = "http://other/check" }))
local function other_service() return { status = 401, body = "" } end
g = mock.new{ headers = { Authorization = "Bearer good" }, http = other_service, now = 111 }
plugin.access(conf2, g.ctx)
t.is(g.exited and g.exited.status, 401, "another route's service is asked, not the first one's cache")

-- tokens are only keys: no name of the cache's own can clash
g = access("n", 120)
t.is(g.exited and g.exited.status, 401, "token 'n' refused like any other")
g = access("n", 121)
t.is(g.exited and g.exited.status, 401, "and served from the cache")

-- a full cache starts over
local small = assert(schema.validate(plugin.schema, { url = "http://auth/check", max_cache = 1 }))
calls = 0
for _, tok in ipairs({ "good", "other", "good" }) do
    local gs = mock.new{ headers = { Authorization = "Bearer " .. tok }, http = auth_service, now = 200 }
    plugin.access(small, gs.ctx)
end
t.is(calls, 3, "max_cache 1: the first entry was dropped when the second came")

t.done()
