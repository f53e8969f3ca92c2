/*
 * A node of an upstream as one worker sees it: its config, its load and
 * latency figures (read by the balancers) and its keep-alive pool (owned by
 * gw_upstream.c). One gw_node_t per node per worker; never shared between
 * processes, so nothing here needs a lock. What the workers share about a
 * node (health, totals) is in its slot of the shared state (`sh`).
 *
 * Nodes of an upstream fed by a registry come and go while requests use
 * them: a node is allocated on its own, and one the registry dropped
 * (`removed`) lives on until the last request and connection that point to
 * it let go (`refs`, gw_node_ref/gw_node_unref in gw_upstream.h).
 */
#ifndef GW_NODE_H
#define GW_NODE_H

#include <stdint.h>

#include "gw_core.h"

struct gw_node_s {
    const gw_node_conf_t *conf;
    unsigned index;               /* position in its upstream's node list */
    int weight;                   /* effective weight, >= 1 */
    int healthy;                  /* 0 -> balancers skip it */
    unsigned inflight;            /* requests currently sent to it */
    double ewma_latency_us;       /* p2c: decayed latency, 0 until the first answer */
    uint64_t ewma_stamp_ms;       /* time of the last EWMA update */
    uint64_t picks;               /* total picks, for tests and /metrics */
    void *pool;                   /* gw_upstream.c's keep-alive pool */
    struct gw_breaker_s *breaker; /* breaker scope "node": this node's, else NULL */
    unsigned refs;                /* requests and connections pointing here */
    unsigned removed : 1;         /* out of its upstream: freed at refs 0 */
    gw_node_conf_t *own;          /* a discovered node's conf (conf points here) */
    struct gw_shnode_s *sh;       /* its shared slot; NULL: none to be had */
    unsigned sh_health : 1;       /* health is decided in sh, not in healthy */
};

#endif
