/*
 * The configuration, compiled once from YAML (libyaml) into plain C
 * structures. Nothing here is parsed per request. A gw_conf_t is immutable
 * after gw_conf_load() returns; workers build their mutable runtime state
 * (balancer positions, keep-alive pools) from it.
 *
 * All strings are NUL-terminated heap copies owned by the gw_conf_t and
 * freed by gw_conf_free(). Durations are in milliseconds, sizes in bytes.
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stdint.h>
#include <sys/socket.h>

#include "gw_core.h"
#include "gw_tls_client.h" /* gw_tls_client_conf_t */

typedef struct {
    char *key;
    char *value;
} gw_kv_t;

typedef struct {
    char *host; /* as written: "0.0.0.0", "127.0.0.1", "::1" */
    int port;
    int tls;
    struct sockaddr_storage sa;
    socklen_t salen;
} gw_listen_conf_t;

/* Where a key for hashing or canary bucketing comes from. */
typedef enum {
    GW_KEY_NONE = 0,
    GW_KEY_HEADER,   /* header:NAME */
    GW_KEY_COOKIE,   /* cookie:NAME */
    GW_KEY_QUERY,    /* query:NAME  */
    GW_KEY_IP,       /* ip          */
    GW_KEY_CONSUMER, /* consumer    */
    GW_KEY_VAR,      /* var:NAME    */
} gw_key_kind_t;

typedef struct {
    gw_key_kind_t kind;
    char *name; /* NULL for ip and consumer */
    size_t name_len;
} gw_keyspec_t;

typedef enum {
    GW_BAL_ROUND_ROBIN = 0,
    GW_BAL_WEIGHTED_ROUND_ROBIN,
    GW_BAL_RANDOM,
    GW_BAL_LEAST_CONN,
    GW_BAL_CONSISTENT_HASH,
    GW_BAL_P2C,
} gw_balancer_kind_t;

struct gw_node_conf_s {
    char *addr; /* "host:port" as written */
    char *host;
    int port;
    struct sockaddr_storage sa; /* resolved at load: numeric or getaddrinfo */
    socklen_t salen;
    int weight; /* >= 1, default 1 */
    gw_kv_t *meta;
    size_t nmeta;
};

typedef struct {
    int enabled;
    char *path;
    uint64_t interval_ms, timeout_ms;
    int healthy, unhealthy;
} gw_health_active_conf_t;

typedef struct {
    int enabled;
    int unhealthy;
    uint64_t window_ms;
} gw_health_passive_conf_t;

typedef enum { GW_SCOPE_ROUTE = 0, GW_SCOPE_UPSTREAM, GW_SCOPE_NODE } gw_breaker_scope_t;

typedef struct {
    int enabled; /* "breaker: off" -> 0; default on */
    uint64_t window_ms;
    int buckets;
    double k;
    int protection;
    int *failure_statuses; /* NULL -> any status >= 500 */
    size_t nfailure_statuses;
    gw_breaker_scope_t scope;
} gw_breaker_conf_t;

typedef enum { GW_DISC_STATIC = 0, GW_DISC_ETCD, GW_DISC_CONSUL, GW_DISC_DNS } gw_discovery_kind_t;

/* registries.NAME: where upstreams with `discovery` get their nodes. */
typedef struct {
    char *name;
    gw_discovery_kind_t kind; /* never GW_DISC_STATIC */
    /* etcd: the endpoints, tried in turn; consul: one, its addr. Plain
     * http:// or https:// URLs (all of one scheme). */
    char **endpoints;
    size_t nendpoints;
    char *username, *password; /* etcd: both or neither */
    char *token;               /* consul: ACL token, sent as X-Consul-Token */
    char *dc;                  /* consul: datacenter */
    char *prefix;              /* etcd go-micro: default "/micro/registry/" */
    uint64_t timeout_ms;       /* one registry request (not a watch); default 5s */
    uint64_t wait_ms;          /* consul blocking query wait; default 30s */
    /* dns: "ip[:port]" servers (default: /etc/resolv.conf) and the bounds
     * the records' TTLs are clamped to (defaults 1s and 300s) */
    char **nameservers;
    size_t nnameservers;
    uint64_t min_ttl_ms, max_ttl_ms;
    gw_tls_client_conf_t tls; /* enabled when an endpoint is https:// */
} gw_registry_conf_t;

