/*
 * Load balancers: choose one node of a candidate set for a request.
 *
 * One balancer per candidate set per worker (an upstream's nodes, or the
 * subset a route or a split rule selects). A balancer is used by one thread only and
 * keeps its positions, ring and PRNG inside itself, so a pick never
 * allocates and never locks. Nodes are read (weight, healthy, inflight,
 * ewma_latency_us) but never owned.
 *
 * Kinds:
 *   round_robin           next healthy node in order; when the weights
 *                         differ, smooth weighted round robin, as nginx's
 *                         round robin (weights fixed at new/update)
 *   weighted_round_robin  smooth weighted round robin (nginx), always
 *   random                uniform among healthy nodes (per-balancer PRNG)
 *   least_conn            fewest inflight / weight, ties taken in turn
 *   consistent_hash       ring of 160 x weight points per node; a change of
 *                         one node among n moves about 1/n of the keys
 *   p2c                   power of two choices over EWMA latency x
 *                         (inflight + 1), as go-zero's p2c
 */
#ifndef GW_BALANCER_H
#define GW_BALANCER_H

#include <stddef.h>
#include <stdint.h>

#include "gw_config.h"
#include "gw_core.h"
#include "gw_node.h"

/**
 * Creates a balancer of KIND over NODES[0..N). The pointer array is copied;
 * the nodes must outlive the balancer (or be replaced with
 * gw_balancer_update() first). N may be 0: every pick then returns NULL.
 * SEED feeds the PRNG of random and p2c; give each worker its own.
 * Returns NULL on a bad KIND, NULL NODES with N > 0, a NULL entry, or out
 * of memory.
 */
gw_balancer_t *gw_balancer_new(gw_balancer_kind_t kind, gw_node_t **nodes, size_t n, uint64_t seed);

/** Frees the balancer, never the nodes; NULL is a no-op. */
void gw_balancer_free(gw_balancer_t *b);

/**
 * Picks a node with healthy != 0 that is not in EXCLUDE[0..NEXCLUDE) (the
 * nodes this request already tried). Returns NULL when none is left.
 *
 * KEY is the consistent_hash key (from the upstream's hash_on); when it is
 * NULL or empty, consistent_hash falls back to round_robin (weighted when
 * the weights differ). Other kinds
 * ignore it. NOW_MS (a monotonic clock) is used by p2c only.
 *
 * Increments the chosen node's `picks`. Does not touch `inflight`: the
 * caller raises it when the upstream request starts and lowers it when it
 * ends. Never allocates.
 */
gw_node_t *gw_balancer_pick(gw_balancer_t *b, const gw_str_t *key, gw_node_t *const *exclude,
                            size_t nexclude, uint64_t now_ms);

/**
 * Reports an upstream answer from NODE: LATENCY_US from send to response
 * head, OK 0 for a failure (connect error, timeout, 5xx as the caller
 * decides). Updates node->ewma_latency_us (time-decayed: w =
 * exp(-elapsed / 10 s) since node->ewma_stamp_ms; the first answer sets it)
 * for every kind, and p2c's success rate.
 */
void gw_balancer_feedback(gw_balancer_t *b, gw_node_t *node, uint64_t latency_us, int ok,
                          uint64_t now_ms);

/**
 * Replaces the candidate set after nodes were added or removed or weights
 * changed; rebuilds the consistent hash ring. Per-node state (smooth WRR
 * weights, p2c pick times and success rates) is kept for nodes whose
 * pointer is in both sets. Health changes need no update: picks read
 * `healthy` each time. Returns GW_OK, or GW_ERROR (bad arguments, out of
 * memory) leaving the balancer as it was.
 */
int gw_balancer_update(gw_balancer_t *b, gw_node_t **nodes, size_t n);

/** The kind's config name ("round_robin", ...), or "unknown". */
const char *gw_balancer_kind_name(gw_balancer_kind_t kind);

#endif
