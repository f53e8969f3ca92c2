/*
 * Metrics shared by the master and every worker, rendered in the Prometheus
 * text format (version 0.0.4).
 *
 * The master creates the metrics before it forks, in an anonymous shared
 * mapping, so every process sees the same counters. Each worker writes only
 * its own slot (0 .. nworkers-1) with relaxed atomic stores: one writer per
 * slot means no locks and no read-modify-write instructions on the request
 * path. Rendering reads every slot and sums them.
 *
 * The layout (routes, upstreams, their static nodes) is fixed at creation
 * from the config; a config with other routes needs a new gw_metrics_t.
 * Every record call is array indexing: no string hashing, no malloc.
 * Indexes out of range never crash: a bad slot or upstream is ignored, a
 * route index outside the table counts as "no route", a node index outside
 * the static nodes counts as node="other".
 */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stddef.h>

#include "gw_core.h"

/* Connection states for gateway_connections{state}. ACTIVE counts every open
 * downstream connection; READING, WRITING and IDLE split the active ones. */
typedef enum {
    GW_CONN_ACTIVE = 0,
    GW_CONN_READING,
    GW_CONN_WRITING,
    GW_CONN_IDLE,
    GW_CONN_NSTATES
} gw_metrics_conn_state_t;

/* Request and upstream latency histogram buckets, in seconds (plus +Inf). */
#define GW_METRICS_NBUCKETS 12

/* The route label of requests that matched no route: one series for all of
 * them, whatever paths clients send. */
#define GW_METRICS_UNMATCHED "_unmatched"

/* Outcomes of a Redis command for gw_metrics_redis_call. */
enum {
    GW_METRICS_REDIS_OK = 0,    /* an answer that is not an error reply */
    GW_METRICS_REDIS_REPLY_ERR, /* an error reply */
    GW_METRICS_REDIS_TIMEOUT,   /* no answer within redis.timeout */
    GW_METRICS_REDIS_CONN,      /* the connection went away first */
    GW_METRICS_REDIS_NRESULTS
};

/**
 * Maps shared memory for nworkers slots laid out from conf. Call it in the
 * master before fork. Returns NULL when nworkers < 1, conf is NULL or the
 * mapping fails. conf is only read during the call: names are copied.
 */
gw_metrics_t *gw_metrics_new(const gw_conf_t *conf, int nworkers);

/** Unmaps this process's view and frees the copy of the layout. */
void gw_metrics_free(gw_metrics_t *m);

/** Number of worker slots. */
int gw_metrics_nworkers(const gw_metrics_t *m);

/**
 * A worker calls this once at start (after a re-spawn too): the slot counts
 * in gateway_workers and its node gauges become eligible for rendering.
 */
void gw_metrics_worker_start(gw_metrics_t *m, int slot);

/**
 * The master calls this when the worker of slot died: zeroes the slot's
 * gauges (connections, node states) and marks it not running. Counters and
 * histograms keep their totals, so they stay monotonic when a new worker
 * continues the slot.
 */
void gw_metrics_worker_reset(gw_metrics_t *m, int slot);

/**
 * One finished downstream request: gateway_requests_total{route,status} and
 * gateway_request_duration_seconds{route}. route_index -1 means no route
 * matched (rendered as route="_unmatched"). Status codes outside 1..999, or beyond the
 * per-route table of distinct codes, are counted as status="other".
 */
void gw_metrics_request(gw_metrics_t *m, int slot, int route_index, int status, double seconds);

/**
 * One attempt to an upstream node: gateway_upstream_requests_total
 * {upstream,node,status} and gateway_upstream_latency_seconds{upstream}.
 * status 0 means no response (connect error, reset, timeout) and is
 * rendered as status="error".
 */
void gw_metrics_upstream(gw_metrics_t *m, int slot, int upstream_index, int node_index, int status,
                         double seconds);

/** Adds delta to the gauge gateway_connections{state} of slot. */
void gw_metrics_conn(gw_metrics_t *m, int slot, int state, int delta);

/** One request refused by an open breaker: gateway_breaker_drops_total. */
void gw_metrics_breaker_drop(gw_metrics_t *m, int slot, int upstream_index);

/**
 * One request sent again on a new connection because the node closed the
 * kept-alive one it went out on: gateway_upstream_reused_conn_retries_total.
 */
void gw_metrics_reused_conn_retry(gw_metrics_t *m, int slot, int upstream_index);

/**
 * Sets the node-state gauges of an upstream as slot sees them. The rendered
 * gateway_upstream_nodes comes from the lowest running slot that has set
 * them; until one has, every static node counts as healthy.
 */
void gw_metrics_nodes(gw_metrics_t *m, int slot, int upstream_index, int healthy, int unhealthy);

/* Limiter kinds for gateway_limiter_*{plugin}: 0 limit-period, 1 limit-token. */
#define GW_METRICS_NLIMITERS 2

