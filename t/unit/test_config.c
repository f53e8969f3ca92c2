/* The YAML config: durations, sizes, a full config, and every error. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "gw_config.h"
#include "tap.h"

#define BASE                                                                                       \
    "gateway: {listen: [\"127.0.0.1:8080\"]}\n"                                                    \
    "upstreams:\n"                                                                                 \
    "  - {name: a, nodes: [\"127.0.0.1:9001\"]}\n"                                                 \
    "  - {name: b, nodes: [\"127.0.0.1:9002\"]}\n"

static gw_conf_t *
load(const char *yaml, gw_conf_errors_t *errs)
{
    return gw_conf_load_string(yaml, strlen(yaml), "test.yaml", errs);
}

static int
has_line(const gw_conf_errors_t *e, const char *line)
{
    for (size_t i = 0; i < e->n; i++) {
        if (strcmp(e->lines[i], line) == 0)
            return 1;
    }
    return 0;
}

static void
dump(const gw_conf_errors_t *e)
{
    for (size_t i = 0; i < e->n; i++)
        printf("#   error: %s\n", e->lines[i]);
}

/* The config must fail and one of its errors must be exactly `line`. */
static void
expect_err(const char *yaml, const char *line)
{
    gw_conf_errors_t e;
    gw_conf_t *conf = load(yaml, &e);
    int good = conf == NULL && has_line(&e, line);
    ok(good, "error: %s", line);
    if (!good)
        dump(&e);
    gw_conf_free(conf);
    gw_conf_errors_free(&e);
}

/* The config must load cleanly; returns it (caller frees). */
static gw_conf_t *
expect_ok(const char *yaml, const char *what)
{
    gw_conf_errors_t e;
    gw_conf_t *conf = load(yaml, &e);
    ok(conf != NULL && e.n == 0, "loads: %s", what);
    if (conf == NULL)
        dump(&e);
    gw_conf_errors_free(&e);
    return conf;
}

static void
test_durations(void)
{
    static const struct {
        const char *in;
        uint64_t ms;
    } good[] = {{"0", 0},       {"0s", 0},       {"10ms", 10},     {"10s", 10000},
                {"2m", 120000}, {"1h", 3600000}, {"1500ms", 1500}, {"007s", 7000}};
    static const char *const bad[] = {"",
                                      "10",
                                      "-1s",
                                      "+1s",
                                      "1.5s",
                                      "s",
                                      "10 s",
                                      " 10s",
                                      "10sx",
                                      "10S",
                                      "10d",
                                      "ms",
                                      "1e3s",
                                      "99999999999999999999ms",
                                      "18446744073709551615h"};
    uint64_t ms;

    for (size_t i = 0; i < GW_ARRAY_LEN(good); i++) {
        ms = 12345;
        int rc = gw_conf_parse_duration(good[i].in, &ms);
        ok(rc == GW_OK && ms == good[i].ms, "duration \"%s\" = %llu ms", good[i].in,
           (unsigned long long)good[i].ms);
    }
    for (size_t i = 0; i < GW_ARRAY_LEN(bad); i++)
        is_int(gw_conf_parse_duration(bad[i], &ms), GW_ERROR, "duration \"%s\" is refused", bad[i]);
    is_int(gw_conf_parse_duration(NULL, &ms), GW_ERROR, "duration NULL is refused");
}

static void
test_sizes(void)
{
    static const struct {
        const char *in;
        size_t n;
    } good[] = {{"0", 0},        {"100", 100},       {"16k", 16384},    {"16K", 16384},
                {"8m", 8388608}, {"1g", 1073741824}, {"1G", 1073741824}};
    static const char *const bad[] = {"",
                                      "-1",
                                      "1.5k",
                                      "k",
                                      "16kb",
                                      "16 k",
                                      "16t",
                                      " 1",
                                      "1 ",
                                      "0x10",
                                      "99999999999999999999",
                                      "18446744073709551615k"};
    size_t n;

    for (size_t i = 0; i < GW_ARRAY_LEN(good); i++) {
        n = 12345;
        int rc = gw_conf_parse_size(good[i].in, &n);
        ok(rc == GW_OK && n == good[i].n, "size \"%s\" = %zu", good[i].in, good[i].n);
    }
    for (size_t i = 0; i < GW_ARRAY_LEN(bad); i++)
        is_int(gw_conf_parse_size(bad[i], &n), GW_ERROR, "size \"%s\" is refused", bad[i]);
}