typedef struct {
    gw_discovery_kind_t kind;
    char *registry;   /* name in registries */
    size_t reg_index; /* position in conf->registries */
    char *format;     /* "go-zero" | "go-micro" (etcd) */
    char *key;        /* go-zero key */
    char *service;    /* go-micro / consul service */
    int passing;      /* consul */
    char *host;       /* dns A/AAAA: the name to resolve */
    int port;         /* dns A/AAAA: the port the nodes listen on */
    char *srv;        /* dns SRV: the record name (port and weight from it) */
} gw_discovery_conf_t;

struct gw_upstream_conf_s {
    char *name;
    size_t index; /* position in conf->upstreams */
    gw_node_conf_t *nodes;
    size_t nnodes;
    gw_discovery_conf_t discovery;
    gw_balancer_kind_t balancer;
    gw_keyspec_t hash_on; /* consistent_hash; kind NONE -> client ip */
    uint64_t connect_timeout_ms, send_timeout_ms, read_timeout_ms;
    int retries;
    int keepalive_size;
    uint64_t keepalive_idle_ms;
    gw_health_active_conf_t health_active;
    gw_health_passive_conf_t health_passive;
    gw_breaker_conf_t breaker;
    gw_tls_client_conf_t tls; /* scheme https */
};

typedef enum {
    GW_OP_EQUALS = 0,
    GW_OP_NOT_EQUALS,
    GW_OP_CONTAINS,
    GW_OP_IN,
    GW_OP_REGEX,
    GW_OP_EXISTS,
    GW_OP_ABSENT,
} gw_match_op_t;

typedef struct {
    char *name;
    size_t name_len;
    gw_match_op_t op;
    char *value; /* equals, not_equals, contains, regex (the pattern) */
    size_t value_len;
    char **values; /* in */
    size_t *value_lens;
    size_t nvalues;
    void *re; /* pcre2_code * for regex, compiled with JIT at load */
} gw_predicate_t;

typedef enum {
    GW_PATH_ANY = 0, /* no path given */
    GW_PATH_EXACT,   /* /a/b */
    GW_PATH_PREFIX,  /* /a/b/ then a final "*": matches /a/b, /a/b/ and below */
    GW_PATH_PARAM,   /* /users/:id (may also end with "/" "*") */
    GW_PATH_REGEX,   /* {regex: "..."} */
} gw_path_kind_t;

typedef enum {
    GW_SPLIT_HEADER = 0, /* {header: {name, value}} */
    GW_SPLIT_USER_HASH,  /* {user_hash: {key, percent}} */
    GW_SPLIT_WEIGHT,     /* {weight: N}: N % of requests at random */
} gw_split_kind_t;

typedef struct {
    gw_split_kind_t kind;
    char *header_name; /* header rule */
    size_t header_name_len;
    char *header_value; /* header rule; NULL -> the header only has to exist */
    size_t header_value_len;
    gw_keyspec_t key; /* user_hash rule */
    int percent;      /* user_hash and weight rules, 0..100 */
    gw_upstream_conf_t *upstream;
    gw_kv_t *subset; /* node meta that must all match; NULL -> all nodes */
    size_t nsubset;
} gw_split_rule_t;

/* One piece of a route's upstream_path: a literal run, or a :param of its
 * match.path, by position (the router captures them in that order). */
typedef struct {
    const char *lit; /* a slice of upstream_path; NULL for a :param */
    size_t len;
    size_t param; /* for a :param: 0 for the path's first :param, ... */
} gw_upath_part_t;

/* A plugin's config as written, kept as JSON text: the Lua runtime decodes
 * it and checks it against the plugin's schema (gw_lua_vm.c). */
typedef struct {
    char *name;
    char *json;
    char *path; /* YAML path, for messages: "routes[1].plugins.key-auth" */
} gw_plugin_conf_t;