/**
 * One limiter decision on route_index: REJECTED counts in
 * gateway_limiter_rejections_total, FALLBACK (the answer did not come
 * from Redis although the policy is redis) in gateway_limiter_fallbacks_total.
 */
void gw_metrics_limiter(gw_metrics_t *m, int slot, int route_index, int which, int rejected,
                        int fallback);

/**
 * The worker's Redis connection is ready (UP 1) or not; CHANGED counts a
 * transition in gateway_redis_state_changes_total. gateway_redis_up sums
 * the running workers' UP.
 */
void gw_metrics_redis(gw_metrics_t *m, int slot, int up, int changed);

/* Redis Cluster (redis.type: cluster; nothing otherwise). Refresh reasons
 * in gw_rcluster_reason_t's order; redirects: moved, ask, tryagain,
 * clusterdown. */
#define GW_METRICS_NREFRESH 6
#define GW_METRICS_NREDIRECT 4
#define GW_METRICS_RNODES 32     /* nodes shown per worker; later ones are left out */
#define GW_METRICS_RNODE_ADDR 72 /* "host:port" kept to this length */

/* Adds these counts (since the last call) to
 * gateway_redis_cluster_refreshes_total{reason} and
 * gateway_redis_cluster_redirects_total{kind}. */
void gw_metrics_rcluster(gw_metrics_t *m, int slot, const uint64_t *refreshes,
                         const uint64_t *redirects);

/* One node as worker SLOT sees it: its state, and counts since the last call. */
typedef struct {
    const char *addr; /* "host:port" */
    int up, master;
    uint64_t replies, latency_ns, timeouts, noscript;
} gw_metrics_rnode_t;

/* gateway_redis_node_{up,master,fallback,noscript_total,timeouts_total,
 * latency_seconds}{node}. */
void gw_metrics_rnode(gw_metrics_t *m, int slot, const gw_metrics_rnode_t *n);

/* SLOT's worker is gone: its node gauges go to 0. */
void gw_metrics_rcluster_reset(gw_metrics_t *m, int slot);

/**
 * One Redis command of the worker answered (or failed: RESULT is one of
 * GW_METRICS_REDIS_*) after SECONDS: gateway_redis_commands_total,
 * gateway_redis_errors_total{kind}, gateway_redis_latency_seconds.
 */
void gw_metrics_redis_call(gw_metrics_t *m, int slot, int result, double seconds);

/**
 * The bytes the worker's Lua VM holds now: gateway_lua_memory_bytes
 * {worker="SLOT"}. The worker publishes it once a second.
 */
void gw_metrics_lua_memory(gw_metrics_t *m, int slot, size_t bytes);

/** Naps the worker's loop took since it started (gateway_loop_naps_total
 * {worker="SLOT"}); published once a second. */
void gw_metrics_loop_naps(gw_metrics_t *m, int slot, uint64_t naps);

/**
 * redis.type: sentinel: the master the worker's limiters use now (ADDR,
 * "host:port", "" for none) for gateway_redis_sentinel_master{addr};
 * SWITCHED counts one in gateway_redis_sentinel_switches_total.
 */
void gw_metrics_sentinel_master(gw_metrics_t *m, int slot, const char *addr, int switched);

/** A round of questions to the Sentinels found no usable master. */
void gw_metrics_sentinel_resolve_error(gw_metrics_t *m, int slot);

/* gateway_tls_handshakes_total{result} */
enum {
    GW_METRICS_TLS_FULL = 0,
    GW_METRICS_TLS_RESUMED,
    GW_METRICS_TLS_FAILED,
    GW_METRICS_TLS_NKINDS
};

/** One downstream TLS handshake ended (GW_METRICS_TLS_*). The certificate
 * expiry gauge needs no call: it is rendered from the config's not_after. */
void gw_metrics_tls_handshake(gw_metrics_t *m, int slot, int kind);

/**
 * Renders every metric into *out (malloc'd, NUL-terminated, caller frees)
 * and returns its length. On allocation failure returns 0 with *out NULL.
 */
size_t gw_metrics_render(gw_metrics_t *m, char **out);

/* Registry REG (index in conf->registries): up (1) or not, and the changes
 * counted so far, as the discovery process last published them. Every
 * worker writes the same values it read (the discovery process has no
 * metrics of its own: it outlives a reload's new metrics). */
void gw_metrics_registry(gw_metrics_t *m, size_t reg, int up, uint64_t events);

/* Why the master replaced a worker, for gateway_worker_restarts_total{reason}. */
#define GW_METRICS_RESTART_WATCHDOG 0 /* its loop stood still: killed */
#define GW_METRICS_RESTART_DIED 1     /* it exited or a signal killed it */
#define GW_METRICS_NRESTARTS 2

/** The master replaced a worker (REASON one of GW_METRICS_RESTART_*). */
void gw_metrics_worker_restart(gw_metrics_t *m, int reason);

/** A reload's new metrics go on counting from the old ones' restarts. */
void gw_metrics_restarts_carry(gw_metrics_t *to, gw_metrics_t *from);

#endif
