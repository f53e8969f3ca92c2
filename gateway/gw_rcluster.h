/*
 * The worker's Redis Cluster client: one gw_rconn per node it talks to,
 * the slot map of gw_cluster.h, and the redirect rules of the cluster
 * specification.
 *
 * The map. CLUSTER SLOTS is asked of the seeds in turn, then of the
 * masters of the last map (the seed that answered is asked first next
 * time); the first good answer becomes the map and every master in it is
 * connected at once. A reply the map refuses is logged and the next node
 * asked; when none answers the last map stays and the round is tried again
 * later. Refreshes follow gw_cluster's rule (one in flight, refresh_gap_ms
 * between starts) and come from a MOVED, a CLUSTERDOWN, a master that
 * stops being ready (and again after the gap while one is not ready: a
 * failover shows only in a new map), and every refresh_every_ms. Connections to nodes that
 * leave the map are closed once nothing waits on them.
 *
 * Commands. A command goes to the master of the slot of its first key
 * (ARGV[1] of a plain command, the first key of a script); keyless
 * commands are refused. It has one deadline (the request's, or now +
 * timeout_ms) across everything below:
 *   - MOVED: the slot is patched in the map, the command resent to the
 *     new master, and a refresh wanted unless the map already said so (the
 *     commands in flight at a failover all come back MOVED);
 *   - ASK: the command is resent to that node only, after ASKING; the map
 *     stays;
 *   - a redirect to a node whose connection is not ready yet (a new
 *     master, a reconnect) waits for it, up to the deadline;
 *   - TRYAGAIN, CLUSTERDOWN: one short backoff (retry_ms), then the command
 *     is routed again; a second one reaches the caller as the error reply;
 *   - NOSCRIPT is handled by the node's connection (EVAL there), never a
 *     redirect nor a reason to refresh;
 *   - LOADING, BUSY, MASTERDOWN, NOAUTH, MISCONF make that node's
 *     connection suspect (it probes every 100 ms) and reach the caller;
 *   - at most GW_RCLUSTER_MAX_REDIRECTS redirects, then the last error
 *     reply reaches the caller.
 * A slot with no master, or whose master is not ready, refuses the command
 * at once (NULL from gw_rcluster_send): keys on other masters are not
 * held up, and the caller applies its Redis-down policy to this key only
 * (gw_rcluster_key_ready() says beforehand).
 *
 * Callbacks and errors are gw_rconn's. One loop, one thread.
 */
#ifndef GW_RCLUSTER_H
#define GW_RCLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "gw_cluster.h"
#include "gw_rconn.h"

#define GW_RCLUSTER_MAX_REDIRECTS 5

typedef struct gw_rcluster_s gw_rcluster_t;
typedef struct gw_rcluster_cmd_s gw_rcluster_cmd_t;

typedef struct {
    const gw_cluster_addr_t *seeds; /* copied */
    size_t nseeds;
    const char *password; /* NULL or "": no AUTH */
    uint64_t timeout_ms;  /* per command, redirects and retries included */
    uint64_t connect_timeout_ms;
    uint64_t refresh_gap_ms;   /* least time between two map refreshes; 0: 1000 */
    uint64_t refresh_every_ms; /* periodic refresh; 0: 30000 */
    uint64_t retry_ms;         /* the backoff after TRYAGAIN or CLUSTERDOWN; 0: 50 */
    /* told when a node's connection becomes ready (1) or stops being (0) */
    void (*on_node)(void *arg, const gw_cluster_addr_t *addr, int ready);
    void *node_arg;
    /* optional: every command's end, once however many nodes it went to
     * (redirects and retries are not commands of their own; the slot-map
     * queries are not told) */
    void (*on_answer)(void *arg, int err, int error_reply, uint64_t ns);
    void *answer_arg;
} gw_rcluster_opts_t;

/* Why a map refresh started (the weightiest reason when several wanted it). */
typedef enum {
    GW_RCLUSTER_R_START = 0,   /* the first map */
    GW_RCLUSTER_R_MOVED,       /* a MOVED the map did not know */
    GW_RCLUSTER_R_CLUSTERDOWN, /* a CLUSTERDOWN answer */
    GW_RCLUSTER_R_NODE_DOWN,   /* a master stopped answering, or still does not */
    GW_RCLUSTER_R_RETRY,       /* the last round found no map */
    GW_RCLUSTER_R_PERIODIC,    /* refresh_every_ms */
    GW_RCLUSTER_NREASONS
} gw_rcluster_reason_t;

/* Counters, for metrics and tests: uint64_t only (gw_rcluster_stats_take). */
typedef struct {
    uint64_t maps;                            /* slot maps installed */
    uint64_t refresh_failed;                  /* rounds in which no node gave a good map */
    uint64_t slots_asked;                     /* CLUSTER SLOTS sent */
    uint64_t refreshes[GW_RCLUSTER_NREASONS]; /* rounds started, by reason */
    uint64_t moved, ask, tryagain, clusterdown;
} gw_rcluster_stats_t;

/* One node the client talks to, for metrics (valid until the loop runs). */
typedef struct {
    const gw_cluster_addr_t *addr;
    int master; /* serves slots in the current map */
    int ready;
    gw_rconn_stats_t stats; /* since the last gw_rcluster_nodes() */
} gw_rcluster_node_t;

/* Starts asking for the map at once. NULL on bad options or out of memory. */
gw_rcluster_t *gw_rcluster_new(uv_loop_t *loop, const gw_rcluster_opts_t *o, gw_log_t *log);

/* Fails every command with GW_RCONN_ECLOSED (callbacks run from inside
 * this call) and closes the connections; the memory goes once libuv has
 * closed the timers. */
void gw_rcluster_close(gw_rcluster_t *cl);

/* 1 once a slot map is there. */
int gw_rcluster_ready(const gw_rcluster_t *cl);

/* 1 when KEY's slot has a master and its connection is ready. */
int gw_rcluster_key_ready(const gw_rcluster_t *cl, const char *key, size_t len);

/*
 * Sends REQ (see gw_rconn_req_t; asking is ignored) to the master of its
 * first key's slot. NULL when there is no map, no key, no ready master for
 * the slot, or no memory: nothing is sent and CB will not be called.
 * Otherwise CB is called once, from the loop, never from inside this call.
 */
gw_rcluster_cmd_t *gw_rcluster_send(gw_rcluster_t *cl, const gw_rconn_req_t *req, gw_rconn_cb cb,
                                    void *arg);

/* The waiter went away: CB is not called for this command. */
void gw_rcluster_cmd_cancel(gw_rcluster_cmd_t *c);

const gw_rcluster_stats_t *gw_rcluster_stats(const gw_rcluster_t *cl);

/* The counts since the last call. */
void gw_rcluster_stats_take(gw_rcluster_t *cl, gw_rcluster_stats_t *out);

/* Fills OUT with up to MAX of the nodes connected or being connected,
 * their counts since the last call; returns how many. */
size_t gw_rcluster_nodes(gw_rcluster_t *cl, gw_rcluster_node_t *out, size_t max);

#endif