struct gw_route_conf_s {
    char *name;
    size_t index;      /* position in conf->routes, also the YAML index */
    char *host;        /* NULL -> any host; lower-case */
    int host_wildcard; /* host was "*.suffix": host holds ".suffix" */
    gw_path_kind_t path_kind;
    char *path;       /* as written ("/a/b/" "*", "/users/:id") or the regex source */
    void *path_re;    /* pcre2_code * for GW_PATH_REGEX */
    unsigned methods; /* 0 -> any */
    gw_predicate_t *headers;
    size_t nheaders;
    gw_predicate_t *query;
    size_t nquery;
    int priority;
    gw_upstream_conf_t *upstream;
    char *strip_prefix; /* NULL -> none */
    size_t strip_prefix_len;
    char *upstream_path; /* NULL -> the request path; "/v1/user/{id}" */
    gw_upath_part_t *upath;
    size_t nupath;
    uint64_t timeout_ms; /* 0 -> no route budget */
    gw_kv_t *subset; /* default (non-split) traffic: node meta that must all match; NULL -> all */
    size_t nsubset;
    gw_split_rule_t *split;
    size_t nsplit;
    gw_plugin_conf_t *plugins;
    size_t nplugins;
};

/* gateway.tls: downstream TLS termination (gw_tls.c). */
typedef struct {
    char *cert;      /* PEM chain, leaf first */
    char *key;       /* PEM private key */
    char *client_ca; /* PEM CAs a client certificate must chain to; NULL -> no mTLS */
    char **sni;      /* exact names and "*.example.com" wildcards; empty -> default only */
    size_t nsni;
    int64_t not_after; /* the leaf's expiry (Unix time), filled by gw_tls_check; 0 unknown */
} gw_tls_cert_conf_t;

typedef struct {
    gw_tls_cert_conf_t *certs; /* the first is the default */
    size_t ncerts;
    int min_protocol;                /* 0x0303 (TLSv1.2, default) or 0x0304 (TLSv1.3) */
    int session_tickets;             /* default on */
    uint64_t ticket_key_rotation_ms; /* default 1h: a ticket key encrypts that long */
    int session_cache_size;          /* sessions per worker, default 20480; 0 -> off */
    uint64_t session_timeout_ms;     /* default 10m */
    /* the ticket key secret, set by the master before it forks workers (and
     * kept across reloads) so that every worker derives the same keys */
    unsigned char ticket_secret[32];
} gw_tls_conf_t;

/* redis.type: one server, a Redis Cluster, or a master found through Sentinel */
typedef enum { GW_REDIS_NODE = 0, GW_REDIS_CLUSTER, GW_REDIS_SENTINEL } gw_redis_type_t;

typedef enum { GW_LOG_DEBUG = 0, GW_LOG_INFO, GW_LOG_WARN, GW_LOG_ERROR } gw_log_level_t;

struct gw_conf_s {
    char *file;    /* path the config was read from */
    uint64_t hash; /* of the text compiled: two loads read the same bytes */

    gw_listen_conf_t *listen;
    size_t nlisten;
    int workers;                    /* resolved: "auto" -> number of CPUs */
    gw_listen_conf_t status_listen; /* port 0 -> off */
    int has_status_listen;
    gw_listen_conf_t admin_listen;
    int has_admin;
    char *admin_key;
    gw_tls_conf_t tls;

    uint64_t client_header_timeout_ms; /* default 10s */
    uint64_t client_body_timeout_ms;   /* default 30s */
    uint64_t keepalive_timeout_ms;     /* default 75s */
    uint64_t drain_timeout_ms;         /* default 30s */
    size_t max_header_size;            /* default 16k */
    size_t max_body_size;              /* default 8m */
    int max_connections;               /* default 10000 */

    char *access_log; /* NULL -> off */
    char *error_log;  /* "stderr" or a path */
    gw_log_level_t error_log_level;
    char *pid_file; /* gateway.pid_file, default "logs/gateway.pid" */
    char **plugin_paths;
    size_t nplugin_paths;
    size_t lua_memory; /* bytes; the Lua VM's allocations stop there */

    /* gateway.watchdog: a worker whose loop stands still this long is
     * replaced (gw_master.c); 0 -> off. Default 5s. */
    uint64_t watchdog_ms;

    /* gateway.loop_nap: microseconds a busy worker sleeps between loop
     * passes instead of blocking in epoll_wait (gw_worker.c); 0 -> off.
     * Default 20. */
    unsigned loop_nap_us;

