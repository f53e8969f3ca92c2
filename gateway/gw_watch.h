/*
 * What a registry watcher is: the contract between the discovery process
 * (gw_disc.c) and the modules that talk to one kind of registry
 * (gw_etcd.c, gw_consul.c, gw_dns.c).
 *
 * One watcher per registry per gateway instance, started in the discovery
 * process (never in a worker), on that process's loop. It is given every
 * target (an upstream's `discovery` block) that names its registry, and
 * reports, for each target, the complete node list the registry holds now.
 * The discovery process turns those reports into the snapshots the workers
 * route over; a watcher knows nothing of workers, pools or balancers.
 *
 * Rules every watcher keeps:
 * - A list is reported only when the registry gave a complete, believable
 *   answer (a full read, or a watch event applied to one). On an error it
 *   reports nothing: the last good list stays in use.
 * - A value that does not parse is skipped with one log line that names the
 *   key (or service and instance); the rest of the list is still reported.
 * - Everything read from the network is bounded (body sizes, counts).
 * - After stop() returns, the watcher calls nothing in the report table.
 */
#ifndef GW_WATCH_H
#define GW_WATCH_H

#include <stddef.h>
#include <uv.h>

#include "gw_config.h"

typedef struct gw_log_s gw_log_t;

/* One instance as the registry describes it. Everything is borrowed for the
 * duration of the report call only. */
typedef struct {
    const char *host; /* as the registry gave it: an IP literal (IPv6 without
                       * brackets) or a name; the discovery process resolves
                       * names (every address counts) and skips what does
                       * not resolve */
    int port;         /* 1..65535 */
    int weight;       /* 1..1000000; 1 when the registry has no weight */
    const gw_kv_t *meta;
    size_t nmeta;
    const char *id; /* the registry's instance id (etcd key, Consul service id,
                     * DNS record); for log lines, may be NULL */
} gw_disc_node_t;

typedef struct {
    /* The complete node list of TARGET (an index into the targets given to
     * start), replacing the one reported before. An empty list is an answer
     * (every instance is gone), not an error. */
    void (*nodes)(void *arg, size_t target, const gw_disc_node_t *nodes, size_t n);
    /* The registry answers (UP 1) or does not (UP 0, WHY a short reason).
     * Call it on every success and every failure: the discovery process
     * logs and counts only the changes. */
    void (*state)(void *arg, int up, const char *why);
    /* N changes seen (watch events, blocking-query returns with a new
     * index, DNS answers that differ): gateway_registry_events_total. */
    void (*events)(void *arg, unsigned n);
} gw_disc_report_t;

typedef struct {
    gw_discovery_kind_t kind;
    /* Starts watching REG for TARGETS[0..NTARGETS) (all of them name REG;
     * the array and what it points to outlive the watcher). Returns the
     * watcher, or NULL with a log line when it cannot start at all (out of
     * memory); an unreachable registry is not a reason to fail here. */
    void *(*start)(uv_loop_t *loop, gw_log_t *log, const gw_registry_conf_t *reg,
                   const gw_discovery_conf_t *const *targets, size_t ntargets,
                   const gw_disc_report_t *report, void *arg);
    /* Stops at once (cancels requests and timers); handles may finish
     * closing on later loop turns, but no report call follows. */
    void (*stop)(void *watcher);
} gw_watcher_ops_t;

extern const gw_watcher_ops_t gw_etcd_watcher;
extern const gw_watcher_ops_t gw_consul_watcher;
extern const gw_watcher_ops_t gw_dns_watcher;

#endif
