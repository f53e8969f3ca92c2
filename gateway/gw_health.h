/*
 * Health of an upstream's nodes as one worker sees them: active HTTP
 * probes and passive ejection on failed requests. The checker owns the
 * decision and writes it to node->healthy, which the balancers read on
 * every pick; it also publishes the counts to gateway_upstream_nodes.
 *
 * With the shared state segment (gw_shstate.h, gw_health_set_shared) the
 * decision is the instance's: a node's health lives in its shared slot,
 * which every worker's balancer reads; one worker at a time probes a node
 * (a lease it renews each interval; another takes over when it lapses),
 * and passive failures of all workers count together. Without the segment,
 * or for a node that found no free slot, each worker decides alone as
 * before. A node starts healthy when its slot is claimed; the workers of a
 * reload find the slots of the nodes they keep, state and all.
 *
 * Lifetime: gw_health_new (memory only), gw_health_start (timers, first
 * probe after a random fraction of the interval), gw_health_stop (timers
 * closed, probes cancelled; the loop must then run until their callbacks
 * have fired), gw_health_free (after that). One loop, one thread.
 */
#ifndef GW_HEALTH_H
#define GW_HEALTH_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "gw_config.h"
#include "gw_core.h"
#include "gw_node.h"

typedef struct gw_health_s gw_health_t;
typedef struct gw_log_s gw_log_t;
typedef struct gw_tls_client_s gw_tls_client_t;
typedef struct gw_shstate_s gw_shstate_t;

/** Whether conf asks for active or passive checks at all. */
int gw_health_enabled(const gw_upstream_conf_t *conf);

/**
 * A checker for the nnodes nodes (conf's nodes, same order) of the upstream
 * conf. nodes, conf, tls, log and metrics are borrowed and must outlive the
 * checker; metrics may be NULL; tls (the upstream's, scheme https) makes
 * the probes https with the proxy's verification. seed staggers the first
 * probe. Returns NULL with a reason in err when memory runs out. Starts
 * nothing.
 */
gw_health_t *gw_health_new(uv_loop_t *loop, const gw_upstream_conf_t *conf, gw_tls_client_t *tls,
                           gw_node_t **nodes, size_t nnodes, gw_log_t *log, gw_metrics_t *metrics,
                           int slot, uint64_t seed, char *err, size_t errlen);

/** Publishes the node counts and arms the probe timer. Call once. */
void gw_health_start(gw_health_t *h);

/* The upstream's nodes changed (discovery): NODES[0..N) in the upstream's
 * order. Nodes that stay keep their probe state and counts; new ones are
 * probed from the next interval; a removed node's probe is cancelled. H
 * may be NULL. GW_ERROR when out of memory: the old records stay, and may
 * point to nodes no longer listed (the caller keeps those allocated). */
int gw_health_set_nodes(gw_health_t *h, gw_node_t **nodes, size_t n);

/**
 * Stops checking: closes the timer and cancels the probes in flight; their
 * callbacks still fire from the loop and change nothing. Idempotent; a NULL
 * h is a no-op. Nothing here keeps the loop alive afterwards.
 */
void gw_health_stop(gw_health_t *h);

/** Frees h; after gw_health_stop and once the loop has run the closes. */
void gw_health_free(gw_health_t *h);

/** Decides through SH for the nodes with a shared slot; before start. */
void gw_health_set_shared(gw_health_t *h, gw_shstate_t *sh);

/** Once a second: re-admissions another worker owed, and the node counts
 * republished (other workers' changes). */
void gw_health_tick(gw_health_t *h);

/**
 * One proxied attempt to node ended with status (0: no response). Counts
 * for passive ejection; a no-op when h is NULL or passive checks are off.
 * Never allocates.
 */
void gw_health_observe(gw_health_t *h, const gw_node_t *node, int status);

#endif
