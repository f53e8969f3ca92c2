/*
 * State every worker decides on, kept once per instance: node health,
 * breakers, and the in-flight count and EWMA latency of each node as the
 * admin API shows them. One anonymous shared mapping, made by the master
 * before it forks, read and written by every worker (and by the workers
 * of a reload, which find the slots of the nodes they share with the old
 * ones).
 *
 * Two bounded tables of slots. A node slot is keyed by upstream name and
 * node address; a breaker slot by a key its user builds (scope, route,
 * upstream, node) and a hash of the breaker's parameters, so a reload that
 * changes them starts a fresh window. Slots are claimed at first use and
 * never freed explicitly: every worker touches the slots it uses once a
 * second (gw_shstate_touch_*), and a slot nobody touched for
 * GW_SH_STALE_MS may be taken for another key. When a table is full of
 * live slots, the lookup returns NULL and the caller keeps per-worker
 * state for that node or breaker (and logs it); nothing is evicted while
 * in use.
 *
 * Counters a request touches (in-flight, EWMA) are atomics. Health
 * decisions and slot claims take one process-shared robust mutex: a worker
 * killed while holding it hands it to the next locker instead of hanging
 * the instance. Each breaker slot has a lock of its own (gw_breaker.c).
 */
#ifndef GW_SHSTATE_H
#define GW_SHSTATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_config.h"

#define GW_SH_NAME_MAX 64    /* upstream name bytes kept in a node slot (with NUL) */
#define GW_SH_ADDR_MAX 160   /* node address bytes (with NUL) */
#define GW_SH_KEY_MAX 256    /* breaker key bytes (with NUL) */
#define GW_SH_RING 64        /* passive failures kept per node */
#define GW_SH_STALE_MS 10000 /* a slot untouched this long may be reused */
#define GW_SH_NODES 4096     /* default node slots */
#define GW_SH_BREAKERS 1024  /* default breaker slots */
#define GW_SH_BUCKETS 256    /* buckets a shared breaker can have */

typedef struct gw_shstate_s gw_shstate_t;
typedef struct gw_shnode_s gw_shnode_t;

struct gw_shnode_s {
    _Atomic uint32_t used;
    char upstream[GW_SH_NAME_MAX];
    char addr[GW_SH_ADDR_MAX];
    _Atomic uint64_t seen_ms;
    _Atomic int healthy;         /* what every worker's balancer reads */
    _Atomic int64_t inflight;    /* requests sent to it by all workers */
    _Atomic uint64_t ewma_bits;  /* double, microseconds: decayed latency */
    _Atomic uint64_t ewma_stamp; /* ms of the last EWMA update */
    _Atomic uint64_t ejections;  /* times it was marked down */
    _Atomic uint64_t changed_ms; /* when health last changed */
    /* under the segment lock */
    int lease_pid;         /* the worker that runs the active probes */
    uint64_t lease_until;  /* ms */
    uint32_t nfails, head; /* passive ring */
    uint64_t fails[GW_SH_RING];
    uint64_t readmit_at; /* passive only: when an ejected node comes back */
};

/**
 * Maps a segment with NODES node slots and BREAKERS breaker slots (0: the
 * defaults). Call before fork; the children inherit it. NULL when the
 * mapping or the mutex cannot be made.
 */
gw_shstate_t *gw_shstate_new(size_t nodes, size_t breakers);
void gw_shstate_free(gw_shstate_t *sh);

/** Monotonic milliseconds, the clock every slot time is in (libuv's). */
uint64_t gw_shstate_now_ms(void);

/**
 * The slot of node ADDR of upstream UPSTREAM, claimed (healthy, no
 * counts) when there is none. NULL when SH is NULL, a name does not fit,
 * or the table is full of live slots.
 */
gw_shnode_t *gw_shstate_node(gw_shstate_t *sh, const char *upstream, const char *addr);

/** The slot is in use by the caller (once a second). */
void gw_shstate_touch_node(gw_shnode_t *n);

static inline int
gw_shnode_healthy(const gw_shnode_t *n)
{
    return atomic_load_explicit(&n->healthy, memory_order_relaxed);
}

void gw_shnode_inflight_add(gw_shnode_t *n, int delta);
/* The worker's decayed average latency of the node after an answer at
 * NOW_MS (as its p2c balancer keeps it), published for the admin API. */
void gw_shnode_ewma(gw_shnode_t *n, uint64_t now_ms, double ewma_us);
double gw_shnode_ewma_ms(const gw_shnode_t *n);

/**
 * Sets the health of N. Returns 1 when this call changed it (the caller
 * logs), 0 when it already was so. A change clears the passive ring and
 * the re-admission time; READMIT_AT (marking down only) sets a new one.
 */
int gw_shnode_set_health(gw_shstate_t *sh, gw_shnode_t *n, int healthy, uint64_t readmit_at);

/**
 * A failed request to healthy node N at NOW: remembered in the ring of the
 * last RING (<= GW_SH_RING) failures; when RING of them fell within
 * WINDOW_MS, the node goes down (re-admitted at READMIT_AT, 0: by probes)
 * and 1 is returned to the one caller that ejected it.
 */
int gw_shnode_passive_fail(gw_shstate_t *sh, gw_shnode_t *n, uint64_t now, unsigned ring,
                           uint64_t window_ms, uint64_t readmit_at);

/** Brings N back when it is down and its re-admission time has come: 1 when this call did. */
int gw_shnode_readmit_due(gw_shstate_t *sh, gw_shnode_t *n, uint64_t now);

/**
 * Whether worker PID runs the active probes of N now: it holds the lease,
 * or takes it when the holder let it lapse (TTL_MS after its last renewal).
 */
int gw_shnode_lease(gw_shstate_t *sh, gw_shnode_t *n, int pid, uint64_t now, uint64_t ttl_ms);
/** PID stops probing N (a draining worker): another takes over at once. */
void gw_shnode_lease_release(gw_shstate_t *sh, gw_shnode_t *n, int pid);

/**
 * The breaker keyed KEY with CONF's parameters: a shared one when a slot
 * can be had (gw_breaker_free() of it is a no-op), else a breaker of the
 * caller's own (gw_breaker_new) and *SHARED set to 0. NULL only when
 * neither can be made. SH may be NULL (then always the caller's own).
 */
struct gw_breaker_s *gw_shstate_breaker(gw_shstate_t *sh, const char *key,
                                        const gw_breaker_conf_t *conf, int *shared);

/** A shared breaker is in use by the caller (once a second); others: no-op. */
void gw_shstate_touch_breaker(struct gw_breaker_s *b);

/** Slots in use and capacity (admin API, tests). */
void gw_shstate_usage(gw_shstate_t *sh, size_t *nodes_used, size_t *nodes_cap,
                      size_t *breakers_used, size_t *breakers_cap);

#endif