    /* redis: the limiters' server (gw_redis.c) */
    int has_redis;
    gw_redis_type_t redis_type; /* redis.type, default node */
    char *redis_addr;           /* node: the server; NULL otherwise */
    char **redis_addrs;         /* cluster: seed nodes; sentinel: the Sentinels */
    size_t nredis_addrs;
    char *redis_master_name;       /* sentinel: the monitored master's name */
    char *redis_sentinel_password; /* sentinel: AUTH to the Sentinels, NULL -> none */
    char *redis_password;          /* AUTH to the data nodes */
    int redis_db;                  /* always 0 in cluster mode */
    uint64_t redis_timeout_ms;

    gw_registry_conf_t *registries;
    size_t nregistries;

    gw_upstream_conf_t *upstreams;
    size_t nupstreams;
    gw_route_conf_t *routes;
    size_t nroutes;
    gw_plugin_conf_t *global_plugins;
    size_t nglobal_plugins;
    char *consumers_json; /* the consumers list as JSON text, "[]" when absent */
    int has_plugins;      /* some route or the global list names a plugin */

    /* "yaml.path: what" about a valid config that likely does not do what was
     * meant (a subset no node matches, weights a balancer ignores): -t prints
     * them, the master logs them at start and reload. */
    char **warnings;
    size_t nwarnings;

    /* the whole config as written, as JSON text, for the admin API's
     * GET /config (which redacts the secrets in it) */
    char *tree_json;
};

/* Error list: one line per problem, "yaml.path: what is wrong". */
typedef struct {
    char **lines;
    size_t n;
} gw_conf_errors_t;

/*
 * Reads and compiles FILE. On success returns the config and leaves
 * errs empty; on failure returns NULL and fills errs (caller frees it with
 * gw_conf_errors_free). Never exits the process.
 */
gw_conf_t *gw_conf_load(const char *file, gw_conf_errors_t *errs);
/* The same from a string (tests); name is used in messages. */
gw_conf_t *gw_conf_load_string(const char *yaml, size_t len, const char *name,
                               gw_conf_errors_t *errs);
void gw_conf_free(gw_conf_t *conf);
void gw_conf_errors_free(gw_conf_errors_t *errs);

/* "10s" -> 10000; returns GW_ERROR on bad input. Exposed for tests. */
int gw_conf_parse_duration(const char *s, uint64_t *ms);
/* "16k" -> 16384; returns GW_ERROR on bad input. */
int gw_conf_parse_size(const char *s, size_t *bytes);

/**
 * "ip:port", "[ipv6]:port", or, when DEFAULT_PORT > 0, a bare "ip" or
 * "[ipv6]" / "ipv6" taking that port, into SA. Numeric only: never
 * resolves a name. Returns GW_OK or GW_ERROR.
 */
int gw_conf_numeric_addr(const char *s, int default_port, struct sockaddr_storage *sa,
                         socklen_t *salen);
/* A DNS server as registries.NAME.nameservers takes it (port 53 by default). */
int gw_conf_parse_nameserver(const char *s, struct sockaddr_storage *sa, socklen_t *salen);

gw_upstream_conf_t *gw_conf_find_upstream(const gw_conf_t *conf, const char *name);

/**
 * Subsets (route defaults and split rules): 1 when NODE's meta holds every
 * key=value pair of SUBSET (exact strings), else 0. An empty subset matches
 * every node; a NULL node matches nothing.
 */
int gw_subset_match(const gw_node_conf_t *node, const gw_kv_t *subset, size_t nsubset);

/* The name a node of upstream UC is checked against (https): the
 * configured sni, else the name DNS discovery resolves (A/AAAA), else the
 * node's host as written (an IP address for nodes from a registry: then
 * its IP SANs). */
static inline const char *
gw_upstream_tls_name(const gw_upstream_conf_t *uc, const gw_node_conf_t *nc)
{
    if (uc->tls.sni)
        return uc->tls.sni;
    if (uc->discovery.kind == GW_DISC_DNS && uc->discovery.host)
        return uc->discovery.host;
    return nc->host;
}

#endif