static int
port_of(const struct sockaddr_storage *sa)
{
    if (sa->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
}

static void
test_defaults(void)
{
    gw_conf_t *conf = expect_ok(BASE "routes: [{upstream: a}]\n", "minimal config");
    if (conf == NULL)
        return;
    is_int(conf->nlisten, 1, "one listener");
    is_str(conf->listen[0].host, "127.0.0.1", "listen host");
    is_int(conf->listen[0].port, 8080, "listen port");
    is_int(conf->listen[0].sa.ss_family, AF_INET, "listen is IPv4");
    is_int(port_of(&conf->listen[0].sa), 8080, "listen sockaddr port");
    ok(conf->workers >= 1, "workers auto -> %d", conf->workers);
    is_int(conf->has_status_listen, 0, "no status listener by default");
    is_int(conf->has_admin, 0, "no admin by default");
    is_int(conf->client_header_timeout_ms, 10000, "client_header 10s");
    is_int(conf->client_body_timeout_ms, 30000, "client_body 30s");
    is_int(conf->keepalive_timeout_ms, 75000, "keepalive 75s");
    is_int(conf->drain_timeout_ms, 30000, "drain 30s");
    is_int(conf->max_header_size, 16384, "max_header_size 16k");
    is_int(conf->max_body_size, 8 * 1024 * 1024, "max_body_size 8m");
    is_int(conf->max_connections, 10000, "max_connections 10000");
    ok(conf->access_log == NULL, "access log off");
    is_str(conf->error_log, "stderr", "error log stderr");
    is_int(conf->error_log_level, GW_LOG_INFO, "error log info");
    is_str(conf->pid_file, "logs/gateway.pid", "pid file");
    ok(conf->nplugin_paths == 1 && strcmp(conf->plugin_paths[0], "plugins") == 0,
       "plugin_paths [plugins]");
    is_int(conf->has_redis, 0, "no redis");

    gw_upstream_conf_t *u = &conf->upstreams[0];
    is_int(u->connect_timeout_ms, 1000, "connect 1s");
    is_int(u->send_timeout_ms, 5000, "send 5s");
    is_int(u->read_timeout_ms, 5000, "read 5s");
    is_int(u->retries, 1, "retries 1");
    is_int(u->keepalive_size, 64, "keepalive size 64");
    is_int(u->keepalive_idle_ms, 60000, "idle_timeout 60s");
    is_int(u->balancer, GW_BAL_ROUND_ROBIN, "round_robin");
    is_int(u->hash_on.kind, GW_KEY_NONE, "no hash_on");
    is_int(u->breaker.enabled, 1, "breaker on");
    is_int(u->breaker.window_ms, 10000, "breaker window 10s");
    is_int(u->breaker.buckets, 40, "breaker buckets 40");
    ok(u->breaker.k == 1.5, "breaker k 1.5");
    is_int(u->breaker.protection, 5, "breaker protection 5");
    ok(u->breaker.failure_statuses == NULL, "failure statuses: >= 500");
    is_int(u->breaker.scope, GW_SCOPE_ROUTE, "breaker scope route");
    is_int(u->health_active.enabled, 0, "no active health");
    is_int(u->health_passive.enabled, 0, "no passive health");
    is_int(u->nodes[0].weight, 1, "node weight 1");
    is_int(u->discovery.kind, GW_DISC_STATIC, "static nodes");
    ok(gw_conf_find_upstream(conf, "b") == &conf->upstreams[1], "find upstream b");
    ok(gw_conf_find_upstream(conf, "zz") == NULL, "no upstream zz");

    gw_route_conf_t *r = &conf->routes[0];
    is_str(r->name, "routes[0]", "route default name");
    is_int(r->path_kind, GW_PATH_ANY, "any path");
    ok(r->host == NULL, "any host");
    is_int(r->methods, 0, "any method");
    is_int(r->priority, 0, "priority 0");
    is_int(r->timeout_ms, 0, "no route timeout");
    ok(r->upstream == &conf->upstreams[0], "route -> upstream a");
    gw_conf_free(conf);
}

static void
test_full(void)
{
    static const char yaml[] =
        "gateway:\n"
        "  listen:\n"
        "    - \"127.0.0.1:8080\"\n"
        "    - {addr: \"[::1]:8081\"}\n"
        "    - \":8082\"\n"
        "  workers: 3\n"
        "  status_listen: 127.0.0.1:9100\n"
        "  admin: {listen: 127.0.0.1:9180, key: change-me}\n"
        "  timeouts: {client_header: 5s, client_body: 1m, keepalive: 0, drain: 2s}\n"
        "  limits: {max_header_size: 8k, max_body_size: 1g, max_connections: 50}\n"
        "  access_log: logs/access.log\n"
        "  error_log: {path: logs/error.log, level: warn}\n"
        "  plugin_paths: [plugins, t/lua]\n"
        "  pid_file: /tmp/gw.pid\n"
        "redis: {addr: \"127.0.0.1:6379\", password: pw, db: 2, timeout: 20ms}\n"
        "registries:\n"
        "  e: {type: etcd, endpoints: [\"http://127.0.0.1:2379\"]}\n"
        "  c: {type: consul, addr: \"http://127.0.0.1:8500\"}\n"
        "upstreams:\n"
        "  - name: user-svc\n"
        "    nodes:\n"
        "      - 127.0.0.1:9001\n"
        "      - {addr: \"[::1]:9002\", weight: 3, meta: {version: v2, zone: a}}\n"
        "      - localhost:9003\n"
        "    balancer: consistent_hash\n"
        "    hash_on: cookie:sid\n"
        "    timeouts: {connect: 200ms, send: 2s, read: 3s}\n"
        "    retries: 0\n"
        "    keepalive: {size: 0, idle_timeout: 5s}\n"
        "    health:\n"
        "      active: {path: /hc, interval: 2s, timeout: 500ms, healthy: 1, unhealthy: 4}\n"
        "      passive: {unhealthy: 7, window: 20s}\n"
        "    breaker: {window: 5s, buckets: 10, k: 2, protection: 3,\n"
        "              failure_statuses: [502, 503], scope: node}\n"
        "  - {name: canary, nodes: [\"127.0.0.1:9004\"], breaker: off, balancer: p2c}\n"
        "  - name: z\n"
        "    discovery: {registry: e, format: go-zero, key: user.rpc}\n"
        "  - name: m\n"
        "    discovery: {registry: e, format: go-micro, service: user-service}\n"
        "  - name: k\n"
        "    discovery: {registry: c, service: user-service}\n"
        "routes:\n"
        "  - name: users\n"
        "    match:\n"
        "      host: API.Example.com\n"
        "      path: /api/v1/users/*\n"
        "      methods: [get, Post, DELETE]\n"
        "      headers:\n"
        "        - {name: X-Env, op: equals, value: prod}\n"
        "        - {name: X-Tier, op: in, values: [gold, silver]}\n"
        "        - {name: X-Id, op: regex, value: \"^[0-9]+$\"}\n"
        "        - {name: X-Dbg, op: exists}\n"
        "      query: [{name: debug, op: absent}, {name: v, op: in, value: [\"1\", \"2\"]}]\n"
        "    priority: -3\n"
        "    upstream: user-svc\n"
        "    strip_prefix: /api/v1\n"
        "    timeout: 3s\n"
        "    split:\n"
        "      - {when: {header: {name: X-Canary, value: \"true\"}}, upstream: user-svc,\n"
        "         subset: {version: v2}}\n"
        "      - {when: {header: {name: X-Beta}}, upstream: canary}\n"
        "      - {when: {user_hash: {key: header:X-User-Id, percent: 10}}, upstream: canary}\n"
        "      - {when: {weight: 5}, upstream: canary}\n"
        "    plugins: {}\n"
        "  - match: {host: \"*.Example.org\", path: {regex: \"^/v[0-9]+/\"}}\n"
        "    upstream: z\n"
        "  - {name: p, match: {path: /users/:id/*}, upstream: m}\n"
        "  - {name: e, match: {path: /exact}, upstream: k}\n"
        "consumers:\n"
        "  - {name: alice, key-auth: {key: alice-key}}\n"
        "plugins: {}\n";

    gw_conf_t *conf = expect_ok(yaml, "full config");
    if (conf == NULL)
        return;
    is_str(conf->file, "test.yaml", "file name kept");
    is_int(conf->nlisten, 3, "three listeners");
    is_str(conf->listen[1].host, "::1", "IPv6 host without brackets");
    is_int(conf->listen[1].sa.ss_family, AF_INET6, "IPv6 sockaddr");
    is_int(port_of(&conf->listen[1].sa), 8081, "IPv6 port");
    is_str(conf->listen[2].host, "0.0.0.0", ":8082 -> 0.0.0.0");
    is_int(conf->workers, 3, "workers 3");
    is_int(conf->has_status_listen, 1, "status listener");
    is_int(conf->status_listen.port, 9100, "status port");
    is_int(conf->has_admin, 1, "admin");
    is_str(conf->admin_key, "change-me", "change-me allowed on loopback");
    is_int(conf->client_header_timeout_ms, 5000, "client_header");
    is_int(conf->client_body_timeout_ms, 60000, "client_body");
    is_int(conf->keepalive_timeout_ms, 0, "keepalive 0");
    is_int(conf->max_header_size, 8192, "max_header_size");
    is_int(conf->max_body_size, 1024 * 1024 * 1024, "max_body_size");
    is_int(conf->max_connections, 50, "max_connections");
    is_str(conf->access_log, "logs/access.log", "access log");
    is_str(conf->error_log, "logs/error.log", "error log");
    is_int(conf->error_log_level, GW_LOG_WARN, "error log level");
    ok(conf->nplugin_paths == 2 && strcmp(conf->plugin_paths[1], "t/lua") == 0, "plugin_paths");
    is_str(conf->pid_file, "/tmp/gw.pid", "pid file");
    is_int(conf->has_redis, 1, "redis");
    is_str(conf->redis_addr, "127.0.0.1:6379", "redis addr");
    is_str(conf->redis_password, "pw", "redis password");
    is_int(conf->redis_db, 2, "redis db");
    is_int(conf->redis_timeout_ms, 20, "redis timeout");

    is_int(conf->nupstreams, 5, "five upstreams");
    gw_upstream_conf_t *u = &conf->upstreams[0];
    is_int(u->nnodes, 3, "three nodes");
    is_str(u->nodes[0].addr, "127.0.0.1:9001", "node addr as written");
    is_int(port_of(&u->nodes[0].sa), 9001, "node port resolved");
    is_str(u->nodes[1].host, "::1", "IPv6 node");
    is_int(u->nodes[1].weight, 3, "node weight");
    ok(u->nodes[1].nmeta == 2 && strcmp(u->nodes[1].meta[0].key, "version") == 0 &&
           strcmp(u->nodes[1].meta[0].value, "v2") == 0,
       "node meta");
    ok(u->nodes[2].salen > 0, "localhost resolved");
    is_int(u->balancer, GW_BAL_CONSISTENT_HASH, "consistent_hash");
    is_int(u->hash_on.kind, GW_KEY_COOKIE, "hash_on cookie");
    is_str(u->hash_on.name, "sid", "hash_on name");
    is_int(u->hash_on.name_len, 3, "hash_on name_len");
    is_int(u->connect_timeout_ms, 200, "connect");
    is_int(u->read_timeout_ms, 3000, "read");
    is_int(u->retries, 0, "retries 0");
    is_int(u->keepalive_size, 0, "keepalive size 0");
    is_int(u->keepalive_idle_ms, 5000, "idle_timeout");
    is_int(u->health_active.enabled, 1, "active health");
    is_str(u->health_active.path, "/hc", "active path");
    is_int(u->health_active.interval_ms, 2000, "active interval");
    is_int(u->health_active.unhealthy, 4, "active unhealthy");
    is_int(u->health_passive.enabled, 1, "passive health");
    is_int(u->health_passive.unhealthy, 7, "passive unhealthy");
    is_int(u->health_passive.window_ms, 20000, "passive window");
    is_int(u->breaker.window_ms, 5000, "breaker window");
    is_int(u->breaker.buckets, 10, "breaker buckets");
    ok(u->breaker.k == 2.0, "breaker k");
    is_int(u->breaker.protection, 3, "breaker protection");
    ok(u->breaker.nfailure_statuses == 2 && u->breaker.failure_statuses[1] == 503,
       "failure_statuses");
    is_int(u->breaker.scope, GW_SCOPE_NODE, "scope node");
    is_int(conf->upstreams[1].breaker.enabled, 0, "breaker off");
    is_int(conf->upstreams[1].balancer, GW_BAL_P2C, "p2c");
    gw_discovery_conf_t *d = &conf->upstreams[2].discovery;
    ok(d->kind == GW_DISC_ETCD && strcmp(d->format, "go-zero") == 0 &&
           strcmp(d->key, "user.rpc") == 0 && strcmp(d->registry, "e") == 0,
       "go-zero discovery");
    d = &conf->upstreams[3].discovery;
    ok(d->kind == GW_DISC_ETCD && strcmp(d->service, "user-service") == 0, "go-micro discovery");
    d = &conf->upstreams[4].discovery;
    ok(d->kind == GW_DISC_CONSUL && d->passing == 1, "consul discovery, passing by default");

    is_int(conf->nroutes, 4, "four routes");
    gw_route_conf_t *r = &conf->routes[0];
    is_str(r->name, "users", "route name");
    is_int(r->index, 0, "route index");
    is_str(r->host, "api.example.com", "host lower-cased");
    is_int(r->host_wildcard, 0, "exact host");
    is_int(r->path_kind, GW_PATH_PREFIX, "prefix path");
    is_str(r->path, "/api/v1/users/*", "path as written");
    is_int(r->methods, GW_M_GET | GW_M_POST | GW_M_DELETE, "methods");
    is_int(r->nheaders, 4, "four header predicates");
    ok(r->headers[0].op == GW_OP_EQUALS && strcmp(r->headers[0].value, "prod") == 0 &&
           r->headers[0].value_len == 4 && strcmp(r->headers[0].name, "X-Env") == 0,
       "equals predicate");
    ok(r->headers[1].op == GW_OP_IN && r->headers[1].nvalues == 2 &&
           strcmp(r->headers[1].values[1], "silver") == 0 && r->headers[1].value_lens[1] == 6,
       "in predicate");
    ok(r->headers[2].op == GW_OP_REGEX && r->headers[2].re != NULL, "regex predicate compiled");
    ok(r->headers[3].op == GW_OP_EXISTS && r->headers[3].value == NULL, "exists predicate");
    ok(r->nquery == 2 && r->query[0].op == GW_OP_ABSENT, "absent query predicate");
    ok(r->query[1].op == GW_OP_IN && r->query[1].nvalues == 2, "in with value as a list");
    is_int(r->priority, -3, "priority");
    ok(r->upstream == &conf->upstreams[0], "route upstream");
    is_str(r->strip_prefix, "/api/v1", "strip_prefix");
    is_int(r->strip_prefix_len, 7, "strip_prefix_len");
    is_int(r->timeout_ms, 3000, "route timeout");
    is_int(r->nsplit, 4, "four split rules");
    ok(r->split[0].kind == GW_SPLIT_HEADER && strcmp(r->split[0].header_name, "X-Canary") == 0 &&
           strcmp(r->split[0].header_value, "true") == 0 && r->split[0].nsubset == 1 &&
           strcmp(r->split[0].subset[0].value, "v2") == 0 &&
           r->split[0].upstream == &conf->upstreams[0],
       "header split rule");
    ok(r->split[1].kind == GW_SPLIT_HEADER && r->split[1].header_value == NULL,
       "header split rule without value");
    ok(r->split[2].kind == GW_SPLIT_USER_HASH && r->split[2].key.kind == GW_KEY_HEADER &&
           strcmp(r->split[2].key.name, "X-User-Id") == 0 && r->split[2].percent == 10 &&
           r->split[2].upstream == &conf->upstreams[1],
       "user_hash split rule");
    ok(r->split[3].kind == GW_SPLIT_WEIGHT && r->split[3].percent == 5, "weight split rule");
    is_int(r->nplugins, 0, "no plugins");

    r = &conf->routes[1];
    is_str(r->name, "routes[1]", "unnamed route");
    is_int(r->host_wildcard, 1, "wildcard host");
    is_str(r->host, ".example.org", "wildcard host suffix");
    is_int(r->path_kind, GW_PATH_REGEX, "regex path");
    ok(r->path_re != NULL, "regex path compiled");
    is_int(conf->routes[2].path_kind, GW_PATH_PARAM, "param path with /*");
    is_int(conf->routes[3].path_kind, GW_PATH_EXACT, "exact path");
    gw_conf_free(conf);
}

static void
test_styles(void)
{
    static const char block[] = "gateway:\n"
                                "  listen:\n"
                                "    - 127.0.0.1:8080\n"
                                "upstreams:\n"
                                "  - name: a\n"
                                "    nodes:\n"
                                "      - addr: 127.0.0.1:9001\n"
                                "        weight: 2\n"
                                "routes:\n"
                                "  - upstream: a\n"
                                "    match:\n"
                                "      methods:\n"
                                "        - GET\n";
    static const char flow[] = "{gateway: {listen: [127.0.0.1:8080]}, upstreams: [{name: a, "
                               "nodes: [{addr: \"127.0.0.1:9001\", weight: 2}]}], routes: "
                               "[{upstream: a, match: {methods: [GET]}}]}";
    gw_conf_t *b = expect_ok(block, "block style");
    gw_conf_t *f = expect_ok(flow, "flow style");
    ok(b && f && b->upstreams[0].nodes[0].weight == 2 && f->upstreams[0].nodes[0].weight == 2 &&
           b->routes[0].methods == GW_M_GET && f->routes[0].methods == GW_M_GET,
       "block and flow give the same config");
    gw_conf_free(b);
    gw_conf_free(f);

    gw_conf_t *c = expect_ok("gateway: {listen: \"127.0.0.1:8080\", workers: 1}\n"
                             "upstreams: [{name: a, nodes: [127.0.0.1:1]}]\n"
                             "routes:\nplugins:\n",
                             "a single listen string and null sections");
    ok(c && c->nlisten == 1 && c->nroutes == 0, "null routes is no routes");
    gw_conf_free(c);
    c = expect_ok("gateway: {listen: [127.0.0.1:8080], admin: {listen: 0.0.0.0:9180, key: "
                  "0123456789abcdef}}\n",
                  "long admin key on a public address");
    gw_conf_free(c);
    c = expect_ok("gateway: {listen: [{addr: 127.0.0.1:8443, tls: true}],\n"
                  "  tls: {certificates: [{cert: a.pem, key: a.key, sni: [a.example.com]}]}}\n",
                  "tls listener with certificates");
    ok(c && c->listen[0].tls == 1, "listener tls flag");
    gw_conf_free(c);
}

/* redis.type and the keys each type takes */
static void
test_redis_types(void)
{
    gw_conf_t *conf =
        expect_ok(BASE "redis: {addr: \"127.0.0.1:6379\"}\n", "redis: type defaults to node");
    if (conf) {
        is_int(conf->redis_type, GW_REDIS_NODE, "node by default");
        is_int(conf->nredis_addrs, 0, "node: no addrs");
        gw_conf_free(conf);
    }
    conf =
        expect_ok(BASE "redis: {type: node, addr: \"[::1]:6379\", db: 3}\n", "redis: node, IPv6");
    if (conf) {
        is_int(conf->redis_db, 3, "node: db kept");
        gw_conf_free(conf);
    }
    conf = expect_ok(BASE "redis:\n  type: cluster\n  addrs: [\"10.0.0.1:7000\", "
                          "\"10.0.0.2:7001\", \"[fd00::3]:7002\"]\n  password: pw\n  db: 0\n",
                     "redis: cluster");
    if (conf) {
        is_int(conf->redis_type, GW_REDIS_CLUSTER, "cluster type");
        is_int(conf->nredis_addrs, 3, "cluster: three seeds");
        is_str(conf->redis_addrs[2], "[fd00::3]:7002", "cluster: IPv6 seed kept as written");
        ok(conf->redis_addr == NULL, "cluster: no addr");
        is_str(conf->redis_password, "pw", "cluster: password");
        gw_conf_free(conf);
    }
    conf = expect_ok(BASE "redis: {type: cluster, addrs: \"127.0.0.1:7000\"}\n",
                     "redis: cluster, one seed as a string");
    if (conf) {
        is_int(conf->nredis_addrs, 1, "cluster: a single string is a list of one");
        gw_conf_free(conf);
    }
    conf = expect_ok(BASE "redis:\n  type: sentinel\n  addrs: [\"127.0.0.1:26379\", "
                          "\"127.0.0.1:26380\"]\n  master_name: mymaster\n  password: datapw\n"
                          "  sentinel_password: sentpw\n  db: 2\n",
                     "redis: sentinel");
    if (conf) {
        is_int(conf->redis_type, GW_REDIS_SENTINEL, "sentinel type");
        is_int(conf->nredis_addrs, 2, "sentinel: two Sentinels");
        is_str(conf->redis_master_name, "mymaster", "sentinel: master_name");
        is_str(conf->redis_password, "datapw", "sentinel: data password");
        is_str(conf->redis_sentinel_password, "sentpw", "sentinel: Sentinel password apart");
        is_int(conf->redis_db, 2, "sentinel: db allowed");
        gw_conf_free(conf);
    }

    expect_err(BASE "redis: {type: replica, addr: \"127.0.0.1:1\"}\n",
               "redis.type: expected node, cluster or sentinel, got \"replica\"");
    expect_err(BASE "redis: {type: cluster}\n", "redis: missing key \"addrs\"");
    expect_err(BASE "redis: {type: cluster, addrs: []}\n",
               "redis.addrs: at least one address is required");
    expect_err(BASE "redis: {type: cluster, addrs: [\"127.0.0.1:7000\", x]}\n",
               "redis.addrs[1]: bad address \"x\": expected host:port or [ipv6]:port");
    expect_err(BASE "redis: {type: cluster, addrs: [\":7000\"]}\n",
               "redis.addrs[0]: bad address \":7000\": expected host:port or [ipv6]:port");
    expect_err(BASE "redis: {type: cluster, addrs: [{a: 1}]}\n",
               "redis.addrs[0]: expected a string, got a map");
    expect_err(BASE "redis: {type: cluster, addrs: [\"127.0.0.1:7000\", \"127.0.0.1:7000\"]}\n",
               "redis.addrs[1]: \"127.0.0.1:7000\" is listed twice");
    expect_err(BASE "redis: {type: cluster, addrs: [\"127.0.0.1:7000\"], db: 1}\n",
               "redis.db: a Redis Cluster has only database 0, got 1");
    expect_err(BASE
               "redis: {type: cluster, addr: \"127.0.0.1:7000\", addrs: [\"127.0.0.1:7000\"]}\n",
               "redis.addr: not used with type: cluster, which takes \"addrs\"");
    expect_err(BASE "redis: {type: cluster, addrs: [\"127.0.0.1:7000\"], master_name: m}\n",
               "redis.master_name: not used with type: cluster (only with sentinel)");
    expect_err(BASE "redis: {addr: \"127.0.0.1:6379\", addrs: [\"127.0.0.1:7000\"]}\n",
               "redis.addrs: not used with type: node, which takes \"addr\"");
    expect_err(BASE "redis: {addr: \"127.0.0.1:6379\", sentinel_password: x}\n",
               "redis.sentinel_password: not used with type: node (only with sentinel)");
    expect_err(BASE "redis: {type: sentinel, addrs: [\"127.0.0.1:26379\"]}\n",
               "redis: missing key \"master_name\"");
    expect_err(BASE "redis: {type: sentinel, addrs: [\"127.0.0.1:26379\"], master_name: \"\"}\n",
               "redis.master_name: the name is empty");
    expect_err(BASE "redis: {type: sentinel, master_name: m}\n", "redis: missing key \"addrs\"");
    expect_err(BASE "redis: {type: node}\n", "redis: missing key \"addr\"");

    /* the bound on the lists */
    char yaml[4096];
    int n = snprintf(yaml, sizeof(yaml), "%sredis: {type: cluster, addrs: [", BASE);
    for (int i = 0; i < 65; i++)
        n += snprintf(yaml + n, sizeof(yaml) - (size_t)n, "%s\"127.0.0.1:%d\"", i ? ", " : "",
                      7000 + i);
    snprintf(yaml + n, sizeof(yaml) - (size_t)n, "]}\n");
    expect_err(yaml, "redis.addrs: at most 64 addresses, got 65");
}

static void
test_errors(void)
{
    /* syntax */
    expect_err("gateway: {listen: [\n", "test.yaml:2:1: did not find expected node content "
                                        "while parsing a flow node");
    expect_err("a: 1\na: 2\n", "test.yaml:2:1: duplicate key \"a\"");
    expect_err("x: &a 1\ny: *a\n", "test.yaml:2:4: aliases (*name) are not supported");
    expect_err("", "test.yaml: the config is empty");
    expect_err("- 1\n", "test.yaml: expected a map at the top level, got a list");
    expect_err("upstreams: []\n", "test.yaml: missing key \"gateway\"");
    expect_err("gateway: {}\n", "gateway: missing key \"listen\"");
    expect_err("gateway: {listen: []}\n", "gateway.listen: at least one address is required");

    /* unknown keys */
    expect_err(BASE "version: 1\n", "version: unknown key");
    expect_err("gateway: {listen: [127.0.0.1:80]}\n"
               "upstreams:\n"
               "  - {name: a, nodes: [127.0.0.1:1]}\n"
               "  - {name: b, nodes: [127.0.0.1:1], timeouts: {conect: 1s}}\n",
               "upstreams[1].timeouts.conect: unknown key");
    expect_err(BASE "routes: [{upstream: a, match: {paht: /}}]\n",
               "routes[0].match.paht: unknown key");

    /* plugin directories must exist */
    expect_err("gateway: {listen: [127.0.0.1:80], plugin_paths: [plugins, no/such/dir]}\n",
               "gateway.plugin_paths[1]: \"no/such/dir\": No such file or directory (relative to "
               "the working directory)");
    expect_err("gateway: {listen: [127.0.0.1:80], plugin_paths: [/nonexistent-gw-plugins]}\n",
               "gateway.plugin_paths[0]: \"/nonexistent-gw-plugins\": No such file or directory");
    expect_err("gateway: {listen: [127.0.0.1:80], plugin_paths: [Makefile]}\n",
               "gateway.plugin_paths[0]: \"Makefile\" is not a directory");
    expect_err("gateway: {listen: [127.0.0.1:80], plugin_paths: [\"\"]}\n",
               "gateway.plugin_paths[0]: the path is empty");

    /* types and values */
    expect_err("gateway: {listen: [127.0.0.1:80], workers: x}\n",
               "gateway.workers: expected a number or \"auto\", got \"x\"");
    expect_err("gateway: {listen: [127.0.0.1:80], workers: 0}\n",
               "gateway.workers: must be between 1 and 1024, got 0");
    expect_err("gateway: {listen: [127.0.0.1:80], timeouts: {drain: 10}}\n",
               "gateway.timeouts.drain: expected a duration (a number with ms, s, m or h, e.g. "
               "10s), got \"10\"");
    expect_err("gateway: {listen: [127.0.0.1:80], timeouts: {client_header: -1s}}\n",
               "gateway.timeouts.client_header: expected a duration (a number with ms, s, m or "
               "h, e.g. 10s), got \"-1s\"");
    expect_err("gateway: {listen: [127.0.0.1:80], limits: {max_body_size: 1t}}\n",
               "gateway.limits.max_body_size: expected a size (bytes, or a number with k, m or "
               "g, e.g. 16k), got \"1t\"");
    expect_err("gateway: {listen: [127.0.0.1:80], limits: [1]}\n",
               "gateway.limits: expected a map, got a list");
    expect_err("gateway: {listen: [127.0.0.1:80], error_log: {level: loud}}\n",
               "gateway.error_log.level: expected debug, info, warn or error, got \"loud\"");
    expect_err("gateway: {listen: [\"1.2.3.4\"]}\n",
               "gateway.listen[0]: bad address \"1.2.3.4\": expected host:port, [ipv6]:port or "
               ":port");
    expect_err("gateway: {listen: [\"::1:80\"]}\n",
               "gateway.listen[0]: bad address \"::1:80\": expected host:port, [ipv6]:port or "
               ":port");
    expect_err("gateway: {listen: [\"127.0.0.1:70000\"]}\n",
               "gateway.listen[0]: bad address \"127.0.0.1:70000\": expected host:port, "
               "[ipv6]:port or :port");
    expect_err("gateway: {listen: [{addr: 127.0.0.1:443, tls: true}]}\n",
               "gateway.listen[0].tls: needs gateway.tls.certificates");
    expect_err("gateway: {listen: [127.0.0.1:80], tls: {certificates: [{cert: a.pem}]}}\n",
               "gateway.tls.certificates[0]: missing key \"key\"");

    /* admin key */
    expect_err("gateway: {listen: [127.0.0.1:80], admin: {listen: 0.0.0.0:9180, key: "
               "change-me}}\n",
               "gateway.admin.key: refusing an empty, short (< 16 characters) or \"change-me\" "
               "key on the non-loopback address 0.0.0.0:9180");
    expect_err("gateway: {listen: [127.0.0.1:80], admin: {listen: \"[::]:9180\", key: short}}\n",
               "gateway.admin.key: refusing an empty, short (< 16 characters) or \"change-me\" "
               "key on the non-loopback address [::]:9180");
    expect_err("gateway: {listen: [127.0.0.1:80], admin: {listen: 127.0.0.1:9180}}\n",
               "gateway.admin: missing key \"key\"");

    /* upstreams */
    expect_err(BASE "  - {name: a, nodes: [127.0.0.1:1]}\n",
               "upstreams[2].name: duplicate upstream name \"a\" (also upstreams[0])");
    expect_err("gateway: {listen: [127.0.0.1:80]}\n"
               "registries: {e: {type: etcd, endpoints: [\"http://127.0.0.1:2379\"]}}\n"
               "upstreams: [{name: a, nodes: [127.0.0.1:1], discovery: {registry: e, format: "
               "go-zero, key: k}}]\n",
               "upstreams[0]: give either \"nodes\" or \"discovery\", not both");
    expect_err("gateway: {listen: [127.0.0.1:80]}\nupstreams: [{name: a}]\n",
               "upstreams[0]: missing key \"nodes\" (or \"discovery\")");
    expect_err("gateway: {listen: [127.0.0.1:80]}\nupstreams: [{nodes: [127.0.0.1:1]}]\n",
               "upstreams[0]: missing key \"name\"");
    expect_err("gateway: {listen: [127.0.0.1:80]}\n"
               "upstreams: [{name: a, discovery: {registry: nope, service: s}}]\n",
               "upstreams[0].discovery.registry: no registry named \"nope\"");
    expect_err("gateway: {listen: [127.0.0.1:80]}\n"
               "registries: {e: {type: etcd, endpoints: [\"http://127.0.0.1:2379\"]}}\n"
               "upstreams: [{name: a, discovery: {registry: e, format: go-zero}}]\n",
               "upstreams[0].discovery: missing key \"key\"");
    expect_err("gateway: {listen: [127.0.0.1:80]}\n"
               "registries: {c: {type: zookeeper}}\n",
               "registries.c.type: expected etcd, consul or dns, got \"zookeeper\"");
    expect_err("gateway: {listen: [127.0.0.1:80]}\n"
               "upstreams: [{name: a, nodes: [127.0.0.1:1], balancer: fastest}]\n",
               "upstreams[0].balancer: expected round_robin, weighted_round_robin, random, "
               "least_conn, consistent_hash or p2c, got \"fastest\"");
    expect_err("gateway: {listen: [127.0.0.1:80]}\n"
               "upstreams: [{name: a, nodes: [127.0.0.1:1], balancer: consistent_hash, hash_on: "
               "header}]\n",
               "upstreams[0].hash_on: expected header:NAME, cookie:NAME, query:NAME, var:NAME, "
               "ip or consumer, got \"header\"");
    expect_err("gateway: {listen: [127.0.0.1:80]}\n"
               "upstreams: [{name: a, nodes: [127.0.0.1:1], balancer: consistent_hash, hash_on: "
               "\"header:bad name\"}]\n",
               "upstreams[0].hash_on: expected header:NAME, cookie:NAME, query:NAME, var:NAME, "
               "ip or consumer, got \"header:bad name\"");
    expect_err("gateway: {listen: [127.0.0.1:80]}\n"
               "upstreams: [{name: a, nodes: [127.0.0.1:1], hash_on: ip}]\n",
               "upstreams[0].hash_on: only used with balancer consistent_hash");
    expect_err("gateway: {listen: [127.0.0.1:80]}\n"
               "upstreams: [{name: a, nodes: [127.0.0.1:1], retries: -1}]\n",
               "upstreams[0].retries: must be between 0 and 100, got -1");
    expect_err("gateway: {listen: [127.0.0.1:80]}\n"
               "upstreams: [{name: a, nodes: [{addr: 127.0.0.1:1, weight: 0}]}]\n",
               "upstreams[0].nodes[0].weight: must be between 1 and 1000000, got 0");
    expect_err("gateway: {listen: [127.0.0.1:80]}\n"
               "upstreams: [{name: a, nodes: [127.0.0.1:1], breaker: sometimes}]\n",
               "upstreams[0].breaker: expected a map or off, got \"sometimes\"");
    expect_err("gateway: {listen: [127.0.0.1:80]}\n"
               "upstreams: [{name: a, nodes: [127.0.0.1:1], breaker: {scope: global}}]\n",
               "upstreams[0].breaker.scope: expected route, upstream or node, got \"global\"");
    expect_err("gateway: {listen: [127.0.0.1:80]}\n"
               "upstreams: [{name: a, nodes: [127.0.0.1:1], health: {active: {interval: 1s}}}]\n",
               "upstreams[0].health.active: missing key \"path\"");

    /* routes */
    expect_err(BASE "routes:\n  - {upstream: a}\n  - {upstream: b}\n  - {upstream: user-svc}\n",
               "routes[2].upstream: no upstream named \"user-svc\"");
    expect_err(BASE "routes: [{upstream: a}, {upstream: a}, {upstream: a}, {match: {path: /}}]\n",
               "routes[3]: missing key \"upstream\"");
    expect_err(BASE "routes: [{name: x, upstream: a}, {name: x, upstream: b}]\n",
               "routes[1].name: duplicate route name \"x\" (also routes[0])");
    expect_err(BASE "routes: [{upstream: a, match: {path: {regex: \"^/(a\"}}}]\n",
               "routes[0].match.path.regex: bad regex at offset 4: missing closing parenthesis");
    expect_err(BASE "routes: [{upstream: a, match: {headers: [{name: X, op: regex, value: "
                    "\"[z-a]\"}]}}]\n",
               "routes[0].match.headers[0].value: bad regex at offset 3: range out of order in "
               "character class");
    expect_err(BASE "routes: [{upstream: a, match: {path: api}}]\n",
               "routes[0].match.path: must start with '/', got \"api\"");
    expect_err(BASE "routes: [{upstream: a, match: {path: /a/*/b}}]\n",
               "routes[0].match.path: '*' is only allowed as the whole last segment (/prefix/*), "
               "got \"/a/*/b\"");
    expect_err(BASE "routes: [{upstream: a, match: {methods: [GET, FETCH]}}]\n",
               "routes[0].match.methods[1]: expected GET, HEAD, POST, PUT, DELETE, PATCH, "
               "OPTIONS, TRACE or CONNECT, got \"FETCH\"");
    expect_err(BASE "routes: [{upstream: a, match: {query: [{name: q, op: exists, value: 1}]}}]\n",
               "routes[0].match.query[0]: op exists takes no value");
    expect_err(BASE "routes: [{upstream: a, match: {headers: [{name: X, op: like, value: 1}]}}]\n",
               "routes[0].match.headers[0].op: expected equals, not_equals, contains, in, regex, "
               "exists or absent, got \"like\"");
    expect_err(BASE "routes: [{upstream: a, match: {headers: [{name: X, op: in}]}}]\n",
               "routes[0].match.headers[0]: missing key \"values\"");
    expect_err(BASE "routes: [{upstream: a, match: {host: \"api.example.com:80\"}}]\n",
               "routes[0].match.host: expected a host name or *.suffix (no port), got "
               "\"api.example.com:80\"");
    expect_err(BASE "routes: [{upstream: a, strip_prefix: api}]\n",
               "routes[0].strip_prefix: must start with '/', got \"api\"");
    expect_err(BASE
               "routes: [{match: {path: /u/:id}, upstream: a, upstream_path: \"/v1/{name}\"}]\n",
               "routes[0].upstream_path: {name} is not captured by match.path \"/u/:id\"");
    expect_err(BASE "routes: [{match: {path: /u/:id}, upstream: a, strip_prefix: /u,"
                    " upstream_path: \"/v1/{id}\"}]\n",
               "routes[0].upstream_path: cannot be combined with strip_prefix");
    expect_err(BASE "routes: [{match: {path: /u/*}, upstream: a, upstream_path: /v1}]\n",
               "routes[0].upstream_path: needs an exact or :param match.path without a final /*, "
               "got \"/u/*\" (strip_prefix rewrites prefix routes)");
    expect_err(BASE "routes: [{upstream: a, upstream_path: /v1}]\n",
               "routes[0].upstream_path: needs an exact or :param match.path without a final /*, "
               "got no path (strip_prefix rewrites prefix routes)");
    expect_err(BASE "routes: [{upstream: a, timeout: 3}]\n",
               "routes[0].timeout: expected a duration (a number with ms, s, m or h, e.g. 10s), "
               "got \"3\"");
    expect_err(BASE "routes: [{upstream: a, priority: high}]\n",
               "routes[0].priority: expected a number, got \"high\"");
    expect_err(BASE "routes: [{upstream: a, split: [{when: {weight: 5}, upstream: c}]}]\n",
               "routes[0].split[0].upstream: no upstream named \"c\"");
    expect_err(BASE "routes: [{upstream: a, split: [{when: {weight: 101}, upstream: b}]}]\n",
               "routes[0].split[0].when.weight: must be between 0 and 100, got 101");
    expect_err(BASE "routes: [{upstream: a, split: [{when: {weight: 5, header: {name: X}}, "
                    "upstream: b}]}]\n",
               "routes[0].split[0].when: expected exactly one of \"header\", \"user_hash\" or "
               "\"weight\"");
    expect_err(BASE "routes: [{upstream: a, split: [{when: {user_hash: {key: hdr:x, percent: "
                    "5}}, upstream: b}]}]\n",
               "routes[0].split[0].when.user_hash.key: expected header:NAME, cookie:NAME, "
               "query:NAME, var:NAME, ip or consumer, got \"hdr:x\"");
    expect_err(BASE "routes: [{upstream: a, split: [{upstream: b}]}]\n",
               "routes[0].split[0]: missing key \"when\"");

    /* plugins */
    expect_err(BASE "routes: [{upstream: a, plugins: {key-auth: [1]}}]\n",
               "routes[0].plugins.key-auth: expected a map (the plugin's config), got a list");
    expect_err(BASE "plugins: [request-id]\n",
               "plugins: expected a map of plugin name to its config, got a list");
    {
        gw_conf_errors_t pe;
        gw_conf_t *pc = load(BASE "routes: [{upstream: a, plugins: {key-auth: {header: X-Key, "
                                  "n: 5, f: 1.5, t: true, z: ~, q: \"5\", l: [a, 2]}, cors: }}]\n"
                                  "consumers: [{name: alice, key-auth: {key: k1}}]\n",
                             &pe);
        ok(pc != NULL, "plugins: accepted in shape");
        if (pc) {
            is_int(pc->routes[0].nplugins, 2, "plugins: two on the route");
            is_str(pc->routes[0].plugins[0].json,
                   "{\"header\":\"X-Key\",\"n\":5,\"f\":1.5,\"t\":true,\"z\":null,\"q\":\"5\","
                   "\"l\":[\"a\",2]}",
                   "plugins: config as JSON, YAML types kept");
            is_str(pc->routes[0].plugins[1].json, "{}", "plugins: an empty config is {}");
            is_str(pc->routes[0].plugins[0].path, "routes[0].plugins.key-auth",
                   "plugins: YAML path kept");
            is_str(pc->consumers_json, "[{\"name\":\"alice\",\"key-auth\":{\"key\":\"k1\"}}]",
                   "consumers as JSON");
            ok(pc->has_plugins, "has_plugins set");
            gw_conf_free(pc);
        }
        gw_conf_errors_free(&pe);
    }
    expect_err(BASE "consumers: [{key-auth: {key: k}}]\n", "consumers[0]: missing key \"name\"");
    expect_err(BASE "redis: {addr: localhost}\n",
               "redis.addr: bad address \"localhost\": expected host:port or [ipv6]:port");

    test_redis_types();

    /* every error is reported, not only the first */
    gw_conf_errors_t e;
    gw_conf_t *conf = load("gateway: {listen: [127.0.0.1:80], workers: x, bogus: 1}\n"
                           "upstreams: [{name: a, nodes: [127.0.0.1:1], retries: many}]\n"
                           "routes: [{upstream: nope}]\n",
                           &e);
    ok(conf == NULL && e.n == 4, "four errors collected (got %zu)", e.n);
    if (e.n != 4)
        dump(&e);
    gw_conf_errors_free(&e);
    ok(gw_conf_load_string("x", 1, "t", NULL) == NULL, "NULL errs is accepted");
}

static int
has_warning(const gw_conf_t *conf, const char *line)
{
    for (size_t i = 0; conf && i < conf->nwarnings; i++) {
        if (strcmp(conf->warnings[i], line) == 0)
            return 1;
    }
    return 0;
}

/* A route's own subset, its errors, and the warnings a valid config can get. */
static void
test_subsets(void)
{
#define POOL                                                                                       \
    "gateway: {listen: [\"127.0.0.1:8080\"]}\n"                                                    \
    "upstreams:\n"                                                                                 \
    "  - name: pool\n"                                                                             \
    "    nodes: [{addr: \"127.0.0.1:9001\", meta: {version: v1}},\n"                               \
    "            {addr: \"127.0.0.1:9002\", meta: {version: v2, zone: x}}]\n"

    gw_conf_t *conf = expect_ok(POOL "routes:\n"
                                     "  - upstream: pool\n"
                                     "    subset: {version: v1}\n"
                                     "    split: [{when: {weight: 5}, upstream: pool, subset: "
                                     "{version: v2, zone: x}}]\n",
                                "route subset");
    if (conf != NULL) {
        const gw_route_conf_t *r = &conf->routes[0];
        ok(r->nsubset == 1 && strcmp(r->subset[0].key, "version") == 0 &&
               strcmp(r->subset[0].value, "v1") == 0,
           "route subset version=v1 kept");
        is_int(r->split[0].nsubset, 2, "the split rule keeps its own subset");
        is_int(conf->nwarnings, 0, "subsets that match a node: no warning");
    }
    gw_conf_free(conf);

    conf = expect_ok(POOL "routes: [{upstream: pool, subset: {}}]\n", "empty route subset");
    ok(conf && conf->routes[0].subset == NULL && conf->routes[0].nsubset == 0,
       "an empty subset is no subset: every node");
    gw_conf_free(conf);

    conf = expect_ok(POOL "routes: [{upstream: pool}]\n", "no route subset");
    ok(conf && conf->routes[0].subset == NULL, "no subset by default");
    gw_conf_free(conf);

    expect_err(POOL "routes: [{upstream: pool, subset: v1}]\n",
               "routes[0].subset: expected a map of strings, got \"v1\"");
    expect_err(POOL "routes: [{upstream: pool, subset: [v1]}]\n",
               "routes[0].subset: expected a map of strings, got a list");
    expect_err(POOL "routes: [{upstream: pool, subset: {version: [v1]}}]\n",
               "routes[0].subset.version: expected a string, got a list");
    expect_err(POOL "routes: [{upstream: pool, subset: {version: {a: b}}}]\n",
               "routes[0].subset.version: expected a string, got a map");
    expect_err(POOL "routes: [{upstream: pool, subset: {version: ~}}]\n",
               "routes[0].subset.version: expected a string, got null");
    expect_err(POOL "routes: [{upstream: pool, subset: {version: }}]\n",
               "routes[0].subset.version: expected a string, got null");

    conf = expect_ok(POOL "routes:\n"
                          "  - upstream: pool\n"
                          "    subset: {version: v3}\n"
                          "    split: [{when: {weight: 5}, upstream: pool, subset: {zone: y}},\n"
                          "            {when: {weight: 5}, upstream: pool, subset: {zone: x}}]\n",
                     "subsets matching no node are valid");
    ok(conf && conf->nwarnings == 2, "two warnings (got %zu)", conf ? conf->nwarnings : 0);
    ok(has_warning(conf, "routes[0].subset: matches no node of upstream \"pool\": requests no "
                         "split rule takes get 503 \"no healthy node\""),
       "warning: route subset matching no node");
    ok(has_warning(conf, "routes[0].split[0].subset: matches no node of upstream \"pool\": "
                         "requests this rule takes get 503 \"no healthy node\""),
       "warning: split subset matching no node");
    gw_conf_free(conf);

    /* weights: counted by round_robin, ignored (with a warning) by random and p2c */
    static const char *const bals[] = {
        "round_robin", "weighted_round_robin", "least_conn", "consistent_hash", "random", "p2c"};
    for (size_t i = 0; i < GW_ARRAY_LEN(bals); i++) {
        char yaml[512], want[256];
        snprintf(
            yaml, sizeof(yaml),
            "gateway: {listen: [\"127.0.0.1:8080\"]}\n"
            "upstreams: [{name: a, balancer: %s,\n"
            "             nodes: [\"127.0.0.1:9001\", {addr: \"127.0.0.1:9002\", weight: 3}]}]\n",
            bals[i]);
        snprintf(want, sizeof(want),
                 "upstreams[0].balancer: %s ignores node weights, which differ here; use "
                 "round_robin, least_conn or consistent_hash for weighted shares",
                 bals[i]);
        conf = load(yaml, NULL);
        int ignores = i >= 4;
        ok(conf != NULL &&
               (ignores ? conf->nwarnings == 1 && has_warning(conf, want) : conf->nwarnings == 0),
           "%s with weights 1 and 3: %s", bals[i], ignores ? "a warning" : "no warning");
        gw_conf_free(conf);
    }
#undef POOL
}

static void
test_files(void)
{
    static const char *const files[] = {"conf/examples/full.yaml", "conf/examples/canary.yaml"};
    gw_conf_errors_t e;

    for (size_t i = 0; i < GW_ARRAY_LEN(files); i++) {
        gw_conf_t *conf = gw_conf_load(files[i], &e);
        ok(conf != NULL && e.n == 0, "%s loads", files[i]);
        ok(conf != NULL && conf->nwarnings == 0, "%s: no warning", files[i]);
        if (conf == NULL)
            dump(&e);
        gw_conf_free(conf);
        gw_conf_errors_free(&e);
    }
    gw_conf_t *conf = gw_conf_load("conf/examples/no-such-file.yaml", &e);
    ok(conf == NULL && e.n == 1 && strstr(e.lines[0], "no-such-file.yaml: cannot open") != NULL,
       "missing file is an error");
    gw_conf_errors_free(&e);
}

int
main(void)
{
    test_durations();
    test_sizes();
    test_defaults();
    test_full();
    test_styles();
    test_errors();
    test_subsets();
    test_files();
    done_testing();
}
